"""Arrow schemas of the tables passed between stages: the contracts every stage relies on.

Each stage writes `data/` rows of its schema and `rejected/` rows of REJECTED, so that
rows in = rows out + rows rejected can be checked and every rejected row keeps its reason.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import pyarrow as pa

GRADES = (0, 1, 2, 3)

DOCS = pa.schema([
    ("doc_id", pa.string()),
    ("title", pa.string()),
    ("text", pa.string()),
    ("author", pa.string()),
    ("space", pa.string()),
    ("doc_type", pa.string()),
    ("last_modified", pa.string()),
    ("metadata", pa.string()),  # JSON of any other source fields, kept so nothing is lost
    ("n_chars", pa.int32()),
])

QUERIES = pa.schema([
    ("query_id", pa.string()),
    ("query", pa.string()),
    ("kind", pa.string()),
    ("seed_doc_id", pa.string()),
    ("model", pa.string()),
    ("prompt_tokens", pa.int32()),
    ("completion_tokens", pa.int32()),
])

# A pair carries the document text so that judging and labeling need nothing else.
PAIRS = pa.schema([
    ("query_id", pa.string()),
    ("query", pa.string()),
    ("doc_id", pa.string()),
    ("title", pa.string()),
    ("text", pa.string()),
    ("doc_meta", pa.string()),   # JSON: author, space, doc_type, last_modified
    ("source", pa.string()),     # seed | bm25 | random
    ("bm25_rank", pa.int32()),   # null when BM25 did not retrieve the document
    ("bm25_score", pa.float32()),
    ("split", pa.string()),      # train | heldout (by query)
])

# Graded stages keep one row per input pair: a pair that could not be graded has status "failed",
# its reason in `error` and null grades (it is also listed in rejected/ with the raw output).
LABEL_FIELDS = [
    pa.field("status", pa.string()),                  # ok | failed
    pa.field("error", pa.string()),                   # the reason code when failed
    pa.field("grade", pa.int8()),
    pa.field("expected_grade", pa.float32()),
    # P(grade = 0..3), renormalised over grade tokens. Null for a cross-encoder student: it has a
    # score, calibrated to expected_grade (grade = that rounded), and no distribution to report.
    pa.field("grade_probs", pa.list_(pa.float32())),
    pa.field("grade_mass", pa.float32()),             # probability mass on grade tokens (null: cross-encoder)
    pa.field("model", pa.string()),
    pa.field("model_version", pa.string()),
    pa.field("truncated", pa.bool_()),
    pa.field("prompt_tokens", pa.int32()),
]

JUDGMENTS = pa.schema(list(PAIRS) + LABEL_FIELDS)

LABELS = pa.schema([
    pa.field("query_id", pa.string()),
    pa.field("doc_id", pa.string()),
    pa.field("split", pa.string()),
    pa.field("source", pa.string()),
    *LABEL_FIELDS,
])

# The distill stage's record of what the student trained on: one row per unit it used (a graded
# pair, or a query's group with its positive's doc_id and grade).
TRAIN_EXAMPLES = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("grade", pa.int8()),
                            ("n_tokens", pa.int32())])

REJECTED = pa.schema([
    ("key", pa.string()),      # the input row's key (doc_id, query_id, or query_id<TAB>doc_id)
    ("reason", pa.string()),   # a short stable code: empty_text, bad_json, unparseable_output, ...
    ("detail", pa.string()),   # a human-readable explanation
    ("record", pa.string()),   # the offending input (JSON or raw text, truncated)
])

MAX_RECORD_CHARS = 4000


def pair_key(query_id: str, doc_id: str) -> str:
    return f"{query_id}\t{doc_id}"


def rejected_row(key: str, reason: str, detail: str, record: Any = None) -> dict:
    if record is not None and not isinstance(record, str):
        record = json.dumps(record, ensure_ascii=False, default=str)
    if record is not None and len(record) > MAX_RECORD_CHARS:
        record = record[:MAX_RECORD_CHARS] + f"...[{len(record) - MAX_RECORD_CHARS} more chars]"
    return {"key": key, "reason": reason, "detail": detail, "record": record}


def to_table(rows: Iterable[dict] | dict[str, list], schema: pa.Schema) -> pa.Table:
    """Rows (list of dicts or dict of columns) -> a table of exactly `schema`; extra keys dropped."""
    if isinstance(rows, dict):
        cols = {f.name: rows.get(f.name, [None] * _ncols(rows)) for f in schema}
        return pa.Table.from_pydict(cols, schema=schema)
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def _ncols(cols: dict) -> int:
    for v in cols.values():
        return len(v)
    return 0


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast a table to `schema`; a missing required column is a contract violation."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"table lacks columns {missing} required by the schema; has {table.column_names}")
    return table.select([f.name for f in schema]).cast(schema)
