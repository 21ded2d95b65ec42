"""Offline labeling with a (student) model: the same grading pass as the teacher's, on new pairs,
written as Parquet labels plus a TREC qrels file."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .config import EngineConfig, GradeConfig
from .judge import grade_pairs
from .store import StageWriter


def label_pairs(writer: StageWriter, pairs: pa.Table, engine: EngineConfig, grading: GradeConfig,
                seed: int = 0) -> int:
    return grade_pairs(writer, pairs, engine, grading, seed)


def write_qrels(labels: pa.Table, path: Path) -> int:
    """TREC qrels (`qid 0 docid grade`) of the labeled rows, sorted for stable diffs."""
    t = labels.filter(pc.is_valid(labels.column("grade"))).sort_by([("query_id", "ascending"), ("doc_id", "ascending")])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        for q, d, g in zip(t.column("query_id").to_pylist(), t.column("doc_id").to_pylist(), t.column("grade").to_pylist()):
            fh.write(f"{q.replace(' ', '_')} 0 {d.replace(' ', '_')} {g}\n")
    tmp.replace(path)
    return t.num_rows
