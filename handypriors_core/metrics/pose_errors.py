"""6-DoF object pose errors: translation / rotation error, ADD, ADD-S and the YCB-Video style AUC.

All poses are ``object2camera (B, 4, 4)``; errors are per frame, in metres or radians.

- ADD  = mean over model points ``x`` of ``|T_pred x - T_gt x|``.
- ADD-S = mean over model points ``x`` of ``min_y |T_gt x - T_pred y|`` (PoseCNN / YCB-Video; for symmetric
  objects). ADD-S <= ADD, and ADD-S is 0 for any pose that maps the point set onto itself.
- AUC: area under the accuracy-threshold curve ``acc(tau) = fraction of frames with error <= tau`` for
  ``tau in [0, max_threshold]``, divided by ``max_threshold``, so it lies in **[0, 1]** (multiply by 100 for the
  percent that YCB-Video tables and the dev-sequence README report). By default the exact integral of the
  empirical curve, ``mean(max(0, 1 - e / max_threshold))``; with ``num_thresholds`` the trapezoid rule on
  that many evenly spaced thresholds (FreiHAND / HO3D style). Non-finite errors (lost frames) count as failures.
"""

from __future__ import annotations

import torch

from ..checks import check_shape
from ..errors import InvalidValueError, ShapeError
from ..geometry.transforms import invert_transform, rotation_angle_between, transform_points
from .chamfer import MAX_PAIRS, nearest_neighbour_distances

__all__ = [
    "accuracy_curve",
    "add",
    "add_or_add_s",
    "add_s",
    "auc",
    "rotation_error",
    "summarize_errors",
    "translation_error",
]


def _check_poses(pred: torch.Tensor, gt: torch.Tensor) -> None:
    check_shape(pred, (..., 4, 4), "pred")
    check_shape(gt, (..., 4, 4), "gt")
    if pred.shape != gt.shape:
        raise ShapeError(f"pred and gt must have the same shape; got {tuple(pred.shape)} and {tuple(gt.shape)}")


def translation_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``|t_pred - t_gt|`` [m]: ``(..., 4, 4), (..., 4, 4) -> (...)``."""
    _check_poses(pred, gt)
    return torch.linalg.vector_norm(pred[..., :3, 3] - gt[..., :3, 3], dim=-1)


def rotation_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Geodesic angle [rad] in ``[0, pi]`` of ``R_pred^T R_gt`` (atan2 form, accurate near 0 and pi): ``(...)``."""
    _check_poses(pred, gt)
    return rotation_angle_between(pred[..., :3, :3], gt[..., :3, :3])


def _posed(points_obj: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_shape(points_obj, (None, 3), "points_obj")
    check_shape(pred, (None, 4, 4), "pred")
    _check_poses(pred, gt)
    dtype = torch.promote_types(points_obj.dtype, pred.dtype)
    pts = points_obj.to(dtype)
    return transform_points(pred.to(dtype), pts), transform_points(gt.to(dtype), pts)


def add(points_obj: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """ADD [m]: ``points_obj (N, 3)`` object frame, ``pred, gt (B, 4, 4)`` -> ``(B,)``."""
    p, g = _posed(points_obj, pred, gt)
    return torch.linalg.vector_norm(p - g, dim=-1).mean(-1)


def add_s(points_obj: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor, max_pairs: int = MAX_PAIRS) -> torch.Tensor:
    """ADD-S [m] (nearest-neighbour ADD): ``points_obj (N, 3)``, ``pred, gt (B, 4, 4)`` -> ``(B,)``.

    Computed in the ground-truth object frame (both point sets moved by ``gt^-1``, which preserves distances)
    with chunked exact ``cdist``; at most ``max_pairs`` distances are held at once.
    """
    _posed(points_obj, pred, gt)  # checks
    dtype = torch.promote_types(points_obj.dtype, pred.dtype)
    pts = points_obj.to(dtype)
    gt_inv = invert_transform(gt.to(dtype))
    pred_in_gt = transform_points(gt_inv @ pred.to(dtype), pts)  # (B, N, 3)
    query = pts.expand(pred.shape[0], -1, -1)
    return nearest_neighbour_distances(query, pred_in_gt, max_pairs).mean(-1)


def add_or_add_s(points_obj: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """ADD-S for ``symmetric`` objects, ADD otherwise (the usual ADD(-S) metric) [m] ``(B,)``."""
    return add_s(points_obj, pred, gt) if symmetric else add(points_obj, pred, gt)


def _errors_1d(errors: torch.Tensor) -> torch.Tensor:
    errors = torch.as_tensor(errors)
    check_shape(errors, (None,), "errors")
    if errors.numel() == 0:
        raise InvalidValueError("errors is empty")
    errors = errors.to(torch.float64)
    return torch.where(torch.isfinite(errors), errors, torch.full_like(errors, torch.inf))


def accuracy_curve(errors: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Fraction of ``errors (N,)`` that are ``<= thresholds (T,)``: ``(T,)`` float64; NaN/inf count as failures."""
    e = _errors_1d(errors)
    thresholds = torch.as_tensor(thresholds, dtype=torch.float64)
    check_shape(thresholds, (None,), "thresholds")
    return (e[None, :] <= thresholds[:, None]).to(torch.float64).mean(-1)


def auc(errors: torch.Tensor, max_threshold: float = 0.10, num_thresholds: int | None = None) -> float:
    """Normalised area in [0, 1] under the accuracy-threshold curve on ``[0, max_threshold]`` (module docstring).

    Args:
        errors: ``(N,)`` per-frame (or per-joint) errors, same unit as ``max_threshold`` (default 0.10 m).
        num_thresholds: None = exact integral; an int >= 2 = trapezoid rule on that many thresholds.
    """
    if not max_threshold > 0:
        raise InvalidValueError(f"max_threshold must be > 0; got {max_threshold}")
    e = _errors_1d(errors)
    if num_thresholds is None:
        return float((1.0 - e / max_threshold).clamp(min=0.0).mean())
    if num_thresholds < 2:
        raise InvalidValueError(f"num_thresholds must be >= 2; got {num_thresholds}")
    thresholds = torch.linspace(0.0, max_threshold, num_thresholds, dtype=torch.float64)
    return float(torch.trapezoid(accuracy_curve(e, thresholds), thresholds) / max_threshold)


def summarize_errors(errors: torch.Tensor, max_threshold: float = 0.10, fail_threshold: float = 0.05) -> dict:
    """Summary of per-frame errors ``(N,)`` [m]: ``median``, ``mean`` (finite only), ``auc`` in [0, 1] (exact),
    ``frames_over`` (count above ``fail_threshold`` or non-finite) and ``num_frames``."""
    e = _errors_1d(errors)
    finite = e[torch.isfinite(e)]
    nan = float("nan")
    return {
        "median": float(e.median()) if finite.numel() else nan,
        "mean": float(finite.mean()) if finite.numel() else nan,
        "auc": auc(e, max_threshold),
        "frames_over": int((e > fail_threshold).sum()),
        "num_frames": int(e.numel()),
    }
