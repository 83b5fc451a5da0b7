"""Covariance consistency of a pose estimator: normalised estimation error squared (NEES).

The tracker publishes a ``(6, 6)`` covariance over the tangent ``(rho [m], phi [rad])`` of
:mod:`handypriors_core.estimation.pose_state` (translation difference, parent-frame rotation): the true pose is
``x [+] delta`` with ``delta ~ N(0, P)``. The error of an estimate is ``delta = gt [-] pred``
(``t_gt - t_pred``, ``log(R_gt R_pred^T)``) and its NEES, for the translation and the rotation block apart
(3 DoF each), is ``delta_b^T P_bb^-1 delta_b``. For a consistent estimator its mean over frames is 3; much
larger means overconfident (a controller would trust a wrong pose), much smaller underconfident.
"""

from __future__ import annotations

import torch

from ..checks import check_shape
from ..errors import ShapeError
from ..geometry.rotations import matrix_to_axis_angle

__all__ = ["pose_error_tangent", "pose_nees"]


def pose_error_tangent(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``gt [-] pred`` ``(N, 6)``: ``(t_gt - t_pred [m], log(R_gt R_pred^T) [rad])`` for poses ``(N, 4, 4)``."""
    check_shape(pred, (None, 4, 4), "pred")
    if gt.shape != pred.shape:
        raise ShapeError(f"gt must have the shape of pred {tuple(pred.shape)}; got {tuple(gt.shape)}")
    phi = matrix_to_axis_angle(gt[:, :3, :3] @ pred[:, :3, :3].transpose(1, 2))
    return torch.cat((gt[:, :3, 3] - pred[:, :3, 3], phi), -1)


def pose_nees(pred: torch.Tensor, gt: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """NEES of the translation and the rotation block, ``(N, 2)`` (each chi-square with 3 DoF when consistent).

    Args:
        pred, gt: ``(N, 4, 4)`` estimated and true ``object2camera``.
        covariance: ``(N, 6, 6)`` the estimator's covariance of ``pred`` (ROS PoseWithCovariance order).
    """
    check_shape(covariance, (pred.shape[0], 6, 6), "covariance")
    e = pose_error_tangent(pred.double(), gt.double())
    P = covariance.double()
    out = []
    for block in (slice(0, 3), slice(3, 6)):
        eb = e[:, block, None]  # (N, 3, 1)
        out.append((eb * torch.linalg.solve(P[:, block, block], eb)).sum((1, 2)))
    return torch.stack(out, -1)
