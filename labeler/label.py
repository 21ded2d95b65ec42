"""Offline labeling with a (student) model: the same grading pass as the teacher's, on new pairs,
written as Parquet labels plus a TREC qrels file (labeler.qrels.write_qrels)."""
from __future__ import annotations

import pyarrow as pa

from .config import EngineConfig, GradeConfig
from .judge import grade_pairs
from .store import StageWriter


def label_pairs(writer: StageWriter, pairs: pa.Table, engine: EngineConfig, grading: GradeConfig,
                seed: int = 0) -> int:
    return grade_pairs(writer, pairs, engine, grading, seed)

