"""Long documents -> passages of at most N tokens, each traceable to its document.

Tokens here are whitespace-separated words (what BM25 sees, and about 0.75 of a subword token),
so chunking needs no model and gives the same passages on every machine. A document that fits in
one passage keeps its own id; one that does not becomes `<doc_id>#p0`, `<doc_id>#p1`, ... with
`parent_id` naming the document, so that the miner can exclude every passage of a seed's document.
"""
from __future__ import annotations

import re

import pyarrow as pa

_WORD = re.compile(r"\S+")
SEP = "#p"


def split_passages(text: str, max_tokens: int, overlap: int = 0) -> list[str]:
    """Windows of `max_tokens` words, consecutive windows sharing `overlap` words; original spacing kept."""
    spans = [m.span() for m in _WORD.finditer(text or "")]
    if len(spans) <= max_tokens:
        return [text]
    step = max(1, max_tokens - overlap)
    out = []
    for start in range(0, len(spans), step):
        end = min(start + max_tokens, len(spans))
        out.append(text[spans[start][0]:spans[end - 1][1]])
        if end == len(spans):
            break
    return out


def chunk_docs(docs: pa.Table, max_tokens: int | None, overlap: int = 0) -> pa.Table:
    """Rows of `docs` with a `parent_id` column; long documents replaced by their passages."""
    if not max_tokens:
        return docs.append_column("parent_id", docs.column("doc_id"))
    if overlap >= max_tokens:
        raise ValueError(f"chunk overlap ({overlap}) must be smaller than the chunk size ({max_tokens})")
    rows = []
    for d in docs.to_pylist():
        parts = split_passages(d["text"], max_tokens, overlap)
        if len(parts) == 1:
            rows.append({**d, "parent_id": d["doc_id"]})
            continue
        for i, p in enumerate(parts):
            rows.append({**d, "doc_id": f"{d['doc_id']}{SEP}{i}", "parent_id": d["doc_id"], "text": p,
                         **({"n_chars": len(p)} if "n_chars" in d else {})})
    schema = docs.schema.append(pa.field("parent_id", pa.string()))
    return pa.Table.from_pylist(rows, schema=schema)
