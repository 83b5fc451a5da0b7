"""Every loss term of the paper in one place (:mod:`.losses`), with their weights (:class:`.losses.LossWeights`)."""

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
