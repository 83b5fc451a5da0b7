"""The filter step's value-only fast paths equal the differentiable functions they stand in for (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handypriors_core.estimation.ekf import _orthonormalised
from handypriors_core.estimation.pose_state import (
    PoseState,
    retract,
    retract_value,
    retracted_pose_array,
    rotation_from_axis_angle_value,
    so3_left_jacobian,
    so3_left_jacobian_array,
)
from handypriors_core.geometry.rotations import axis_angle_to_matrix

_F64 = torch.float64


def _axis_angles() -> list[torch.Tensor]:
    """Angles across Rodrigues' branches: 0, inside the series (t^2 < 1e-4), at its edge, large, near pi."""
    g = torch.Generator().manual_seed(3)
    out = [torch.zeros(3, dtype=_F64)]
    for angle in (1e-9, 1e-5, 3e-3, 9.9e-3, 1.01e-2, 0.3, 2.0, math.pi - 1e-6):
        axis = torch.randn(3, generator=g, dtype=_F64)
        out.append(axis / axis.norm() * angle)
    return out


@pytest.mark.parametrize("phi", _axis_angles(), ids=lambda p: f"{float(p.norm()):.3g}")
def test_value_rotation_equals_rodrigues(phi):
    R = rotation_from_axis_angle_value(phi)
    assert R.dtype == _F64
    torch.testing.assert_close(R, axis_angle_to_matrix(phi), atol=1e-14, rtol=0)


def test_retract_value_equals_retract_with_extras():
    g = torch.Generator().manual_seed(5)
    R0 = axis_angle_to_matrix(torch.tensor([0.3, -1.1, 0.4], dtype=_F64))
    pose = torch.eye(4, dtype=_F64)
    pose[:3, :3], pose[:3, 3] = R0, torch.tensor([0.05, -0.02, 0.45], dtype=_F64)
    state = PoseState(pose, torch.tensor([0.1, -0.2], dtype=_F64))
    for scale in (0.0, 1e-4, 0.05, 0.8):
        delta = scale * torch.randn(8, generator=g, dtype=_F64)
        fast, slow = retract_value(state, delta), retract(state, delta)
        torch.testing.assert_close(fast.pose, slow.pose, atol=1e-14, rtol=0)
        torch.testing.assert_close(fast.extra, slow.extra, atol=0, rtol=0)
    assert torch.equal(state.pose, pose)  # the input state is not modified
    with pytest.raises(Exception, match="delta"):
        retract_value(state, torch.zeros(6, dtype=_F64))


@pytest.mark.parametrize("phi", _axis_angles(), ids=lambda p: f"{float(p.norm()):.3g}")
def test_numpy_retraction_and_left_jacobian_equal_the_torch_ones(phi):
    """The iterated update's and the numpy commit's pose retraction and SO(3) left Jacobian (Python floats) equal
    the torch functions across Rodrigues' branches."""
    R0 = axis_angle_to_matrix(torch.tensor([0.3, -1.1, 0.4], dtype=_F64))
    pose = torch.eye(4, dtype=_F64)
    pose[:3, :3], pose[:3, 3] = R0, torch.tensor([0.05, -0.02, 0.45], dtype=_F64)
    delta = torch.cat((torch.tensor([0.003, -0.001, 0.002], dtype=_F64), phi))
    moved = retracted_pose_array(pose.numpy(), delta.numpy())
    torch.testing.assert_close(torch.from_numpy(moved), retract(PoseState(pose, pose.new_zeros(0)), delta).pose,
                               atol=1e-14, rtol=0)
    assert moved[3].tolist() == [0.0, 0.0, 0.0, 1.0]
    torch.testing.assert_close(torch.from_numpy(so3_left_jacobian_array(phi.numpy())), so3_left_jacobian(phi),
                               atol=1e-14, rtol=0)


@pytest.mark.parametrize("extras", [0, 2])
def test_ekf_numpy_commit_and_motion_predict_equal_the_torch_path(extras):
    """On the CPU the EKF commits corrections and predicts rigid motions in numpy: the same states, covariances
    and Jacobians as its torch path (other devices), with and without extras and covariance reset."""
    from handypriors_core.estimation.ekf import EKFSettings, ErrorStateEKF
    from handypriors_core.geometry.transforms import make_transform

    g = torch.Generator().manual_seed(5)
    n = 6 + extras
    for reset in (True, False):
        for phi in _axis_angles()[::2]:
            pose = make_transform(axis_angle_to_matrix(torch.randn(3, generator=g, dtype=_F64)),
                                  torch.randn(3, generator=g, dtype=_F64))
            state = PoseState.from_pose(pose, torch.randn(extras, generator=g, dtype=_F64))
            A = torch.randn(n, n, generator=g, dtype=_F64)
            P = A @ A.T * 1e-3 + torch.eye(n, dtype=_F64) * 1e-6
            delta = torch.cat((torch.randn(3, generator=g, dtype=_F64) * 0.01, phi,
                               torch.randn(extras, generator=g, dtype=_F64)))
            motion = make_transform(axis_angle_to_matrix(phi), torch.randn(3, generator=g, dtype=_F64) * 0.01)
            Q = torch.eye(n, dtype=_F64) * 1e-5
            fast, reference = (ErrorStateEKF(state, P, EKFSettings(covariance_reset=reset)) for _ in range(2))
            reference.use_arrays = False
            for ekf in (fast, reference):
                assert ekf.correct(delta, P) == "accepted"
            assert fast._on_cpu() and not reference._on_cpu()
            for a, b in ((fast.state.pose, reference.state.pose), (fast.state.extra, reference.state.extra),
                         (fast.covariance, reference.covariance)):
                torch.testing.assert_close(a, b, atol=1e-14, rtol=1e-12)
            a, b = fast.predict_motion(motion, Q), reference.predict_motion(motion, Q)
            assert a.accepted and b.accepted
            torch.testing.assert_close(a.jacobian, b.jacobian, atol=0, rtol=0)
            for x, y in ((fast.state.pose, reference.state.pose), (fast.covariance, reference.covariance),
                         (fast.prior_covariance, reference.prior_covariance)):
                torch.testing.assert_close(x, y, atol=1e-14, rtol=1e-12)
    bad = ErrorStateEKF(state, P)
    assert bad.correct(torch.full((n,), math.nan, dtype=_F64), P) == "non_finite"
    torch.testing.assert_close(bad.state.pose, state.pose)


def test_contact_motion_in_numpy_equals_the_torch_contact_motion():
    """The filter's CPU prediction (numpy Kabsch, spread test, rigidity fit) gives contact_motion's values: a
    carried contact set, too few contacts, collinear contacts, a reflection-prone set."""
    from handypriors_core.geometry.transforms import make_transform
    from handypriors_core.physics.quasistatic import (
        contact_motion,
        contact_motion_array,
        contact_motion_fit,
        contact_motion_fit_array,
    )
    from handypriors_core.physics.settings import QuasistaticSettings

    g = torch.Generator().manual_seed(8)
    settings = QuasistaticSettings()
    M = make_transform(axis_angle_to_matrix(torch.tensor([0.05, -0.02, 0.03], dtype=_F64)),
                       torch.tensor([0.004, -0.002, 0.001], dtype=_F64))
    prev = torch.randn(60, 3, generator=g, dtype=_F64) * 0.03
    cur = prev @ M[:3, :3].T + M[:3, 3] + torch.randn(60, 3, generator=g, dtype=_F64) * 1e-4
    w = (torch.rand(60, generator=g, dtype=_F64) > 0.6).double()
    line = torch.linspace(0, 0.05, 60, dtype=_F64)[:, None] * torch.tensor([1.0, 0.5, 0.2], dtype=_F64)
    flat = prev.clone()
    flat[:, 2] = 0  # planar contacts
    cases = [(prev, cur, w), (prev, cur, torch.zeros(60, dtype=_F64).index_fill(0, torch.tensor([3, 9]), 1.0)),
             (line, line + 0.001, w), (flat, -flat, w)]
    valid_seen = set()
    for p, c, weights in cases:
        ref_m, ref_ok = contact_motion(p[None], c[None], weights[None], settings)
        m, ok = contact_motion_array(p.numpy(), c.numpy(), weights.numpy(), settings)
        assert ok == bool(ref_ok[0])
        valid_seen.add(ok)
        torch.testing.assert_close(torch.from_numpy(m), ref_m[0], atol=1e-14, rtol=0)
        ref_fit = contact_motion_fit(p[None], c[None], weights[None], ref_m)
        fit = contact_motion_fit_array(p.numpy(), c.numpy(), weights.numpy(), m)
        for a, b in zip(fit, ref_fit):
            assert a == pytest.approx(float(b[0]), rel=1e-12, abs=1e-16)
    assert valid_seen == {True, False}
    with pytest.raises(Exception, match="non-negative"):
        contact_motion_array(prev.numpy(), cur.numpy(), -w.numpy(), settings)


def test_filter_prediction_from_the_contacts_in_contact_equals_the_torch_contact_motion():
    """``ObjectPoseFilter.predict`` sums over the candidates in contact only: its predicted pose equals the torch
    ``contact_motion`` over all 512 rows (zero weights included) applied to the prior pose, to 1e-12 m, for a hand
    that moved rigidly (the motion is the hand's own, up to the float32 points) with 40 candidates in contact."""
    from handypriors_core.estimation.filter import ObjectPoseFilter
    from handypriors_core.estimation.modalities import TemporalContext
    from handypriors_core.estimation.scene import HandObjectScene
    from handypriors_core.estimation.settings import DepthSettings, FilterSettings
    from handypriors_core.geometry.transforms import make_transform
    from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
    from handypriors_core.physics.quasistatic import contact_motion

    hand = URDFHand.from_urdf(allegro_urdf())
    scene = HandObjectScene(hand, RigidObject.box([0.04, 0.06, 0.09]))
    q = hand.default_joint_angles()
    hand2camera = make_transform(axis_angle_to_matrix(torch.tensor([0.3, -1.2, 0.1])), torch.tensor([0.0, 0.02, 0.45]))
    move = make_transform(axis_angle_to_matrix(torch.tensor([0.02, -0.01, 0.03], dtype=_F64)),
                          torch.tensor([0.004, -0.002, 0.003], dtype=_F64))
    before = scene.pose_hand(q, hand2camera)
    after = scene.pose_hand(q, (move @ hand2camera.double()).float())
    weights = torch.zeros(1, before.contact_points.shape[1])
    weights[0, torch.randperm(weights.shape[1], generator=torch.Generator().manual_seed(3))[:40]] = 1.0
    ctx = TemporalContext(previous_contact_points=before.contact_points, contact_weights=weights)
    pose0 = make_transform(axis_angle_to_matrix(torch.tensor([0.5, 0.1, -0.2], dtype=_F64)),
                           torch.tensor([0.01, 0.03, 0.42], dtype=_F64))
    filt = ObjectPoseFilter(scene, FilterSettings(), DepthSettings())
    filt.initialize(pose0)
    assert filt.predict(after, ctx, True)
    motion, valid = contact_motion(before.contact_points.double(), after.contact_points.double(), weights.double(),
                                   filt.quasistatic)
    assert bool(valid[0])
    torch.testing.assert_close(filt.pose, motion[0] @ pose0, atol=1e-12, rtol=0)
    torch.testing.assert_close(filt.pose, move @ pose0, atol=1e-5, rtol=0)


def test_sdf_query_in_numpy_equals_the_torch_query():
    """``ObjectSDF.query_array`` (values only, numpy) gives ``query``'s distances and normals: points inside,
    outside, near edges and corners of a box and around a sphere, and one beyond ``max_query_distance``."""
    from handypriors_core.models import RigidObject
    from handypriors_core.physics.sdf import ObjectSDF
    from handypriors_core.physics.settings import ContactSettings

    g = torch.Generator().manual_seed(9)
    for obj in (RigidObject.box([0.04, 0.06, 0.09]), RigidObject.sphere(0.03)):
        sdf = ObjectSDF.from_rigid_object(obj, ContactSettings(max_query_distance=0.2))
        points = torch.cat((torch.randn(400, 3, generator=g) * 0.04, obj.verts.float() * 1.01,
                            torch.tensor([[0.5, 0.0, 0.0]]))).float()
        reference = sdf.query(points[None])
        distance, normal = sdf.query_array(points.numpy())
        assert bool((reference.distance < 0).any()) and int(reference.face[0, -1]) == -1
        torch.testing.assert_close(torch.from_numpy(distance), reference.distance[0], atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(torch.from_numpy(normal), reference.normal[0], atol=1e-6, rtol=1e-5)


def test_contact_bookkeeping_in_numpy_equals_the_torch_path():
    """The filter's contact context on the CPU (numpy query and algebra) equals its torch path: a hand grasping a
    box, with candidates in contact and fingertips on its surface; the candidates farther than any threshold from
    the box, not queried there, carry a lower bound of their distance above the thresholds and zero normals."""
    from handypriors_core.estimation.filter import contact_context
    from handypriors_core.estimation.scene import HandObjectScene
    from handypriors_core.geometry.transforms import make_transform
    from handypriors_core.models import RigidObject, URDFHand, allegro_urdf

    hand = URDFHand.from_urdf(allegro_urdf())
    scene = HandObjectScene(hand, RigidObject.box([0.04, 0.06, 0.09]))
    q = hand.default_joint_angles()
    posed = scene.pose_hand(q, torch.eye(4))
    tip = posed.fingertip_centres[0, 0].double()
    # the box's face 1 cm from a fingertip centre (the tip sphere radius is 1.2 cm): touching, candidates near
    object2camera = make_transform(torch.eye(3, dtype=_F64), tip + torch.tensor([0.0, 0.0, 0.02 + 0.01],
                                                                                dtype=_F64))
    fast = contact_context(scene, posed, object2camera, 0.006, [object2camera.float()], q)
    reference = contact_context(scene, posed, object2camera, 0.006, [object2camera.float()], q, arrays=False)
    assert bool(fast.tips_in_contact.any()) and int(fast.contact_weights.sum()) > 0
    assert torch.equal(fast.tips_in_contact, reference.tips_in_contact)
    assert torch.equal(fast.contact_weights, reference.contact_weights)
    exact_within = 0.006  # (the candidates' threshold; the fingertip centres': + their radius)
    queried = torch.from_numpy(scene.object_sdf._box_distance(fast.contacts_object_prev[0].numpy())
                               <= exact_within + 1e-5)
    assert 20 < int(queried.sum()) < queried.numel() - 20  # both kinds present
    for a, b in ((fast.previous_contact_distances, reference.previous_contact_distances),
                 (fast.contacts_object_prev, reference.contacts_object_prev),
                 (fast.previous_contact_normals, reference.previous_contact_normals)):
        assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(fast.contacts_object_prev, reference.contacts_object_prev, atol=1e-6, rtol=1e-5)
    for a, b in ((fast.previous_contact_distances, reference.previous_contact_distances),
                 (fast.previous_contact_normals, reference.previous_contact_normals)):
        torch.testing.assert_close(a[0, queried], b[0, queried], atol=1e-6, rtol=1e-5)
    far_fast = fast.previous_contact_distances[0, ~queried]
    far_reference = reference.previous_contact_distances[0, ~queried]
    assert bool((far_fast > exact_within).all()) and bool((far_fast <= far_reference).all())
    assert float(fast.previous_contact_normals[0, ~queried].abs().max()) == 0.0


def test_normal_equations_equal_those_of_the_residual_block():
    """The iterated update's ``NormalEquations`` (from a block, moved to first order, at a final step) give the
    ``ResidualBlock``'s normal equations, noise estimate and variance factor."""
    from handypriors_core.estimation.residuals import NormalEquations, ResidualBlock

    g = torch.Generator().manual_seed(6)
    J = torch.randn(30, 6, generator=g, dtype=_F64)
    r = torch.randn(30, generator=g, dtype=_F64) * 1e-3
    w = torch.rand(30, generator=g, dtype=_F64)
    w[:4] = 0
    delta = torch.randn(6, generator=g, dtype=_F64) * 1e-3
    for floor, correlation in ((0.0, 1.0), (1e-4, 2.5), (5e-3, 1.0)):
        block = ResidualBlock("b", r, J, w, 2e-3, floor, correlation)
        ne = NormalEquations.from_block(block)
        for a, b in zip(ne.scaled(), block.normal_equations()):
            torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-12, rtol=1e-12)
        assert (ne.count, ne.weight_sum) == (30, pytest.approx(float(w.sum()), rel=1e-14))
        assert ne.noise_std() == pytest.approx(block.noise_std(), rel=1e-12)
        r_final = r + J @ delta
        torch.testing.assert_close(torch.from_numpy(ne.residual_at(delta.numpy())), r_final, atol=1e-15, rtol=0)
        assert ne.variance_factor(r_final.numpy()) == pytest.approx(block.variance_factor(r_final), rel=1e-12)
        moved = NormalEquations.from_block(ResidualBlock("b", r_final, J, w, 2e-3, floor, correlation))
        ne_moved = ne.moved(delta.numpy())
        for a, b in ((ne_moved.information, moved.information), (ne_moved.vector, moved.vector)):
            np.testing.assert_allclose(a, b, atol=1e-12, rtol=1e-12)
        assert ne_moved.noise_std() == pytest.approx(moved.noise_std(), rel=1e-12)
        assert ne.with_std(1e-3).scaled()[0] == pytest.approx(4 * ne.scaled()[0], rel=1e-14)
    few = NormalEquations.from_block(ResidualBlock("b", r[:5], J[:5], torch.ones(5, dtype=_F64), 2e-3, 1e-4))
    assert few.noise_std() == 2e-3  # no more weight than the 6 pose parameters: the configured noise


def test_orthonormalised_is_the_nearest_rotation():
    R = axis_angle_to_matrix(torch.tensor([0.7, 0.2, -0.5], dtype=_F64))
    noise = 1e-7 * torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=_F64)
    pose = torch.eye(4, dtype=_F64)
    pose[:3, :3] = R + noise
    pose[:3, 3] = torch.tensor([0.1, 0.2, 0.3], dtype=_F64)
    out = _orthonormalised(PoseState(pose, torch.zeros(0, dtype=_F64))).pose
    Q = out[:3, :3]
    torch.testing.assert_close(Q.T @ Q, torch.eye(3, dtype=_F64), atol=1e-14, rtol=0)
    assert float(torch.linalg.det(Q)) == pytest.approx(1.0, abs=1e-14)
    assert float((Q - R).abs().max()) < 3e-7  # within the noise of the rotation it came from
    torch.testing.assert_close(out[:3, 3], pose[:3, 3], atol=0, rtol=0)


def _triangle_soup(dtype: torch.dtype, seed: int):
    """Two batches of 40 random overlapping triangles (both windings) 0.3 m in front of a 64 x 48 camera."""
    from handypriors_core.geometry import PinholeCamera

    g = torch.Generator().manual_seed(seed)
    B, F = 2, 40
    centres = torch.rand(B, F, 1, 3, generator=g, dtype=dtype) * torch.tensor([0.1, 0.08, 0.1], dtype=dtype) \
        + torch.tensor([-0.05, -0.04, 0.3], dtype=dtype)
    verts = (centres + 0.03 * torch.randn(B, F, 3, 3, generator=g, dtype=dtype)).reshape(B, 3 * F, 3)
    faces = torch.arange(3 * F).reshape(F, 3)
    faces[::3] = faces[::3].flip(-1)  # both windings
    K = torch.tensor([[120.0, 0, 31.5], [0, 120.0, 23.5], [0, 0, 1]], dtype=dtype)
    return verts, faces, PinholeCamera(K=K, width=64, height=48)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hard_zbuffer_kernel_equals_the_fragment_kernels_nearest(dtype):
    """The hard rasterizer's nearest-face kernel (K = 1) picks the first fragment of the general kernel (K = 2)."""
    from handypriors_core.render import RasterSettings
    from handypriors_core.render.rasterizer import HardRasterizer

    verts, faces, cam = _triangle_soup(dtype, 11)
    verts[:, 6:9] = verts[:, 3:6]  # a duplicated face: equal depths, the first one wins
    raster = HardRasterizer(RasterSettings(cpu_threads=1))
    hard = raster(verts, faces, cam)
    general = raster._rasterize(verts, faces, cam, raster.settings.sigma, 0.0, 2, True)
    assert int((hard.face >= 0).sum()) > 500 and int((hard.count > 1).sum()) > 100  # overlapping faces
    torch.testing.assert_close(hard.face[..., 0], general.face[..., 0], atol=0, rtol=0)
    for a, b in ((hard.zbuf, general.zbuf), (hard.dist, general.dist), (hard.bary, general.bary)):
        torch.testing.assert_close(a[:, :, :, 0], b[:, :, :, 0], atol=0, rtol=0)
    torch.testing.assert_close(hard.count, general.count, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_face_by_face_depth_equals_the_hard_zbuffer(dtype):
    """``nearest_depth`` (face by face) gives the hard rasterizer's depth at every pixel bit for bit, its ``grow``
    the min-filter of it, and with ``cull_back`` on a closed outward mesh (a box) the same depth again."""
    import torch.nn.functional as F

    from handypriors_core.models import RigidObject
    from handypriors_core.render import RasterSettings
    from handypriors_core.render.rasterizer import HardRasterizer

    verts, faces, cam = _triangle_soup(dtype, 12)
    verts[0, 9, 2] = -0.1  # a vertex behind the camera: its face is not drawn
    raster = HardRasterizer(RasterSettings(cpu_threads=1))

    def reference(v, f):
        hard = raster(v, f, cam)
        return torch.where(hard.face[..., 0] >= 0, hard.zbuf[..., 0], torch.full_like(hard.zbuf[..., 0], math.inf))

    ref = reference(verts, faces)
    assert int(torch.isfinite(ref).sum()) > 500
    torch.testing.assert_close(raster.nearest_depth(verts, faces, cam), ref, atol=0, rtol=0)
    grown = -F.max_pool2d(-ref[:, None], 5, stride=1, padding=2)[:, 0]
    torch.testing.assert_close(raster.nearest_depth(verts, faces, cam, grow=2), grown, atol=0, rtol=0)
    box = RigidObject.box([0.04, 0.06, 0.03])
    R = axis_angle_to_matrix(torch.tensor([0.5, -0.3, 0.2], dtype=dtype))
    box_verts = (box.verts.to(dtype) @ R.T + torch.tensor([0.01, 0.0, 0.25], dtype=dtype))[None]
    box_ref = reference(box_verts, box.faces)
    assert int(torch.isfinite(box_ref).sum()) > 300
    torch.testing.assert_close(raster.nearest_depth(box_verts, box.faces, cam, cull_back=True), box_ref, atol=0,
                               rtol=0)
    assert int(torch.isfinite(raster.nearest_depth(verts[:, :0], faces[:0], cam)).sum()) == 0  # an empty mesh


def test_observation_crops_are_made_on_first_read_only():
    """ROI crops given as functions run once, on the first read; tensors pass through; the dataclass stays frozen."""
    import dataclasses

    from handypriors_core.estimation.observation import Observation

    calls = []

    def crop():
        calls.append(1)
        return torch.ones(1, 4, 4, 3)

    obs = Observation(frame=None, hand=None, box=(0.0, 0.0, 4.0, 4.0), camera=None, roi_camera=None, mask=None,
                      rgb=crop, depth=torch.zeros(1, 4, 4), depth_points=None, mask_full=None)
    assert calls == []
    assert torch.equal(obs.rgb, torch.ones(1, 4, 4, 3)) and obs.rgb is obs.rgb
    assert calls == [1]
    assert torch.equal(obs.depth, torch.zeros(1, 4, 4))
    half = dataclasses.replace(obs, depth=None)
    assert half.depth is None and torch.equal(half.rgb, obs.rgb) and calls == [1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        obs.rgb = torch.zeros(1)
    with pytest.raises(TypeError):
        Observation(frame=None, hand=None, box=(0.0, 0.0, 1.0, 1.0), camera=None, roi_camera=None, mask=None)


def test_forward_kinematics_equals_rodrigues_of_the_joint_axes():
    """The URDF hand's FK (Rodrigues about the cached unit-axis cross matrices) equals the composition of
    ``origin @ [exp([a q]x), a q_prismatic]`` down the tree, float64, batched; posed points follow their links."""
    from handypriors_core.geometry.transforms import make_transform
    from handypriors_core.models import URDFHand, allegro_urdf

    hand = URDFHand.from_urdf(allegro_urdf()).to(dtype=_F64)
    q = hand.clamp(torch.rand(3, hand.num_joints, generator=torch.Generator().manual_seed(2), dtype=_F64) * 2 - 0.5)
    q_ext = torch.cat((q, q.new_zeros(3, 1)), 1)
    ql = q_ext[:, hand._q_index] * hand._q_mult + hand._q_offset
    local = hand._origin @ make_transform(axis_angle_to_matrix(hand._axis * (ql * hand._rev)[..., None]),
                                          hand._axis * (ql * hand._pri)[..., None])
    expected = torch.empty_like(local)
    for i, parent in enumerate(hand.link_parents):  # parents come before children in link order
        expected[:, i] = local[:, i] if parent < 0 else expected[:, parent] @ local[:, i]
    poses = hand.forward_kinematics(q)
    torch.testing.assert_close(poses, expected, atol=1e-14, rtol=0)
    verts, _, link = hand.mesh(q)
    ref = (expected[:, link, :3, :3] @ hand._mesh_verts[None, :, :, None])[..., 0] + expected[:, link, :3, 3]
    torch.testing.assert_close(verts, ref, atol=1e-14, rtol=0)



@pytest.mark.parametrize("dtype", [torch.float32, _F64])
def test_posed_surfaces_in_numpy_equal_the_torch_forward_kinematics(dtype):
    """``posed_surfaces`` on the CPU without gradient runs the numpy forward kinematics; it equals the torch
    path (what runs with gradient) to 1e-12 m in float64 and to float32 rounding in float32, batched, with and
    without a base transform, with a mimic-free Allegro at random clamped angles."""
    from handypriors_core.geometry.rotations import rpy_to_matrix
    from handypriors_core.geometry.transforms import make_transform
    from handypriors_core.models import URDFHand, allegro_urdf

    hand = URDFHand.from_urdf(allegro_urdf()).to(dtype=dtype)
    g = torch.Generator().manual_seed(4)
    q = hand.clamp(torch.rand(3, hand.num_joints, generator=g, dtype=_F64).to(dtype) * 2 - 0.5)
    base = make_transform(rpy_to_matrix(torch.rand(3, 3, generator=g, dtype=_F64)),
                          torch.rand(3, 3, generator=g, dtype=_F64))
    tol = 1e-12 if dtype == _F64 else 2e-6
    for T in (None, base):
        fast = hand.posed_surfaces(q, T)
        slow = hand.posed_surfaces(q.clone().requires_grad_(True), T)  # the differentiable torch path
        assert slow[0].requires_grad and not fast[0].requires_grad
        assert all(a.is_contiguous() for a in fast[:3])  # the posed point sets (the fingertips are a view)
        for a, b in zip(fast, slow, strict=True):
            assert a.dtype == dtype and a.shape == b.shape
            torch.testing.assert_close(a, b.detach(), atol=tol, rtol=0)


def test_posed_hand_surface_points_are_posed_on_first_read():
    """``HandObjectScene.pose_hand`` on the CPU leaves the surface points (which the depth filter step never reads)
    unposed until first read; then they equal ``posed_surfaces``' and are kept. The other sets come posed."""
    from handypriors_core.estimation.scene import HandObjectScene
    from handypriors_core.geometry.transforms import make_transform
    from handypriors_core.models import RigidObject, URDFHand, allegro_urdf

    hand = URDFHand.from_urdf(allegro_urdf())
    scene = HandObjectScene(hand, RigidObject.box([0.04, 0.06, 0.09]))
    q = hand.clamp(torch.linspace(-0.3, 0.9, hand.num_joints))
    hand2camera = make_transform(axis_angle_to_matrix(torch.tensor([0.3, -1.2, 0.1])), torch.tensor([0.0, 0.02, 0.45]))
    posed = scene.pose_hand(q, hand2camera)
    assert callable(posed.__dict__["_surface_points_value"])  # not posed yet
    verts, contacts, surface, tips = hand.posed_surfaces(q[None], hand2camera[None])
    for a, b in ((posed.verts, verts), (posed.contact_points, contacts), (posed.fingertip_centres, tips)):
        assert torch.equal(a, b)
    first = posed.surface_points
    assert torch.equal(first, surface) and first.shape == (1, hand._points.shape[0], 3)
    assert posed.surface_points is first and isinstance(posed.__dict__["_surface_points_value"], torch.Tensor)


def test_hand_zbuffer_of_the_camera_facing_faces_equals_the_full_render():
    """The Allegro mesh is closed and outward: the hand occlusion z-buffer drawn from the faces turned to the
    camera equals the render of every face (and its dilation the min-filter of it), over several hand poses; an
    open mesh is not culled."""
    from handypriors_core.estimation.hand_occlusion import HandOcclusion
    from handypriors_core.estimation.observation import prepare_observation
    from handypriors_core.estimation.scene import HandObjectScene
    from handypriors_core.estimation.settings import DepthSettings, ROISettings
    from handypriors_core.geometry import PinholeCamera
    from handypriors_core.geometry.transforms import make_transform
    from handypriors_core.io.frame import Frame
    from handypriors_core.models import RigidObject, URDFHand, allegro_urdf

    hand = URDFHand.from_urdf(allegro_urdf())
    scene = HandObjectScene(hand, RigidObject.box([0.04, 0.06, 0.09]))
    camera = PinholeCamera.from_camera_info([150.0, 0, 79.5, 0, 150.0, 59.5, 0, 0, 1], [], 160, 120)
    object2camera = make_transform(axis_angle_to_matrix(torch.tensor([0.4, -0.5, 0.2])),
                                   torch.tensor([-0.04, 0.02, 0.5]))
    g = torch.Generator().manual_seed(4)
    drawn = 0
    for k in range(3):
        hand2camera = make_transform(axis_angle_to_matrix(torch.randn(3, generator=g) * 0.5 + torch.tensor(
            [0.0, -1.5, 0.0])), torch.tensor([0.0, 0.03, 0.47]))
        q = hand.clamp(hand.default_joint_angles() + 0.3 * torch.rand(hand.num_joints, generator=g))
        frame = Frame(index=k, stamp=0.0, rgb=torch.zeros(120, 160, 3, dtype=torch.uint8), camera=camera,
                      joint_angles=q, hand2camera=hand2camera)
        obs = prepare_observation(frame, scene, object2camera, ROISettings(size=64), DepthSettings(),
                                  depth_points=False)
        culled = HandOcclusion(scene, obs, dilation=0).depth
        full = scene.renderer.hard(obs.hand.verts.float(), scene.hand_faces, obs.roi_camera)
        reference = torch.where(full.mask[0], full.zbuf[0], torch.full_like(full.zbuf[0], float("inf")))
        torch.testing.assert_close(culled, reference, atol=0, rtol=0)
        grown = -torch.nn.functional.max_pool2d(-reference[None, None], 3, stride=1, padding=1)[0, 0]
        torch.testing.assert_close(HandOcclusion(scene, obs, dilation=1).depth, grown, atol=0, rtol=0)
        drawn += int(full.mask.sum())
    assert scene.hand_surface_closed(obs.hand.verts) and drawn > 500
    # the hand 1 m to the side of the region: no hand anywhere
    far = Frame(index=9, stamp=0.0, rgb=torch.zeros(120, 160, 3, dtype=torch.uint8), camera=camera,
                joint_angles=q, hand2camera=make_transform(hand2camera[:3, :3], torch.tensor([1.0, 0.0, 0.47])))
    far_obs = prepare_observation(far, scene, object2camera, ROISettings(size=64), DepthSettings(),
                                  depth_points=False)
    assert bool(torch.isinf(HandOcclusion(scene, far_obs).depth).all())
    open_scene = HandObjectScene(hand, RigidObject.box([0.04, 0.06, 0.09]))
    open_scene.hand_faces = scene.hand_faces[1:]  # one face missing: three edges lose their partner
    assert not open_scene.hand_surface_closed(obs.hand.verts)
