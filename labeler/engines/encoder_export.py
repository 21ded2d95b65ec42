"""What an encoder student's export folder holds, beside the Hugging Face weights: a meta file
(the backend's marker, labeler.engines.BACKENDS) with its settings and the monotone map from the
model's score to the teacher's 0-3 scale. The students write it; the engines read it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np


def pair_text(row: dict) -> str:
    """The document side of a pair: title and text, as in training and at labeling time."""
    title, text = row.get("title") or "", row.get("text") or ""
    return f"{title}\n{text}" if title else text


def apply_calibration(scores, calibration: dict) -> np.ndarray:
    """Breakpoints -> expected grades in [0, 3]; linear between breakpoints, clipped outside (as
    sklearn's IsotonicRegression predicts)."""
    return np.interp(np.asarray(scores, float), calibration["x"], calibration["y"])


def read_meta(path, marker: str) -> dict:
    meta = Path(path) / marker
    if not meta.is_file():
        raise FileNotFoundError(f"{path} is not a labeler export of this kind (no {marker})")
    return json.loads(meta.read_text())


def write_meta(path, marker: str, meta: dict) -> None:
    (Path(path) / marker).write_text(json.dumps(meta, indent=2))


def calibrated(meta: dict, model_id: str) -> dict:
    cal: Optional[dict] = meta.get("calibration")
    if not cal:
        raise ValueError(f"{model_id}: the export has no calibration, so its scores cannot be grades")
    return cal
