"""Rigid transforms: known answers, an independent SE(3) exponential (matrix_exp), gradchecks."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry import rotations as rot
from handypriors_core.geometry import transforms as tf

F64 = torch.float64


def _random_transforms(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    R = rot.axis_angle_to_matrix(torch.randn(n, 3, generator=gen, dtype=F64))
    return tf.make_transform(R, torch.randn(n, 3, generator=gen, dtype=F64))


def _twist_matrix(xi: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(*xi.shape[:-1], 4, 4, dtype=xi.dtype)
    out[..., :3, :3] = rot.skew(xi[..., 3:])
    out[..., :3, 3] = xi[..., :3]
    return out


def test_make_transform_layout_and_broadcast():
    R = rot.axis_angle_to_matrix(torch.tensor([0.1, 0.2, 0.3], dtype=F64))
    t = torch.tensor([[1.0, 2, 3], [4, 5, 6]], dtype=F64)
    T = tf.make_transform(R, t)
    assert T.shape == (2, 4, 4)
    torch.testing.assert_close(T[1, :3, :3], R)
    torch.testing.assert_close(T[:, :3, 3], t)
    torch.testing.assert_close(T[:, 3], torch.tensor([[0.0, 0, 0, 1]] * 2, dtype=F64))


def test_invert_and_compose():
    T = _random_transforms(10)
    torch.testing.assert_close(tf.invert_transform(T), torch.linalg.inv(T))
    eye = torch.eye(4, dtype=F64).expand(10, 4, 4)
    torch.testing.assert_close(tf.compose_transforms(T, tf.invert_transform(T)), eye)
    # a2b: translate by +x; b2c: rotate +90 deg about z. A point at the a-origin ends at (0, 1, 0) in c.
    a2b = tf.make_transform(torch.eye(3, dtype=F64), torch.tensor([1.0, 0, 0], dtype=F64))
    b2c = tf.make_transform(
        rot.axis_angle_to_matrix(torch.tensor([0, 0, math.pi / 2], dtype=F64)), torch.zeros(3, dtype=F64)
    )
    origin = torch.zeros(1, 3, dtype=F64)
    out = tf.transform_points(tf.compose_transforms(a2b, b2c), origin)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.0]], dtype=F64))


def test_transform_points_matches_homogeneous_product():
    T = _random_transforms(4, seed=1)
    points = torch.randn(4, 7, 3, dtype=F64)
    homog = torch.cat((points, torch.ones(4, 7, 1, dtype=F64)), -1)
    expected = (T @ homog.transpose(-1, -2)).transpose(-1, -2)[..., :3]
    torch.testing.assert_close(tf.transform_points(T, points), expected)
    # one transform (4, 4) broadcast over a batch of point sets (4, 7, 3)
    shared = tf.transform_points(T[0], points)
    assert shared.shape == (4, 7, 3)
    torch.testing.assert_close(shared[:1], expected[:1])
    torch.testing.assert_close(shared[2], points[2] @ T[0, :3, :3].T + T[0, :3, 3])


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_transform_points_array_equals_transform_points_bit_for_bit(dtype):
    """``transform_points_array`` (numpy, one CPU point set) gives ``transform_points``' values bit for bit, with and
    without the translation (numpy's own ``@`` rounds differently from torch's CPU product for these sizes)."""
    T = _random_transforms(20, seed=5).to(dtype)
    g = torch.Generator().manual_seed(5)
    differs = 0
    for k in range(20):
        points = (torch.randn(257, 3, generator=g, dtype=F64) * 0.05).to(dtype)
        expected = tf.transform_points(T[k], points)
        assert np.array_equal(tf.transform_points_array(T[k].numpy(), points.numpy()), expected.numpy())
        rotated = tf.transform_points_array(T[k].numpy(), points.numpy(), translate=False)
        assert np.array_equal(rotated, (points @ T[k, :3, :3].T).numpy())
        differs += not np.array_equal(points.numpy() @ T[k, :3, :3].numpy().T + T[k, :3, 3].numpy(),
                                      expected.numpy())
    assert differs > 0  # the per-column order matters


def test_pose_round_trip_and_scipy():
    T = _random_transforms(20, seed=2)
    position, quaternion = tf.pose_from_transform(T)
    assert (quaternion[:, 3] >= 0).all()
    np.testing.assert_allclose(
        quaternion.numpy(), Rotation.from_matrix(T[:, :3, :3].numpy()).as_quat(canonical=True), atol=1e-12
    )
    torch.testing.assert_close(tf.transform_from_pose(position, quaternion), T)


def test_se3_exp_matches_matrix_exponential():
    gen = torch.Generator().manual_seed(3)
    xi = torch.randn(30, 6, generator=gen, dtype=F64)
    xi[0, 3:] = 0.0
    xi[1, 3:] = 1e-9
    xi[2, 3:] = torch.tensor([0.0, 0.0, math.pi - 1e-6])
    xi[3, 3:] = 0.05  # inside the Taylor branch
    torch.testing.assert_close(tf.se3_exp(xi), torch.linalg.matrix_exp(_twist_matrix(xi)), atol=1e-12, rtol=0)


def test_se3_exp_known_answers():
    pure_translation = tf.se3_exp(torch.tensor([1.0, -2.0, 3.0, 0, 0, 0], dtype=F64))
    torch.testing.assert_close(pure_translation[:3, 3], torch.tensor([1.0, -2.0, 3.0], dtype=F64))
    torch.testing.assert_close(pure_translation[:3, :3], torch.eye(3, dtype=F64))
    # screw along z: rho = (0, 0, h) with phi about z translates by h along the axis
    screw = tf.se3_exp(torch.tensor([0.0, 0, 0.5, 0, 0, 1.0], dtype=F64))
    torch.testing.assert_close(screw[:3, 3], torch.tensor([0.0, 0, 0.5], dtype=F64))


@pytest.mark.parametrize("angle", [0.0, 1e-10, 1e-4, 0.099, 0.101, 1.0, math.pi - 1e-6])
def test_se3_log_inverts_exp(angle):
    axis = torch.nn.functional.normalize(torch.tensor([0.2, -0.9, 0.4], dtype=F64), dim=0)
    xi = torch.cat((torch.tensor([0.3, -0.1, 0.7], dtype=F64), angle * axis))
    torch.testing.assert_close(tf.se3_log(tf.se3_exp(xi)), xi, atol=1e-9, rtol=0)
    T = _random_transforms(8, seed=4)
    torch.testing.assert_close(tf.se3_exp(tf.se3_log(T)), T)


@pytest.mark.parametrize("angle", [0.0, 1e-8, 0.05, 0.2, 2.0, math.pi - 1e-3])
def test_gradcheck_se3(angle):
    axis = torch.nn.functional.normalize(torch.tensor([0.6, 0.3, -0.7], dtype=F64), dim=0)
    xi = torch.cat((torch.tensor([0.3, -0.1, 0.7], dtype=F64), angle * axis)).requires_grad_()
    assert torch.autograd.gradcheck(tf.se3_exp, (xi,))
    assert torch.autograd.gradcheck(lambda x: tf.se3_log(tf.se3_exp(x)), (xi,))
    T = tf.se3_exp(xi.detach()).requires_grad_()
    assert torch.autograd.gradcheck(tf.se3_log, (T,))


def test_gradcheck_transform_helpers():
    T = _random_transforms(2, seed=5).requires_grad_()
    points = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(tf.transform_points, (T, points))
    assert torch.autograd.gradcheck(tf.invert_transform, (T,))
    assert torch.autograd.gradcheck(tf.compose_transforms, (T, T.detach().flip(0).requires_grad_()))
    position = torch.randn(2, 3, dtype=F64, requires_grad=True)
    quaternion = torch.randn(2, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(tf.transform_from_pose, (position, quaternion))
    assert torch.autograd.gradcheck(tf.pose_from_transform, (T,))


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 0.7, 3.0, math.pi - 1e-6, math.pi])
def test_rotation_angle_between_known_angle(angle):
    gen = torch.Generator().manual_seed(6)
    Ra = rot.axis_angle_to_matrix(torch.randn(5, 3, generator=gen, dtype=F64))
    axes = torch.nn.functional.normalize(torch.randn(5, 3, generator=gen, dtype=F64), dim=-1)
    Rb = Ra @ rot.axis_angle_to_matrix(angle * axes)
    got = tf.rotation_angle_between(Ra, Rb)
    torch.testing.assert_close(got, torch.full((5,), angle, dtype=F64), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(tf.rotation_angle_between(Rb, Ra), got)


def test_rotation_angle_between_gradients():
    gen = torch.Generator().manual_seed(7)
    Ra = rot.axis_angle_to_matrix(torch.randn(3, 3, generator=gen, dtype=F64)).requires_grad_()
    Rb = rot.axis_angle_to_matrix(torch.randn(3, 3, generator=gen, dtype=F64)).requires_grad_()
    assert torch.autograd.gradcheck(tf.rotation_angle_between, (Ra, Rb))
    same = Ra.detach().clone().requires_grad_()
    tf.rotation_angle_between(same, Ra.detach()).sum().backward()
    assert torch.isfinite(same.grad).all()
    # d angle / d(small rotation angle) = 1 near (not at) zero
    small = torch.tensor(1e-6, dtype=F64, requires_grad=True)
    axis = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    tf.rotation_angle_between(torch.eye(3, dtype=F64), rot.axis_angle_to_matrix(small * axis)).backward()
    torch.testing.assert_close(small.grad, torch.tensor(1.0, dtype=F64))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: tf.make_transform(torch.eye(3), torch.zeros(4)), "t"),
        (lambda: tf.make_transform(torch.eye(4), torch.zeros(3)), "R"),
        (lambda: tf.invert_transform(torch.eye(3)), "T"),
        (lambda: tf.compose_transforms(torch.eye(4), torch.eye(3)), "b2c"),
        (lambda: tf.transform_points(torch.eye(4), torch.zeros(5, 4)), "points"),
        (lambda: tf.transform_from_pose(torch.zeros(3), torch.zeros(3)), "quaternion_xyzw"),
        (lambda: tf.se3_exp(torch.zeros(3)), "xi"),
        (lambda: tf.se3_log(torch.eye(3)), "T"),
        (lambda: tf.rotation_angle_between(torch.eye(3), torch.eye(4)), "Rb"),
    ],
)
def test_wrong_shape_names_argument(call, name):
    with pytest.raises(ShapeError, match=rf"\b{name}\b"):
        call()


def test_non_finite_raises():
    with pytest.raises(InvalidValueError, match="xi"):
        tf.se3_exp(torch.tensor([0.0, 0, 0, float("nan"), 0, 0]))
    with pytest.raises(InvalidValueError, match="position"):
        tf.transform_from_pose(torch.tensor([float("inf"), 0, 0]), torch.tensor([0.0, 0, 0, 1]))
