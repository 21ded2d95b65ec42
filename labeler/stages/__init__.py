"""The pipeline's stages, in order: one list for the pipeline, the command line, job submission
and remote runs (labeler.stages.base.Stage)."""
from __future__ import annotations

from . import corpus, distill, evaluate, judge, label, mine, synthesize
from .base import Stage

STAGES: list[Stage] = [corpus.STAGE, synthesize.STAGE, mine.STAGE, judge.STAGE, distill.STAGE, label.STAGE,
                       evaluate.STAGE]
NAMES: list[str] = [s.name for s in STAGES]
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}

__all__ = ["BY_NAME", "NAMES", "STAGES", "Stage"]
