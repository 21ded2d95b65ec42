"""Prompt templates live in files; this renders them into chat messages.

A template has `### SYSTEM`, `### USER` and optionally `### ASSISTANT` sections; the assistant
section is a prefix the model continues from (for example `Grade:`), which pins the format of
the first token that local engines read logprobs from.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

import yaml

_SECTION = re.compile(r"^### (SYSTEM|USER|ASSISTANT)\s*$", re.M)


@dataclass(frozen=True)
class Template:
    name: str
    system: Optional[str]
    user: str
    assistant_prefix: str

    def messages(self, **fields) -> list[dict]:
        safe = _SafeFields(fields)
        msgs = []
        if self.system:
            msgs.append({"role": "system", "content": self.system.format_map(safe)})
        msgs.append({"role": "user", "content": self.user.format_map(safe)})
        return msgs


    def leading_field(self) -> str:
        """"query" or "text", whichever the prompt shows first: pairs sorted by it share the
        longest prompt prefix, which vLLM's prefix cache computes once."""
        body = (self.system or "") + "\n" + self.user
        q, t = body.find("{query}"), body.find("{text}")
        return "query" if q != -1 and (t == -1 or q < t) else "text"


class _SafeFields(dict):
    """Missing metadata renders as 'unknown' rather than failing or inventing a value."""

    def __missing__(self, key):
        return "unknown"


def _read(name_or_path: str, suffix: str) -> tuple[str, str]:
    p = Path(name_or_path)
    if p.suffix and p.is_file():
        return p.stem, p.read_text(encoding="utf-8")
    res = resources.files("labeler.templates").joinpath(f"{name_or_path}{suffix}")
    if not res.is_file():
        raise FileNotFoundError(f"prompt template {name_or_path!r} not found (a file path, or one of "
                                f"{sorted(x.name for x in resources.files('labeler.templates').iterdir())})")
    return name_or_path, res.read_text(encoding="utf-8")


def load_template(name_or_path: str) -> Template:
    name, text = _read(name_or_path, ".txt")
    parts = _SECTION.split(text)
    sections = {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}
    if "USER" not in sections:
        raise ValueError(f"prompt template {name!r} has no '### USER' section")
    return Template(name, sections.get("SYSTEM"), sections["USER"], sections.get("ASSISTANT", "").strip())


def load_query_kinds(name_or_path: str = "query_kinds") -> dict[str, str]:
    return yaml.safe_load(_read(name_or_path, ".yaml")[1])


def doc_fields(row: dict) -> dict:
    """The template fields of a document row, metadata unpacked from its JSON column."""
    meta = row.get("doc_meta") or row.get("metadata")
    fields = dict(json.loads(meta)) if isinstance(meta, str) and meta else {}
    for k in ("title", "text", "author", "space", "doc_type", "last_modified", "query"):
        if row.get(k) is not None:
            fields[k] = row[k]
    return {k: v for k, v in fields.items() if v not in (None, "")}


def truncate_tokens(tokenizer, text: str, max_tokens: int) -> tuple[str, bool]:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text, False
    return tokenizer.decode(ids[:max_tokens]) + " ...", True


def template_hash(name_or_path: str, suffix: str = ".txt") -> str:
    """Content hash of a template: editing a prompt must redo the stages that used it."""
    import hashlib
    return hashlib.sha256(_read(name_or_path, suffix)[1].encode()).hexdigest()[:12]
