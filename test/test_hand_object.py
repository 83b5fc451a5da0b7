"""Joint hand-object estimation: generated MANO sequences, parameter I/O, the optimizer and the EKF (Table I)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from handypriors_core.errors import ConfigError, InvalidValueError, ModelFileError, ShapeError
from handypriors_core.estimation.hand_object import (
    FINGERTIP_KEYPOINTS,
    HandObjectEKF,
    HandObjectEKFSettings,
    HandObjectObservation,
    HandObjectOptimizer,
    HandObjectSettings,
    ManoParams,
    load_keypoints,
    load_mano_params,
    mano_rigid_transform,
    pose_delta,
    save_mano_params,
)
from handypriors_core.estimation.pose_state import PoseState, local_difference, retract
from handypriors_core.geometry.rotations import matrix_to_axis_angle
from handypriors_core.geometry.transforms import invert_transform, transform_points
from handypriors_core.metrics import mpjpe
from handypriors_core.models.mano import ManoHand
from handypriors_core.models.mano_model import MANO_KEYPOINT_NAMES
from handypriors_core.synthetic.mano_sequences import ManoSequenceSettings, make_mano_sequence
from handypriors_core.synthetic.mano_test_model import build_synthetic_mano

FRAMES = 12


@pytest.fixture(scope="module")
def hand() -> ManoHand:
    return ManoHand(build_synthetic_mano("right"))


@pytest.fixture(scope="module")
def seq(hand):
    return make_mano_sequence(hand, settings=ManoSequenceSettings(num_frames=FRAMES))


@pytest.fixture(scope="module")
def estimates(seq) -> ManoParams:
    """Simulated network output: orientation 0.05 rad, translation 1 cm, finger pose 0.1 rad (std)."""
    return seq.hand_estimates(pose_std=0.1, orient_std=0.05, transl_std=0.01, seed=1)


@pytest.fixture(scope="module")
def object_start(seq) -> torch.Tensor:
    """Frame 0's object pose moved by 6 mm / 0.09 rad."""
    g = torch.Generator().manual_seed(3)
    d = torch.cat([torch.randn(1, 3, generator=g) * 0.006, torch.randn(1, 3, generator=g) * 0.06], 1)
    return pose_delta(seq.object2camera[:1], d)[0]


def _rotation_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(matrix_to_axis_angle((a[:3, :3] @ b[:3, :3].T).double()).norm())


def _add(seq, poses: torch.Tensor) -> torch.Tensor:
    pts = seq.obj.samples.double()
    T = poses.shape[0]
    a = transform_points(poses.double(), pts.expand(T, -1, -1))
    b = transform_points(seq.object2camera[:T].double(), pts.expand(T, -1, -1))
    return (a - b).norm(dim=-1).mean(-1)


# ------------------------------------------------------------------------------------------------ sequences


def test_generated_sequence_ground_truth_is_consistent(seq, hand):
    out = seq.params.forward(hand)
    assert torch.allclose(out.vertices, seq.vertices, atol=1e-6)
    assert torch.allclose(seq.camera.project(seq.keypoints), seq.keypoints_2d, atol=1e-3)
    # the object is held rigidly: its pose in the MANO model frame is the grasp's in every frame
    model2camera = mano_rigid_transform(hand, seq.params)
    in_hand = invert_transform(model2camera) @ seq.object2camera
    assert torch.allclose(in_hand, seq.grasp.object2model.expand(FRAMES, 4, 4), atol=1e-5)
    # ... and it moves (several cm and tenths of a radian over the loop)
    travel = (seq.object2camera[:, :3, 3] - seq.object2camera[:1, :3, 3]).norm(dim=-1).max()
    assert float(travel) > 0.02
    # instance masks: both visible in every frame, disjoint, the object centre projects inside the image
    assert bool((seq.hand_mask.sum((1, 2)) > 500).all()) and bool((seq.object_mask.sum((1, 2)) > 500).all())
    assert not bool((seq.hand_mask & seq.object_mask).any())
    c = seq.object_centre_2d
    assert bool(((c[:, 0] > 0) & (c[:, 0] < seq.camera.width) & (c[:, 1] > 0) & (c[:, 1] < seq.camera.height)).all())
    # deterministic
    again = make_mano_sequence(hand, settings=ManoSequenceSettings(num_frames=FRAMES, render_masks=False),
                               grasp=seq.grasp)
    assert torch.equal(again.object2camera, seq.object2camera) and again.hand_mask is None


def test_hand_estimates_and_detections_are_seeded_noisy_copies(seq):
    a = seq.hand_estimates(pose_std=0.1, seed=4)
    b = seq.hand_estimates(pose_std=0.1, seed=4)
    assert torch.equal(a.hand_pose, b.hand_pose)
    std = float((a.hand_pose - seq.params.hand_pose).std())
    assert 0.07 < std < 0.13
    obs = seq.observation(3, keypoint_std=2.0, fingertips_only=True, seed=1)
    assert obs.keypoint_confidence.sum() == 5 and bool((obs.keypoint_confidence[list(FINGERTIP_KEYPOINTS)] == 1).all())
    err = (obs.keypoints - seq.keypoints_2d[3]).norm(dim=-1).mean()
    assert 1.0 < float(err) < 4.0
    assert obs.hand_mask.shape == (seq.camera.height, seq.camera.width)
    with pytest.raises(InvalidValueError):
        seq.observation(FRAMES)


def test_mano_params_json_round_trip_and_bad_files(tmp_path, hand, seq):
    one = seq.params[2]
    save_mano_params(tmp_path / "one.json", one, hand, extra={"object2camera": seq.object2camera[2].tolist()})
    back = load_mano_params(tmp_path / "one.json", hand)
    for name in ("global_orient", "hand_pose", "betas", "transl"):
        assert torch.allclose(getattr(back, name), getattr(one, name), atol=1e-6)
    save_mano_params(tmp_path / "all.json", seq.params)
    assert load_mano_params(tmp_path / "all.json", hand).batch_size == FRAMES
    data = one.to_dict()
    data.pop("betas")  # optional: the model's default shape
    (tmp_path / "nobetas.json").write_text(json.dumps(data))
    assert torch.equal(load_mano_params(tmp_path / "nobetas.json", hand).betas, hand.betas[None])
    data["hand_pose"] = data["hand_pose"][:6]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(ShapeError, match="hand_pose"):
        load_mano_params(tmp_path / "short.json", hand)
    data = one.to_dict()
    data["transl"][1] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(data))
    with pytest.raises(InvalidValueError, match="transl"):
        load_mano_params(tmp_path / "nan.json", hand)
    with pytest.raises(ModelFileError, match="not found"):
        load_mano_params(tmp_path / "missing.json", hand)
    with pytest.raises(ShapeError):
        ManoParams(torch.zeros(2, 3), torch.zeros(1, 45), torch.zeros(2, 10), torch.zeros(2, 3))


def test_keypoints_load_by_name_or_in_order(tmp_path):
    (tmp_path / "named.json").write_text(json.dumps(
        {"frames": [{"keypoints": {"thumb_tip": [10, 20, 0.5], "wrist": [1, 2]}}, {"keypoints": {}}]}))
    uv, conf = load_keypoints(tmp_path / "named.json")
    assert uv.shape == (2, 21, 2) and conf.shape == (2, 21)
    k = MANO_KEYPOINT_NAMES.index("thumb_tip")
    assert uv[0, k].tolist() == [10, 20] and conf[0, k] == 0.5 and conf[0, 0] == 1 and conf[1].sum() == 0
    (tmp_path / "list.json").write_text(json.dumps({"keypoints": [[float(i), 0.0] for i in range(21)]}))
    uv, conf = load_keypoints(tmp_path / "list.json")
    assert uv[0, 20, 0] == 20 and bool((conf == 1).all())
    (tmp_path / "bad.json").write_text(json.dumps({"keypoints": {"pinky": [1, 2]}}))
    with pytest.raises(InvalidValueError, match="pinky"):
        load_keypoints(tmp_path / "bad.json")
    (tmp_path / "nan.json").write_text(json.dumps({"keypoints": {"wrist": [1, float("nan")]}}))
    with pytest.raises(InvalidValueError, match="NaN"):
        load_keypoints(tmp_path / "nan.json")


# ------------------------------------------------------------------------------------------------ optimizer


def test_optimizer_recovers_hand_and_object_from_a_perturbed_start(hand, seq, estimates, object_start):
    settings = HandObjectSettings(iterations=40, terms=("mask", "keypoints", "penetration", "pose_prior"))
    opt = HandObjectOptimizer(hand, seq.obj, settings)
    obs = seq.observation(0, keypoint_std=2.0, seed=3)
    init = estimates[0]
    result = opt.optimize(obs, init, object_start)
    gt_pose = seq.object2camera[0]

    def keypoint_px(p: ManoParams) -> float:
        return float((seq.camera.project(p.forward(hand).keypoints)[0] - seq.keypoints_2d[0]).norm(dim=-1).mean())

    def joint_error(p: ManoParams, procrustes: bool = False) -> float:
        return float(mpjpe(p.forward(hand).keypoints, seq.keypoints[:1], procrustes=procrustes)[0])

    # measured: keypoints 8.4 -> 0.7 px, MPJPE 14.9 -> 1.1 mm, PA-MPJPE 6.9 -> 1.0 mm, object rotation
    # 0.090 -> 0.035 rad, object lateral offset 4.9 -> 0.2 mm, object ADD 5.6 -> 1.0 mm
    assert keypoint_px(init) > 6 and keypoint_px(result.params) < 2.0
    assert joint_error(init) > 0.01 and joint_error(result.params) < 0.004
    assert joint_error(result.params, True) < 0.4 * joint_error(init, True)
    assert _rotation_error(object_start, gt_pose) > 0.08 and _rotation_error(result.object2camera, gt_pose) < 0.06
    lateral0 = float((object_start[:2, 3] - gt_pose[:2, 3]).norm())
    lateral1 = float((result.object2camera[:2, 3] - gt_pose[:2, 3]).norm())
    assert lateral0 > 0.004 and lateral1 < 0.3 * lateral0
    add0, add1 = float(_add(seq, object_start[None])), float(_add(seq, result.object2camera[None]))
    assert add1 < 0.003 and add1 < 0.6 * add0
    assert result.loss < 0.5 * result.initial_loss and result.stopped == "iterations"
    assert set(result.terms) == {"mask", "keypoints", "penetration", "pose_prior"}


def test_optimizer_temporal_and_sliding_terms_use_the_previous_frames(hand, seq, estimates):
    opt = HandObjectOptimizer(hand, seq.obj, HandObjectSettings(iterations=2, roi_size=32))
    observations = [seq.observation(t) for t in range(3)]
    results = opt.optimize_sequence(observations, estimates[:3], seq.object2camera[0])
    assert "sliding" not in results[0].terms and "con" not in results[0].terms
    assert {"sliding", "con"} <= set(results[1].terms) and "smo" not in results[1].terms
    assert {"sliding", "con", "smo"} <= set(results[2].terms)
    assert all(math.isfinite(r.loss) for r in results)
    assert float(results[0].contact_weights.sum()) >= 3  # the held object is touched
    with pytest.raises(ShapeError):
        opt.optimize_sequence(observations, estimates[:2], seq.object2camera[0])


def test_penetration_term_pushes_the_object_out_of_the_hand(hand, seq):
    settings = HandObjectSettings(iterations=25, terms=("penetration",), optimize_hand_pose=False,
                                  optimize_hand_global=False)
    opt = HandObjectOptimizer(hand, seq.obj, settings)
    # push the object 8 mm towards the palm (the palm normal points from the palm to the object)
    model2camera = mano_rigid_transform(hand, seq.params[0])[0]
    from handypriors_core.synthetic.mano_sequences import palm_frame

    normal = model2camera[:3, :3] @ palm_frame(hand, seq.params.betas[0])[0][:, 2]
    inside = seq.object2camera[0].clone()
    inside[:3, 3] -= 0.008 * normal
    obs = HandObjectObservation(camera=seq.camera)

    def depth(pose):
        d = opt.object_sdf.signed_distance(seq.vertices[:1], pose[None]).distance
        return float((-d).clamp_min(0).max())

    result = opt.optimize(obs, seq.params[0], inside)
    assert depth(inside) > 0.005 and depth(result.object2camera) < 0.3 * depth(inside)
    assert torch.equal(result.params.hand_pose, seq.params.hand_pose[:1])


def test_optimizer_rejects_bad_inputs(hand, seq, estimates):
    with pytest.raises(ConfigError, match="unknown optimizer terms"):
        HandObjectSettings(terms=("mask", "magic"))
    opt = HandObjectOptimizer(hand, seq.obj, HandObjectSettings(iterations=1))
    obs = seq.observation(0)
    with pytest.raises(ShapeError):
        opt.optimize(obs, estimates[:2], seq.object2camera[0])
    bad = seq.object2camera[0].clone()
    bad[0, 3] = float("nan")
    with pytest.raises(InvalidValueError):
        opt.optimize(obs, estimates[0], bad)
    with pytest.raises(InvalidValueError):
        HandObjectObservation(camera=seq.camera, keypoints=torch.full((21, 2), float("nan")))
    with pytest.raises(ShapeError):
        HandObjectObservation(camera=seq.camera, hand_mask=torch.zeros(10, 10))


# ------------------------------------------------------------------------------------------------------ EKF


def _run_filter(hand, seq, estimates, object_start, observations_used):
    obs = [seq.observation(t, keypoint_std=2.0, centre_std=2.0, masks=False, seed=3) for t in range(FRAMES)]
    ekf = HandObjectEKF(hand, seq.obj, HandObjectEKFSettings(observations=observations_used))
    params, poses, steps = ekf.track(obs, estimates, estimates[0], object_start)
    mpjpe_cm = float(mpjpe(params.to(dtype=torch.float32).forward(hand).keypoints, seq.keypoints).mean()) * 100
    add_cm = float(_add(seq, poses).mean()) * 100
    return mpjpe_cm, add_cm, steps


def test_ekf_observations_of_table_one_are_ordered_sensibly(hand, seq, estimates, object_start):
    control_mpjpe = float(mpjpe(estimates.forward(hand).keypoints, seq.keypoints).mean()) * 100
    held_add = float(_add(seq, object_start.expand(FRAMES, 4, 4)).mean()) * 100
    hand_mpjpe, hand_add, steps = _run_filter(hand, seq, estimates, object_start, ("fingertips",))
    obj_mpjpe, obj_add, _ = _run_filter(hand, seq, estimates, object_start, ("centre",))
    both_mpjpe, both_add, both_steps = _run_filter(hand, seq, estimates, object_start, ("fingertips", "centre"))
    # measured (cm): control MPJPE 1.59, object held still ADD 4.4;
    # O_hand 0.98 / 1.84, O_object 1.45 / 1.45, O_hand+object 0.98 / 1.04 (MPJPE / object ADD)
    assert sum(s.used_contacts for s in steps) >= FRAMES - 3  # the contacts drive the object
    assert all(r.accepted for s in both_steps for r in s.updates.values())
    assert hand_mpjpe < 0.8 * control_mpjpe and both_mpjpe < 0.8 * control_mpjpe
    assert obj_mpjpe > both_mpjpe  # the object centre says little about the fingers
    assert hand_add < 0.7 * held_add  # fingertips alone track the object through the contacts
    assert both_add < hand_add and both_add < obj_add  # more observations, smaller errors
    assert both_add < 1.5 and hand_add < 3.0 and obj_add < 2.2


def test_ekf_process_jacobian_matches_central_differences(hand, seq, estimates, object_start):
    ekf = HandObjectEKF(hand, seq.obj)
    ekf.initialize(estimates[0], seq.object2camera[0])
    _, f, u, valid = ekf.motion_model(estimates[1])
    assert valid
    ekf.predict(estimates[1])
    F = ekf.last_process_jacobian
    ekf2 = HandObjectEKF(hand, seq.obj)
    ekf2.initialize(estimates[0], seq.object2camera[0])
    x = ekf2.ekf.state
    fx = f(x, u)
    n, h = x.dim, 1e-5
    cols = []
    for i in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[i] = h
        plus = local_difference(f(retract(x, e), u), fx)
        minus = local_difference(f(retract(x, -e), u), fx)
        cols.append((plus - minus) / (2 * h))
    F_num = torch.stack(cols, 1)
    assert F.shape == (n, n)
    assert torch.allclose(F, F_num, atol=2e-4, rtol=1e-3)
    assert float(F[:6, 6:].abs().max()) > 0.01  # the object depends on the previous hand
    assert isinstance(fx, PoseState)


def test_ekf_rejects_bad_inputs(hand, seq, estimates):
    with pytest.raises(ConfigError, match="unknown EKF observations"):
        HandObjectEKFSettings(observations=("fingertips", "depth"))
    with pytest.raises(ConfigError):
        HandObjectEKFSettings(keypoint_std=-1.0)
    ekf = HandObjectEKF(hand, seq.obj)
    with pytest.raises(InvalidValueError, match="not initialised"):
        ekf.track([seq.observation(0)], None)
    ekf.initialize(estimates[0], seq.object2camera[0])
    wrong = ManoParams(estimates.global_orient[:1], estimates.hand_pose[:1, :12], estimates.betas[:1],
                       estimates.transl[:1])
    with pytest.raises(ShapeError, match="hand_pose"):
        ekf.predict(wrong)
    with pytest.raises(ShapeError):
        ekf.track([seq.observation(0), seq.observation(1)], estimates[:3])
