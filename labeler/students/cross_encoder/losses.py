"""The cross-encoder's losses: LCE over groups (the reranker paper) and pointwise regression."""
from __future__ import annotations


def lce_loss(scores, temperature: float = 1.0):
    """Localized contrastive estimation: cross-entropy over each group (rows), positive at index 0."""
    import torch
    import torch.nn.functional as F

    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, target)


def pointwise_loss(scores, expected, kind: str = "mse"):
    """Regress the teacher's expected grade: MSE on the grade scale, or BCE against expected/3."""
    import torch.nn.functional as F

    if kind == "bce":
        return F.binary_cross_entropy_with_logits(scores, expected / 3.0)
    return F.mse_loss(scores, expected)
