"""Metrics with known answers: pose errors, ADD / ADD-S, AUC, Chamfer 2D/3D, hand metrics."""

import math

import pytest
import torch

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry import axis_angle_to_matrix, make_transform, transform_points
from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.metrics import (
    accuracy_curve,
    add,
    add_or_add_s,
    add_s,
    auc,
    chamfer_2d,
    chamfer_3d,
    joint_auc,
    joint_errors,
    mesh_error,
    mpjpe,
    nearest_neighbour_distances,
    object_chamfer_errors,
    rotation_error,
    summarize_errors,
    translation_error,
)

F64 = torch.float64


def _random_poses(b: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    aa = torch.randn(b, 3, generator=gen, dtype=F64)
    t = torch.randn(b, 3, generator=gen, dtype=F64) * 0.05 + torch.tensor([0.0, 0.0, 0.45], dtype=F64)
    return make_transform(axis_angle_to_matrix(aa), t)


def _box_points(a=0.02, b=0.03, c=0.045, n=6) -> torch.Tensor:
    """Surface samples of a box with half extents a, b, c (symmetric under 180 deg about each axis)."""
    s = torch.linspace(-1, 1, n, dtype=F64)
    u, v = torch.meshgrid(s, s, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    one = torch.ones_like(u)
    faces = []
    for sign in (-1.0, 1.0):
        faces += [torch.stack((sign * a * one, b * u, c * v), -1), torch.stack((a * u, sign * b * one, c * v), -1),
                  torch.stack((a * u, b * v, sign * c * one), -1)]
    return torch.cat(faces)


# ---------------------------------------------------------------------------------------------- pose errors
def test_identical_poses_give_zero():
    T = _random_poses(5)
    pts = _box_points()
    assert translation_error(T, T).abs().max() == 0
    assert rotation_error(T, T).abs().max() < 1e-7
    assert add(pts, T, T).abs().max() == 0
    assert add_s(pts, T, T).abs().max() < 1e-12


def test_translation_offset_gives_exact_add():
    T = _random_poses(4, seed=1)
    offset = torch.tensor([0.003, -0.004, 0.012], dtype=F64)  # |offset| = 0.013
    pred = T.clone()
    pred[:, :3, 3] += offset
    pts = _box_points()
    torch.testing.assert_close(translation_error(pred, T), torch.full((4,), 0.013, dtype=F64))
    torch.testing.assert_close(add(pts, pred, T), torch.full((4,), 0.013, dtype=F64))
    assert (add_s(pts, pred, T) <= add(pts, pred, T) + 1e-12).all()


@pytest.mark.parametrize("angle", [1e-7, 0.3, 2.0, math.pi - 1e-6])
def test_rotation_error_known_angles(angle):
    T = _random_poses(1, seed=2)
    axis = torch.tensor([0.6, 0.0, 0.8], dtype=F64)
    pred = T.clone()
    pred[:, :3, :3] = axis_angle_to_matrix(axis * angle) @ T[:, :3, :3]
    assert rotation_error(pred, T).item() == pytest.approx(angle, rel=1e-6, abs=1e-12)


def test_add_of_rotation_about_object_axis_is_chord_length():
    """Points on a circle of radius r about the object z axis, rotated by theta: ADD = 2 r sin(theta / 2)."""
    r, theta = 0.04, 0.7
    phi = torch.linspace(0, 2 * math.pi, 37, dtype=F64)[:-1]
    pts = torch.stack((r * torch.cos(phi), r * torch.sin(phi), torch.full_like(phi, 0.01)), -1)
    T = _random_poses(2, seed=3)
    pred = T @ make_transform(axis_angle_to_matrix(torch.tensor([0, 0, theta], dtype=F64)), torch.zeros(3, dtype=F64))
    torch.testing.assert_close(add(pts, pred, T), torch.full((2,), 2 * r * math.sin(theta / 2), dtype=F64))


def test_box_flipped_by_180_degrees_has_zero_add_s_but_positive_add():
    a, b, c = 0.02, 0.03, 0.045
    pts = _box_points(a, b, c)
    T = _random_poses(3, seed=4)
    flip = make_transform(axis_angle_to_matrix(torch.tensor([0, 0, math.pi], dtype=F64)), torch.zeros(3, dtype=F64))
    pred = T @ flip
    assert add_s(pts, pred, T).abs().max() < 1e-9
    assert add_or_add_s(pts, pred, T, symmetric=True).abs().max() < 1e-9
    expected_add = (2 * torch.linalg.vector_norm(pts[:, :2], dim=-1)).mean()  # (x, y, z) -> (-x, -y, z)
    torch.testing.assert_close(add(pts, pred, T), expected_add.expand(3))
    torch.testing.assert_close(add_or_add_s(pts, pred, T, symmetric=False), expected_add.expand(3))
    assert rotation_error(pred, T).min() > 3.0


def test_add_s_matches_a_plain_loop_and_is_chunk_independent():
    pts = _box_points(n=5)
    gt, pred = _random_poses(3, seed=5), _random_poses(3, seed=6)
    fast = add_s(pts, pred, gt)
    chunked = add_s(pts, pred, gt, max_pairs=17)
    slow = []
    for k in range(3):
        g, p = transform_points(gt[k], pts), transform_points(pred[k], pts)
        slow.append(torch.stack([min(torch.linalg.vector_norm(gi - pj) for pj in p) for gi in g]).mean())
    torch.testing.assert_close(fast, torch.stack(slow), atol=1e-12, rtol=0)
    torch.testing.assert_close(chunked, fast, atol=1e-15, rtol=0)


def test_pose_error_shape_checks():
    with pytest.raises(ShapeError):
        translation_error(torch.eye(4), torch.eye(4).expand(2, 4, 4))
    with pytest.raises(ShapeError, match="points_obj"):
        add(torch.zeros(5, 2), torch.eye(4)[None], torch.eye(4)[None])


# ---------------------------------------------------------------------------------------------- AUC
def test_auc_known_values():
    assert auc(torch.zeros(10)) == 1.0
    assert auc(torch.full((10,), 0.2)) == 0.0
    assert auc(torch.tensor([0.05])) == pytest.approx(0.5)
    assert auc(torch.tensor([0.0, 0.1])) == pytest.approx(0.5)
    assert auc(torch.tensor([0.0, math.nan])) == pytest.approx(0.5)  # a lost frame counts as a failure
    assert auc(torch.tensor([0.02]), max_threshold=0.04) == pytest.approx(0.5)
    e = torch.rand(200, generator=torch.Generator().manual_seed(7), dtype=F64) * 0.15
    assert auc(e, num_thresholds=2001) == pytest.approx(auc(e), abs=1e-3)
    with pytest.raises(InvalidValueError):
        auc(torch.zeros(0))


def test_accuracy_curve_and_summary():
    e = torch.tensor([0.01, 0.02, 0.06, math.inf])
    torch.testing.assert_close(accuracy_curve(e, torch.tensor([0.0, 0.02, 0.05, 1.0])),
                               torch.tensor([0.0, 0.5, 0.5, 0.75], dtype=F64))
    s = summarize_errors(e)
    assert s["frames_over"] == 2 and s["num_frames"] == 4 and s["mean"] == pytest.approx(0.03)
    assert s["auc"] == pytest.approx((0.9 + 0.8 + 0.4) / 4)


# ---------------------------------------------------------------------------------------------- Chamfer
def test_chamfer_known_values():
    a = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0]]], dtype=F64)
    assert chamfer_3d(a, a).item() == 0
    torch.testing.assert_close(chamfer_3d(a, a + torch.tensor([0, 0.1, 0], dtype=F64)), torch.tensor([0.1], dtype=F64))
    # asymmetric sets: a -> b distances (0, 1), b -> a distances (0); symmetric mean 0.25
    b = a[:, :1]
    torch.testing.assert_close(chamfer_3d(a, b), torch.tensor([0.25], dtype=F64))
    torch.testing.assert_close(chamfer_2d(a[..., :2], b[..., :2]), torch.tensor([0.25], dtype=F64))
    torch.testing.assert_close(nearest_neighbour_distances(a, b), torch.tensor([[0.0, 1.0]], dtype=F64))


def test_object_chamfer_errors_single_point_shift():
    """A point shifted by d parallel to the image plane at depth z: 3D = d, 2D = f d / z px = d on the plane."""
    camera = PinholeCamera(K=torch.tensor([[615.0, 0, 319.5], [0, 615.0, 239.5], [0, 0, 1]]), width=640, height=480)
    gt = make_transform(torch.eye(3, dtype=F64), torch.tensor([0.01, 0.02, 0.5], dtype=F64))[None]
    pred = gt.clone()
    pred[0, 0, 3] += 0.004
    errors = object_chamfer_errors(torch.zeros(1, 3, dtype=F64), pred, gt, camera)
    torch.testing.assert_close(errors.chamfer_3d, torch.tensor([0.004], dtype=F64))
    torch.testing.assert_close(errors.chamfer_2d_px, torch.tensor([615.0 * 0.004 / 0.5], dtype=F64))
    torch.testing.assert_close(errors.chamfer_2d_m, torch.tensor([0.004], dtype=F64))
    same = object_chamfer_errors(_box_points(), gt, gt, camera)
    assert same.chamfer_3d.item() == 0 and same.chamfer_2d_px.item() == 0


# ---------------------------------------------------------------------------------------------- hand metrics
def test_hand_metrics_with_and_without_procrustes():
    gen = torch.Generator().manual_seed(8)
    gt = torch.randn(4, 21, 3, generator=gen, dtype=F64) * 0.05
    assert mpjpe(gt, gt).abs().max() == 0 and joint_auc(gt, gt) == 1.0
    offset = torch.tensor([0.0, 0.0, 0.02], dtype=F64)
    torch.testing.assert_close(mpjpe(gt + offset, gt), torch.full((4,), 0.02, dtype=F64))
    assert joint_auc(gt + offset, gt) == pytest.approx(0.6)  # 1 - 0.02 / 0.05
    torch.testing.assert_close(joint_errors(gt + offset, gt), torch.full((4, 21), 0.02, dtype=F64))
    # a similarity transform of the truth: PA removes it entirely, plain MPJPE does not
    R = axis_angle_to_matrix(torch.tensor([0.3, -0.5, 0.2], dtype=F64))
    pred = 1.1 * gt @ R.T + torch.tensor([0.01, 0.02, -0.03], dtype=F64)
    assert mpjpe(pred, gt, procrustes=True).max() < 1e-12
    assert mpjpe(pred, gt).min() > 0.01
    assert mesh_error(pred, gt, procrustes=True).max() < 1e-12
    torch.testing.assert_close(mesh_error(gt + offset, gt), torch.full((4,), 0.02, dtype=F64))
    assert joint_auc(pred, gt, procrustes=True) == pytest.approx(1.0)
    with pytest.raises(ShapeError, match="pred_joints"):
        mpjpe(gt[:, :20], gt)


def test_pose_nees_is_three_for_errors_drawn_from_the_covariance():
    """Errors drawn from the published covariance (through the tracker's retraction) give mean NEES 3 per block;
    a covariance 4x too small gives 4x the NEES (overconfidence shows)."""
    from handypriors_core.estimation.pose_state import PoseState, retract
    from handypriors_core.metrics import pose_error_tangent, pose_nees

    g = torch.Generator().manual_seed(3)
    n = 4000
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    P = A @ A.T * 1e-5 + torch.diag(torch.tensor([1e-5] * 3 + [1e-3] * 3, dtype=torch.float64))
    L = torch.linalg.cholesky(P)
    pred = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    pred[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.1 + torch.tensor([0, 0, 0.5])
    delta = torch.randn(n, 6, generator=g, dtype=torch.float64) @ L.T
    gt = torch.stack([retract(PoseState.from_pose(pred[i]), delta[i]).pose for i in range(n)])
    assert torch.allclose(pose_error_tangent(pred, gt), delta, atol=1e-9)
    nees = pose_nees(pred, gt, P.expand(n, 6, 6))
    assert nees.shape == (n, 2)
    assert abs(float(nees[:, 0].mean()) - 3.0) < 0.25 and abs(float(nees[:, 1].mean()) - 3.0) < 0.25
    small = pose_nees(pred, gt, (P / 4).expand(n, 6, 6))
    assert torch.allclose(small, 4 * nees, rtol=1e-9)
