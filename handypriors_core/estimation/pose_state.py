"""Filter state: one rigid pose on the manifold SE(3) plus optional Euclidean extras.

State ``x = (T, e)``: ``T (4, 4)`` is ``body2parent`` (for the object tracker ``object2camera``) and
``e (m,)`` holds Euclidean extras (a velocity twist, hand joint angles, ...). The error state / tangent
vector is ``delta = (rho (3) [m], phi (3) [rad], delta_e (m,))`` of dimension ``n = 6 + m``.

Retraction and local difference (one convention, used everywhere in ``estimation``)::

    x [+] delta = (exp([phi]x) @ R,  t + rho,  e + delta_e)        # rotation about the body origin,
    a [-] b     = (t_a - t_b,  log(R_a @ R_b^T),  e_a - e_b)        # axes of the PARENT frame
    b [+] (a [-] b) == a

This is the decoupled SO(3) x R^3 form with a *left* (parent-frame) rotation perturbation, not
``se3_exp(delta) @ T``. Reasons: (1) it is exactly the ROS ``PoseWithCovariance`` convention
(x, y, z, rotation about X, Y, Z of the parent frame), so the 6x6 pose block of the covariance is
published as is; (2) the rotation pivots on the object origin, not on the camera centre 0.45 m away, which
decouples rotation from translation and keeps the covariance well conditioned.

Covariances are (n, n) over this tangent; float64 is used for all covariance math (see ``ekf``).
Every function here is differentiable and safe under ``torch.func`` transforms at ``delta = 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError, ShapeError
from ..geometry import small_linalg
from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, skew

__all__ = [
    "POSE_DIM",
    "PoseState",
    "covariance_to_body_frame",
    "covariance_to_se3_left",
    "local_difference",
    "nearest_rotation_array",
    "retract",
    "retract_first_order",
    "retract_value",
    "retracted_pose_array",
    "ros_covariance_list",
    "ros_pose_covariance",
    "rotation_from_axis_angle_array",
    "rotation_from_axis_angle_value",
    "so3_left_jacobian",
    "so3_left_jacobian_array",
]

#: Dimension of the pose part of the tangent: (rho [m], phi [rad]).
POSE_DIM = 6


@dataclass(frozen=True)
class PoseState:
    """A pose on SE(3) plus Euclidean extras.

    Attributes:
        pose: ``(4, 4)`` float, ``body2parent`` (e.g. ``object2camera``), translation in metres.
        extra: ``(m,)`` float, same dtype/device as ``pose``; ``m = 0`` when there are no extras.
    """

    pose: torch.Tensor
    extra: torch.Tensor

    def __post_init__(self) -> None:
        check_shape(self.pose, (4, 4), "pose")
        check_shape(self.extra, (None,), "extra")
        if not self.pose.is_floating_point():
            raise InvalidValueError(f"pose must be a floating-point tensor; got {self.pose.dtype}")
        if self.extra.dtype != self.pose.dtype or self.extra.device != self.pose.device:
            raise InvalidValueError(
                f"extra ({self.extra.dtype}, {self.extra.device}) must match pose ({self.pose.dtype}, "
                f"{self.pose.device})"
            )

    @classmethod
    def from_pose(
        cls, pose: torch.Tensor, extra: torch.Tensor | None = None, dtype: torch.dtype = torch.float64
    ) -> PoseState:
        """Build from ``pose (4, 4)`` and optional ``extra (m,)``, cast to ``dtype`` (default float64)."""
        check_shape(pose, (4, 4), "pose")
        check_finite(pose, "pose")
        pose = pose.to(dtype)
        if extra is None:
            extra = torch.zeros(0, dtype=dtype, device=pose.device)
        check_shape(extra, (None,), "extra")
        check_finite(extra, "extra")
        return cls(pose, extra.to(dtype=dtype, device=pose.device))

    @property
    def dim(self) -> int:
        """Tangent dimension ``n = 6 + m``."""
        return POSE_DIM + self.extra.shape[0]

    @property
    def rotation(self) -> torch.Tensor:
        """``(3, 3)`` rotation of ``pose``."""
        return self.pose[:3, :3]

    @property
    def translation(self) -> torch.Tensor:
        """``(3,)`` translation of ``pose`` [m]."""
        return self.pose[:3, 3]

    def retract(self, delta: torch.Tensor) -> PoseState:
        """``self [+] delta`` (see :func:`retract`)."""
        return retract(self, delta)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PoseState:
        """Copy on ``device`` / in ``dtype``."""
        return PoseState(self.pose.to(device=device, dtype=dtype), self.extra.to(device=device, dtype=dtype))

    def is_finite(self) -> bool:
        """True when pose and extras hold no NaN/inf."""
        return bool(torch.isfinite(self.pose).all()) and bool(torch.isfinite(self.extra).all())


def retract(state: PoseState, delta: torch.Tensor) -> PoseState:
    """``state [+] delta``: ``R <- exp([phi]x) R``, ``t <- t + rho``, ``e <- e + delta_e``.

    Args:
        state: the state to move.
        delta: ``(n,)`` tangent vector ``(rho [m], phi [rad], delta_e)``.
    Returns: the new :class:`PoseState` (differentiable in ``delta``).
    """
    check_shape(delta, (state.dim,), "delta")
    delta = delta.to(state.pose.dtype)
    R = axis_angle_to_matrix(delta[3:6]) @ state.rotation
    t = state.translation + delta[:3]
    top = torch.cat((R, t[:, None]), 1)
    pose = torch.cat((top, state.pose[3:4]), 0)
    return PoseState(pose, state.extra + delta[POSE_DIM:])


def _rodrigues_rows(x: float, y: float, z: float) -> list[list[float]]:
    """Rows of ``exp([phi]x)`` for ``phi = (x, y, z)`` [rad] in Python floats: Rodrigues' formula with the series of
    ``sin(t)/t`` and ``(1 - cos t)/t^2`` below ``t^2 = 1e-4``."""
    t2 = x * x + y * y + z * z
    if t2 < 1e-4:
        a = 1 - t2 / 6 * (1 - t2 / 20 * (1 - t2 / 42))
        b = 0.5 * (1 - t2 / 12 * (1 - t2 / 30 * (1 - t2 / 56)))
    else:
        t = math.sqrt(t2)
        a = math.sin(t) / t
        h = math.sin(0.5 * t)
        b = 2 * h * h / t2
    xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
    return [[1 - b * (yy + zz), b * xy - a * z, b * xz + a * y],
            [b * xy + a * z, 1 - b * (xx + zz), b * yz - a * x],
            [b * xz - a * y, b * yz + a * x, 1 - b * (xx + yy)]]


def rotation_from_axis_angle_value(phi: torch.Tensor) -> torch.Tensor:
    """``exp([phi]x) (3, 3)`` of one axis-angle ``phi (3,)`` [rad], evaluated in Python floats (not differentiable).

    The same values as :func:`~handypriors_core.geometry.rotations.axis_angle_to_matrix` in a few torch calls instead
    of about fifty (the filter moves its state with it several times per frame).
    """
    x, y, z = (float(v) for v in phi.detach().cpu().tolist())
    return torch.tensor(_rodrigues_rows(x, y, z), dtype=phi.dtype, device=phi.device)


def rotation_from_axis_angle_array(phi: np.ndarray) -> np.ndarray:
    """:func:`rotation_from_axis_angle_value` of a numpy ``phi (3,)`` [rad]: ``(3, 3)`` float64 numpy."""
    x, y, z = phi.tolist()
    return np.array(_rodrigues_rows(x, y, z))


def retract_value(state: PoseState, delta: torch.Tensor) -> PoseState:
    """:func:`retract` for moving a state (no gradient to ``delta``): the same result in a few torch calls.

    ``delta (n,)`` must be finite (callers check it; the result is not checked again).
    """
    if delta.shape != (state.dim,):
        raise ShapeError(f"Expected delta to have shape ({state.dim},); got {tuple(delta.shape)}")
    delta = delta.detach().to(state.pose.dtype)
    pose = state.pose.detach().clone()
    pose[:3, :3] = rotation_from_axis_angle_value(delta[3:6]) @ pose[:3, :3]
    pose[:3, 3] += delta[:3]
    return PoseState(pose, state.extra.detach() + delta[POSE_DIM:])


def retract_first_order(state: PoseState, delta: torch.Tensor) -> PoseState:
    """First-order retraction ``R <- (I + [phi]x) R``, ``t <- t + rho``, ``e <- e + delta_e`` (for Jacobians).

    Agrees with :func:`retract` at ``delta = 0`` in value and first derivative (its rotation leaves SO(3)
    at second order), so ``d fn(state [+] delta)/d delta`` at 0 is the same; it costs two small ops instead
    of Rodrigues' formula, which dominates autodiff time otherwise. Never use it to move a state.
    """
    check_shape(delta, (state.dim,), "delta")
    delta = delta.to(state.pose.dtype)
    R = state.rotation + skew(delta[3:6]) @ state.rotation
    t = state.translation + delta[:3]
    pose = torch.cat((torch.cat((R, t[:, None]), 1), state.pose[3:4]), 0)
    return PoseState(pose, state.extra + delta[POSE_DIM:])


def local_difference(a: PoseState, b: PoseState) -> torch.Tensor:
    """``a [-] b = (t_a - t_b, log(R_a R_b^T), e_a - e_b)`` ``(n,)``, so that ``b [+] (a [-] b) == a``.

    The rotation part is the axis-angle [rad] (angle in ``[0, pi]``) of the parent-frame rotation taking
    ``b`` to ``a``. Differentiable, also at ``a == b``.
    """
    if a.extra.shape != b.extra.shape:
        raise ShapeError(f"states differ in extra dimension: {tuple(a.extra.shape)} vs {tuple(b.extra.shape)}")
    phi = matrix_to_axis_angle(a.rotation @ b.rotation.transpose(0, 1))
    return torch.cat((a.translation - b.translation, phi, a.extra - b.extra))


def _left_jacobian_coefficients(t2: float) -> tuple[float, float]:
    """``((1 - cos t)/t^2, (t - sin t)/t^3)`` for ``t^2 = t2``, with series below ``t^2 = 1e-4``."""
    if t2 < 1e-4:
        return 0.5 - t2 / 24 + t2 * t2 / 720, 1 / 6 - t2 / 120 + t2 * t2 / 5040
    t = math.sqrt(t2)
    return (1 - math.cos(t)) / t2, (t - math.sin(t)) / (t2 * t)


def so3_left_jacobian(phi: torch.Tensor) -> torch.Tensor:
    """Left Jacobian of SO(3) ``J_l(phi) (3, 3)`` for ``phi (3,)`` [rad]: ``exp(phi + e) ~= exp(J_l e) exp(phi)``.

    ``J_l = I + (1 - cos t)/t^2 [phi]x + (t - sin t)/t^3 [phi]x^2`` with series below ``t^2 = 1e-4``.
    Not meant for autodiff (plain evaluation).
    """
    check_shape(phi, (3,), "phi")
    b, c = _left_jacobian_coefficients(float((phi * phi).sum()))
    K = skew(phi)
    return torch.eye(3, dtype=phi.dtype, device=phi.device) + b * K + c * (K @ K)


def so3_left_jacobian_array(phi: np.ndarray) -> np.ndarray:
    """:func:`so3_left_jacobian` of a numpy ``phi (3,)`` [rad]: ``(3, 3)`` float64 numpy (in Python floats, with
    ``[phi]x^2 = phi phi^T - |phi|^2 I``: one numpy call)."""
    x, y, z = (float(v) for v in phi)
    t2 = x * x + y * y + z * z
    b, c = _left_jacobian_coefficients(t2)
    d = 1.0 - c * t2
    return np.array([[d + c * x * x, c * x * y - b * z, c * x * z + b * y],
                     [c * x * y + b * z, d + c * y * y, c * y * z - b * x],
                     [c * x * z - b * y, c * y * z + b * x, d + c * z * z]])


def nearest_rotation_array(rotation: np.ndarray) -> np.ndarray:
    """The rotation nearest ``rotation (3, 3)`` (numpy, within rounding of SO(3)): ``U V^T`` of its SVD."""
    U, _, Vh = small_linalg.svd(rotation)
    return U @ Vh


def retracted_pose_array(pose: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``(4, 4)`` pose of ``pose [+] delta`` (:func:`retract_value`'s pose) for numpy ``pose (4, 4)`` and the pose
    part of ``delta (>= 6,)`` (float64; a new array). Evaluated in Python floats (``exp([phi]x) R`` row by row, the
    sums in the order of a matrix product): two numpy calls instead of seven."""
    (r00, r01, r02, tx), (r10, r11, r12, ty), (r20, r21, r22, tz), last = pose.tolist()
    x, y, z, a, b, c = delta[:6].tolist()
    rows = []
    for (e0, e1, e2), t in zip(_rodrigues_rows(a, b, c), (tx + x, ty + y, tz + z), strict=True):
        rows.append([e0 * r00 + e1 * r10 + e2 * r20, e0 * r01 + e1 * r11 + e2 * r21, e0 * r02 + e1 * r12 + e2 * r22,
                     t])
    rows.append(last)
    return np.array(rows)


def ros_pose_covariance(covariance: torch.Tensor) -> torch.Tensor:
    """Pose block ``(6, 6)`` of a state covariance ``(n, n)`` in the ROS ``PoseWithCovariance`` convention.

    ROS orders (x, y, z, rotation about X, rotation about Y, rotation about Z), all in the parent
    (header) frame. Our tangent ``(rho, phi)`` is exactly that: ``rho`` is the position error in the
    parent frame and ``phi`` a small rotation about the parent's fixed axes applied on the left
    (``R_true = exp([phi]x) R_est``), so the block is returned unchanged.
    """
    check_shape(covariance, (None, None), "covariance")
    if covariance.shape[0] != covariance.shape[1] or covariance.shape[0] < POSE_DIM:
        raise ShapeError(f"Expected covariance to be square with n >= 6; got {tuple(covariance.shape)}")
    return covariance[:POSE_DIM, :POSE_DIM]


def ros_covariance_list(covariance: torch.Tensor) -> list[float]:
    """36 floats, row-major, of :func:`ros_pose_covariance` (for ``geometry_msgs`` and ``poses.json``)."""
    return [float(v) for v in ros_pose_covariance(covariance).detach().to("cpu", torch.float64).reshape(-1)]


def _check_cov6(covariance: torch.Tensor, pose: torch.Tensor) -> None:
    check_shape(covariance, (6, 6), "covariance")
    check_shape(pose, (4, 4), "pose")


def covariance_to_body_frame(covariance: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Express a pose covariance ``(6, 6)`` (our parent-frame tangent) in the body's own axes.

    Body-frame tangent ``(R^T rho, R^T phi)`` (``R_true = R_est exp([R^T phi]x)``), so
    ``C_body = M C M^T`` with ``M = blockdiag(R^T, R^T)``; ``pose (4, 4)`` is ``body2parent``.
    """
    _check_cov6(covariance, pose)
    Rt = pose[:3, :3].transpose(0, 1).to(covariance.dtype)
    M = torch.block_diag(Rt, Rt)
    return M @ covariance @ M.transpose(0, 1)


def covariance_to_se3_left(covariance: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Convert a pose covariance ``(6, 6)`` to the se(3) left tangent of ``T_true = se3_exp(xi) @ T_est``.

    To first order ``xi = (rho + [t]x phi, phi)`` (rotation pivots on the parent origin there), so
    ``C_se3 = M C M^T`` with ``M = [[I, [t]x], [0, I]]``; ``pose (4, 4)`` is ``body2parent``.
    """
    _check_cov6(covariance, pose)
    M = torch.eye(6, dtype=covariance.dtype, device=covariance.device)
    M[:3, 3:] = skew(pose[:3, 3].to(covariance.dtype))
    return M @ covariance @ M.transpose(0, 1)
