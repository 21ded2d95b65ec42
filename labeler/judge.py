"""Teacher judging: grade every (query, document) pair with an LLM, one row out per pair in.

Pairs the teacher cannot grade (no grade token, server errors, over-long prompts) keep their row
with status "failed", the reason and null grades, and are listed in rejected/ with the raw
output; they are never given a grade.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .config import EngineConfig, GradeConfig
from .grading import GradeWorker
from .raycluster import pool_args
from .runner import pending, run_actor_stage
from .schema import PAIRS
from .store import StageWriter

REQUIRED = ("query_id", "query", "doc_id", "text")


def pair_keys(t: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(t.column("query_id").cast(pa.string()),
                                       t.column("doc_id").cast(pa.string()), "\t")


def grade_pairs(writer: StageWriter, pairs: pa.Table, engine: EngineConfig, grading: GradeConfig,
                seed: int = 0) -> int:
    """Grade pairs not yet graded by an earlier attempt; returns the number of input pairs."""
    done = writer.done_keys(lambda t: pair_keys(t).to_pylist())
    # Sorted by document so consecutive prompts share the document prefix (vLLM prefix cache).
    todo = pending(pairs, pair_keys(pairs), done).sort_by([("doc_id", "ascending"), ("query_id", "ascending")])
    run_actor_stage(writer, todo, worker=GradeWorker,
                    ctor_kwargs={"engine_cfg": engine, "grading": grading, "seed": seed},
                    pool=pool_args(engine), batch_size=engine.batch_size, total=pairs.num_rows, keep_failed=True)
    return pairs.num_rows


def read_pairs(path: str) -> pa.Table:
    """Pairs from JSONL or Parquet (a file or a folder): query_id, query, doc_id, text, [title, ...]."""
    import pyarrow.dataset as ds

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"pairs file {p} not found")
    if p.suffix in (".jsonl", ".json", ".ndjson"):
        rows = []
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{p}:{i}: not valid JSON ({e.msg})") from None
        t = pa.Table.from_pylist(rows)
    else:
        t = ds.dataset(str(p), format="parquet").to_table()
    missing = [c for c in REQUIRED if c not in t.column_names]
    if missing:
        raise ValueError(f"{p}: pairs lack required columns {missing} (have {t.column_names})")
    n = t.num_rows
    cols = {}
    for f in PAIRS:
        if f.name in t.column_names:
            cols[f.name] = t.column(f.name).cast(f.type)
        elif f.name == "split":
            cols[f.name] = pa.array(["heldout"] * n, pa.string())
        else:
            cols[f.name] = pa.nulls(n, f.type)
    for c in ("query_id", "doc_id"):
        cols[c] = cols[c].cast(pa.string())
    out = pa.table(cols, schema=PAIRS)
    keys = pair_keys(out)
    if len(pc.unique(keys)) != n:
        counts = pc.value_counts(keys)
        dup = [v["values"] for v in counts.to_pylist() if v["counts"] > 1][:3]
        raise ValueError(f"{p}: duplicate (query_id, doc_id) pairs, e.g. {dup}")
    return out
