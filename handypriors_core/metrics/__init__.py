"""Evaluation metrics: object pose errors (ADD, ADD-S, AUC), the paper's 2D/3D Chamfer errors and hand metrics.

All errors are in metres / radians per frame; AUCs are fractions in [0, 1]. May import geometry (and
errors/checks/config).
"""

from .chamfer import ObjectChamferErrors, chamfer_2d, chamfer_3d, nearest_neighbour_distances, object_chamfer_errors
from .consistency import pose_error_tangent, pose_nees
from .hand_metrics import joint_auc, joint_errors, mesh_error, mpjpe, procrustes_align
from .pose_errors import (
    accuracy_curve,
    add,
    add_or_add_s,
    add_s,
    auc,
    rotation_error,
    summarize_errors,
    translation_error,
)

__all__ = [
    "ObjectChamferErrors",
    "accuracy_curve",
    "add",
    "add_or_add_s",
    "add_s",
    "auc",
    "chamfer_2d",
    "chamfer_3d",
    "joint_auc",
    "joint_errors",
    "mesh_error",
    "mpjpe",
    "nearest_neighbour_distances",
    "object_chamfer_errors",
    "pose_error_tangent",
    "pose_nees",
    "procrustes_align",
    "rotation_error",
    "summarize_errors",
    "translation_error",
]
