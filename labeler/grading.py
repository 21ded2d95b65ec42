"""Grading a pair: one prompt layout shared by the teacher, the student's training and its labeling.

The student must see at training time exactly the prompt it is later labeled with, so the
layout lives here and nowhere else. Prompts put the fixed instructions first and the document
before the query: pairs sorted by document then share a long prefix, which vLLM's prefix cache
reuses.
"""
from __future__ import annotations

import logging
import re
import string
from dataclasses import dataclass
from functools import lru_cache

from .prompts import Template, doc_fields, truncate_tokens

log = logging.getLogger(__name__)


@dataclass
class GradePrompt:
    prompt: object
    truncated: bool


def build_prompt(engine_or_tokenizer, template: Template, row: dict, max_doc_tokens: int,
                 as_text: bool = False) -> GradePrompt:
    """The grading prompt of one pair; the document is cut to `max_doc_tokens` tokens.

    Given an engine (anything with `prompt()` and `tokenizer`), the prompt is what that engine
    takes (chat messages for a remote one); given a tokenizer, or `as_text`, the chat-templated text.
    """
    fields = doc_fields(row)
    tok = getattr(engine_or_tokenizer, "tokenizer", engine_or_tokenizer)
    truncated = False
    if tok is not None and fields.get("text"):
        fields["text"], truncated = truncate_tokens(tok, fields["text"], max_doc_tokens)
    elif fields.get("text") and len(fields["text"]) > max_doc_tokens * 6:  # remote engines: by chars
        fields["text"], truncated = fields["text"][: max_doc_tokens * 4] + " ...", True
    messages = template.messages(**fields)
    prefix = assistant_prefix(tok, template.assistant_prefix)
    is_engine = hasattr(engine_or_tokenizer, "prompt") and hasattr(engine_or_tokenizer, "tokenizer")
    if as_text or not is_engine:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return GradePrompt(text + prefix, truncated)
    return GradePrompt(engine_or_tokenizer.prompt(messages, prefix), truncated)


def assistant_prefix(tokenizer, prefix: str) -> str:
    """The prefix the grade digit follows, ending where the tokenizer puts the digit's boundary.

    Many tokenizers (Qwen2, SmolLM2) split " 3" into a space and "3": after "Grade:" the model
    then puts nearly all its probability on the space. Ending the prefix with that space makes the
    next token the bare digit, exactly as in the tokenization of "Grade: 3".
    """
    if not prefix or prefix.endswith(" ") or tokenizer is None:
        return prefix
    if all(len(tokenizer.encode(f" {g}", add_special_tokens=False)) == 1 for g in range(4)):
        return prefix
    return prefix + " "


def grade_target_ids(tokenizer, prefix: str) -> list[int]:
    """Token ids the student should emit for grades 0..3 right after the prompt (see assistant_prefix)."""
    full = assistant_prefix(tokenizer, prefix)
    ids = []
    for g in range(4):
        spaced = bool(full) and not full.endswith(" ")
        choice = tokenizer.encode(f" {g}" if spaced else str(g), add_special_tokens=False)
        if len(choice) != 1:
            raise ValueError(f"grade {g} is not a single token for this tokenizer ({choice})")
        ids.append(choice[0])
    return ids


class PromptEncoder:
    """The grading prompt of a pair as token ids, without tokenizing the whole prompt per pair.

    A prompt is the template's fixed text (instructions and chat markup, most of its tokens)
    with the pair's fields in between. The fixed pieces are tokenized once; per pair only the
    fields are, cut where a byte-level BPE pre-tokenizer splits anyway (a field takes the space
    before it and ends before a space or newline), so the concatenated ids are those of the whole
    prompt. That is checked against `build_prompt` + a full encode on the first pairs and on a
    sample after; one difference switches the shortcut off for good. Fields that start or end
    with whitespace take the full path.
    """

    def __init__(self, tokenizer, template, max_doc_tokens: int, check_first: int = 64, check_every: int = 997):
        self.tok, self.template, self.max_doc_tokens = tokenizer, template, max_doc_tokens
        self.check_first, self.check_every, self.seen = check_first, check_every, 0
        self.encode_text = lru_cache(maxsize=4096)(lambda s: tuple(tokenizer.encode(s, add_special_tokens=False)))
        names = {f for src in (template.system or "", template.user) for _, f, _, _ in string.Formatter().parse(src) if f}
        marked = tokenizer.apply_chat_template(template.messages(**{n: f"\x01{n}\x02" for n in names}),
                                               tokenize=False, add_generation_prompt=True)
        parts = re.split("\x01(\\w+)\x02", marked + assistant_prefix(tokenizer, template.assistant_prefix))
        statics, self.slots = parts[0::2], []
        self.fast = len(parts) > 1
        for i, name in enumerate(parts[1::2]):
            lead = " " if statics[i].endswith(" ") else ""
            statics[i] = statics[i][: len(statics[i]) - len(lead)]
            after = statics[i + 1]
            if not statics[i] or statics[i][-1].isspace() and not statics[i].endswith("\n") or not after[:1].isspace():
                self.fast = False
            self.slots.append((name, lead))
        self.static_ids = [self.encode_text(s) for s in statics]
        self.names = names

    def __call__(self, fields: dict) -> tuple[list[int], bool]:
        """(token ids, whether the document was truncated) of one pair's template fields."""
        fast = self.fast and all(_clean(fields.get(n)) for n in self.names if n in fields)
        if not fast:
            return self._full(fields)
        ids, truncated = list(self.static_ids[0]), False
        for (name, lead), static in zip(self.slots, self.static_ids[1:]):
            value = fields.get(name, "unknown")
            if name == "text":
                tids = self.encode_text(value)
                if len(tids) > self.max_doc_tokens:
                    value, truncated = self.tok.decode(list(tids[: self.max_doc_tokens])) + " ...", True
                    if not _clean(value):
                        return self._full(fields)
            ids.extend(self.encode_text(lead + value))
            ids.extend(static)
        self.seen += 1
        if self.seen <= self.check_first or self.seen % self.check_every == 0:
            full, _ = self._full(fields)
            if full != ids:
                log.info("prompt pieces tokenize differently from the whole prompt with this tokenizer; "
                         "tokenizing whole prompts from now on")
                self.fast = False
                return full, truncated
        return ids, truncated

    def _full(self, fields: dict) -> tuple[list[int], bool]:
        p = build_prompt(self.tok, self.template, fields, self.max_doc_tokens, as_text=True)
        return self.tok.encode(p.prompt, add_special_tokens=False), p.truncated


def _clean(v) -> bool:
    return isinstance(v, str) and bool(v) and not v[0].isspace() and not v[-1].isspace()
