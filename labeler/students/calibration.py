"""Scores to grades: a monotone (isotonic) map from an encoder student's score to the 0-3 scale,
fitted on graded pairs it never trained on, and two folds by query for reporting that map's
agreement on pairs it was not fitted on. The map is stored in the export (engines.encoder_export)."""
from __future__ import annotations

from typing import Optional

import numpy as np


def fit_calibration(scores, expected) -> dict:
    """Isotonic (monotone) map from the cross-encoder's score to the teacher's expected grade, as breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    scores, expected = np.asarray(scores, float), np.asarray(expected, float)
    if scores.size < 2:
        raise ValueError(f"calibration needs at least 2 graded training pairs, got {scores.size}")
    iso = IsotonicRegression(y_min=0.0, y_max=3.0, increasing=True, out_of_bounds="clip").fit(scores, expected)
    return {"method": "isotonic", "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_], "n_pairs": int(scores.size)}




def query_folds(query_ids: list) -> Optional[np.ndarray]:
    """Two folds by query (alternating over the sorted ids), or None when a fold would have fewer
    than 2 pairs (too few held-out pairs to calibrate on and cross-fit)."""
    order = {q: i % 2 for i, q in enumerate(sorted(set(query_ids)))}
    folds = np.array([order[q] for q in query_ids], dtype=np.int8)
    if len(order) < 2 or min(int((folds == 0).sum()), int((folds == 1).sum())) < 2:
        return None
    return folds


def calibrate_on_judgments(export, judged, source: str, batch_size: int = 64) -> dict:
    """Refit an encoder student's score -> grade map on graded pairs (a team's few hundred human
    judgments): isotonic, monotone, recorded in the export with the set it was fitted on."""
    import json
    from pathlib import Path

    import pyarrow.compute as pc

    from ..config import EngineConfig
    from ..engines import BACKENDS, export_backend, make_engine
    from ..engines.encoder_export import pair_text

    backend = export_backend(export)
    if backend is None:
        raise ValueError(f"{export}: --calibrate-on applies to encoder students (cross_encoder, bi_encoder), whose "
                         f"scores need a map to grades; a generative student reads its grades from its logprobs")
    ok = judged.filter(pc.equal(judged.column("status"), "ok")) if "status" in judged.column_names else judged
    rows = ok.to_pylist()
    engine = make_engine(EngineConfig(backend=backend, model=str(export), batch_size=batch_size))
    scores, _, _ = engine.score([(r["query"], pair_text(r)) for r in rows])
    cal = {**fit_calibration(scores, [float(r["grade"]) for r in rows]), "fitted_on": str(source),
           "reference": "human or given judgments"}
    meta_path = Path(export) / BACKENDS[backend].export_marker
    meta = json.loads(meta_path.read_text())
    meta["calibration"] = cal
    meta_path.write_text(json.dumps(meta, indent=2))
    return {k: cal[k] for k in ("fitted_on", "n_pairs", "method")}
