"""Hand pose metrics as reported on DexYCB / HO3D (paper Table II): joint error (MPJPE), mesh error and
joint AUC, each with or without Procrustes alignment (PA).

- Joint / mesh error: mean Euclidean distance [m] between corresponding predicted and ground-truth joints
  (or mesh vertices), per frame.
- PA: before measuring, the prediction of each frame is aligned to the ground truth by the similarity
  transform (scale, rotation, translation) minimising the squared error (``similarity_procrustes``).
- Joint AUC: normalised area in [0, 1] under the PCK curve of all per-joint errors over thresholds
  0 .. ``max_threshold`` (default 0.05 m = 5 cm, as HO3D / DexYCB report). Exact integral by default, or the
  trapezoid rule on ``num_thresholds`` thresholds (see :func:`pose_errors.auc`).

Errors are in metres; the paper's tables are in cm (multiply by 100).
"""

from __future__ import annotations

import torch

from ..checks import check_shape
from ..errors import ShapeError
from ..geometry.kabsch import similarity_procrustes
from .pose_errors import auc

__all__ = ["joint_auc", "joint_errors", "mesh_error", "mpjpe", "procrustes_align"]


def _check_pair(pred: torch.Tensor, gt: torch.Tensor, name: str) -> None:
    check_shape(pred, (None, None, 3), f"pred_{name}")
    check_shape(gt, (None, None, 3), f"gt_{name}")
    if pred.shape != gt.shape:
        raise ShapeError(f"pred_{name} and gt_{name} must have the same shape; got {tuple(pred.shape)} and "
                         f"{tuple(gt.shape)}")


def procrustes_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``pred (B, N, 3)`` moved by the best similarity transform onto ``gt (B, N, 3)``: ``(B, N, 3)``."""
    _check_pair(pred, gt, "points")
    scale, R, t = similarity_procrustes(pred, gt)
    return scale[:, None, None] * pred @ R.transpose(-1, -2) + t[:, None, :]


def joint_errors(pred_joints: torch.Tensor, gt_joints: torch.Tensor, procrustes: bool = False) -> torch.Tensor:
    """Per-joint distances [m]: ``(B, J, 3), (B, J, 3) -> (B, J)`` (after PA when ``procrustes``)."""
    _check_pair(pred_joints, gt_joints, "joints")
    if procrustes:
        pred_joints = procrustes_align(pred_joints, gt_joints)
    return torch.linalg.vector_norm(pred_joints - gt_joints, dim=-1)


def mpjpe(pred_joints: torch.Tensor, gt_joints: torch.Tensor, procrustes: bool = False) -> torch.Tensor:
    """Mean per-joint position error [m] ``(B,)`` (PA-MPJPE when ``procrustes``)."""
    return joint_errors(pred_joints, gt_joints, procrustes).mean(-1)


def mesh_error(pred_verts: torch.Tensor, gt_verts: torch.Tensor, procrustes: bool = False) -> torch.Tensor:
    """Mean per-vertex error [m] ``(B,)`` between corresponding hand mesh vertices ``(B, V, 3)`` (PA optional)."""
    _check_pair(pred_verts, gt_verts, "verts")
    if procrustes:
        pred_verts = procrustes_align(pred_verts, gt_verts)
    return torch.linalg.vector_norm(pred_verts - gt_verts, dim=-1).mean(-1)


def joint_auc(
    pred_joints: torch.Tensor,
    gt_joints: torch.Tensor,
    max_threshold: float = 0.05,
    num_thresholds: int | None = None,
    procrustes: bool = False,
) -> float:
    """AUC in [0, 1] of the PCK curve of all ``B * J`` joint errors over ``[0, max_threshold]`` [m]."""
    return auc(joint_errors(pred_joints, gt_joints, procrustes).reshape(-1), max_threshold, num_thresholds)
