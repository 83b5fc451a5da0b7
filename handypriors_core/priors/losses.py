"""Every loss term of the paper in one place (HandyPriors Sec. III-B to III-D), with their weights.

Physics priors (Sec. III-C), all differentiable, mean-reduced over the batch:

* :func:`penetration_loss` (Eq. 3), metres,
* :func:`sliding_loss` (``L_sliding``), metres,
* :func:`consistency_loss` (Eq. 4), m^2 + rad^2,
* :func:`smoothness_loss` (Eq. 5), m^2.

Rendering priors (Sec. III-B: ``L_img`` Eq. 1, ``L_mask`` Eq. 2, and the depth term) belong in this module
too, as functions of explicit tensors, so that :func:`weighted_sum` (Eq. 6 plus ``L_physics``) and
:class:`LossWeights` cover every term.

Each function takes explicit tensors (no keyword fan-out) and returns a 0-dim tensor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal

import torch

from ..checks import check_finite, check_shape
from ..config import check_ranges, find_config, load_settings, ranged
from ..errors import ConfigError, InvalidValueError, ShapeError

__all__ = [
    "LossWeights",
    "consistency_loss",
    "load_loss_weights",
    "penetration_loss",
    "sliding_loss",
    "smoothness_loss",
    "weighted_sum",
]

Reduction = Literal["mean", "sum"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms: ``L = sum_k lambda_k L_k`` (``loss_weights`` section of ``config/physics.yaml``).

    The paper does not publish its lambdas. The defaults bring a 1 cm violation of each physics term to the
    order of 1 (the terms have units, see the functions), and weigh the rendering terms 1; tune per setup.

    Attributes:
        lambda_img: lambda_1, RGB image loss (Eq. 1) [1/intensity^2].
        lambda_mask: lambda_2, silhouette loss (Eq. 2).
        lambda_depth: depth loss (not in the paper; RealSense depth) [1/m^2 or as its function states].
        lambda_sliding: lambda_3, :func:`sliding_loss` [1/m].
        lambda_penetration: lambda_4, :func:`penetration_loss` [1/m].
        lambda_con: lambda_5, :func:`consistency_loss` [1/m^2 | 1/rad^2].
        lambda_smo: lambda_6, :func:`smoothness_loss` [1/m^2].
        penetration_reverse_weight: weight of object points inside the hand relative to hand points inside the
            object within :func:`penetration_loss`.
    """

    lambda_img: float = ranged(1.0, 0.0, 1e9)
    lambda_mask: float = ranged(1.0, 0.0, 1e9)
    lambda_depth: float = ranged(1.0, 0.0, 1e9)
    lambda_sliding: float = ranged(100.0, 0.0, 1e9)
    lambda_penetration: float = ranged(100.0, 0.0, 1e9)
    lambda_con: float = ranged(1.0, 0.0, 1e9)
    lambda_smo: float = ranged(100.0, 0.0, 1e9)
    penetration_reverse_weight: float = ranged(1.0, 0.0, 1e9)

    def __post_init__(self) -> None:
        check_ranges(self, "weights")

    def weight(self, term: str) -> float:
        """Weight of the term named ``term`` (``"img"``, ``"mask"``, ``"depth"``, ``"sliding"``, ...)."""
        name = f"lambda_{term}"
        if name not in {f.name for f in fields(self)}:
            known = sorted(f.name[len("lambda_"):] for f in fields(self) if f.name.startswith("lambda_"))
            raise ConfigError(f"unknown loss term {term!r} (known: {known})")
        return getattr(self, name)


def load_loss_weights(path: str | os.PathLike | None = None, section: str = "loss_weights") -> LossWeights:
    """Read :class:`LossWeights` from ``path`` (default: the shipped ``physics.yaml``), section ``section``."""
    return load_settings(LossWeights, path if path is not None else find_config("physics.yaml"), section=section)


def _reduce_points(values: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """``(B, N) -> ()``: mean over points or sum over points, then mean over the batch."""
    if reduction == "mean":
        return values.mean() if values.numel() else values.sum()
    if reduction == "sum":
        return values.sum(-1).mean() if values.shape[0] else values.sum()
    raise InvalidValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")


def penetration_loss(
    hand_signed_distances: torch.Tensor,
    object_signed_distances: torch.Tensor | None = None,
    reverse_weight: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """``L_penetration`` (Eq. 3): penetration depth of points inside the other shape [m].

    The paper prints ``min(0, -sdf(V_hand))``, which is 0 inside and negative outside; with signed distances
    negative inside, the penalty it describes ("penalising the negative SDF values") is
    ``max(0, -sdf) = relu(-sdf)``, which is what we compute:

    ``L = reduce_i relu(-s_hand_i) + reverse_weight * reduce_j relu(-s_obj_j)``

    Args:
        hand_signed_distances: ``(B, N)`` [m] hand points against the object, negative inside the object.
        object_signed_distances: optional ``(B, M)`` [m] object samples against the hand mesh, negative inside the
            hand (the reverse query, which catches object edges inside a finger).
        reverse_weight: weight of the reverse term (``LossWeights.penetration_reverse_weight``).
        reduction: ``"mean"`` over points (default) or ``"sum"`` over points; then mean over the batch.
    Returns:
        0-dim tensor [m]; zero (with zero gradient) when nothing penetrates.
    """
    check_shape(hand_signed_distances, (None, None), "hand_signed_distances")
    loss = _reduce_points(torch.relu(-hand_signed_distances), reduction)
    if object_signed_distances is not None:
        check_shape(object_signed_distances, (hand_signed_distances.shape[0], None), "object_signed_distances")
        loss = loss + reverse_weight * _reduce_points(torch.relu(-object_signed_distances), reduction)
    return loss


def sliding_loss(
    contacts_obj_prev: torch.Tensor,
    contacts_obj_cur: torch.Tensor,
    weights: torch.Tensor,
    eps: float = 1e-9,
) -> torch.Tensor:
    """``L_sliding``: contact points expressed in the object frame must not move between ``t-1`` and ``t`` [m].

    For hand contact points ``v`` (the same hand points in both frames), ``contacts_obj = object2camera^-1 v``
    at each time. The loss is the weighted RMS displacement (the paper's norm over the contact set,
    normalised by the contact weight so it does not grow with the number of contacts):

    ``L = mean_b sqrt(sum_i w_i |c_cur_i - c_prev_i|^2 / sum_i w_i + eps^2) - eps``

    Args:
        contacts_obj_prev, contacts_obj_cur: ``(B, N, 3)`` [m] object-frame positions at ``t-1`` and ``t``.
        weights: ``(B, N)`` non-negative (0: not a contact in both frames); batch elements with no weight add 0.
        eps: [m] keeps the gradient finite at zero sliding.
    Returns:
        0-dim tensor [m].
    """
    check_shape(contacts_obj_prev, (None, None, 3), "contacts_obj_prev")
    if contacts_obj_cur.shape != contacts_obj_prev.shape:
        raise ShapeError(f"Expected contacts_obj_cur to have shape {tuple(contacts_obj_prev.shape)}; "
                         f"got {tuple(contacts_obj_cur.shape)}")
    check_shape(weights, tuple(contacts_obj_prev.shape[:2]), "weights")
    check_finite(weights, "weights")
    if (weights < 0).any():
        raise InvalidValueError("weights must be non-negative")
    squared = ((contacts_obj_cur - contacts_obj_prev) ** 2).sum(-1)  # (B, N) [m^2]
    total = weights.sum(-1)
    mean_squared = (weights * squared).sum(-1) / total.clamp_min(torch.finfo(weights.dtype).tiny)
    rms = torch.sqrt(mean_squared + eps * eps) - eps
    rms = torch.where(total > 0, rms, torch.zeros_like(rms))
    return rms.mean() if rms.numel() else rms.sum()


def consistency_loss(
    verts_t: torch.Tensor,
    verts_tm1: torch.Tensor,
    theta_t: torch.Tensor | None,
    theta_tm1: torch.Tensor | None,
) -> torch.Tensor:
    """``L_con`` (Eq. 4): ``mean_v |V_t - V_{t-1}|^2 + mean_j (theta_t - theta_{t-1})^2``, batch mean.

    Args:
        verts_t, verts_tm1: ``(B, V, 3)`` [m] object vertices at ``t`` and ``t-1``.
        theta_t, theta_tm1: ``(B, J)`` [rad] hand joint angles at ``t`` and ``t-1``, or both ``None`` (object only).
    Returns:
        0-dim tensor [m^2 + rad^2].
    """
    check_shape(verts_t, (None, None, 3), "verts_t")
    check_shape(verts_tm1, tuple(verts_t.shape), "verts_tm1")
    loss = ((verts_t - verts_tm1) ** 2).sum(-1).mean()
    if (theta_t is None) != (theta_tm1 is None):
        raise InvalidValueError("theta_t and theta_tm1 must both be given or both be None")
    if theta_t is not None:
        check_shape(theta_t, (verts_t.shape[0], None), "theta_t")
        check_shape(theta_tm1, tuple(theta_t.shape), "theta_tm1")
        loss = loss + ((theta_t - theta_tm1) ** 2).mean()
    return loss


def smoothness_loss(verts_t: torch.Tensor, verts_tm1: torch.Tensor, verts_tm2: torch.Tensor) -> torch.Tensor:
    """``L_smo`` (Eq. 5): ``mean_v |(V_t - V_{t-1}) - (V_{t-1} - V_{t-2})|^2`` (object acceleration), batch mean.

    Args:
        verts_t, verts_tm1, verts_tm2: ``(B, V, 3)`` [m] object vertices at ``t``, ``t-1``, ``t-2``.
    Returns:
        0-dim tensor [m^2].
    """
    check_shape(verts_t, (None, None, 3), "verts_t")
    check_shape(verts_tm1, tuple(verts_t.shape), "verts_tm1")
    check_shape(verts_tm2, tuple(verts_t.shape), "verts_tm2")
    return ((verts_t - 2 * verts_tm1 + verts_tm2) ** 2).sum(-1).mean()


def weighted_sum(terms: Mapping[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    """``sum_k lambda_k L_k`` over the given terms (Eq. 6 and ``L_physics``).

    Args:
        terms: term name (``"img"``, ``"mask"``, ``"depth"``, ``"sliding"``, ``"penetration"``, ``"con"``,
            ``"smo"``) -> 0-dim loss tensor; an unknown name raises ConfigError.
        weights: the lambdas.
    """
    if not terms:
        raise InvalidValueError("terms is empty")
    total = None
    for name, value in terms.items():
        if value.dim() != 0:
            raise ShapeError(f"Expected loss term {name!r} to be a 0-dim tensor; got shape {tuple(value.shape)}")
        contribution = weights.weight(name) * value
        total = contribution if total is None else total + contribution
    return total
