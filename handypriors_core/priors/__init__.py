"""Every loss term of the paper in one place (:mod:`.losses`), with their weights (:class:`.losses.LossWeights`).

Terms take tensors (signed distances, contact values, poses), not models; may import only errors/checks/config."""

from .losses import (
    LossWeights,
    consistency_loss,
    load_loss_weights,
    penetration_loss,
    sliding_loss,
    smoothness_loss,
    weighted_sum,
)

__all__ = [
    "LossWeights",
    "consistency_loss",
    "load_loss_weights",
    "penetration_loss",
    "sliding_loss",
    "smoothness_loss",
    "weighted_sum",
]
