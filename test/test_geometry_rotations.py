"""Rotation conversions against scipy, round trips near 0 and pi, and float64 gradchecks."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry import rotations as rot

F64 = torch.float64


def _random_axis_angles(n: int, seed: int = 0) -> torch.Tensor:
    """Random axes with angles spread over (0, pi) plus angles at 0, ~0 and ~pi."""
    gen = torch.Generator().manual_seed(seed)
    axes = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen, dtype=F64), dim=-1)
    angles = torch.rand(n, generator=gen, dtype=F64) * math.pi
    angles[:4] = torch.tensor([0.0, 1e-12, 1e-7, 1e-3], dtype=F64)
    angles[4:8] = torch.tensor([math.pi - 1e-6, math.pi - 1e-4, math.pi - 1e-9, math.pi - 0.01], dtype=F64)
    return axes * angles[:, None]


def test_skew_is_cross_product():
    gen = torch.Generator().manual_seed(1)
    v, w = torch.randn(2, 5, 3, generator=gen, dtype=F64)
    torch.testing.assert_close((rot.skew(v) @ w[..., None])[..., 0], torch.linalg.cross(v, w))
    torch.testing.assert_close(rot.skew(v), -rot.skew(v).transpose(-1, -2))


def test_axis_angle_to_matrix_matches_scipy():
    aa = _random_axis_angles(200)
    expected = Rotation.from_rotvec(aa.numpy()).as_matrix()
    np.testing.assert_allclose(rot.axis_angle_to_matrix(aa).numpy(), expected, atol=1e-14)


def test_matrix_to_axis_angle_matches_scipy_and_round_trips():
    aa = _random_axis_angles(200)
    R = torch.from_numpy(Rotation.from_rotvec(aa.numpy()).as_matrix())
    got = rot.matrix_to_axis_angle(R)
    np.testing.assert_allclose(got.numpy(), Rotation.from_matrix(R.numpy()).as_rotvec(), atol=1e-9)
    np.testing.assert_allclose(got.numpy(), aa.numpy(), atol=1e-9)  # angle < pi: unique
    np.testing.assert_allclose(rot.axis_angle_to_matrix(got).numpy(), R.numpy(), atol=1e-14)


def test_matrix_to_axis_angle_at_pi_gives_same_rotation():
    axes = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 2, -3]], dtype=F64), dim=-1
    )
    R = rot.axis_angle_to_matrix(axes * math.pi)
    got = rot.matrix_to_axis_angle(R)
    torch.testing.assert_close(got.norm(dim=-1), torch.full((4,), math.pi, dtype=F64))
    torch.testing.assert_close(rot.axis_angle_to_matrix(got), R)


def test_quaternion_matches_scipy_xyzw_with_nonnegative_w():
    aa = _random_axis_angles(200, seed=3)
    R = torch.from_numpy(Rotation.from_rotvec(aa.numpy()).as_matrix())
    q = rot.matrix_to_quaternion(R)
    assert (q[..., 3] >= 0).all()
    np.testing.assert_allclose(q.numpy(), Rotation.from_matrix(R.numpy()).as_quat(canonical=True), atol=1e-12)
    np.testing.assert_allclose(rot.quaternion_to_matrix(q).numpy(), R.numpy(), atol=1e-14)
    # quaternion_to_matrix normalises and is sign-invariant
    torch.testing.assert_close(rot.quaternion_to_matrix(-3.0 * q), R)


def test_quaternion_known_answer():
    s = math.sqrt(0.5)
    R = rot.quaternion_to_matrix(torch.tensor([0.0, 0.0, s, s], dtype=F64))  # +90 deg about z
    torch.testing.assert_close(R, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64))


def test_euler_xyz_is_intrinsic_and_round_trips():
    gen = torch.Generator().manual_seed(4)
    angles = (torch.rand(300, 3, generator=gen, dtype=F64) * 2 - 1) * torch.tensor([math.pi, math.pi / 2, math.pi])
    R = rot.euler_xyz_to_matrix(angles)
    np.testing.assert_allclose(R.numpy(), Rotation.from_euler("XYZ", angles.numpy()).as_matrix(), atol=1e-14)
    torch.testing.assert_close(rot.matrix_to_euler_xyz(R), angles, atol=1e-8, rtol=0)


@pytest.mark.parametrize("pitch", [math.pi / 2, -math.pi / 2, math.pi / 2 - 1e-9])
def test_euler_xyz_gimbal_lock_reproduces_matrix(pitch):
    angles = torch.tensor([[0.3, pitch, -1.1], [2.0, pitch, 0.4]], dtype=F64)
    R = rot.euler_xyz_to_matrix(angles)
    back = rot.matrix_to_euler_xyz(R)
    assert torch.isfinite(back).all()
    torch.testing.assert_close(rot.euler_xyz_to_matrix(back), R, atol=1e-7, rtol=0)


def test_rpy_is_urdf_fixed_axis():
    gen = torch.Generator().manual_seed(5)
    rpy = torch.randn(50, 3, generator=gen, dtype=F64)
    expected = Rotation.from_euler("xyz", rpy.numpy()).as_matrix()  # lowercase = extrinsic = Rz Ry Rx
    np.testing.assert_allclose(rot.rpy_to_matrix(rpy).numpy(), expected, atol=1e-14)


def test_rotation_6d_round_trip_and_gram_schmidt():
    R = rot.axis_angle_to_matrix(_random_axis_angles(50, seed=6))
    d6 = rot.matrix_to_rotation_6d(R)
    assert d6.shape == (50, 6)
    torch.testing.assert_close(d6[:, :3], R[:, :, 0])
    torch.testing.assert_close(rot.rotation_6d_to_matrix(d6), R)
    gen = torch.Generator().manual_seed(7)
    noisy = rot.rotation_6d_to_matrix(2.0 * d6 + 0.1 * torch.randn(50, 6, generator=gen, dtype=F64))
    eye = torch.eye(3, dtype=F64).expand(50, 3, 3)
    torch.testing.assert_close(noisy.transpose(-1, -2) @ noisy, eye)
    torch.testing.assert_close(torch.linalg.det(noisy), torch.ones(50, dtype=F64))


def test_float32_and_leading_dims_preserved():
    aa = torch.randn(2, 4, 3)
    R = rot.axis_angle_to_matrix(aa)
    assert R.shape == (2, 4, 3, 3) and R.dtype == torch.float32
    assert rot.matrix_to_quaternion(R).shape == (2, 4, 4)
    back = rot.matrix_to_axis_angle(R)
    torch.testing.assert_close(rot.axis_angle_to_matrix(back), R, atol=1e-5, rtol=0)
    tiny = rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(torch.tensor([1e-4, -2e-4, 5e-5])))
    torch.testing.assert_close(tiny, torch.tensor([1e-4, -2e-4, 5e-5]), atol=1e-7, rtol=0)


@pytest.mark.parametrize("scale", [0.0, 1e-9, 1e-4, 0.09, 0.11, 1.3, math.pi - 1e-3])
def test_gradcheck_axis_angle_round_trip(scale):
    direction = torch.tensor([0.3, -0.5, 0.8], dtype=F64)
    aa = (scale * direction / direction.norm()).requires_grad_()
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix, (aa,))
    assert torch.autograd.gradcheck(lambda x: rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(x)), (aa,))
    R = rot.axis_angle_to_matrix(aa.detach()).requires_grad_()
    assert torch.autograd.gradcheck(rot.matrix_to_axis_angle, (R,))
    assert torch.autograd.gradcheck(rot.matrix_to_quaternion, (R,))


def test_gradients_at_zero_are_analytic():
    zero = torch.zeros(3, dtype=F64)
    jac = torch.autograd.functional.jacobian(rot.axis_angle_to_matrix, zero)  # (3, 3, 3): dR/d aa_k = [e_k]x
    torch.testing.assert_close(jac.permute(2, 0, 1), rot.skew(torch.eye(3, dtype=F64)))
    jac_log = torch.autograd.functional.jacobian(lambda x: rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(x)), zero)
    torch.testing.assert_close(jac_log, torch.eye(3, dtype=F64))


def test_gradcheck_other_conversions():
    gen = torch.Generator().manual_seed(8)
    q = torch.randn(3, 4, generator=gen, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(rot.quaternion_to_matrix, (q,))
    angles = torch.tensor([[0.3, -0.7, 2.0], [0.0, 0.0, 0.0], [-2.5, 1.2, 0.1]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(rot.euler_xyz_to_matrix, (angles,))
    assert torch.autograd.gradcheck(rot.rpy_to_matrix, (angles,))
    R = rot.euler_xyz_to_matrix(angles.detach()).requires_grad_()
    assert torch.autograd.gradcheck(rot.matrix_to_euler_xyz, (R,))
    d6 = torch.randn(3, 6, generator=gen, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(rot.rotation_6d_to_matrix, (d6,))
    assert torch.autograd.gradcheck(rot.matrix_to_rotation_6d, (R,))
    v = torch.randn(2, 3, generator=gen, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(rot.skew, (v,))


def test_euler_gradient_finite_at_gimbal_lock():
    angles = torch.tensor([0.3, math.pi / 2, -0.4], dtype=F64)
    R = rot.euler_xyz_to_matrix(angles).requires_grad_()
    rot.matrix_to_euler_xyz(R).sum().backward()
    assert torch.isfinite(R.grad).all()


@pytest.mark.parametrize(
    ("func", "bad", "name"),
    [
        (rot.axis_angle_to_matrix, torch.zeros(2, 4), "axis_angle"),
        (rot.matrix_to_axis_angle, torch.zeros(3, 4), "R"),
        (rot.quaternion_to_matrix, torch.zeros(3), "quaternion_xyzw"),
        (rot.matrix_to_quaternion, torch.zeros(2, 2), "R"),
        (rot.euler_xyz_to_matrix, torch.zeros(2), "euler_xyz"),
        (rot.matrix_to_euler_xyz, torch.zeros(3), "R"),
        (rot.rpy_to_matrix, torch.zeros(4), "rpy"),
        (rot.rotation_6d_to_matrix, torch.zeros(3, 3), "rotation_6d"),
        (rot.matrix_to_rotation_6d, torch.zeros(6), "R"),
        (rot.skew, torch.zeros(2), "v"),
    ],
)
def test_wrong_shape_names_argument(func, bad, name):
    with pytest.raises(ShapeError, match=rf"\b{name}\b"):
        func(bad)


def test_invalid_values_raise():
    with pytest.raises(InvalidValueError, match="axis_angle"):
        rot.axis_angle_to_matrix(torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(InvalidValueError, match="R"):
        rot.matrix_to_quaternion(torch.full((3, 3), float("inf")))
    with pytest.raises(InvalidValueError, match="quaternion_xyzw"):
        rot.quaternion_to_matrix(torch.zeros(4))
