"""The region (contour) modality's numpy CPU path and its noise model.

Scene: a generated 320 x 240 frame (the fingers carry a box in front of a cluttered background), the tracker run
colour-only for one frame so that the modality has learnt its histograms; then the numpy path
(:mod:`handypriors_core.estimation.region_arrays`) and the torch path (the reference) linearise the same frame at
the same poses.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from handypriors_core.estimation.pose_state import PoseState, retract
from handypriors_core.estimation.region_arrays import (
    line_jacobian_array,
    line_residual_array,
    without_weak_directions,
)
from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.models import URDFHand, allegro_urdf
from handypriors_core.synthetic import SyntheticSequence, load_scenario

_F64 = torch.float64


@pytest.fixture(scope="module")
def colour_tracker(tmp_path_factory):
    seq = SyntheticSequence(load_scenario(overrides={"frames": 2, "seed": 5,
                                                     "camera": {"width": 320, "height": 240}}))
    truth = seq.ground_truth(visible_fraction=False).object2camera.double()
    settings = TrackerSettings(mode="filter")
    settings.roi.size = 64
    settings.region.cache_dir = str(tmp_path_factory.mktemp("viewpoints"))
    settings.region.view_subdivisions = 2  # 162 views: a cheaper model to build
    tracker = ObjectTracker(URDFHand.from_urdf(allegro_urdf()), seq.object_model(), settings)
    tracker.initialize(truth[0])
    tracker.track(dataclasses.replace(seq.frame(0), depth=None))
    return tracker, truth[0]


def _poses(truth: torch.Tensor, count: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.006] * 3 + [0.06] * 3, dtype=_F64)
    return [retract(PoseState.from_pose(truth), torch.randn(6, generator=g, dtype=_F64) * scale).pose
            for _ in range(count)]


def test_numpy_path_equals_the_torch_path(colour_tracker):
    tracker, truth = colour_tracker
    region = tracker.filter.region
    assert region._frame is not None and region.hist_f is not None
    levels = len(region.settings.scales)
    compared = 0
    for pose, model in zip(_poses(truth, 3, 0), ("with_depth", "always", "always"), strict=True):
        region.settings.noise_model = model  # colour only: off, then on (weights / lines per independent one)
        for it in range(levels):
            region.use_arrays = True
            fast = region.linearize(pose, it)
            assert region._arrays is not None  # the numpy path ran
            region.use_arrays = False
            ref = region.linearize(pose, it)
            assert (fast is None) == (ref is None)
            if ref is None:
                continue
            assert isinstance(fast.residual, np.ndarray)
            assert fast.count == ref.count and fast.count >= region.settings.min_lines
            np.testing.assert_allclose(fast.residual, ref.residual.numpy(), rtol=0, atol=1e-9)
            np.testing.assert_allclose(fast.jacobian, ref.jacobian.numpy(), rtol=1e-10, atol=1e-9)
            np.testing.assert_allclose(fast.weight, ref.weight.numpy(), rtol=0, atol=1e-10)
            assert (fast.std, fast.noise_floor, fast.correlation) == (ref.std, ref.noise_floor, ref.correlation)
            assert fast.noise_floor == (fast.std if model == "always" else 0.0)
            compared += 1
    assert compared >= 3 * levels - 2
    region.use_arrays = True
    region.settings.noise_model = "with_depth"


def test_numpy_path_learns_the_torch_paths_histograms(colour_tracker):
    tracker, truth = colour_tracker
    region = tracker.filter.region
    obs, occlusion = region._frame
    hist = (region.hist_f.clone(), region.hist_b.clone())
    learnt = []
    for use_arrays in (True, False):
        region.use_arrays = use_arrays
        region.hist_f, region.hist_b = hist[0].clone(), hist[1].clone()
        region.learn(obs, _poses(truth, 1, 3)[0], occlusion, rate=0.5, margin=6.0)
        learnt.append((region.hist_f.clone(), region.hist_b.clone()))
    region.use_arrays = True
    region.hist_f, region.hist_b = hist
    assert not torch.equal(learnt[0][0], hist[0])  # it learnt something
    assert torch.allclose(learnt[0][0], learnt[1][0], rtol=0, atol=1e-15)
    assert torch.allclose(learnt[0][1], learnt[1][1], rtol=0, atol=1e-15)


def test_numpy_line_jacobian_matches_finite_differences(colour_tracker):
    tracker, truth = colour_tracker
    region = tracker.filter.region
    fa = region._arrays
    fx, fy = fa.intrinsics[:2]
    for pose in _poses(truth, 3, 7):
        P = pose.numpy()
        lines = region._lines_array(fa, P, region.half_length(0))
        mu = np.linspace(-3.0, 3.0, lines.centres.shape[0])
        assert np.allclose(line_residual_array(P, lines, mu, fa.intrinsics), -mu, atol=1e-9)
        J = line_jacobian_array(P, lines, fx, fy)
        state = PoseState.from_pose(pose)
        cols = []
        for i in range(6):
            d = torch.zeros(6, dtype=_F64)
            d[i] = 1e-6
            plus, minus = (retract(state, s * d).pose.numpy() for s in (1, -1))
            cols.append((line_residual_array(plus, lines, mu, fa.intrinsics)
                         - line_residual_array(minus, lines, mu, fa.intrinsics)) / 2e-6)
        np.testing.assert_allclose(J, np.stack(cols, -1), rtol=1e-6, atol=1e-5)


def test_frame_lookups_outside_the_box_read_the_image(colour_tracker):
    from handypriors_core.estimation.region_arrays import RegionFrame

    tracker, truth = colour_tracker
    region = tracker.filter.region
    fa = region._arrays
    level = region.level_constants(0)
    lines = region._lines_array(fa, truth.numpy(), region.half_length(0))
    whole = RegionFrame(fa.rgb, fa.hand, (0, 0, fa.width - 1, fa.height - 1), fa.bits, fa.intrinsics)
    corner = RegionFrame(fa.rgb, fa.hand, (fa.x0, fa.y0, fa.x0 + 20, fa.y0 + 20), fa.bits, fa.intrinsics)
    table = region._log_ratio_table()
    out = []
    for frame in (whole, corner):
        s = frame.sample(lines.centres, lines.normals, level.offsets.reshape(-1))
        out.append((frame.cells(s), frame.log_ratio(s, table), frame.hand_pixels(s, lines.depth, 0.005), s))
    assert out[0][3].outside is None and out[1][3].outside.mean() > 0.5
    for a, b in zip(out[0][:3], out[1][:3], strict=True):
        np.testing.assert_array_equal(a, b)
    hand = out[0][2]
    assert 0.01 < hand.mean() < 0.5  # the fingers cross some of the lines


def _ar1(n: int, rho: float, sigma: float, g: np.random.Generator) -> np.ndarray:
    """``(n,)`` stationary AR(1) sequence of lag-1 correlation ``rho`` and standard deviation ``sigma``."""
    e = np.empty(n)
    e[0] = g.normal(0, sigma)
    for i in range(1, n):
        e[i] = rho * e[i - 1] + g.normal(0, sigma * (1 - rho * rho) ** 0.5)
    return e


def _contour_lines(colour_tracker):
    tracker, truth = colour_tracker
    region = tracker.filter.region
    fa = region._arrays
    lines = region._lines_array(fa, truth.numpy(), region.half_length(len(region.settings.scales) - 1))
    J = line_jacobian_array(truth.numpy(), lines, *fa.intrinsics[:2])
    d = lines.centres - lines.centres.mean(0)
    order = np.argsort(np.arctan2(d[:, 1], d[:, 0]), kind="stable")  # around the contour
    return region, lines, J, order


def test_line_correlation_counts_lines_per_independent_one(colour_tracker):
    from handypriors_core.estimation.region_arrays import line_correlation

    _region, lines, J, order = _contour_lines(colour_tracker)
    L = lines.centres.shape[0]
    g = np.random.default_rng(0)
    w = np.ones(L)
    for rho in (0.0, 0.6, 0.85):
        factors = []
        for _ in range(20):
            r = np.empty(L)
            r[order] = _ar1(L, rho, 1.0, g)
            factors.append(line_correlation(r, J, w, lines.centres, 50.0))
        expected = (1 + rho) / (1 - rho)
        assert 0.6 * expected <= np.median(factors) <= 1.4 * expected, (rho, np.median(factors))
    # residuals a pose change explains are no evidence of correlated errors
    delta = np.array([0.002, -0.001, 0.003, 0.02, -0.01, 0.015])
    assert line_correlation(J @ delta + g.normal(0, 0.3, L), J, w, lines.centres, 50.0) < 1.5
    # capped: a slow wave along the contour (which no pose change explains) counts as at most 4 lines per one
    r = np.empty(L)
    r[order] = np.sin(np.linspace(0, 14 * np.pi, L))
    assert line_correlation(r, J, w, lines.centres, 50.0) > 10
    assert line_correlation(r, J, w, lines.centres, 4.0) == pytest.approx(4.0)


def test_region_covariance_follows_the_spread_of_correlated_line_errors(colour_tracker):
    """Monte Carlo over 200 draws of contour errors correlated along the contour (AR(1), rho 0.8, 1.2 px) on the
    lines of the generated frame: the pose estimate's covariance of the noise model (weights divided by the lines
    per independent one, scatter above the level's std) matches the estimates' real spread (mean NEES 6 when
    consistent; measured 4.0); weighed as independent lines, it is overconfident (measured 25)."""
    region, lines, J, order = _contour_lines(colour_tracker)
    L = lines.centres.shape[0]
    std = region.settings.standard_deviations[-1]
    g = np.random.default_rng(1)
    nees = {"always": [], "off": []}
    for _ in range(200):
        r = np.empty(L)
        r[order] = _ar1(L, 0.8, 1.2, g)
        for model, values in nees.items():
            region.settings.noise_model = model
            w = np.ones(L)
            block = region._block(r, J, w, std, region._correlation(r, J, w, lines.centres))
            W = np.asarray(block.weight)
            Lam = (J * W[:, None]).T @ J / std ** 2
            delta = -np.linalg.solve(Lam, (J * W[:, None]).T @ r / std ** 2)
            f = block.variance_factor(r + J @ delta) if block.noise_floor > 0 else 1.0
            cov = f * np.linalg.inv(Lam)
            values.append(float(delta @ np.linalg.solve(cov, delta)))
    region.settings.noise_model = "with_depth"
    assert 3.0 <= np.mean(nees["always"]) <= 12.0, np.mean(nees["always"])  # 6 when consistent
    assert np.mean(nees["off"]) > 3 * np.mean(nees["always"]), (np.mean(nees["off"]), np.mean(nees["always"]))


def test_frames_with_depth_hold_the_last_search_until_the_contour_moves(colour_tracker, monkeypatch):
    """On a frame with depth (a track's later frame) the region searches once per level of ``levels_with_depth``;
    later iterations hold that search's lines, weights and correlation (the residuals and Jacobians are evaluated at
    the iterate) until a contour point moved more than ``hold_shift`` px; both paths alike. A track's first frame and
    frames without depth search at every iteration."""
    tracker, truth = colour_tracker
    region = tracker.filter.region
    saved_state, s = dict(region.__dict__), region.settings
    saved_settings = (s.levels_with_depth, s.hold_shift, s.hold_with_depth)
    obs, occlusion = region._frame
    H, W = obs.frame.rgb.shape[:2]
    with_depth = dataclasses.replace(obs, frame=dataclasses.replace(obs.frame, depth=torch.ones(H, W)))
    searches = []
    for name in ("_correspondences_arrays", "_correspondences"):
        method = getattr(type(region), name)
        monkeypatch.setattr(type(region), name,
                            lambda self, *a, _m=method, **k: (searches.append(1), _m(self, *a, **k))[1])
    state = PoseState.from_pose(truth)
    near = retract(state, torch.tensor([2e-4, -1e-4, 0.0, 0.0, 1e-3, 0.0], dtype=_F64)).pose  # < 1 px
    far = retract(state, torch.tensor([1e-2, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=_F64)).pose  # ~ 7 px
    try:
        s.levels_with_depth, s.hold_shift, s.hold_with_depth = [2, 3], 3.0, True
        blocks = {}
        for use_arrays in (True, False):
            region.use_arrays = use_arrays
            assert region.begin(with_depth, truth, occlusion) and region._hold
            assert region._frame_levels == [2, 3]
            searches.clear()
            searched = region.linearize(truth, 0), region.linearize(truth, 1)
            assert len(searches) == 2
            held = region.linearize(near, 2)
            assert len(searches) == 2  # held: no new search
            lines, mu, _weight, _std, correlation = region._held
            np.testing.assert_array_equal(np.asarray(held.weight), np.asarray(searched[1].weight))
            assert held.correlation == searched[1].correlation and correlation > 1
            r, J = (np.asarray(a) for a in region._evaluate(near, lines, mu))
            np.testing.assert_allclose(np.asarray(held.residual), r, atol=1e-12)
            np.testing.assert_allclose(np.asarray(held.jacobian), J, atol=1e-12)
            assert 0.05 < np.abs(r + np.asarray(mu)).max() < 3.0  # the contour moved, less than hold_shift
            region.linearize(far, 3)
            assert len(searches) == 3  # moved ~7 px: searched again
            blocks[use_arrays] = held
        np.testing.assert_allclose(blocks[True].residual, blocks[False].residual.numpy(), atol=1e-9)
        np.testing.assert_allclose(blocks[True].weight, blocks[False].weight.numpy(), atol=1e-10)
        region.use_arrays = True
        # without depth, or on a track's first frame: every level, a search at every iteration
        hist = region.hist_f
        region.hist_f = None
        region.begin(with_depth, truth, occlusion)
        assert not region._hold and region._frame_levels == list(range(len(s.scales)))
        region.hist_f = hist
        assert region.begin(obs, truth, occlusion) and not region._hold
        searches.clear()
        for it in range(6):
            region.linearize(near, it)
        assert len(searches) == 6
    finally:
        s.levels_with_depth, s.hold_shift, s.hold_with_depth = saved_settings
        region.__dict__.update(saved_state)


def test_a_late_first_convergence_leaves_the_covariance(colour_tracker):
    """The settle rule (the k-th converged update after a start keeps at least the initial variances times
    ``settle_factor^k``) holds within the ``settle_frames`` frames after the start only: colour-only updates seldom
    converge, and a first convergence 17 frames in raised the covariance back to the start's (the box of
    ``block_lift_wrist`` turned 12 deg at once)."""
    tracker, _truth = colour_tracker
    filt = tracker.filter
    saved = (filt.ekf.covariance.clone(), filt._frames, filt._settled)
    try:
        small = torch.diag(torch.tensor([1e-8] * 3 + [1e-6] * 3, dtype=_F64))
        for frames, raised in ((filt.settings.settle_frames + 7, False), (1, True)):
            filt.ekf.covariance, filt._frames, filt._settled = small.clone(), frames, 0
            filt._settle()
            assert torch.equal(filt.ekf.covariance, small) != raised
            if raised:  # the first converged update: at least the initial variances
                assert torch.all(filt.ekf.covariance.diagonal() >= filt._initial_variances * (1 - 1e-12))
    finally:
        filt.ekf.covariance, filt._frames, filt._settled = saved


def test_weak_directions_are_left_to_the_prior():
    """``without_weak_directions`` removes exactly the pose directions along which the lines add less than
    ``min_gain`` times the prior's information (generalised eigenvectors of the lines' information against the
    prior's, here from scipy's generalised eigensolver): the information keeps the other directions' part, the
    update's step has no part along the removed ones and the full step's part along the others."""
    from scipy.linalg import eigh

    g = np.random.default_rng(3)
    weak_axis = np.array([0.002, 0.0, 0.0, 0.0, 1.0, 0.0])  # a rotation the contour barely sees, with a slide
    weak_axis /= np.linalg.norm(weak_axis)
    J = g.normal(size=(60, 6)) * np.array([400.0, 400.0, 150.0, 25.0, 25.0, 60.0])
    J = J - 0.999 * np.outer(J @ weak_axis, weak_axis)
    w, r, std = g.uniform(0.2, 1.0, 60), g.normal(size=60), 1.5
    A = g.normal(size=(6, 6))
    prior = np.diag([1e-5] * 3 + [1e-3] * 3) + 1e-6 * A @ A.T
    prior_inf = np.linalg.inv(prior)
    info = (J * w[:, None]).T @ J / std ** 2
    gains, X = eigh(info, prior_inf)  # info X = prior_inf X diag(gains), X^T prior_inf X = I
    assert gains[0] < 1.0 < gains[1]  # one direction weaker than the prior, five stronger
    J_kept = without_weak_directions(J, w, std, prior, 1.0)
    info_kept = (J_kept * w[:, None]).T @ J_kept / std ** 2
    weak, strong = X[:, :1], X[:, 1:]
    expected = info - prior_inf @ weak @ np.diag(gains[:1]) @ weak.T @ prior_inf
    np.testing.assert_allclose(info_kept, expected, atol=1e-9 * np.abs(info).max())

    def step(jac):
        return -np.linalg.solve(prior_inf + (jac * w[:, None]).T @ jac / std ** 2, (jac * w[:, None]).T @ r / std ** 2)

    full, kept = step(J), step(J_kept)
    np.testing.assert_allclose(weak.T @ prior_inf @ kept, 0.0, atol=1e-9)
    np.testing.assert_allclose(strong.T @ prior_inf @ kept, strong.T @ prior_inf @ full, rtol=1e-7, atol=1e-9)
    assert abs(float((weak.T @ prior_inf @ full)[0])) > 1e-3  # the full step did move along the weak direction
    assert without_weak_directions(J, w, std, prior, 0.0) is J  # nothing weaker than no gain
    everything = without_weak_directions(J, w, std, prior, 2 * gains[-1])
    np.testing.assert_allclose(everything, 0.0, atol=1e-9 * np.abs(J).max())


def test_colour_only_frames_leave_the_directions_the_lines_barely_see_to_the_prior(colour_tracker):
    """On a frame without depth (after a track's first) the finest level's block has no information along the
    directions where its lines add less than ``weak_gain`` times the prior's, and the next such frame brings in the
    texture; coarse levels and frames with depth keep every direction."""
    from scipy.linalg import eigh

    tracker, truth = colour_tracker
    region = tracker.filter.region
    obs, occlusion = region._frame
    assert obs.frame.depth is None and region.hist_f is not None
    finest = len(region.settings.scales) - 1
    prior = np.diag([2e-4] * 3 + [1e-3] * 3)  # 1.4 cm / 1.8 deg: some directions better seen by the prior

    def information(pose, iteration, prior_covariance, frame):
        region.begin(frame, pose, occlusion, prior_covariance=prior_covariance)
        block = region.linearize(pose, iteration)
        J, w = np.asarray(block.jacobian, np.float64), np.asarray(block.weight, np.float64)
        return (J * w[:, None]).T @ J / block.std ** 2

    saved = region.settings.weak_gain
    try:
        pose = _poses(truth, 1, 4)[0]
        full = information(pose, finest, None, obs)
        gains = eigh(full, np.linalg.inv(prior), eigvals_only=True)
        region.settings.weak_gain = float(np.sqrt(gains[1] * gains[2]))  # two directions weaker than that
        kept = eigh(information(pose, finest, torch.from_numpy(prior), obs), np.linalg.inv(prior), eigvals_only=True)
        np.testing.assert_allclose(kept[:2], 0.0, atol=1e-9 * gains[-1])
        np.testing.assert_allclose(kept[2:], gains[2:], rtol=1e-6)
        # the next frame without depth brings in the texture (region.texture_where_weak) to observe them
        assert region.left_to_prior and tracker.filter._texture_where_weak(obs)
        region.settings.texture_where_weak = False
        assert not tracker.filter._texture_where_weak(obs)
        region.settings.texture_where_weak = True
        coarse = information(pose, 0, torch.from_numpy(prior), obs)
        np.testing.assert_allclose(coarse, information(pose, 0, None, obs), rtol=1e-12)
        with_depth = dataclasses.replace(obs, frame=dataclasses.replace(
            obs.frame, depth=torch.ones(obs.frame.rgb.shape[:2])))
        np.testing.assert_allclose(information(pose, finest, torch.from_numpy(prior), with_depth),
                                   information(pose, finest, None, with_depth), rtol=1e-12)
        assert not region.left_to_prior and not tracker.filter._texture_where_weak(with_depth)
        region.settings.weak_gain = 0.5 * gains[0]  # every direction better seen by the lines than by the prior
        information(pose, finest, torch.from_numpy(prior), obs)
        assert not region.left_to_prior
    finally:
        region.settings.weak_gain, region.settings.texture_where_weak = saved, True
        region.begin(obs, truth, occlusion)
