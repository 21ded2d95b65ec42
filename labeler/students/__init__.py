"""Student kinds, found by `distill.kind` in one registry (each kind's config class is in labeler.config)."""
from __future__ import annotations

import importlib

from .base import Student, Trained, TrainingData

KINDS = {
    "generative": "generative:GenerativeStudent",
    "cross_encoder": "cross_encoder:CrossEncoderStudent",
    "bi_encoder": "bi_encoder:BiEncoderStudent",
}


def make_student(cfg, grading, *, seed: int = 0, k: int = 10) -> Student:
    """The student of a distill config section (its `kind` picks the class)."""
    if cfg.kind not in KINDS:
        raise ValueError(f"unknown student kind {cfg.kind!r} (known: {', '.join(KINDS)})")
    module, cls = KINDS[cfg.kind].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(cfg, grading, seed=seed, k=k)


__all__ = ["KINDS", "Student", "Trained", "TrainingData", "make_student"]
