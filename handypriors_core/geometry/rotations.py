"""Rotation parameterisations, batched over leading dims and differentiable (float32 / float64).

Conventions:

- Matrices are ``(..., 3, 3)`` and act on column vectors.
- Axis-angle ``(..., 3)`` is ``angle * unit_axis`` [rad].
- Quaternions are ``(..., 4)`` in geometry_msgs order **(x, y, z, w)**; ``matrix_to_quaternion`` returns
  ``w >= 0``. This is the only module that converts quaternions.
- Euler XYZ ``(..., 3)`` = ``(a, b, c)`` is intrinsic X-Y-Z: ``R = Rx(a) @ Ry(b) @ Rz(c)`` (the paper's
  object parameterisation).
- URDF rpy ``(..., 3)`` = ``(roll, pitch, yaw)`` about fixed axes: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``.
- 6D (Zhou et al. 2019) ``(..., 6)`` is the first two columns of ``R``: ``(R[:, 0], R[:, 1])``.

Angles near 0 use Taylor series and near pi a quaternion route, so values and gradients stay finite there.
"""

from __future__ import annotations

import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError

__all__ = [
    "axis_angle_to_matrix",
    "euler_xyz_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_euler_xyz",
    "matrix_to_quaternion",
    "matrix_to_rotation_6d",
    "quaternion_to_matrix",
    "rotation_6d_to_matrix",
    "rpy_to_matrix",
    "skew",
]

# Below this squared angle [rad^2] the Rodrigues coefficients use their Taylor series (truncation < 1e-17).
_TAYLOR_THETA2 = 1e-2


def _safe_norm(v: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean norm along ``dim`` whose gradient at the zero vector is 0 instead of NaN."""
    n2 = (v * v).sum(dim)
    positive = n2 > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, n2, torch.ones_like(n2))), torch.zeros_like(n2))


def _so3_coefficients(theta2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coefficients ``sin(t)/t, (1-cos t)/t^2, (t-sin t)/t^3`` of the squared angle ``theta2`` ``(...)``.

    Exact formulas away from 0, Taylor series near 0, so values and gradients are finite everywhere.
    """
    small = theta2 < _TAYLOR_THETA2
    safe_theta2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = torch.sqrt(safe_theta2)
    sin_t = torch.sin(theta)
    half_sin = torch.sin(0.5 * theta)
    a_exact = sin_t / theta
    b_exact = 2.0 * half_sin * half_sin / safe_theta2  # (1 - cos t) / t^2 without cancellation
    c_exact = (theta - sin_t) / (safe_theta2 * theta)
    x = theta2
    a_series = 1 - x / 6 * (1 - x / 20 * (1 - x / 42 * (1 - x / 72)))
    b_series = 0.5 * (1 - x / 12 * (1 - x / 30 * (1 - x / 56 * (1 - x / 90))))
    c_series = (1 - x / 20 * (1 - x / 42 * (1 - x / 72 * (1 - x / 110)))) / 6
    return (
        torch.where(small, a_series, a_exact),
        torch.where(small, b_series, b_exact),
        torch.where(small, c_series, c_exact),
    )


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix ``[v]x`` with ``skew(v) @ w == cross(v, w)``: ``(..., 3) -> (..., 3, 3)``."""
    check_shape(v, (..., 3), "v")
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    rows = (
        torch.stack((zero, -z, y), -1),
        torch.stack((z, zero, -x), -1),
        torch.stack((-y, x, zero), -1),
    )
    return torch.stack(rows, -2)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle ``(..., 3)`` [rad] -> rotation matrix ``(..., 3, 3)``.

    Finite, exact gradients at angle 0 (Taylor series of ``sin(t)/t`` and ``(1-cos t)/t^2``).
    """
    check_shape(axis_angle, (..., 3), "axis_angle")
    check_finite(axis_angle, "axis_angle")
    return _axis_angle_to_matrix(axis_angle)


def _axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    a, b, _ = _so3_coefficients((axis_angle * axis_angle).sum(-1))
    k = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> axis-angle ``(..., 3)`` with angle in ``[0, pi]`` [rad].

    Goes through the quaternion (accurate near pi) and a series for ``atan(x)/x`` (finite gradients near 0).
    At exactly pi the sign of the axis is arbitrary.
    """
    check_shape(R, (..., 3, 3), "R")
    check_finite(R, "R")
    return _quaternion_to_axis_angle(_matrix_to_quaternion(R))


def _quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (x, y, z, w) with ``w >= 0`` -> axis-angle; ``angle = 2 atan2(|v|, w)``."""
    v, w = q[..., :3], q[..., 3]
    n = _safe_norm(v)
    # scale = angle / |v| = 2 atan2(n, w) / n; series in x = n / w where the quotient is ill-conditioned.
    small = n < 1e-2  # then w > 0.9999
    safe_n = torch.where(small, torch.ones_like(n), n)
    exact = 2.0 * torch.atan2(safe_n, w) / safe_n
    safe_w = torch.where(small, w, torch.ones_like(w))
    x2 = (n * n) / (safe_w * safe_w)
    series = 2.0 / safe_w * (1 - x2 / 3 + x2 * x2 / 5 - x2 * x2 * x2 / 7)
    return v * torch.where(small, series, exact)[..., None]


def quaternion_to_matrix(quaternion_xyzw: torch.Tensor) -> torch.Tensor:
    """Quaternion ``(..., 4)`` in (x, y, z, w) order -> rotation matrix ``(..., 3, 3)``.

    The quaternion is normalised first; a zero quaternion raises InvalidValueError.
    """
    check_shape(quaternion_xyzw, (..., 4), "quaternion_xyzw")
    check_finite(quaternion_xyzw, "quaternion_xyzw")
    norm = torch.linalg.vector_norm(quaternion_xyzw, dim=-1, keepdim=True)
    if (norm < 1e-12).any():
        raise InvalidValueError("quaternion_xyzw contains a zero-length quaternion")
    return _quaternion_to_matrix(quaternion_xyzw / norm)


def _quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    x, y, z, w = q.unbind(-1)
    rows = (
        torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)), -1),
        torch.stack((2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)), -1),
        torch.stack((2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)), -1),
    )
    return torch.stack(rows, -2)


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> unit quaternion ``(..., 4)`` in (x, y, z, w) order with ``w >= 0``.

    Uses the best-conditioned of the four standard formulas (largest ``|component|``), so it is accurate
    and differentiable for every rotation, including angles near pi.
    """
    check_shape(R, (..., 3, 3), "R")
    check_finite(R, "R")
    return _matrix_to_quaternion(R)


def _matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    trace = m00 + m11 + m22
    # 4 * component^2 for (x, y, z, w)
    four_sq = torch.stack((1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + trace), -1)
    positive = four_sq > 0
    two_abs = torch.where(positive, torch.sqrt(torch.where(positive, four_sq, torch.ones_like(four_sq))), 0.0)
    # Row i holds 4 * q_i * (x, y, z, w); divide by 4 |q_i| (= 2 * two_abs_i).
    candidates = torch.stack(
        (
            torch.stack((four_sq[..., 0], m01 + m10, m02 + m20, m21 - m12), -1),
            torch.stack((m01 + m10, four_sq[..., 1], m12 + m21, m02 - m20), -1),
            torch.stack((m02 + m20, m12 + m21, four_sq[..., 2], m10 - m01), -1),
            torch.stack((m21 - m12, m02 - m20, m10 - m01, four_sq[..., 3]), -1),
        ),
        -2,
    )
    # The best row has 4 q_i^2 >= 1, so clamping the others' denominators only keeps them finite.
    candidates = candidates / (2.0 * two_abs.clamp_min(0.1))[..., None]
    best = two_abs.argmax(-1, keepdim=True)[..., None].expand(*two_abs.shape[:-1], 1, 4)
    q = candidates.gather(-2, best).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., 3:] < 0, -q, q)


def _rot_x(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack(
        (torch.stack((one, zero, zero), -1), torch.stack((zero, c, -s), -1), torch.stack((zero, s, c), -1)), -2
    )


def _rot_y(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack(
        (torch.stack((c, zero, s), -1), torch.stack((zero, one, zero), -1), torch.stack((-s, zero, c), -1)), -2
    )


def _rot_z(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack(
        (torch.stack((c, -s, zero), -1), torch.stack((s, c, zero), -1), torch.stack((zero, zero, one), -1)), -2
    )


def euler_xyz_to_matrix(euler_xyz: torch.Tensor) -> torch.Tensor:
    """Intrinsic X-Y-Z Euler angles ``(..., 3)`` [rad] -> ``R = Rx(a) @ Ry(b) @ Rz(c)`` ``(..., 3, 3)``."""
    check_shape(euler_xyz, (..., 3), "euler_xyz")
    check_finite(euler_xyz, "euler_xyz")
    a, b, c = euler_xyz.unbind(-1)
    return _rot_x(a) @ _rot_y(b) @ _rot_z(c)


def matrix_to_euler_xyz(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> intrinsic X-Y-Z Euler angles ``(..., 3)`` [rad].

    Returns ``a, c`` in ``(-pi, pi]`` and ``b`` in ``[-pi/2, pi/2]``. At gimbal lock (``|b| = pi/2``)
    ``c`` is set to 0 and ``a`` carries the whole remaining rotation.
    """
    check_shape(R, (..., 3, 3), "R")
    check_finite(R, "R")
    sin_b = R[..., 0, 2].clamp(-1.0, 1.0)
    cos_b = _safe_norm(R[..., 0, :2])
    b = torch.atan2(sin_b, cos_b)
    lock = cos_b < (1e-6 if R.dtype == torch.float64 else 1e-4)
    zero, one = torch.zeros_like(sin_b), torch.ones_like(sin_b)
    # Regular case; inputs are replaced at gimbal lock so atan2(0, 0) never sees a gradient.
    a_reg = torch.atan2(torch.where(lock, zero, -R[..., 1, 2]), torch.where(lock, one, R[..., 2, 2]))
    c_reg = torch.atan2(torch.where(lock, zero, -R[..., 0, 1]), torch.where(lock, one, R[..., 0, 0]))
    # Gimbal lock: row 1 of R is (sin(a + sign*c), cos(a + sign*c), 0) with sign = sign(sin_b); take c = 0.
    sign = torch.where(sin_b >= 0, one, -one)
    a_lock = torch.atan2(torch.where(lock, sign * R[..., 1, 0], zero), torch.where(lock, R[..., 1, 1], one))
    a = torch.where(lock, a_lock, a_reg)
    c = torch.where(lock, zero, c_reg)
    return torch.stack((a, b, c), -1)


def rpy_to_matrix(rpy: torch.Tensor) -> torch.Tensor:
    """URDF roll-pitch-yaw ``(..., 3)`` [rad] (fixed axes) -> ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    check_shape(rpy, (..., 3), "rpy")
    check_finite(rpy, "rpy")
    roll, pitch, yaw = rpy.unbind(-1)
    return _rot_z(yaw) @ _rot_y(pitch) @ _rot_x(roll)


def rotation_6d_to_matrix(rotation_6d: torch.Tensor) -> torch.Tensor:
    """6D representation ``(..., 6)`` (two column vectors) -> rotation matrix ``(..., 3, 3)`` by Gram-Schmidt.

    The two 3-vectors must be non-zero and not parallel (otherwise the result is not a rotation).
    """
    check_shape(rotation_6d, (..., 6), "rotation_6d")
    check_finite(rotation_6d, "rotation_6d")
    a1, a2 = rotation_6d[..., :3], rotation_6d[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), -1)


def matrix_to_rotation_6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> 6D representation ``(..., 6)`` = first two columns concatenated."""
    check_shape(R, (..., 3, 3), "R")
    return torch.cat((R[..., :, 0], R[..., :, 1]), -1)
