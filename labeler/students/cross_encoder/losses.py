"""The cross-encoder's losses: LCE over groups (the reranker paper), pointwise regression and MarginMSE."""
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


def margin_mse_loss(scores_a, scores_b, margin):
    """MarginMSE (Hofstätter et al.): the score margin of two documents of one query regresses the
    teacher's margin, so no offset between queries is learnt."""
    import torch.nn.functional as F

    return F.mse_loss(scores_a - scores_b, margin)
