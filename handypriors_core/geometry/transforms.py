"""Rigid transforms as 4x4 homogeneous matrices ``(..., 4, 4)`` acting on column vectors.

Poses are named ``<from>2<to>``: ``p_to = T[..., :3, :3] @ p_from + T[..., :3, 3]``. Translations in metres,
angles in radians, quaternions (x, y, z, w). Everything is batched over leading dims and differentiable.
"""

from __future__ import annotations

import numpy as np
import torch

from ..checks import check_finite, check_shape
from .rotations import (
    _matrix_to_quaternion,
    _quaternion_to_axis_angle,
    _safe_norm,
    _so3_coefficients,
    quaternion_to_matrix,
    skew,
)

__all__ = [
    "compose_transforms",
    "invert_transform",
    "make_transform",
    "pose_from_transform",
    "rotation_angle_between",
    "se3_exp",
    "se3_log",
    "transform_from_pose",
    "transform_points",
    "transform_points_array",
]


def make_transform(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rotation ``R (..., 3, 3)`` and translation ``t (..., 3)`` [m] -> ``T (..., 4, 4)``.

    Leading dims of ``R`` and ``t`` broadcast.
    """
    check_shape(R, (..., 3, 3), "R")
    check_shape(t, (..., 3), "t")
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    top = torch.cat((R.expand(*batch, 3, 3), t.expand(*batch, 3)[..., None]), -1)
    bottom = torch.zeros(*batch, 1, 4, dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat((top, bottom), -2)


def invert_transform(T: torch.Tensor) -> torch.Tensor:
    """Inverse of a rigid transform ``(..., 4, 4)`` in closed form ``(R^T, -R^T t)``; ``a2b -> b2a``."""
    check_shape(T, (..., 4, 4), "T")
    R_inv = T[..., :3, :3].transpose(-1, -2)
    return make_transform(R_inv, -(R_inv @ T[..., :3, 3:])[..., 0])


def compose_transforms(a2b: torch.Tensor, b2c: torch.Tensor) -> torch.Tensor:
    """Chain ``a2b (..., 4, 4)`` then ``b2c (..., 4, 4)`` into ``a2c = b2c @ a2b`` (leading dims broadcast)."""
    check_shape(a2b, (..., 4, 4), "a2b")
    check_shape(b2c, (..., 4, 4), "b2c")
    return b2c @ a2b


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``T (..., 4, 4)`` to ``points (..., N, 3)`` [m] -> ``(..., N, 3)`` (leading dims broadcast)."""
    check_shape(T, (..., 4, 4), "T")
    check_shape(points, (..., None, 3), "points")
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def transform_points_array(T: np.ndarray, points: np.ndarray, translate: bool = True) -> np.ndarray:
    """:func:`transform_points` of one CPU point set in numpy: ``T (4, 4)``, ``points (N, 3)`` [m] -> ``(N, 3)`` in
    their dtype, bit for bit torch's values (per output column ``((x R_k0 + y R_k1) + z R_k2) + t_k``, the order of
    torch's CPU product; numpy's ``@`` rounds differently); ``translate=False`` rotates only (directions)."""
    R, t = T[:3, :3], T[:3, 3]
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    out = np.empty(points.shape, dtype=points.dtype)
    for k in range(3):
        column = x * R[k, 0] + y * R[k, 1] + z * R[k, 2]
        out[:, k] = column + t[k] if translate else column
    return out


def transform_from_pose(position: torch.Tensor, quaternion_xyzw: torch.Tensor) -> torch.Tensor:
    """geometry_msgs-style pose: ``position (..., 3)`` [m], ``quaternion_xyzw (..., 4)`` -> ``(..., 4, 4)``.

    The quaternion is normalised first.
    """
    check_shape(position, (..., 3), "position")
    check_finite(position, "position")
    return make_transform(quaternion_to_matrix(quaternion_xyzw), position)


def pose_from_transform(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``T (..., 4, 4)`` -> ``(position (..., 3) [m], quaternion_xyzw (..., 4) with w >= 0)``."""
    check_shape(T, (..., 4, 4), "T")
    check_finite(T, "T")
    return T[..., :3, 3], _matrix_to_quaternion(T[..., :3, :3])


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """SE(3) exponential: twist ``xi = (rho [m], phi [rad]) (..., 6)`` -> ``T (..., 4, 4)``.

    ``R = exp([phi]x)``, ``t = V rho`` with ``V = I + B [phi]x + C [phi]x^2``; exact, with Taylor series
    near ``|phi| = 0`` so values and gradients are finite there.
    """
    check_shape(xi, (..., 6), "xi")
    check_finite(xi, "xi")
    rho, phi = xi[..., :3], xi[..., 3:]
    a, b, c = _so3_coefficients((phi * phi).sum(-1))
    k = skew(phi)
    k2 = k @ k
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device)
    R = eye + a[..., None, None] * k + b[..., None, None] * k2
    V = eye + b[..., None, None] * k + c[..., None, None] * k2
    return make_transform(R, (V @ rho[..., None])[..., 0])


def se3_log(T: torch.Tensor) -> torch.Tensor:
    """SE(3) logarithm: ``T (..., 4, 4)`` -> twist ``(rho [m], phi [rad]) (..., 6)`` with ``|phi| <= pi``.

    Inverse of :func:`se3_exp`; ``rho = V^-1 t`` with
    ``V^-1 = I - [phi]x / 2 + D [phi]x^2``, ``D = (1 - (t/2) cot(t/2)) / t^2`` (series near 0, finite at pi).
    """
    check_shape(T, (..., 4, 4), "T")
    check_finite(T, "T")
    phi = _quaternion_to_axis_angle(_matrix_to_quaternion(T[..., :3, :3]))
    theta2 = (phi * phi).sum(-1)
    small = theta2 < 1e-2
    safe_theta2 = torch.where(small, torch.ones_like(theta2), theta2)
    half = 0.5 * torch.sqrt(safe_theta2)
    d_exact = (1 - half * torch.cos(half) / torch.sin(half)) / safe_theta2
    x = theta2
    d_series = 1 / 12 + x / 720 + x * x / 30240 + x * x * x / 1209600 + x * x * x * x / 47900160
    d = torch.where(small, d_series, d_exact)
    k = skew(phi)
    eye = torch.eye(3, dtype=T.dtype, device=T.device)
    V_inv = eye - 0.5 * k + d[..., None, None] * (k @ k)
    rho = (V_inv @ T[..., :3, 3:])[..., 0]
    return torch.cat((rho, phi), -1)


def rotation_angle_between(Ra: torch.Tensor, Rb: torch.Tensor) -> torch.Tensor:
    """Geodesic angle [rad] in ``[0, pi]`` between rotations ``Ra, Rb (..., 3, 3)`` -> ``(...)``.

    ``atan2(|skew part|, trace part)`` of ``Ra^T Rb``: accurate near 0 and pi (unlike ``acos``); the
    gradient at exactly 0 is taken as 0.
    """
    check_shape(Ra, (..., 3, 3), "Ra")
    check_shape(Rb, (..., 3, 3), "Rb")
    rel = Ra.transpose(-1, -2) @ Rb
    cos_part = 0.5 * (rel[..., 0, 0] + rel[..., 1, 1] + rel[..., 2, 2] - 1.0)
    axis_sin = 0.5 * torch.stack(
        (rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]), -1
    )
    return torch.atan2(_safe_norm(axis_sin), cos_part)
