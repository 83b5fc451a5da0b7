"""One implementation per term: the object filter, the refiner, the MANO hand-object optimizer and EKF and the
contact refiner evaluate the same residual code of :mod:`handypriors_core.estimation.residuals`.

Each test changes one shared function (monkeypatch) and checks that every estimator's output moves by exactly
what the change implies; the hand-parameter Jacobian block is checked against float64 central differences.

Scenes: the shipped Allegro hand with a 4 x 6 x 9 cm box pushed onto its fingers (hand points inside the box),
and the generated MANO grasp of the test model around a box (object frame, some vertices within 0.5 mm inside).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from handypriors_core.estimation import residuals
from handypriors_core.estimation.contact_observation import ContactModality
from handypriors_core.estimation.contact_refinement import ContactRefiner, ContactRefineSettings
from handypriors_core.estimation.hand_object import (
    HandObjectEKF,
    HandObjectEKFSettings,
    HandObjectObservation,
    HandObjectOptimizer,
    HandObjectSettings,
    ManoParams,
)
from handypriors_core.estimation.modalities import TemporalContext, depth_loss
from handypriors_core.estimation.pose_state import PoseState, retract
from handypriors_core.estimation.refiner import PoseRefiner
from handypriors_core.estimation.scene import HandObjectScene
from handypriors_core.estimation.settings import DepthSettings, FilterSettings, RefineSettings
from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform
from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
from handypriors_core.models.mano import ManoHand
from handypriors_core.physics import ObjectSDF
from handypriors_core.priors.losses import LossWeights
from handypriors_core.synthetic.mano_sequences import default_grasp_object, grasp_params, make_mano_grasp
from handypriors_core.synthetic.mano_test_model import build_synthetic_mano

_F64 = torch.float64
SHIFT = 0.003  # [m]
CAMERA = PinholeCamera.from_camera_info([300.0, 0, 159.5, 0, 300.0, 119.5, 0, 0, 1], [], 320, 240)


@pytest.fixture(scope="module")
def allegro():
    """Allegro scene with the box 6 cm onto the straight fingers: (scene, posed hand, object2camera (4, 4) f64)."""
    hand = URDFHand.from_urdf(allegro_urdf())
    scene = HandObjectScene(hand, RigidObject.box([0.04, 0.06, 0.09]))
    R = axis_angle_to_matrix(torch.tensor([0.0, -math.pi / 2, 0.0])) @ axis_angle_to_matrix(
        torch.tensor([0.0, 0.0, math.pi / 2]))
    posed = scene.pose_hand(hand.default_joint_angles().clone(), make_transform(R, torch.tensor([0.0, 0.04, 0.47])))
    pose = make_transform(axis_angle_to_matrix(torch.tensor([0.4, -0.5, 0.2])), torch.tensor([-0.08, 0.035, 0.49]))
    return scene, posed, pose.double()


@pytest.fixture(scope="module")
def mano():
    """MANO test model, the grasp's box and the grasp's parameters (object at the identity)."""
    hand = ManoHand(build_synthetic_mano("right"))
    obj = default_grasp_object()
    return hand, obj, grasp_params(hand, make_mano_grasp(hand, obj))


def _signed_distance_outputs(allegro, mano) -> dict[str, torch.Tensor]:
    """What each estimator makes of the shared signed-distance residuals."""
    scene, posed, pose = allegro
    hand, obj, truth = mano
    out = {}
    # object filter: the contact pseudo-observation block (fingertips in contact + one-sided penetration)
    contacts = ContactModality(scene, FilterSettings(contact_distance=0.05))
    tips = torch.ones(posed.fingertip_centres.shape[1], dtype=torch.bool)
    assert contacts.begin(SimpleNamespace(hand=posed), TemporalContext(tips_in_contact=tips), pose)
    out["filter_contacts"] = contacts.linearize(pose, 0).residual
    # refiner: Eq. 3
    refiner = PoseRefiner(scene, RefineSettings(terms=["penetration"]), LossWeights(lambda_penetration=1.0),
                          DepthSettings())
    out["refiner_penetration"] = refiner.losses(pose.float()[None], SimpleNamespace(hand=posed), TemporalContext(),
                                                1.0, None)["penetration"]
    # MANO hand-object optimizer: Eq. 3 on the grasp
    optimizer = HandObjectOptimizer(hand, obj, HandObjectSettings(terms=("penetration",)))
    eye = torch.eye(4)[None]
    with torch.no_grad():
        out["optimizer_penetration"] = optimizer.losses(truth, eye, HandObjectObservation(camera=CAMERA),
                                                        (0.0, 0.0, 100.0, 100.0), 1.0)["penetration"]
    # MANO hand-object EKF: the contact prior's correction
    ekf = HandObjectEKF(hand, obj, HandObjectEKFSettings(observations=("contact",)))
    ekf.initialize(truth, torch.eye(4))
    assert ekf.contact_vertex_ids.numel() >= 10
    out["ekf_contact"] = ekf.update(HandObjectObservation(camera=CAMERA))["contact"].correction
    # contact refiner: Eq. 3 and the contact-map distance targets
    refine = ContactRefiner(hand, obj, ContactRefineSettings(object_samples=100))
    verts = truth.forward(hand).vertices
    target = (torch.arange(verts.shape[1]) % 3 == 0).float() * 0.5
    with torch.no_grad():
        terms = refine.losses(verts, eye, target, None, truth.hand_pose, truth.hand_pose)
    out["contact_penetration"], out["contact_distance"] = terms["penetration"], terms["distance"]
    return out


def test_every_estimator_evaluates_the_shared_signed_distance_residual(allegro, mano, monkeypatch):
    before = _signed_distance_outputs(allegro, mano)
    original = residuals.hand_point_residuals
    monkeypatch.setattr(residuals, "hand_point_residuals", lambda *a, **k: original(*a, **k) - SHIFT)
    after = _signed_distance_outputs(allegro, mano)
    # the filter's block: every residual (tips and penetrating points) 3 mm lower
    assert torch.allclose(after["filter_contacts"], before["filter_contacts"] - SHIFT, atol=1e-9)
    # Eq. 3 is the mean depth of penetration residuals (all <= 0): 3 mm deeper each, hand and object sides
    for key, reverse in (("refiner_penetration", 1.0), ("optimizer_penetration", 1.0),
                         ("contact_penetration", 1.0)):
        assert float(after[key]) == pytest.approx(float(before[key]) + SHIFT * (1 + reverse), abs=1e-6), key
    assert float(before["refiner_penetration"]) > 1e-3  # the box does sit on the fingers
    # the EKF's contact prior sees every contact vertex 3 mm inside and pushes the object away
    assert float((after["ekf_contact"] - before["ekf_contact"]).norm()) > 1e-3
    assert not torch.allclose(after["contact_distance"], before["contact_distance"])


def test_every_robust_penalty_is_the_shared_robust_loss(allegro, mano, monkeypatch):
    scene, posed, pose = allegro
    hand, obj, truth = mano
    points = posed.surface_points[:, :60]  # (1, 60, 3) near the box
    optimizer = HandObjectOptimizer(hand, obj, HandObjectSettings(terms=("keypoints",)))
    keypoints = CAMERA.project(truth.forward(hand).keypoints + torch.tensor([0.0, 0.0, 0.4]))[0] + 3.0
    obs = HandObjectObservation(camera=CAMERA, keypoints=keypoints)
    shifted = ManoParams(truth.global_orient, truth.hand_pose, truth.betas, truth.transl + torch.tensor([0, 0, 0.4]))
    refine = ContactRefiner(hand, obj, ContactRefineSettings(object_samples=100, lambda_penetration=0.0))
    verts = truth.forward(hand).vertices
    target = (torch.arange(verts.shape[1]) % 3 == 0).float() * 0.5

    def evaluate() -> list[float]:
        with torch.no_grad():
            return [float(depth_loss(None, None, scene, pose.float()[None], points, DepthSettings())[0]),
                    float(optimizer.losses(shifted, torch.eye(4)[None], obs, (0.0, 0.0, 320.0, 320.0),
                                           1.0)["keypoints"]),
                    float(refine.losses(verts, torch.eye(4)[None], target, None, truth.hand_pose,
                                        truth.hand_pose)["distance"])]

    before = evaluate()
    assert all(v > 0 for v in before)
    original = residuals.robust_loss_squared
    monkeypatch.setattr(residuals, "robust_loss_squared", lambda *a: 2.0 * original(*a))
    after = evaluate()
    # refiner depth (Geman-McClure), MANO keypoints (Geman-McClure), contact distances (Charbonnier): all doubled
    assert after == pytest.approx([2 * v for v in before], rel=1e-6)


def test_robust_loss_of_squared_norms_is_the_robust_loss_of_the_norm():
    r = torch.linspace(-0.05, 0.05, 41, dtype=_F64)
    for kind in ("huber", "tukey", "cauchy", "geman_mcclure", "charbonnier", "none"):
        assert torch.allclose(residuals.robust_loss_squared(r * r, 0.01, kind), residuals.robust_loss(r, 0.01, kind),
                              atol=1e-12), kind
    # the contact refiner's Charbonnier: c * rho(r) = sqrt(r^2 + c^2) - c, IRLS weights rho'(r) c^2 / r
    c = 0.01
    rr = r.clone().requires_grad_(True)
    rho = residuals.robust_loss(rr, c, "charbonnier")
    assert torch.allclose(c * rho, torch.sqrt(r * r + c * c) - c, atol=1e-15)
    (grad,) = torch.autograd.grad(rho.sum(), rr)
    nz = r.abs() > 1e-9
    assert torch.allclose(grad[nz] * c * c / r[nz], residuals.robust_weights(r, c, "charbonnier")[nz], atol=1e-12)


def test_hand_point_jacobian_with_the_mano_block_matches_finite_differences(mano):
    """``d/d(delta, theta)`` of the signed distance of MANO contact vertices to the posed box, float64."""
    _, obj, truth = mano
    hand = ManoHand(build_synthetic_mano("right")).to(dtype=_F64)
    box = obj.to("cpu", _F64)
    sdf = ObjectSDF(box.verts, box.faces)
    g = torch.Generator().manual_seed(5)
    theta0 = truth.to(dtype=_F64).vector()[0] + 0.02 * torch.randn(6 + hand.num_joints, generator=g, dtype=_F64)
    betas = truth.betas.to(_F64)
    ids = hand.contact_vertex_ids[::7]

    def points(theta: torch.Tensor) -> torch.Tensor:
        return ManoParams.from_vector(theta[None], betas).forward(hand).vertices[0, ids]

    pose0 = make_transform(axis_angle_to_matrix(torch.tensor([0.02, -0.01, 0.03], dtype=_F64)),
                           torch.tensor([0.001, -0.002, 0.001], dtype=_F64))
    state = PoseState.from_pose(pose0)

    def distance(delta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pose = retract(state, delta[:6]).pose
            return sdf.signed_distance(points(theta0 + delta[6:])[None], pose[None]).distance[0]

    with torch.no_grad():
        c = points(theta0)
        sd = sdf.signed_distance(c[None], pose0[None])
    J = residuals.hand_point_jacobian(c, sd.normal[0], pose0[:3, 3],
                                      residuals.hand_parameter_jacobian(points, theta0, sd.normal[0]))
    n = 6 + theta0.shape[0]
    assert J.shape == (ids.numel(), n)
    eps = 1e-6
    eye = torch.eye(n, dtype=_F64) * eps
    Jn = torch.stack([(distance(eye[i]) - distance(-eye[i])) / (2 * eps) for i in range(n)], -1)
    # away from the box's edges (where the closest feature switches within a step) the derivative is exact
    ok = (J - Jn).abs().max(-1).values < 1e-5
    assert float(ok.double().mean()) > 0.9, (J - Jn).abs().max()
    assert float(J[:, 6:].abs().max()) > 0.01  # the hand block is not empty


def test_hand_object_optimizer_and_ekf_share_the_keypoint_residual(mano, monkeypatch):
    hand, obj, truth = mano
    params = ManoParams(truth.global_orient, truth.hand_pose, truth.betas, truth.transl + torch.tensor([0, 0, 0.4]))
    object2camera = make_transform(torch.eye(3), torch.tensor([0.0, 0.0, 0.4]))
    keypoints = CAMERA.project(params.forward(hand).keypoints)[0] + torch.tensor([2.0, -1.0])
    obs = HandObjectObservation(camera=CAMERA, keypoints=keypoints, object_centre=CAMERA.project(
        object2camera[None, :3, 3][None])[0, 0] + 1.5)
    optimizer = HandObjectOptimizer(hand, obj, HandObjectSettings(terms=("keypoints",)))

    def evaluate() -> tuple[float, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            loss = float(optimizer.losses(params, object2camera[None], obs, (0.0, 0.0, 320.0, 320.0),
                                          1.0)["keypoints"])
        ekf = HandObjectEKF(hand, obj, HandObjectEKFSettings(observations=("fingertips", "centre")))
        ekf.initialize(params, object2camera)
        updates = ekf.update(obs)
        return loss, updates["fingertips"].correction, updates["centre"].correction

    before = evaluate()
    original = residuals.reprojection_residuals
    # the residuals without the observed offsets: zero at the start, so nothing to correct and no loss
    monkeypatch.setattr(residuals, "reprojection_residuals",
                        lambda cam, points, pixels: original(cam, points, cam.project(points).detach()))
    after = evaluate()
    assert before[0] > 1e-4 and after[0] == pytest.approx(0.0, abs=1e-12)
    for b, a in zip(before[1:], after[1:]):
        assert float(b.norm()) > 1e-4 and float(a.norm()) < 1e-9


def test_hand_object_contact_prior_jacobian_equals_autodiff_of_its_first_order_model(mano):
    """The EKF's contact prior: closed-form pose block + MANO autodiff hand block == reverse-mode autodiff of the
    first-order signed distance through MANO and the pose (its former linearisation), float64."""
    from handypriors_core.estimation.linearization import linearize

    hand, obj, truth = mano
    ekf = HandObjectEKF(hand, obj, HandObjectEKFSettings(observations=("contact",), gate_probability=1.0))
    pose0 = make_transform(axis_angle_to_matrix(torch.tensor([0.01, -0.02, 0.01])), torch.tensor([0.001, 0, -0.001]))
    ekf.initialize(truth, pose0)
    ids, state = ekf.contact_vertex_ids, ekf.ekf.state
    assert ids.numel() >= 10
    betas = ekf.betas
    with torch.no_grad():
        v0 = ManoParams.from_vector(state.extra[None], betas[None]).forward(ekf.hand).vertices[0, ids]
        sd = ekf.object_sdf.signed_distance(v0[None], state.pose[None])
    n_obj = sd.normal[0] @ state.pose[:3, :3]
    p_obj0 = (v0 - state.pose[:3, 3]) @ state.pose[:3, :3]

    def first_order(s: PoseState) -> torch.Tensor:  # d0 + n_obj . (p_obj - p_obj0)
        v = ManoParams.from_vector(s.extra[None], betas[None]).forward(ekf.hand).vertices[0, ids]
        return sd.distance[0] + ((((v - s.pose[:3, 3]) @ s.pose[:3, :3]) - p_obj0) * n_obj).sum(-1)

    value, H_autodiff = linearize(first_order, state, "reverse_loop")
    result = ekf.update(HandObjectObservation(camera=CAMERA))["contact"]
    assert result.jacobian.shape == H_autodiff.shape == (ids.numel(), state.dim)
    assert torch.allclose(result.jacobian, H_autodiff, atol=1e-10)
    assert torch.allclose(value, sd.distance[0], atol=1e-12)


def test_reprojection_jacobian_of_object_points_matches_finite_differences():
    g = torch.Generator().manual_seed(7)
    pose = make_transform(axis_angle_to_matrix(torch.randn(3, generator=g, dtype=_F64)),
                          torch.tensor([0.03, -0.02, 0.45], dtype=_F64))
    points_obj = torch.randn(20, 3, generator=g, dtype=_F64) * 0.05
    camera = CAMERA.to("cpu", _F64)
    pixels = torch.randn(20, 2, generator=g, dtype=_F64) * 5 + 150

    def reprojection(delta: torch.Tensor) -> torch.Tensor:
        P = retract(PoseState.from_pose(pose), delta).pose
        return residuals.reprojection_residuals(camera, (points_obj @ P[:3, :3].T + P[:3, 3])[None], pixels)[0]

    J = residuals.reprojection_jacobian(camera, points_obj @ pose[:3, :3].T + pose[:3, 3], pose[:3, 3])
    eps = 1e-6
    eye = torch.eye(6, dtype=_F64) * eps
    Jn = torch.stack([(reprojection(eye[i]) - reprojection(-eye[i])) / (2 * eps) for i in range(6)], -1)
    assert J.shape == (20, 2, 6)
    assert torch.allclose(J, Jn, atol=1e-5 * float(Jn.abs().max())), (J - Jn).abs().max()


def test_hand_object_centre_jacobian_equals_autodiff_of_the_projection(mano):
    from handypriors_core.estimation.linearization import linearize
    from handypriors_core.geometry.transforms import transform_points

    hand, obj, truth = mano
    ekf = HandObjectEKF(hand, obj, HandObjectEKFSettings(observations=("centre",), gate_probability=1.0))
    pose0 = make_transform(axis_angle_to_matrix(torch.tensor([0.3, -0.2, 0.1])), torch.tensor([0.02, -0.01, 0.4]))
    ekf.initialize(truth, pose0)
    camera = CAMERA.to("cpu", _F64)
    centre = ekf.centre[None, None]
    _, H = linearize(lambda s: camera.project(transform_points(s.pose[None], centre))[0, 0], ekf.ekf.state,
                     "reverse_loop")
    result = ekf.update(HandObjectObservation(camera=CAMERA, object_centre=torch.tensor([150.0, 130.0])))["centre"]
    assert torch.allclose(result.jacobian, H, atol=1e-9)
    assert float(H[:, :6].abs().max()) > 10 and float(H[:, 6:].abs().max()) == 0
