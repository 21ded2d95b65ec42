"""The cross-encoder's prior (cross_encoder.prior: cosine): the base model's own cosine, mapped
linearly to the teacher's grade scale, that the cross-encoder's output is added to.

Why: a cross-encoder head trained from nothing on a few thousand teacher grades stays near chance
(the reranker paper starts from a cross-encoder that MS MARCO already trained; none is offline
here), while the same MiniLM read as a bi-encoder already ranks as well as the teacher. With the
prior, and the head started at zero, training starts at the bi-encoder's ranking and the
cross-encoder learns a residual: what the teacher says beyond the cosine. The prior's encoder is
frozen and saved in the export (`prior/`), so the export stays one self-contained folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ...engines.encoder_export import pair_cosines

PRIOR_DIR = "prior"


def fit_prior(cos: np.ndarray, target: np.ndarray) -> dict:
    """Least squares target ~ a + b * cosine on the training pairs: the prior on the grade scale, so
    a pointwise residual starts near the target's mean and LCE at the cosine's own margins."""
    cos, target = np.asarray(cos, float), np.asarray(target, float)
    if len(cos) < 2 or np.std(cos) == 0:
        raise ValueError(f"cross_encoder.prior: the prior's scale cannot be fitted on {len(cos)} training pairs "
                         f"whose cosines do not vary")
    b, a = np.polyfit(cos, target, 1)
    return {"a": float(a), "b": float(b), "n_pairs": int(len(cos))}


def add_priors(model, points: pa.Table, groups: pa.Table | None, batch_size: int) -> tuple[pa.Table, pa.Table | None]:
    """`points` with a `prior` column (the cosine of each pair) and `groups` with `priors`, one per
    document; each distinct (query, document) is embedded once."""
    pairs = list(zip(points.column("query").to_pylist(), points.column("doc").to_pylist()))
    if groups is not None:
        for q, docs in zip(groups.column("query").to_pylist(), groups.column("docs").to_pylist()):
            pairs += [(q, d) for d in docs]
    unique = sorted(set(pairs))
    cos = dict(zip(unique, pair_cosines(model, unique, batch_size).tolist()))
    points = points.append_column("prior", pa.array([cos[p] for p in zip(points.column("query").to_pylist(),
                                                                           points.column("doc").to_pylist())], pa.float32()))
    if groups is not None:
        groups = groups.append_column("priors", pa.array(
            [[cos[(q, d)] for d in docs] for q, docs in zip(groups.column("query").to_pylist(),
                                                            groups.column("docs").to_pylist())],
            pa.list_(pa.float32())))
    return points, groups


def zero_head(model) -> None:
    """Zero the last linear layer of a sequence-classification head: the output starts at 0, so the
    first score is the prior's, and gradients reach the encoder once the head has moved."""
    import torch

    head = next((getattr(model, n) for n in ("classifier", "score") if hasattr(model, n)), None)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)] if head is not None else []
    if not linears:
        raise ValueError(f"cross_encoder.prior: no linear head found on {type(model).__name__}")
    with torch.no_grad():
        linears[-1].weight.zero_()
        if linears[-1].bias is not None:
            linears[-1].bias.zero_()


def save_prior(model, export: Path) -> str:
    """The frozen prior encoder inside the export; returns its folder name."""
    model.save(str(Path(export) / PRIOR_DIR))
    return PRIOR_DIR
