"""Hand self-calibration (issue 18): generator faults, the hand-depth modality's Jacobians against finite
differences, observability (still hand: no drift; moving hand: an injected bias is recovered; convergence from a
10 mm / 2 deg start), freezing without a usable hand, and the calibration file (round trip, wrong files)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from handypriors_core.errors import ConfigError
from handypriors_core.estimation.calibration import HandCalibrator, state_deviation
from handypriors_core.estimation.calibration_settings import CalibrationSettings
from handypriors_core.estimation.hand_depth import HandCalibrationState, HandDepthModality
from handypriors_core.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from handypriors_core.geometry.transforms import make_transform
from handypriors_core.io.calibration_file import (
    CalibrationFileError,
    HandCalibration,
    load_calibration,
    save_calibration,
)
from handypriors_core.models import URDFHand, allegro_urdf
from handypriors_core.synthetic import SyntheticSequence, load_scenario
from handypriors_core.synthetic.faults import FaultSettings, sample_faults

SMALL = {"frames": 24, "camera": {"width": 320, "height": 240}, "motion": {"close_fraction": 0.3}}


@pytest.fixture(scope="module")
def hand():
    return URDFHand.from_urdf(allegro_urdf())


@pytest.fixture(scope="module")
def faulty_seq():
    """Carry motion (fingers close, then the wrist lifts and turns) with the default fault model."""
    return SyntheticSequence(load_scenario(overrides={**SMALL, "faults": {"enabled": True}, "seed": 3}))


@pytest.fixture(scope="module")
def faulty_frames(faulty_seq):
    return [faulty_seq.frame(i) for i in range(len(faulty_seq))]


def _errors(cal: HandCalibrator, faults) -> tuple[float, float, np.ndarray]:
    """Translation [mm], rotation [deg] of correction vs the inverse injected error; offset errors [deg]."""
    residual = torch.as_tensor(faults.hand_camera_error) @ cal.state.correction
    t = float(residual[:3, 3].norm()) * 1e3
    a = math.degrees(float(matrix_to_axis_angle(residual[:3, :3]).norm()))
    return t, a, np.degrees(cal.state.offsets.numpy() - faults.joint_bias)


# ------------------------------------------------------------------------------------------------ generator
def test_fault_model_is_seeded_clipped_and_sized():
    s = FaultSettings(enabled=True)
    a, b = sample_faults(s, 16, seed=1), sample_faults(s, 16, seed=1)
    np.testing.assert_array_equal(a.joint_bias, b.joint_bias)
    assert not np.allclose(a.joint_bias, sample_faults(s, 16, seed=2).joint_bias)
    many = np.concatenate([sample_faults(s, 16, seed=k).joint_bias for k in range(40)])
    assert np.abs(many).max() <= math.radians(4.0) + 1e-12
    assert 1.6 < math.degrees(float(np.std(np.clip(many, -1, 1)))) < 2.2  # sigma 2 deg, clipped at 4
    E = a.hand_camera_error
    assert abs(np.linalg.norm(E[:3, 3]) - 0.005) < 1e-12
    assert abs(math.degrees(math.acos((np.trace(E[:3, :3]) - 1) / 2)) - 1.0) < 1e-9
    E2 = sample_faults(dataclasses.replace(s, scale=2.0), 16, seed=1).hand_camera_error
    assert abs(np.linalg.norm(E2[:3, 3]) - 0.010) < 1e-12
    none = sample_faults(FaultSettings(), 16)
    assert not none.joint_bias.any() and np.array_equal(none.hand_camera_error, np.eye(4))


def test_generator_publishes_faulty_hand_state_but_renders_the_true_one(faulty_seq):
    f = faulty_seq.faults
    assert np.abs(f.joint_bias).max() > math.radians(0.5)
    np.testing.assert_allclose(faulty_seq.joint_positions, faulty_seq.true_joint_positions + f.joint_bias)
    np.testing.assert_allclose(faulty_seq.hand2camera, faulty_seq.true_hand2camera @ f.hand_camera_error)
    clean = SyntheticSequence(faulty_seq.scenario.replace(faults={"enabled": False}))
    assert torch.equal(clean.render(5).clean_depth, faulty_seq.render(5).clean_depth)  # images: the truth
    frame = faulty_seq.frame(5)
    torch.testing.assert_close(frame.joint_angles.double(), torch.as_tensor(faulty_seq.joint_positions[5]),
                               atol=1e-6, rtol=0)
    record = json.loads(json.dumps(f.to_json(faulty_seq.joint_names)))  # what gt.json gets
    np.testing.assert_allclose(record["joint_bias_rad"], f.joint_bias)
    assert abs(record["hand_camera_error_translation_mm"] - 5.0) < 1e-9


def test_written_sequence_records_the_faults(tmp_path):
    from handypriors_core.io.dev_sequence import DevSequence
    from handypriors_core.synthetic import generate_sequence

    scenario = load_scenario(overrides={"frames": 2, "camera": {"width": 64, "height": 48}, "bag.enabled": False,
                                        "faults": {"enabled": True, "scale": 2.0}, "seed": 7})
    out = generate_sequence(scenario, tmp_path / "seq")
    gt = json.loads((out / "gt.json").read_text())
    seq = SyntheticSequence(scenario)
    np.testing.assert_allclose(gt["faults"]["joint_bias_rad"], seq.faults.joint_bias)
    assert abs(gt["faults"]["hand_camera_error_translation_mm"] - 10.0) < 1e-9
    frame = DevSequence(out)[1]  # meta.json: the measured (faulty) hand state
    np.testing.assert_allclose(frame.joint_angles.double().numpy(), seq.joint_positions[1], atol=1e-6)
    np.testing.assert_allclose(frame.hand2camera.double().numpy(), seq.hand2camera[1], atol=1e-6)


# ------------------------------------------------------------------------------------------------ Jacobians
def test_fk_point_jacobian_matches_finite_differences():
    hand = URDFHand.from_urdf(allegro_urdf(), dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    q = hand.lower_limits + (hand.upper_limits - hand.lower_limits) * torch.rand(16, generator=g, dtype=torch.float64)
    p = hand.surface_points(q[None])
    jac = hand.point_jacobian(q[None], p, hand.point_link)[0]
    eps = 1e-6
    eye = torch.eye(16, dtype=torch.float64)
    fd = torch.stack([(hand.surface_points(q + eps * eye[j]) - hand.surface_points(q - eps * eye[j])) / (2 * eps)
                      for j in range(16)], -1)
    assert fd.abs().max() > 0.05
    torch.testing.assert_close(jac, fd, atol=1e-8, rtol=0)


def test_hand_depth_jacobian_matches_finite_differences(faulty_frames):
    hand64 = URDFHand.from_urdf(allegro_urdf(), dtype=torch.float64)
    modality = HandDepthModality(hand64, CalibrationSettings())
    frame = faulty_frames[12]
    g = torch.Generator().manual_seed(1)
    state = HandCalibrationState(
        make_transform(axis_angle_to_matrix(0.01 * torch.randn(3, generator=g, dtype=torch.float64)),
                       0.003 * torch.randn(3, generator=g, dtype=torch.float64)),
        0.02 * torch.randn(16, generator=g, dtype=torch.float64))
    assoc = modality.associate(frame.depth, frame.camera, frame.joint_angles, frame.hand2camera, state)
    assert assoc.count > 100
    lin = modality.linearize(assoc, frame.joint_angles, frame.hand2camera, state)
    r0 = modality.residuals(assoc, frame.joint_angles, frame.hand2camera, state)
    torch.testing.assert_close(lin.residual, r0, atol=1e-12, rtol=0)
    eps = 1e-6
    eye = torch.eye(modality.dof, dtype=torch.float64)
    fd = torch.stack([(modality.residuals(assoc, frame.joint_angles, frame.hand2camera, state, eps * eye[k])
                       - modality.residuals(assoc, frame.joint_angles, frame.hand2camera, state, -eps * eye[k]))
                      / (2 * eps) for k in range(modality.dof)], 1)
    assert fd[:, :6].abs().max() > 0.5 and fd[:, 6:].abs().max() > 0.01  # every block is exercised
    torch.testing.assert_close(lin.jacobian, fd, atol=1e-7, rtol=1e-6)
    assert bool(((lin.weight > 0) & (lin.weight <= 1)).all())


# ------------------------------------------------------------------------------------------------ observability
def test_still_hand_keeps_the_offsets_at_their_prior(hand, faulty_seq):
    """Fault-free data, hand still (one frame repeated): the offsets stay at the prior (zero) and never drift."""
    clean = SyntheticSequence(faulty_seq.scenario.replace(faults={"enabled": False}))
    frame = clean.frame(0)
    cal = HandCalibrator(hand, CalibrationSettings(enabled=True), keep_frames=True)
    cal.update(frame)
    after_first = cal.state.offsets.clone(), cal.state.correction.clone()
    for _ in range(15):
        assert cal.update(frame).status == "still"
    assert cal.frames_used == 1 and len(cal.kept_frames) == 1
    assert torch.equal(cal.state.offsets, after_first[0]) and torch.equal(cal.state.correction, after_first[1])
    assert math.degrees(float(cal.state.offsets.abs().max())) < 0.5  # measured 0.28 deg after the first frame
    assert float(cal.state.correction[:3, 3].norm()) < 0.3e-3  # measured 0.15 mm
    cal.smooth()  # the batch re-solve over the one used frame (wider offset prior) stays near the prior too
    assert math.degrees(float(cal.state.offsets.abs().max())) < 0.8  # measured 0.57 deg
    assert float(cal.state.correction[:3, 3].norm()) < 0.3e-3  # measured 0.13 mm


def test_moving_hand_recovers_the_injected_faults(hand, faulty_seq, faulty_frames):
    cal = HandCalibrator(hand, CalibrationSettings(enabled=True))
    t0, a0, b0 = _errors(cal, faulty_seq.faults)
    for frame in faulty_frames:
        cal.update(frame)
    t, a, b = _errors(cal, faulty_seq.faults)
    assert cal.frames_used >= 15
    assert t < 0.25 and a < 0.15, (t, a, t0, a0)  # measured 0.08 mm, 0.06 deg (from 5 mm, 1 deg)
    assert np.median(np.abs(b)) < 0.4 and np.abs(b).max() < 1.5, b.round(2)  # measured 0.21, 0.76 deg
    assert np.abs(b).mean() < 0.3 * np.abs(b0).mean()  # measured 0.16
    # the reported uncertainty covers the remaining error of the hand-camera translation
    sigma = cal.covariance.diag()[:3].sqrt() * 1e3
    assert float(sigma.max()) < 0.5  # measured 0.23 mm


def test_correction_converges_from_a_10mm_2deg_start(hand, faulty_seq):
    clean = SyntheticSequence(faulty_seq.scenario.replace(faults={"enabled": False}))
    axis = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    start = make_transform(axis_angle_to_matrix(axis / axis.norm() * math.radians(2.0)),
                           torch.tensor([0.006, -0.008, 0.0], dtype=torch.float64))
    cal = HandCalibrator(hand, CalibrationSettings(enabled=True), initial=HandCalibration(
        start, torch.zeros(16, dtype=torch.float64), list(hand.joint_names)), keep_frames=True)
    for i in range(len(clean)):
        cal.update(clean.frame(i))
    C = cal.state.correction
    assert float(C[:3, 3].norm()) * 1e3 < 0.6  # measured 0.28 mm (from 10 mm)
    assert math.degrees(float(matrix_to_axis_angle(C[:3, :3]).norm())) < 0.3  # measured 0.18 deg (from 2 deg)
    cal.smooth()  # as handypriors calibrate finishes
    C = cal.state.correction
    assert float(C[:3, 3].norm()) * 1e3 < 0.15  # measured 0.04 mm
    assert math.degrees(float(matrix_to_axis_angle(C[:3, :3]).norm())) < 0.15  # measured 0.08 deg


def test_state_deviation_inverts_the_perturbation():
    g = torch.Generator().manual_seed(4)
    state = HandCalibrationState(make_transform(axis_angle_to_matrix(0.05 * torch.randn(3, generator=g,
                                                                                        dtype=torch.float64)),
                                                0.01 * torch.randn(3, generator=g, dtype=torch.float64)),
                                 0.05 * torch.randn(16, generator=g, dtype=torch.float64))
    x = torch.cat((0.004 * torch.randn(3, generator=g, dtype=torch.float64),
                   0.03 * torch.randn(3, generator=g, dtype=torch.float64),
                   0.05 * torch.randn(16, generator=g, dtype=torch.float64)))
    torch.testing.assert_close(state_deviation(state.perturbed(x), state), x, atol=1e-12, rtol=0)
    assert float(state_deviation(state, state).abs().max()) == 0.0


def test_batch_resolve_recovers_2x_faults_beyond_the_recursive_estimate(hand):
    """2x faults (10 mm / 2 deg, offsets up to 7 deg): the recursive pass linearises each frame once where it
    stands; the re-solve over the kept frames re-linearises all of them under the wide offset prior."""
    seq = SyntheticSequence(load_scenario(overrides={**SMALL, "faults": {"enabled": True, "scale": 2.0}, "seed": 3}))
    faults = seq.faults
    cal = HandCalibrator(hand, CalibrationSettings(enabled=True), keep_frames=True)
    for i in range(len(seq)):
        cal.update(seq.frame(i))
    assert len(cal.kept_frames) == cal.frames_used >= 15
    _, _, b_rec = _errors(cal, faults)
    update = cal.smooth()
    t, a, b = _errors(cal, faults)
    assert update.status == "smoothed" and update.points == cal.frames_used
    assert t < 0.2 and a < 0.15, (t, a)  # measured 0.07 mm, 0.08 deg (recursive alone: 0.11 mm, 0.18 deg)
    assert np.median(np.abs(b)) < 0.25 and np.abs(b).max() < 1.2, b.round(2)  # measured 0.11, 0.77 deg
    assert np.median(np.abs(b)) < 0.5 * np.median(np.abs(b_rec))  # recursive alone: median 0.44 deg
    sigma = cal.covariance.diag().sqrt()
    assert float(sigma[:3].max()) * 1e3 < 0.5  # measured 0.26 mm
    # the reported offset uncertainty covers the remaining offset errors (measured: all within 1.5 sigma)
    assert (np.abs(b) <= 2.5 * np.degrees(sigma[6:].numpy())).all()


def test_kept_frames_are_thinned_evenly(hand, faulty_frames):
    cal = HandCalibrator(hand, CalibrationSettings(enabled=True, smoothing_frames=5), keep_frames=True)
    for frame in faulty_frames[:12]:
        cal.update(frame)
    assert cal.frames_used >= 8 and 3 <= len(cal.kept_frames) <= 5
    kept = [next(i for i, f in enumerate(faulty_frames) if f is k) for k in cal.kept_frames]
    assert kept == sorted(kept) and kept[-1] >= 9 and kept[0] <= 4  # spread over the whole run
    assert not HandCalibrator(hand, CalibrationSettings(enabled=True)).kept_frames  # the node keeps none


def test_excluded_links_are_not_observed_and_unknown_names_are_rejected(hand, faulty_frames):
    base = hand.link_names.index("base_link")
    settings = CalibrationSettings()
    full = HandDepthModality(hand, settings)
    fine = HandDepthModality(hand, settings, excluded_links=["base_link"])
    assert bool((hand.point_link[full.point_index] == base).any())
    assert not bool((hand.point_link[fine.point_index] == base).any())
    frame = faulty_frames[12]
    state = HandCalibrationState.identity(16)
    assoc = fine.associate(frame.depth, frame.camera, frame.joint_angles, frame.hand2camera, state)
    assert assoc.count > 100 and not bool((hand.point_link[fine.point_index[assoc.index]] == base).any())
    with pytest.raises(ConfigError, match="palm_typo"):
        HandDepthModality(hand, settings, excluded_links=["palm_typo"])
    with pytest.raises(ConfigError, match="palm_typo"):
        HandCalibrator(hand, CalibrationSettings(smoothing_excluded_links=["palm_typo"]))


def test_estimate_freezes_without_a_usable_hand(hand, faulty_frames):
    cal = HandCalibrator(hand, CalibrationSettings(enabled=True))
    cal.update(faulty_frames[0])
    before = cal.state.offsets.clone(), cal.covariance.clone()
    blind = dataclasses.replace(faulty_frames[10], depth=torch.full_like(faulty_frames[10].depth, float("nan")))
    status = cal.update(blind).status
    assert status.startswith("frozen") and "hand points" in status
    assert cal.update(dataclasses.replace(faulty_frames[11], depth=None)).status == "frozen: no depth"
    assert torch.equal(cal.state.offsets, before[0]) and torch.equal(cal.covariance, before[1])
    assert cal.smooth([blind]).status == "frozen: no usable frame"  # the re-solve too
    assert cal.smooth([]).status == "frozen: no usable frame"
    assert torch.equal(cal.state.offsets, before[0]) and torch.equal(cal.covariance, before[1])


def test_correct_applies_the_convention(hand, faulty_seq, faulty_frames):
    """With the exact inverse faults, the corrected hand state equals the truth."""
    f = faulty_seq.faults
    truth = HandCalibration(torch.linalg.inv(torch.as_tensor(f.hand_camera_error)), torch.as_tensor(f.joint_bias),
                            list(hand.joint_names))
    cal = HandCalibrator(hand, CalibrationSettings(), initial=truth)
    corrected = cal.correct(faulty_frames[7])
    np.testing.assert_allclose(corrected.joint_angles.double().numpy(), faulty_seq.true_joint_positions[7], atol=1e-6)
    np.testing.assert_allclose(corrected.hand2camera.double().numpy(), faulty_seq.true_hand2camera[7], atol=1e-6)


def test_tracker_hook_feeds_the_corrected_hand_to_the_object_estimation(hand, faulty_seq, faulty_frames):
    from handypriors_core.estimation.settings import TrackerSettings
    from handypriors_core.estimation.tracker import ObjectTracker

    settings = TrackerSettings(mode="filter")
    settings.calibration.enabled = True
    tracker = ObjectTracker(hand, faulty_seq.object_model(), settings)
    posed = []
    pose_hand = tracker.scene.pose_hand
    tracker.scene.pose_hand = lambda q, T: posed.append((q.clone(), T.clone())) or pose_hand(q, T)
    tracker.initialize(torch.as_tensor(faulty_seq.object2camera[0]))
    for frame in faulty_frames[:3]:
        est = tracker.track(frame)
        expected = tracker.calibration.correct(frame)  # the estimate after this frame's update
        torch.testing.assert_close(posed[-1][0], expected.joint_angles)
        torch.testing.assert_close(posed[-1][1], expected.hand2camera)
        assert "calibration" in est.timings
    assert tracker.calibration.frames_used == 3
    assert not torch.equal(posed[-1][0], faulty_frames[2].joint_angles)  # corrected, not the measured values


# ------------------------------------------------------------------------------------------------ file
def test_calibration_file_round_trip(tmp_path, hand):
    C = make_transform(axis_angle_to_matrix(torch.tensor([0.01, -0.02, 0.005], dtype=torch.float64)),
                       torch.tensor([0.001, 0.002, -0.003], dtype=torch.float64))
    cal = HandCalibration(C, torch.linspace(-0.05, 0.05, 16, dtype=torch.float64), list(hand.joint_names),
                          torch.eye(22, dtype=torch.float64) * 1e-6, frames_used=42)
    path = save_calibration(cal, tmp_path / "cal.yaml")
    back = load_calibration(path, hand.joint_names)
    torch.testing.assert_close(back.correction, C, atol=1e-12, rtol=0)
    torch.testing.assert_close(back.joint_offsets, cal.joint_offsets)
    torch.testing.assert_close(back.covariance, cal.covariance)
    assert back.frames_used == 42
    # offsets are put in the hand's joint order whatever the file's order
    reordered = load_calibration(path, list(reversed(hand.joint_names)))
    torch.testing.assert_close(reordered.joint_offsets, cal.joint_offsets.flip(0))


@pytest.mark.parametrize(("text", "message"), [
    ("just a string", "expected a mapping"),
    ("hand_camera_correction: {translation: [0, 0, 0], rotation_xyzw: [0, 0, 0, 1]}", "missing key 'joint_offsets'"),
    ("hand_camera_correction: {translation: [0, 0], rotation_xyzw: [0, 0, 0, 1]}\njoint_offsets: {joint_0.0: 0}",
     "translation must be a list of 3"),
    ("hand_camera_correction: {translation: [0, 0, 0], rotation_xyzw: [0, 0, 0, 2]}\njoint_offsets: {joint_0.0: 0}",
     "unit quaternion"),
    (("hand_camera_correction: {translation: [0.3, 0, 0.4], rotation_xyzw: [0, 0, 0, 1]}\n"
     "joint_offsets: {joint_0.0: 0}"), "implausible"),
    ("hand_camera_correction: {translation: [0, 0, 0], rotation_xyzw: [0, 0, 0, 1]}\njoint_offsets: {joint_0.0: 5}",
     "joint_offsets.joint_0.0"),
    (("hand_camera_correction: {translation: [0, 0, .nan], rotation_xyzw: [0, 0, 0, 1]}\n"
     "joint_offsets: {joint_0.0: 0}"), "finite"),
    ("hand_camera_correction: {translation: [0, 0, 0], rotation_xyzw: [0, 0, 0, 1]}\njoint_offsets: {joint_0.0: 0}",
     "missing ['joint_1.0'"),
    ("format: something_else\nhand_camera_correction: {}\njoint_offsets: {}", "format must be"),
    ("hand_camera_correction: [unclosed", "not valid YAML"),
])
def test_wrong_calibration_file_is_rejected_with_a_clear_error(tmp_path, hand, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationFileError, match=None) as info:
        load_calibration(path, hand.joint_names)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_calibration_file_is_rejected(tmp_path):
    with pytest.raises(CalibrationFileError, match="does not exist"):
        load_calibration(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------------------ bags and CLI
@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    """A generated fault-free sequence on disk with its bag (carry: the wrist moves, so /tf carries the hand)."""
    from handypriors_core.synthetic import generate_sequence

    out = tmp_path_factory.mktemp("calib_bag") / "seq"
    generate_sequence(load_scenario(overrides={"frames": 6, "camera": {"width": 160, "height": 120}, "seed": 5,
                                               "motion": {"close_fraction": 0.3}, "bag": {"joint_rate_factor": 2}}),
                      out)
    return out


def test_inject_faults_rewrites_joint_states_and_hand_transform(tmp_path, hand, small_bag):
    from handypriors_core.io.bag_reader import BagReader
    from handypriors_core.io.bag_settings import load_bag_settings
    from handypriors_core.synthetic.fault_bags import inject_faults_into_bag

    faults = sample_faults(FaultSettings(enabled=True), 16, seed=4)
    counts = inject_faults_into_bag(small_bag / "bag", tmp_path / "faulty", faults, hand.joint_names)
    assert counts["joint_states"] > 6 and counts["hand_transforms"] > 6
    with pytest.raises(Exception, match="already exists"):
        inject_faults_into_bag(small_bag / "bag", tmp_path / "faulty", faults, hand.joint_names)
    settings = load_bag_settings(None)
    with BagReader(small_bag / "bag", hand.joint_names, settings) as a, \
            BagReader(tmp_path / "faulty", hand.joint_names, settings) as b:
        pairs = list(zip((f.frame for f in a.frames()), (f.frame for f in b.frames()), strict=True))
    assert len(pairs) == 6
    for clean, faulty in pairs:
        assert torch.equal(clean.rgb, faulty.rgb) and torch.equal(clean.depth.nan_to_num(), faulty.depth.nan_to_num())
        np.testing.assert_allclose(faulty.joint_angles.double().numpy(),
                                   clean.joint_angles.double().numpy() + faults.joint_bias, atol=1e-6)
        np.testing.assert_allclose(faulty.hand2camera.double().numpy(),
                                   clean.hand2camera.double().numpy() @ faults.hand_camera_error, atol=1e-6)


def test_calibrate_command_writes_a_yaml_that_loads(tmp_path, hand, small_bag, capsys):
    from handypriors_core.cli import main

    out = tmp_path / "cal.yaml"
    config = tmp_path / "config.yaml"
    config.write_text("tracking:\n  calibration:\n    min_points: 20\n")  # a 160x120 image shows few hand points
    code = main(["calibrate", str(small_bag / "bag"), "--out", str(out), "--config", str(config)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "frames used" in text and "joint offsets [deg]" in text
    cal = load_calibration(out, hand.joint_names)
    assert cal.frames_used >= 3 and cal.covariance is not None
    # fault-free recording: the correction stays small
    assert float(cal.translation.norm()) < 0.5e-3  # measured 0.15 mm
    assert math.degrees(float(cal.joint_offsets.abs().max())) < 0.6  # measured 0.24 deg
    bad = tmp_path / "bad.yaml"
    bad.write_text("joint_offsets: {}\n")
    assert main(["calibrate", str(small_bag / "bag"), "--out", str(tmp_path / "x.yaml"), "--initial",
                 str(bad)]) == 2
    assert "hand_camera_correction" in capsys.readouterr().err
