"""What `labeler evaluate` compares: human judgments (qrels, or a table of grades) and labels (a
stage's output folder, Parquet, JSONL, qrels, or a TREC run of scores). A malformed file is an
error naming the file and line, never a silently shorter table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import qrels as trec

_Q, _D = "query_id", "doc_id"


def load_reference(path: str | Path) -> pa.Table:
    """Human judgments from a qrels file, or a Parquet/JSONL table with query_id, doc_id, grade."""
    path = Path(path)
    kind = trec.sniff_format(path)
    if kind == "qrels":
        return trec.read_qrels(path, grades=range(4))  # a bad grade is reported with its file:line
    if kind == "run":
        raise ValueError(f"{path} is a TREC run (6 fields per line), not judgments; pass it with --runs")
    table = _read_table(path, kind)
    missing = {_Q, _D, "grade"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: reference lacks columns {sorted(missing)}; has {table.column_names}")
    return table.select([_Q, _D, "grade"]).cast(trec.QRELS_SCHEMA)


def load_labels(path: str | Path) -> pa.Table:
    """A labels table from a stage output folder, a Parquet file/folder, JSONL, a qrels or a run file.

    A stage folder's `rejected/` rows come back as status "failed" so they lower coverage; a qrels
    file gives grades without expected_grade; a run file gives only `score` (a ranking source such
    as BM25, for which grade metrics are not defined).
    """
    path = Path(path)
    kind = trec.sniff_format(path)
    if kind == "qrels":
        t = trec.read_qrels(path)
        table = t.append_column("model", pa.array([path.stem] * t.num_rows, pa.string()))
    elif kind == "run":
        table = _run_table(trec.read_run(path), path.stem)
    elif path.is_dir() and (path / "data").is_dir():
        table = _stage_table(path)
    else:
        table = _read_table(path, kind)
    return check_label_columns(table, path)


def _read_table(path: Path, kind: str) -> pa.Table:
    if kind == "jsonl":
        return _read_jsonl(path)
    import pyarrow.parquet as pq
    return pq.read_table(path)


def _read_jsonl(path: Path) -> pa.Table:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    return pa.Table.from_pylist(rows)


def _run_table(run: trec.Run, name: str) -> pa.Table:
    rows = [(q, d, s) for q, docs in run.items() for d, s in docs.items()]
    return pa.table({_Q: [r[0] for r in rows], _D: [r[1] for r in rows],
                     "score": pa.array([r[2] for r in rows], pa.float64()),
                     "model": [name] * len(rows)})


def _stage_table(folder: Path) -> pa.Table:
    """Data rows as ok, rejected rows (key 'qid<TAB>docid') as failed, as the store writes them."""
    import pyarrow.parquet as pq
    data = pq.read_table(folder / "data")
    data = data.append_column("status", pa.array(["ok"] * data.num_rows, pa.string()))
    rejected_dir = folder / "rejected"
    if not rejected_dir.is_dir() or not any(rejected_dir.glob("*.parquet")):
        return data
    rej = [r for r in pq.read_table(rejected_dir, columns=["key", "reason"]).to_pylist()
           if r["key"] and "\t" in r["key"]]
    failed = pa.table({
        _Q: [r["key"].split("\t", 1)[0] for r in rej], _D: [r["key"].split("\t", 1)[1] for r in rej],
        "grade": pa.array([None] * len(rej), pa.int8()), "status": ["failed"] * len(rej),
        "error": [r["reason"] for r in rej]})
    return pa.concat_tables([data, failed], promote_options="default")


def check_label_columns(table: pa.Table, where: Any) -> pa.Table:
    missing = {_Q, _D} - set(table.column_names)
    if missing or not {"grade", "score"} & set(table.column_names):
        raise ValueError(f"{where}: labels need query_id, doc_id and grade (or score); "
                         f"has {table.column_names}")
    return table
