"""What every student kind implements: train from teacher judgments into an export folder, and say
which engine labels with that export. The distill stage and `labeler distill --judgments` call
nothing else, so a new kind is one module and one line in labeler.students.KINDS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa

from ..config import EngineConfig, GradeConfig


@dataclass
class TrainingData:
    """Teacher judgments (JUDGMENTS rows, failed ones included: kinds count them) by split."""

    train: pa.Table
    heldout: Optional[pa.Table] = None
    # The run's BM25 index, for kinds that mine their own weak supervision (title groups), and the
    # documents of held-out queries, which such supervision must never use.
    index_dir: Optional[Path] = None
    heldout_docs: frozenset = frozenset()


@dataclass
class Trained:
    """What the distill stage publishes: the unit the stage accounts for (rows_in), one TRAIN_EXAMPLES
    row per unit used, one REJECTED row per unit left out with its reason, and manifest fields."""

    rows_in: int
    record: pa.Table
    rejected: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class Student:
    kind: str = ""
    # Kinds that read the run's BM25 index (TrainingData.index_dir) set this from their config.
    needs_index: bool = False

    def __init__(self, cfg, grading: GradeConfig, *, seed: int = 0, k: int = 10):
        self.cfg, self.grading, self.seed, self.k = cfg, grading, seed, k

    def train(self, data: TrainingData, workdir: Path, export: Path) -> Trained:
        raise NotImplementedError

    def engine_config(self, export: Path, like: EngineConfig) -> EngineConfig:
        """The engine that labels with `export`, on the resources `like` (the teacher's) ran on."""
        from ..engines import export_backend

        return EngineConfig(backend=export_backend(export) or "vllm", model=str(export), batch_size=like.batch_size,
                            max_model_len=like.max_model_len, num_actors=like.num_actors,
                            cpus_per_actor=like.cpus_per_actor, gpus_per_actor=like.gpus_per_actor)
