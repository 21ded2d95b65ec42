"""Grading a pair: one prompt layout shared by the teacher, the student's training and its labeling.

The student must see at training time exactly the prompt it is later labeled with, so the
layout lives here and nowhere else. Prompts put the fixed instructions first and the document
before the query: pairs sorted by document then share a long prefix, which vLLM's prefix cache
reuses.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .config import GradeConfig
from .engines.base import Engine, GradeResult, call_engine
from .prompts import Template, doc_fields, load_template, truncate_tokens
from .schema import LABEL_FIELDS, pair_key

@dataclass
class GradePrompt:
    prompt: object
    truncated: bool


def build_prompt(engine_or_tokenizer, template: Template, row: dict, max_doc_tokens: int,
                 as_text: bool = False) -> GradePrompt:
    """The grading prompt of one pair; the document is cut to `max_doc_tokens` tokens."""
    fields = doc_fields(row)
    tok = getattr(engine_or_tokenizer, "tokenizer", engine_or_tokenizer)
    truncated = False
    if tok is not None and fields.get("text"):
        fields["text"], truncated = truncate_tokens(tok, fields["text"], max_doc_tokens)
    elif fields.get("text") and len(fields["text"]) > max_doc_tokens * 6:  # remote engines: by chars
        fields["text"], truncated = fields["text"][: max_doc_tokens * 4] + " ...", True
    messages = template.messages(**fields)
    prefix = assistant_prefix(tok, template.assistant_prefix)
    if as_text or not isinstance(engine_or_tokenizer, Engine):
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


def label_columns(results: list[GradeResult], truncated: list[bool], model: str, version: str) -> dict:
    return {
        "status": ["ok" if r.error is None else "failed" for r in results],
        "error": [r.error for r in results],
        "grade": [r.grade for r in results],
        "expected_grade": [r.expected for r in results],
        "grade_probs": [r.probs for r in results],
        "grade_mass": [r.mass for r in results],
        "model": [model] * len(results),
        "model_version": [version] * len(results),
        "truncated": truncated,
        "prompt_tokens": [r.prompt_tokens for r in results],
        "_key": None,
        "_status": ["ok" if r.error is None else "rejected" for r in results],
        "_reason": [r.error for r in results],
        "_detail": [r.detail for r in results],
        "_raw": [r.raw for r in results],
    }


class GradeWorker:
    """A Ray Data actor: holds one engine and grades batches of pairs (pyarrow in, pyarrow out)."""

    def __init__(self, engine_cfg, grading: GradeConfig, seed: int = 0):
        from .engines import make_engine

        self.engine = make_engine(engine_cfg, seed)
        self.grading = grading
        self.template = load_template(grading.prompt)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        if self.engine.reads_pairs:  # a cross-encoder reads (query, document) itself, no prompt
            results, truncated = call_engine(self.engine, self.engine.grade_pairs, rows)
        else:
            prompts = [build_prompt(self.engine, self.template, r, self.grading.max_doc_tokens) for r in rows]
            results = call_engine(self.engine, self.engine.grade, [p.prompt for p in prompts],
                                  top_logprobs=self.grading.top_logprobs)
            truncated = [p.truncated for p in prompts]
        cols = label_columns(results, truncated, self.engine.model_id, self.engine.model_version)
        cols["_key"] = [pair_key(r["query_id"], r["doc_id"]) for r in rows]
        return append_label_columns(batch, cols)


def append_label_columns(t: pa.Table, cols: dict) -> pa.Table:
    """`t` with the label columns (LABEL_FIELDS types; `_key`, `_reason`, ... as strings); a value
    of None is a column of nulls."""
    types = {f.name: f for f in LABEL_FIELDS}
    for name, values in cols.items():
        field = types.get(name, pa.field(name, pa.string()))
        if values is None:
            arr = pa.nulls(t.num_rows, field.type)
        elif isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr = values.cast(field.type)
        else:
            arr = pa.array(values, type=field.type)
        t = t.append_column(field, arr)
    return t


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

