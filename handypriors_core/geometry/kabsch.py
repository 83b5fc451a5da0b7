"""Rigid (Kabsch) and similarity (Umeyama) alignment of corresponding point sets, batched and differentiable.

The rotation is the closest proper rotation (det = +1) to the weighted cross-covariance ``M``, computed with
``torch.linalg.svd``. Its gradient uses the closed-form derivative of that rotation,
``dR = R V (F o (Z - Z^T)) V^T`` with ``F_ij = 1 / (s_i + s_j)`` over the sign-corrected singular values,
instead of differentiating ``U`` and ``V`` separately. So gradients stay finite when singular values
coincide (symmetric point sets such as a cube's corners); they are only undefined when the rotation itself
is (``s_i + s_j = 0``: fewer than 3 non-collinear points, or a reflection case with ``s_2 = s_3``). There the
undetermined directions get zero gradient; use :func:`kabsch_is_well_conditioned` to detect such sets.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError, ShapeError
from . import small_linalg

__all__ = [
    "kabsch_is_well_conditioned",
    "similarity_procrustes",
    "weighted_kabsch",
    "weighted_kabsch_array",
    "weighted_kabsch_with_spread",
]


class _ClosestRotation(torch.autograd.Function):
    """``M (..., 3, 3) -> R (..., 3, 3)`` maximising ``trace(R^T M)`` over proper rotations."""

    @staticmethod
    def forward(ctx, M: torch.Tensor) -> torch.Tensor:
        U, S, Vh = torch.linalg.svd(M)
        sign = torch.sign(torch.linalg.det(U @ Vh))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        signs = torch.stack((torch.ones_like(sign), torch.ones_like(sign), sign), -1)
        R = (U * signs[..., None, :]) @ Vh
        ctx.save_for_backward(R, Vh, S * signs)
        return R

    @staticmethod
    def backward(ctx, grad_R: torch.Tensor) -> torch.Tensor:
        R, Vh, signed_s = ctx.saved_tensors
        V = Vh.transpose(-1, -2)
        Z = Vh @ R.transpose(-1, -2) @ grad_R @ V
        denom = signed_s[..., :, None] + signed_s[..., None, :]
        scale = signed_s[..., :1, None].abs().clamp_min(torch.finfo(R.dtype).tiny)
        determined = denom.abs() > 1e3 * torch.finfo(R.dtype).eps * scale
        F = torch.where(determined, 1.0 / torch.where(determined, denom, torch.ones_like(denom)), 0.0)
        return R @ V @ (F * (Z - Z.transpose(-1, -2))) @ Vh


def _check_pair(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Validate ``src, dst (B, N, 3)`` and ``weights (B, N)``; return weights normalised to sum 1 per batch."""
    check_shape(src, (None, None, 3), "src")
    check_shape(dst, (None, None, 3), "dst")
    if dst.shape != src.shape:
        raise ShapeError(f"Expected dst to have the shape of src {tuple(src.shape)}; got {tuple(dst.shape)}")
    check_finite(src, "src")
    check_finite(dst, "dst")
    if weights is None:
        return torch.full(src.shape[:2], 1.0 / src.shape[1], dtype=src.dtype, device=src.device)
    return _normalised_weights(weights, src)


def _normalised_weights(weights: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    check_shape(weights, tuple(src.shape[:2]), "weights")
    check_finite(weights, "weights")
    if (weights < 0).any():
        raise InvalidValueError("weights must be non-negative")
    total = weights.sum(-1, keepdim=True)
    if (total <= 0).any():
        raise InvalidValueError("weights must have a positive sum in every batch element")
    return weights / total


def _centre(points: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted centroid ``(B, 3)`` and centred points ``(B, N, 3)``."""
    centroid = (w[..., None] * points).sum(-2)
    return centroid, points - centroid[..., None, :]


def weighted_kabsch(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid motion minimising ``sum_i w_i |R src_i + t - dst_i|^2``.

    Args:
        src, dst: ``(B, N, 3)`` corresponding points [m].
        weights: ``(B, N)`` non-negative, positive sum per batch element; ``None`` = uniform.
    Returns:
        ``R (B, 3, 3)`` with det +1 (reflections fixed) and ``t (B, 3)`` [m], so ``dst ~ src @ R^T + t``.
    """
    R, t, _ = _kabsch(src, dst, _check_pair(src, dst, weights), spread=False)
    return R, t


def weighted_kabsch_with_spread(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`weighted_kabsch` plus the second principal spread ``(B,)`` [m] of the weighted ``src`` (what
    :func:`kabsch_is_well_conditioned` compares with its threshold), from one centring of the points."""
    return _kabsch(src, dst, _check_pair(src, dst, weights), spread=True)


def _kabsch(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor, spread: bool):
    """``(R, t, spread or None)`` for normalised weights ``w (B, N)`` (see :func:`weighted_kabsch`)."""
    src_centroid, src_c = _centre(src, w)
    dst_centroid, dst_c = _centre(dst, w)
    weighted = w[..., None] * src_c
    M = dst_c.transpose(-1, -2) @ weighted  # sum_i w_i dst_i src_i^T
    R = _ClosestRotation.apply(M)
    t = dst_centroid - (R @ src_centroid[..., None])[..., 0]
    if not spread:
        return R, t, None
    return R, t, _second_spread((src_c.transpose(-1, -2) @ weighted).detach())


def _second_spread(covariance: torch.Tensor) -> torch.Tensor:
    """Square root of the second-largest eigenvalue of weighted point covariances ``(B, 3, 3)`` [m]."""
    return torch.linalg.eigvalsh(covariance)[..., 1].clamp_min(0).sqrt()  # eigenvalues ascending


def weighted_kabsch_array(src: np.ndarray, dst: np.ndarray, weights: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`weighted_kabsch_with_spread` of one point set in float64 numpy (no gradient; for small CPU problems,
    where torch's per-call cost outweighs the arithmetic): ``src, dst (N, 3)`` [m], ``weights (N,)`` non-negative
    with a positive sum -> ``(R (3, 3), t (3,), spread [m])``, the same values."""
    w = weights / weights.sum()
    src_centroid = (w[:, None] * src).sum(0)
    dst_centroid = (w[:, None] * dst).sum(0)
    src_c, dst_c = src - src_centroid, dst - dst_centroid
    weighted = w[:, None] * src_c
    U, _, Vh = small_linalg.svd(dst_c.T @ weighted)
    sign = float(np.sign(small_linalg.det(U @ Vh))) or 1.0
    R = (U * np.array([1.0, 1.0, sign])) @ Vh
    t = dst_centroid - R @ src_centroid
    spread = math.sqrt(max(float(small_linalg.eigvalsh(src_c.T @ weighted)[1]), 0.0))
    return R, t, spread


def kabsch_is_well_conditioned(
    src: torch.Tensor, weights: torch.Tensor | None = None, min_singular_value: float = 1e-3
) -> torch.Tensor:
    """Whether Kabsch on ``src (B, N, 3)`` [m] determines the rotation well: ``(B,)`` bool.

    True where the second-largest principal spread of the weighted points (square root of the
    covariance eigenvalue, in metres) exceeds ``min_singular_value``, i.e. the points are not (nearly)
    collinear. Callers should fall back (e.g. keep the previous rotation) where it is False.
    """
    check_shape(src, (None, None, 3), "src")
    check_finite(src, "src")
    if weights is None:
        w = torch.full(src.shape[:2], 1.0 / src.shape[1], dtype=src.dtype, device=src.device)
    else:
        w = _normalised_weights(weights, src)
    _, src_c = _centre(src, w)
    return _second_spread(src_c.transpose(-1, -2) @ (w[..., None] * src_c)) > min_singular_value


def similarity_procrustes(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity transform minimising ``sum_i w_i |s R src_i + t - dst_i|^2`` (Umeyama), e.g. for PA-MPJPE.

    Args:
        src, dst: ``(B, N, 3)`` corresponding points [m].
        weights: ``(B, N)`` non-negative or ``None`` = uniform.
    Returns:
        ``scale (B,)``, ``R (B, 3, 3)`` (det +1), ``t (B, 3)`` [m]: ``dst ~ scale * src @ R^T + t``.
        Raises InvalidValueError if ``src`` collapses to a single point.
    """
    w = _check_pair(src, dst, weights)
    src_centroid, src_c = _centre(src, w)
    dst_centroid, dst_c = _centre(dst, w)
    M = dst_c.transpose(-1, -2) @ (w[..., None] * src_c)
    R = _ClosestRotation.apply(M)
    src_variance = (w * (src_c * src_c).sum(-1)).sum(-1)
    if (src_variance <= torch.finfo(src.dtype).tiny).any():
        raise InvalidValueError("src points coincide: similarity scale is undefined")
    scale = (R * M).sum((-1, -2)) / src_variance  # trace(R^T M) = sum of sign-corrected singular values
    t = dst_centroid - scale[..., None] * (R @ src_centroid[..., None])[..., 0]
    return scale, R, t
