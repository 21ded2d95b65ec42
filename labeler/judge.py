"""Teacher judging: grade every (query, document) pair with an LLM, one row out per pair in.

Pairs the teacher cannot grade (no grade token, server errors, over-long prompts) keep their row
with status "failed", the reason and null grades, and are listed in rejected/ with the raw
output; they are never given a grade. The pipeline's judge and label stages and the standalone
`labeler judge|label --pairs` share one streaming stage (labeler.label).
"""
from __future__ import annotations

from typing import Optional

from .config import EngineConfig, GradeConfig
from .label import PairsInput, grade, pair_keys  # noqa: F401  (pair_keys: the stages' key)
from .store import StageWriter


def grade_pairs(writer: StageWriter, pairs, engine: EngineConfig, grading: GradeConfig,
                seed: int = 0, corpus: Optional[str] = None, scanned=None) -> int:
    """Grade pairs not yet graded by an earlier attempt; returns the number of input pairs.

    `pairs` is an in-run table, or pairs files (a path or URI, or a PairsInput) that are
    streamed, never read whole; `corpus` gives the document text of pairs that carry only ids.
    """
    return grade(writer, pairs, engine, grading, seed, corpus, scanned)
