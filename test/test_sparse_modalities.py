"""The (r, J, w) modalities: sparse depth (point-to-plane), contact pseudo-observations, the iterated update.

Scene: the shipped Allegro hand seen from its side by a 160 x 120 camera (f = 150 px), a 4 x 6 x 9 cm box 0.55 m
away behind its straight fingers, which hide 40 % of it; rendered by the renderer's z-buffer mode (an
independent path). Jacobians are checked
against float64 central differences of the same residual functions over the filter's retraction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handypriors_core.estimation.contact_observation import ContactModality
from handypriors_core.estimation.ekf import EKFSettings, ErrorStateEKF
from handypriors_core.estimation.hand_occlusion import HandOcclusion
from handypriors_core.estimation.iterated_update import CovarianceOptions, UpdateDiagnostics, iterated_update
from handypriors_core.estimation.modalities import TemporalContext
from handypriors_core.estimation.observation import prepare_observation
from handypriors_core.estimation.pose_state import PoseState, retract
from handypriors_core.estimation.residuals import ResidualBlock, robust_loss, robust_weights
from handypriors_core.estimation.scene import OBJECT, HandObjectScene
from handypriors_core.estimation.settings import (
    DepthSettings,
    FilterSettings,
    ROISettings,
    SparseDepthSettings,
    TrackerSettings,
)
from handypriors_core.estimation.sparse_depth import (
    SparseDepthModality,
    point_to_plane_jacobian,
    point_to_plane_residuals,
)
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform, rotation_angle_between
from handypriors_core.io.frame import Frame
from handypriors_core.models import RigidObject, URDFHand, allegro_urdf

_F64 = torch.float64


def _numeric_jacobian(fn, pose: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(k, 6)`` central differences of ``fn(pose (4, 4)) -> (k,)`` over the tangent (float64)."""
    state = PoseState.from_pose(pose)
    cols = []
    for i in range(6):
        d = torch.zeros(6, dtype=_F64)
        d[i] = eps
        cols.append((fn(retract(state, d).pose) - fn(retract(state, -d).pose)) / (2 * eps))
    return torch.stack(cols, -1)


def _random_pose(g: torch.Generator) -> torch.Tensor:
    axis = torch.randn(3, generator=g, dtype=_F64)
    return make_transform(axis_angle_to_matrix(axis), torch.randn(3, generator=g, dtype=_F64) * 0.05
                          + torch.tensor([0.0, 0.0, 0.45], dtype=_F64))


@pytest.fixture(scope="module")
def scene_data():
    hand = URDFHand.from_urdf(allegro_urdf())
    box = RigidObject.box([0.04, 0.06, 0.09])
    camera = PinholeCamera.from_camera_info([150.0, 0, 79.5, 0, 150.0, 59.5, 0, 0, 1], [], 160, 120)
    R = axis_angle_to_matrix(torch.tensor([0.0, -math.pi / 2, 0.0])) @ axis_angle_to_matrix(
        torch.tensor([0.0, 0.0, math.pi / 2]))
    hand2camera = make_transform(R, torch.tensor([0.0, 0.04, 0.47]))
    # turned (three faces in view, so depth constrains every direction), behind the fingers
    object2camera = make_transform(axis_angle_to_matrix(torch.tensor([0.4, -0.5, 0.2])),
                                   torch.tensor([-0.08, 0.035, 0.55]))
    q = hand.default_joint_angles().clone()
    scene = HandObjectScene(hand, box)
    verts, faces, inst = scene.scene_mesh(object2camera[None].float(), scene.pose_hand(q, hand2camera))
    out = scene.renderer.hard(verts, faces, camera, face_instance=inst)
    depth = torch.where(out.mask[0], out.zbuf[0], torch.full_like(out.zbuf[0], float("nan")))
    rgb = torch.full((120, 160, 3), 120, dtype=torch.uint8)
    alone = scene.renderer.hard(scene.object_verts(object2camera[None]), scene.object_faces, camera)
    covered = 1 - float((out.instance[0] == OBJECT).sum()) / float(alone.mask[0].sum())
    assert 0.35 < covered < 0.6, covered
    frame = Frame(index=0, stamp=0.0, rgb=rgb, camera=camera, joint_angles=q, hand2camera=hand2camera, depth=depth,
                  object_mask=(out.instance[0] == OBJECT).float())
    obs = prepare_observation(frame, scene, object2camera, ROISettings(size=64), DepthSettings(), depth_points=False)
    return scene, frame, obs, object2camera.double(), out


def _moved(pose: torch.Tensor, dt, rot) -> torch.Tensor:
    return retract(PoseState.from_pose(pose), torch.tensor([*dt, *rot], dtype=_F64)).pose


def test_point_to_plane_jacobian_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    points = torch.randn(40, 3, generator=g, dtype=_F64) * 0.05
    normals = torch.nn.functional.normalize(torch.randn(40, 3, generator=g, dtype=_F64), dim=-1)
    targets = torch.randn(40, 3, generator=g, dtype=_F64) * 0.05 + torch.tensor([0, 0, 0.45], dtype=_F64)
    for _ in range(5):
        pose = _random_pose(g)
        J = point_to_plane_jacobian(pose, points, normals, targets)
        Jn = _numeric_jacobian(lambda P: point_to_plane_residuals(P[None], points, normals, targets)[0], pose)
        assert torch.allclose(J, Jn, atol=1e-8, rtol=1e-6), (J - Jn).abs().max()


def test_sparse_depth_linearization_matches_finite_differences_near_the_hand(scene_data):
    scene, _frame, obs, T_o, _out = scene_data
    modality = SparseDepthModality(scene, SparseDepthSettings(max_points=400))
    occlusion = HandOcclusion(scene, obs)
    pose = _moved(T_o, (0.003, -0.002, 0.004), (0.03, -0.02, 0.01))
    assert modality.begin(obs, pose, occlusion)
    block = modality.linearize(pose, 0)
    indices, targets = modality.associate(pose, SparseDepthSettings().considered_distances[0])
    assert block.count == indices.numel() >= 30
    Jn = _numeric_jacobian(lambda P: modality.residual(P[None], indices, targets)[0], pose)
    assert torch.allclose(block.jacobian, Jn, atol=1e-8, rtol=1e-6)
    # some of the points lie right next to the hand's footprint (the fingers cross the box in this view)
    p = modality.points_obj[indices] @ pose[:3, :3].T + pose[:3, 3]
    uv = obs.roi_camera.project(p.float()[None])[0].round().long()
    hand = torch.isfinite(occlusion.depth)
    near = torch.nn.functional.max_pool2d(hand.float()[None, None], 5, stride=1, padding=2)[0, 0] > 0
    S = hand.shape[0]
    inside = (uv >= 0).all(-1) & (uv < S).all(-1)
    assert int(near[uv[inside, 1], uv[inside, 0]].sum()) >= 3


def test_sparse_depth_never_associates_hand_pixels(scene_data):
    scene, frame, obs, T_o, out = scene_data
    modality = SparseDepthModality(scene, SparseDepthSettings(max_points=2000, considered_distances=[0.05]))
    assert modality.begin(obs, T_o, HandOcclusion(scene, obs))
    _indices, targets = modality.associate(T_o, 0.05)
    uv = frame.camera.project(targets.float()[None])[0].round().long()
    instance = out.instance[0][uv[:, 1], uv[:, 0]]
    assert bool((instance == OBJECT).all())
    # without the hand's z-buffer, the same association reads finger pixels (so the test can fail)
    assert modality.begin(obs, T_o, None)
    _indices, targets = modality.associate(T_o, 0.05)
    uv = frame.camera.project(targets.float()[None])[0].round().long()
    assert int((out.instance[0][uv[:, 1], uv[:, 0]] != OBJECT).sum()) > 0
    # at the true pose the residuals vanish (exact depth) except at the box's edges (pixel rounding)
    assert modality.begin(obs, T_o, HandOcclusion(scene, obs))
    r = modality.linearize(T_o, 2).residual.abs()
    assert float((r < 1e-4).double().mean()) > 0.9 and float(r.median()) < 1e-6


def test_contact_modality_jacobian_matches_finite_differences(scene_data):
    scene, _frame, obs, T_o, _out = scene_data
    settings = FilterSettings(contact_distance=0.05)
    modality = ContactModality(scene, settings)
    tips = torch.ones(obs.hand.fingertip_centres.shape[1], dtype=torch.bool)
    ctx = TemporalContext(tips_in_contact=tips)
    # move the box onto the fingers so that hand points penetrate it (the one-sided term is active)
    pose = _moved(T_o, (0.0, 0.0, -0.06), (0.02, 0.01, -0.02))
    assert modality.begin(obs, ctx, pose)
    block = modality.linearize(pose, 0)
    with torch.no_grad():
        Jn = _numeric_jacobian(lambda P: modality.residual(P[None].double())[0], pose, eps=1e-7)
    penetrating = block.weight[tips.numel():] > 0
    assert int(penetrating.sum()) >= 3
    # away from the faces' edges (where the closest feature switches) the derivative is the analytic one
    ok = (block.jacobian - Jn).abs().max(-1).values < 1e-6
    assert float(ok.double().mean()) > 0.95, (block.jacobian - Jn).abs().max()
    assert bool(ok[:tips.numel()].all())


def test_contact_modality_tighter_fingertip_noise_keeps_the_penetration_information(scene_data):
    """``tip_std`` (the filter's ``carried_fingertip_std`` while the contacts carry the object): the fingertips weigh
    with it, the non-penetration residuals keep their ``contact_std`` information (``w / std^2``)."""
    scene, _frame, obs, T_o, _out = scene_data
    modality = ContactModality(scene, FilterSettings(contact_distance=0.05, contact_std=0.015))
    tips = torch.ones(obs.hand.fingertip_centres.shape[1], dtype=torch.bool)
    ctx = TemporalContext(tips_in_contact=tips)
    pose = _moved(T_o, (0.0, 0.0, -0.06), (0.02, 0.01, -0.02))
    assert modality.begin(obs, ctx, pose)
    plain = modality.linearize(pose, 0)
    assert modality.begin(obs, ctx, pose, tip_std=0.002)
    tight = modality.linearize(pose, 0)
    assert plain.std == 0.015 and tight.std == 0.002
    torch.testing.assert_close(tight.residual, plain.residual)
    torch.testing.assert_close(tight.jacobian, plain.jacobian)
    k = tips.numel()
    assert float(plain.weight[:k].sum()) > 0 and int((plain.weight[k:] > 0).sum()) >= 3
    torch.testing.assert_close(tight.weight[:k], plain.weight[:k])  # tips: 56x the information
    torch.testing.assert_close(tight.weight[k:] / 0.002 ** 2, plain.weight[k:] / 0.015 ** 2)
    assert modality.begin(obs, ctx, pose, tip_std=0.03)  # never looser than contact_std for the others
    loose = modality.linearize(pose, 0)
    assert loose.std == 0.015 and torch.equal(loose.weight, plain.weight)


def test_robust_weights_are_the_irls_weights_of_the_loss():
    r = torch.linspace(-0.05, 0.05, 41, dtype=_F64, requires_grad=True)
    c = 0.01
    for kind in ("huber", "tukey", "cauchy", "geman_mcclure", "none"):
        (grad,) = torch.autograd.grad(robust_loss(r, c, kind).sum(), r)
        w = robust_weights(r.detach(), c, kind)
        nz = r.detach().abs() > 1e-9
        assert torch.allclose(grad[nz] * c * c / r.detach()[nz], w[nz], atol=1e-9), kind


def test_robust_weights_of_numpy_arrays_equal_those_of_tensors():
    r = torch.linspace(-0.05, 0.05, 41, dtype=_F64)
    for kind in ("huber", "tukey", "cauchy", "geman_mcclure", "charbonnier", "none"):
        w = robust_weights(r, 0.01, kind)
        assert isinstance(w, torch.Tensor) and float(w.min()) >= 0 and float(w.max()) <= 1
        torch.testing.assert_close(torch.from_numpy(robust_weights(r.numpy(), 0.01, kind)), w, atol=0, rtol=0)
    assert float(robust_weights(r, 0.01, "tukey")[0]) == 0.0 and float(robust_weights(r, 0.01, "huber")[0]) == 0.2


@pytest.mark.parametrize("shape", ["box", "cylinder"])
def test_sparse_depth_numpy_path_equals_the_torch_path(scene_data, shape):
    """On the CPU the modality chooses its visible points in numpy and linearises by its compiled passes
    (``sparse_depth_kernel``); the torch path (other devices)
    gives the same points, association, residuals, Jacobians (also with the unseen motions of a cylinder removed),
    weights and correlation."""
    import dataclasses

    scene, _frame, obs, T_o, _out = scene_data
    if shape == "cylinder":
        scene = HandObjectScene(scene.hand, RigidObject.cylinder(0.03, 0.09))
    modality = SparseDepthModality(scene, SparseDepthSettings(max_points=400))
    assert (modality.unseen.shape[1] > 0) == (shape == "cylinder")
    occlusion = HandOcclusion(scene, obs)
    choosers = {}
    for max_points in (400, 100_000):  # the even subsample, and every visible point
        for use_arrays in (True, False):
            choosers[max_points, use_arrays] = SparseDepthModality(scene, SparseDepthSettings(max_points=max_points))
            choosers[max_points, use_arrays].use_arrays = use_arrays
    compared = 0
    for k, (dt, rot) in enumerate([((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), ((0.003, -0.002, 0.004), (0.03, -0.02, 0.01)),
                                   ((-0.006, 0.004, -0.01), (-0.05, 0.04, 0.02))]):
        pose = _moved(T_o, dt, rot)
        assert modality.begin(obs, pose, occlusion) and modality._frame.arrays is not None
        # the visible points (z-buffer of the samples, hand cover) chosen in numpy are the torch path's
        for max_points in (400, 100_000):
            fast, reference = choosers[max_points, True], choosers[max_points, False]
            assert fast.begin(obs, pose, occlusion) and reference.begin(obs, pose, occlusion)
            assert reference._frame.arrays is None
            assert torch.equal(fast._frame.indices, reference._frame.indices)
        for iteration in range(3):
            fast = modality.linearize(pose, iteration)
            frame = modality._frame
            modality._frame = dataclasses.replace(frame, arrays=None)
            reference = modality.linearize(pose, iteration)
            modality._frame = frame
            assert (fast is None) == (reference is None)
            if reference is None:
                continue
            compared += 1
            for a, b in ((fast.residual, reference.residual), (fast.jacobian, reference.jacobian),
                         (fast.weight, reference.weight)):
                torch.testing.assert_close(a, b, atol=1e-15, rtol=1e-12)
            assert (fast.std, fast.noise_floor, fast.correlation) == \
                (reference.std, reference.noise_floor, reference.correlation)
            # the iterated update's one-pass normal equations: those of the torch path's block
            fused = modality.normal_equations(pose.numpy(), iteration)
            Lam, g = reference.normal_equations()
            Lf, gf = fused.scaled()
            torch.testing.assert_close(torch.from_numpy(Lf), Lam, atol=1e-9 * float(Lam.abs().max()), rtol=1e-12)
            torch.testing.assert_close(torch.from_numpy(gf), g, atol=1e-9 * float(g.abs().max()), rtol=1e-12)
            assert fused.noise_std() == pytest.approx(reference.noise_std(), rel=1e-12)
            assert (fused.std, fused.correlation, fused.count) == (reference.std, reference.correlation,
                                                                   reference.count)
    assert compared >= 6


@pytest.mark.parametrize("kind", ["huber", "tukey", "cauchy", "geman_mcclure", "none"])
def test_compiled_depth_linearization_equals_the_torch_path_for_every_robust_function(scene_data, kind):
    """The compiled passes weigh every kept point with ``robust_weights`` of its residual, for each robust function
    the settings offer, and their sums are the normal equations of the torch path's block."""
    import dataclasses

    scene, _frame, obs, T_o, _out = scene_data
    modality = SparseDepthModality(scene, SparseDepthSettings(robust=kind, robust_scales=[0.002, 0.002, 0.002]))
    pose = _moved(T_o, (0.004, -0.002, 0.003), (0.03, 0.02, -0.02))
    assert modality.begin(obs, pose, HandOcclusion(scene, obs))
    fused = modality.normal_equations(pose.numpy(), 0)
    frame = modality._frame
    modality._frame = dataclasses.replace(frame, arrays=None)
    reference = modality.linearize(pose, 0)
    modality._frame = frame
    assert fused is not None and reference is not None and fused.count == reference.count >= 20
    scale = modality.settings.robust_scales[0]
    np.testing.assert_array_equal(fused.weight, robust_weights(fused.residual, scale, kind))
    if kind != "none":
        assert fused.weight.min() < 0.99  # the residuals reach where the weights fall
    np.testing.assert_allclose(fused.weight, reference.weight.numpy(), rtol=1e-12, atol=1e-15)
    Lam, g = reference.normal_equations()
    Lf, gf = fused.scaled()
    np.testing.assert_allclose(Lf, Lam.numpy(), rtol=0, atol=1e-10 * float(Lam.abs().max()))
    np.testing.assert_allclose(gf, g.numpy(), rtol=0, atol=1e-10 * float(g.abs().max()))
    assert fused.weight_sum == pytest.approx(float(reference.weight.sum()), rel=1e-12)
    assert fused.square_sum == pytest.approx(float((reference.weight * reference.residual ** 2).sum()), rel=1e-12)


def test_hand_pixel_tables_equal_the_hand_depth_lookup(scene_data):
    """The sparse depth's per-frame tables of the hand z-buffer read what ``HandDepthLookup.at_pixels`` reads at
    every integer pixel of the full image, the border pixels -1 and max(W, H) included."""
    scene, _frame, obs, _T_o, _out = scene_data
    lookup = HandOcclusion(scene, obs).lookup()
    size = max(obs.camera.width, obs.camera.height)
    columns, rows, depth = lookup.pixel_tables(size)
    u, v = torch.meshgrid(torch.arange(-1, size + 1, dtype=_F64), torch.arange(-1, size + 1, dtype=_F64),
                          indexing="xy")
    uv = torch.stack((u.reshape(-1), v.reshape(-1)), -1).numpy()
    reference = lookup.at_pixels(uv)
    tabulated = depth[rows[uv[:, 1].astype(int)] + columns[uv[:, 0].astype(int)]]
    assert (reference == tabulated).all()
    finite = int(np.isfinite(reference).sum())
    assert 0 < finite < reference.size  # the hand covers part of the image


def test_iterated_update_of_one_pass_normal_equations_equals_the_torch_path(scene_data):
    """The iterated update with the sparse depth's compiled normal equations (CPU) and with its torch
    blocks (the path of other devices), beside a modality carried to first order: the same state and covariance."""
    scene, _frame, obs, T_o, _out = scene_data
    g = torch.Generator().manual_seed(4)
    start = _moved(T_o, (0.004, -0.003, 0.005), (0.04, -0.03, 0.02))
    J = torch.randn(8, 6, generator=g, dtype=_F64)
    b = torch.randn(8, generator=g, dtype=_F64) * 1e-3
    prior = PoseState.from_pose(start)
    P = torch.diag(torch.tensor([1e-4] * 3 + [3e-3] * 3, dtype=_F64))
    out = []
    for use_arrays in (True, False):
        modality = SparseDepthModality(scene, SparseDepthSettings())
        modality.use_arrays = use_arrays
        assert modality.begin(obs, start, HandOcclusion(scene, obs))
        assert (modality._frame.arrays is not None) == use_arrays
        frozen = _Linear("frozen", prior, J, b, 5e-3)
        frozen.relinearize = False
        ekf = ErrorStateEKF(prior, P)
        diag = UpdateDiagnostics()
        res = iterated_update(ekf, [modality, frozen], 3, 0.9999, options=CovarianceOptions(
            max_iterations=10, estimate_noise=True, keep_prior_unconverged=True), diagnostics=diag)
        assert res["sparse_depth"].accepted and res["frozen"].accepted
        out.append((ekf.pose, ekf.covariance, diag))
    (pose_a, cov_a, diag_a), (pose_b, cov_b, diag_b) = out
    assert diag_a.iterations == diag_b.iterations >= 3 and diag_a.converged
    torch.testing.assert_close(pose_a, pose_b, atol=1e-12, rtol=0)
    torch.testing.assert_close(cov_a, cov_b, atol=1e-9 * float(cov_b.abs().max()), rtol=0)
    assert diag_a.noise_std["sparse_depth"] == pytest.approx(diag_b.noise_std["sparse_depth"], rel=1e-9)
    t_err = float((pose_a[:3, 3] - T_o[:3, 3]).norm())
    assert t_err < 2e-3  # it moved towards the truth (the first-order modality pulls elsewhere a little)


def test_quality_score_in_numpy_equals_the_torch_path(scene_data):
    """The tracker's quality score on the CPU (numpy) equals its torch path: with depth and mask, depth only, at
    the true pose, a moved one and one outside the image."""
    import dataclasses

    scene, frame, _obs, T_o, _out = scene_data
    tracker = ObjectTracker(scene.hand, scene.object, TrackerSettings(mode="filter"))
    obs = prepare_observation(frame, scene, T_o.float(), ROISettings(size=64), DepthSettings(), depth_points=False)
    no_mask = dataclasses.replace(obs, mask_full=None)
    scores = []
    for pose in (T_o, _moved(T_o, (0.01, -0.005, 0.004), (0.1, 0.0, -0.05)), _moved(T_o, (2.0, 0.0, 0.0), (0, 0, 0))):
        for o in (obs, no_mask):
            fast, reference = tracker.quality(o, pose), tracker.quality(o, pose, arrays=False)
            assert fast == pytest.approx(reference, abs=1e-6)
            scores.append(fast)
    assert scores[0] > 0.9 and scores[-1] == 0.0 and min(scores[2:4]) < scores[0]


class _Linear:
    """A linear modality ``r = J (x [-] x0) + b`` for the update tests."""

    relinearize = True

    def __init__(self, name, x0, J, b, std):
        self.name, self.x0, self.J, self.b, self.std = name, x0, J, b, std

    def linearize(self, pose, iteration):
        from handypriors_core.estimation.pose_state import local_difference

        d = local_difference(PoseState.from_pose(pose), self.x0)
        return ResidualBlock(self.name, self.J @ d + self.b, self.J, torch.ones(self.b.shape[0], dtype=_F64),
                             self.std)


def test_iterated_update_equals_the_kalman_update_for_a_linear_observation():
    g = torch.Generator().manual_seed(1)
    x0 = PoseState.from_pose(_random_pose(g))
    A = torch.randn(6, 6, generator=g, dtype=_F64)
    P = A @ A.T * 1e-4 + torch.eye(6, dtype=_F64) * 1e-5
    J = torch.randn(10, 6, generator=g, dtype=_F64)
    b = torch.randn(10, generator=g, dtype=_F64) * 1e-3
    std = 2e-3
    reference = ErrorStateEKF(x0, P, EKFSettings(covariance_reset=True))
    reference.update(-b, lambda s: torch.zeros(10, dtype=_F64), torch.full((10,), std ** 2, dtype=_F64), jacobian=J,
                     gate_probability=None)
    ekf = ErrorStateEKF(x0, P, EKFSettings(covariance_reset=True))
    out = iterated_update(ekf, [_Linear("lin", x0, J, b, std)], 1, None)
    assert out["lin"].accepted
    assert torch.allclose(ekf.pose, reference.pose, atol=1e-12)
    assert torch.allclose(ekf.covariance, reference.covariance, rtol=1e-8, atol=1e-14)


def test_iterated_update_gates_an_outlier_modality_and_keeps_the_rest():
    g = torch.Generator().manual_seed(2)
    x0 = PoseState.from_pose(_random_pose(g))
    P = torch.eye(6, dtype=_F64) * 1e-4
    J = torch.randn(10, 6, generator=g, dtype=_F64)
    good = _Linear("good", x0, J, torch.randn(10, generator=g, dtype=_F64) * 1e-3, 2e-3)
    bad = _Linear("bad", x0, J, torch.full((10,), 0.5, dtype=_F64), 2e-3)  # 0.5 m off: 250 sigma
    ekf = ErrorStateEKF(x0, P)
    out = iterated_update(ekf, [good, bad], 3, 0.9999)
    assert out["bad"].status == "gated" and out["good"].accepted
    assert float((ekf.pose[:3, 3] - x0.pose[:3, 3]).norm()) < 0.01


def test_filter_with_sparse_depth_recovers_a_perturbed_pose(scene_data):
    scene, frame, _obs, T_o, _out = scene_data
    settings = TrackerSettings(mode="filter")
    settings.roi.size = 64
    settings.filter.observations = ["sparse_depth"]
    settings.filter.motion_model = "constant_pose"
    tracker = ObjectTracker(scene.hand, scene.object, settings)
    start = _moved(T_o, (0.01, -0.006, 0.008), (0.0, 0.06, -0.05))
    tracker.initialize(start)
    for _ in range(3):
        est = tracker.track(frame)
    assert est.updates["sparse_depth"] == "accepted"
    t_err = float((est.object2camera[:3, 3] - T_o[:3, 3]).norm())
    r_err = float(rotation_angle_between(est.object2camera[None, :3, :3], T_o[None, :3, :3])[0])
    assert t_err < 1e-3 and math.degrees(r_err) < 0.5, (t_err, math.degrees(r_err))


def test_filter_and_refiner_use_one_depth_residual_function(scene_data, monkeypatch):
    """The EKF's linearisation (the iterated update's one-pass normal equations on the CPU and the torch path of
    other devices) and the refiner's depth loss all evaluate the plane distance ``plane_distances``."""
    import dataclasses

    from handypriors_core.estimation import sparse_depth
    from handypriors_core.estimation.refiner import PoseRefiner
    from handypriors_core.estimation.settings import RefineSettings
    from handypriors_core.priors.losses import LossWeights

    scene, _frame, obs, T_o, _out = scene_data
    pose = _moved(T_o, (0.002, -0.001, 0.001), (0.01, 0.0, -0.01))
    modality = SparseDepthModality(scene, SparseDepthSettings())
    refiner = PoseRefiner(scene, RefineSettings(terms=["depth"]), LossWeights(lambda_depth=1.0), DepthSettings())

    def evaluate():
        assert modality.begin(obs, pose, HandOcclusion(scene, obs))
        fused = modality.normal_equations(pose.numpy(), 0)
        block = modality.linearize(pose, 0)
        modality._frame = dataclasses.replace(modality._frame, arrays=None)
        reference = modality.linearize(pose, 0)
        assoc = refiner.depth_association(obs, pose.float())
        loss = refiner.losses(pose.float()[None], obs, TemporalContext(), 1.0, assoc)["depth"]
        return torch.from_numpy(fused.residual), block.residual, reference.residual, float(loss[0])

    *r0, loss0 = evaluate()
    original = sparse_depth.plane_distances
    monkeypatch.setattr(sparse_depth, "plane_distances", lambda *a: original(*a) + 0.003)
    *r1, loss1 = evaluate()
    for a, b in zip(r1, r0):
        assert torch.allclose(a, b + 0.003, atol=1e-9)
    assert loss1 > loss0 + 0.1  # Geman-McClure with c = 4 mm: a 3 mm shift raises the mean clearly


def _region(scene, tmp_path):
    from handypriors_core.estimation.region import RegionModality
    from handypriors_core.estimation.settings import RegionSettings

    # lines scaled to the small test image (the box is ~30 px wide): 9 segments of 2 px, then of 1 px
    return RegionModality(scene, RegionSettings(view_subdivisions=1, cache_dir=str(tmp_path), scales=[2.0, 1.0],
                                                standard_deviations=[3.0, 1.5], function_length=4,
                                                distribution_length=6, learn_length=6.0))


def test_region_jacobian_matches_finite_differences_near_the_silhouette(scene_data, tmp_path):
    scene, _frame, obs, T_o, _out = scene_data
    region = _region(scene, tmp_path)
    g = torch.Generator().manual_seed(4)
    cam = obs.camera
    f = (float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy))
    for _ in range(4):
        d = torch.randn(6, generator=g, dtype=_F64) * torch.tensor([0.004] * 3 + [0.05] * 3, dtype=_F64)
        pose = retract(PoseState.from_pose(T_o), d).pose
        lines = region.lines(pose, obs)
        assert lines.centres.shape[0] >= 20
        mu = torch.randn(lines.centres.shape[0], generator=g, dtype=_F64)
        # the contour points themselves lie on the silhouette edge: the residual at the pose is -mu exactly
        r0 = region.residual(pose[None], lines, mu, *f)[0]
        assert torch.allclose(r0, -mu, atol=1e-9)
        J = region.jacobian(pose, lines, *f[:2])  # the modality's own closed form
        Jn = _numeric_jacobian(lambda P, lines=lines, mu=mu: region.residual(P[None], lines, mu, *f)[0], pose)
        assert torch.allclose(J, Jn, atol=1e-5, rtol=1e-6), (J - Jn).abs().max()


def _coloured_frame(scene_data) -> Frame:
    """The scene's frame with colours: a red box, a blue hand, a grey background."""
    import dataclasses

    _scene, frame, _obs, _T_o, out = scene_data
    rgb = torch.full((120, 160, 3), 120, dtype=torch.uint8)
    rgb[out.instance[0] == OBJECT] = torch.tensor([200, 40, 40], dtype=torch.uint8)
    rgb[out.mask[0] & (out.instance[0] != OBJECT)] = torch.tensor([30, 40, 160], dtype=torch.uint8)
    return dataclasses.replace(frame, rgb=rgb)


def _coloured_observation(scene_data):
    import dataclasses

    scene, _frame, _obs, T_o, _out = scene_data
    return prepare_observation(dataclasses.replace(_coloured_frame(scene_data), depth=None), scene, T_o.float(),
                               ROISettings(size=64), DepthSettings(), depth_points=False)


def test_filter_adds_the_region_while_settling_after_each_initialisation(scene_data, tmp_path):
    scene, _frame, _obs, T_o, _out = scene_data
    settings = TrackerSettings(mode="filter")
    settings.roi.size = 64
    settings.filter.observations = ["sparse_depth"]
    settings.filter.settle_frames = 2
    settings.region = _region(scene, tmp_path).settings
    tracker = ObjectTracker(scene.hand, scene.object, settings)
    frame = _coloured_frame(scene_data)
    for _ in range(2):  # the second initialisation settles again
        tracker.initialize(_moved(T_o, (0.004, -0.003, 0.003), (0.0, 0.03, -0.02)))
        updates = [tracker.track(frame).updates for _ in range(3)]
        assert [u.get("region") for u in updates] == ["accepted", "accepted", None], updates
        assert all(u["sparse_depth"] == "accepted" for u in updates)


def test_region_modality_drops_lines_crossing_a_finger_and_caches_its_model(scene_data, tmp_path):
    scene, _frame, _obs, T_o, out = scene_data
    obs = _coloured_observation(scene_data)
    region = _region(scene, tmp_path)
    assert len(list(tmp_path.glob("viewpoint_*.npz"))) == 1
    occlusion = HandOcclusion(scene, obs)
    assert region.begin(obs, T_o, occlusion)
    finest = len(region.settings.scales) - 1
    lines = region.lines(T_o, obs, region.half_length(finest))
    offsets = region.segment_offsets(finest).reshape(-1)
    pos = lines.centres[:, None] + offsets[None, :, None] * lines.normals[:, None]
    crossed = region._hand_crossed(lines, pos, occlusion)
    # the fingers hide ~40 % of the box: a good part of its contour lines cross them, and those are dropped
    assert 0.15 < float(crossed.double().mean()) < 0.85, crossed.double().mean()
    mu, _var, keep = region.contour_posterior(lines, obs, finest, occlusion)
    assert not bool((keep & crossed).any())
    assert int(keep.sum()) >= 10
    # at the true pose the kept lines find the contour where the model puts it (within a pixel)
    assert float(mu[keep].abs().median()) <= 1.0, mu[keep]
    # a kept line never runs over a hand pixel of the (independent) z-buffer render
    px = pos[keep].round().long().reshape(-1, 2)
    inside = (px[:, 0] >= 0) & (px[:, 0] < 160) & (px[:, 1] >= 0) & (px[:, 1] < 120)
    instance = out.instance[0][px[inside, 1], px[inside, 0]]
    assert int((instance == 0).sum()) == 0  # 0 = HAND
    # coarse lines: the same lines are dropped (a hand pixel near the contour point), none more
    coarse = region.lines(T_o, obs, region.half_length(0))
    _mu, _var, keep0 = region.contour_posterior(coarse, obs, 0, occlusion)
    near = coarse.centres[:, None] + offsets[None, :, None] * coarse.normals[:, None]
    assert not bool((keep0 & region._hand_crossed(coarse, near, occlusion)).any())
    # the second modality of the same mesh reads the cached model
    again = _region(scene, tmp_path)
    assert torch.equal(again.model.points, region.model.points)


def test_one_forward_kinematics_pass_poses_the_same_hand(scene_data):
    scene, frame, _obs, _T_o, _out = scene_data
    from handypriors_core.geometry.transforms import transform_points

    hand = scene.hand
    q = frame.joint_angles[None] + 0.2
    T = frame.hand2camera[None].float()
    verts, contacts, surface, tips = hand.posed_surfaces(q, T)
    assert torch.allclose(verts, transform_points(T, hand.mesh(q)[0]), atol=1e-6)
    assert torch.allclose(contacts, transform_points(T, hand.contact_candidates(q)), atol=1e-6)
    assert torch.allclose(surface, transform_points(T, hand.surface_points(q)), atol=1e-6)
    assert torch.allclose(tips, transform_points(T, hand.fingertips(q)), atol=1e-6)
