"""Loss of track and recovery: the monitor's policy, then teleported and occluded objects on generated frames.

The end-to-end runs go through ``ObjectTracker.track`` (filter mode) with the colour model as mask source: its
monitor inflates the covariance, re-initialises by the global search around the last good pose and stops the
colour model's learning while lost. Ground truth is used for scoring only.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch

from handypriors_core.errors import ConfigError
from handypriors_core.estimation.initialization import InitializationSettings
from handypriors_core.estimation.recovery import RecoverySettings, TrackingMonitor, load_recovery_settings
from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform
from handypriors_core.metrics.pose_errors import add_s
from handypriors_core.segmentation import ColourModelMask, ColourModelSettings
from handypriors_core.segmentation.testing import make_scene, move_object, random_view

F64 = torch.float64
POSE = torch.eye(4, dtype=F64)


# ------------------------------------------------------------------------------------------------- policy
def test_lost_after_bad_frames_then_recovered():
    monitor = TrackingMonitor(RecoverySettings(lost_after=3, recovered_after=2, covariance_inflation=25.0))
    assert monitor.status == "initialising"
    good_pose = POSE.clone()
    good_pose[0, 3] = 0.1
    d = monitor.observe(0.9, good_pose)
    assert d.status == "tracking" and d.good and d.learn and d.inflate == 1.0 and not d.reinitialize
    statuses, inflations, reinits = [], [], []
    for q in (0.1, 0.1, 0.1, 0.2, 0.9, 0.9):
        d = monitor.observe(q, POSE)
        statuses.append(d.status)
        inflations.append(d.inflate)
        reinits.append(d.reinitialize)
        if d.reinitialize:
            assert torch.equal(d.near, good_pose)  # search around the last good pose
    assert statuses == ["tracking", "tracking", "lost", "lost", "lost", "tracking"]
    assert inflations == [1.0, 1.0, 25.0, 1.0, 1.0, 1.0]  # inflated once, when lost
    assert reinits == [False, False, True, True, False, False]
    assert monitor.reason.startswith("recovered")
    assert torch.equal(monitor.last_good_pose, POSE)  # updated again once tracking


def test_bad_frames_of_every_kind():
    s = RecoverySettings(lost_after=1, innovation_threshold=5.0)
    for kwargs, words in (({"quality": math.nan}, "non-finite quality"), ({"quality": None}, "non-finite quality"),
                          ({"quality": 0.9, "innovation": 50.0}, "innovation"),
                          ({"quality": 0.9, "innovation": math.inf}, "innovation"),
                          ({"quality": 0.9, "observation": "empty mask (0 object pixels)"}, "empty mask"),
                          ({"quality": 0.9, "pose": torch.full((4, 4), math.nan)}, "non-finite pose")):
        monitor = TrackingMonitor(s)
        d = monitor.observe(**kwargs)
        assert d.status == "lost" and not d.good and not d.learn and words in d.reason, (kwargs, d.reason)
        assert d.near is None  # no good pose yet: a global search
        assert math.isfinite(monitor.last_quality) and 0.0 <= monitor.last_quality <= 1.0
    monitor = TrackingMonitor(s)
    assert monitor.observe(0.95, POSE, innovation=1.0).good
    assert not monitor.observe(0.5, POSE).learn  # below learn_threshold: no learning


def test_reinitialisation_policy(caplog):
    s = RecoverySettings(lost_after=1, reinit_every=2, search_near_attempts=1, reinit_min_score=0.6)
    monitor = TrackingMonitor(s)
    monitor.observe(0.9, POSE)
    with caplog.at_level(logging.INFO, logger="handypriors.tracking"):
        decisions = [monitor.observe(0.0, POSE) for _ in range(5)]
    assert "track tracking -> lost" in caplog.text
    assert [d.reinitialize for d in decisions] == [True, False, True, False, True]
    assert decisions[0].near is not None
    assert not monitor.accept_reinitialization(0.59, POSE) and "rejected" in monitor.reason
    assert not monitor.accept_reinitialization(0.7, POSE)  # below 0.8 x the track's typical quality 0.9
    assert not monitor.accept_reinitialization(math.nan, POSE)
    assert not monitor.accept_reinitialization(0.9, None)
    d = monitor.observe(0.0, POSE)
    assert d.near is None  # near attempts used up: search over all rotations
    assert monitor.accept_reinitialization(0.8, POSE) and "re-initialised" in monitor.reason
    diag = monitor.diagnostics()
    assert diag["status"] == "lost" and all(isinstance(v, str) for v in diag.values())
    monitor.reset()
    assert monitor.status == "initialising" and monitor.last_good_pose is None


def test_settings():
    assert load_recovery_settings() == RecoverySettings()
    with pytest.raises(ConfigError):
        RecoverySettings(lost_after=0)
    with pytest.raises(ConfigError):
        RecoverySettings(covariance_inflation=0.5)


# --------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def scene():
    return make_scene("box")


def _adds(scene, a, b) -> float:
    return float(add_s(scene.object.samples.double(), a[None].double(), b[None].double())[0])


def _track(scene, views, pose0):
    """``ObjectTracker.track`` (filter mode) over generated views with the colour model as mask source; records
    each estimate, the covariance inflations and the re-initialisation searches the tracker runs."""
    settings = TrackerSettings(mode="filter")
    settings.recovery = RecoverySettings(lost_after=2, recovered_after=2)
    tracker = ObjectTracker(scene.hand, scene.object, settings, initialization=InitializationSettings(rotations=300))
    tracker.mask_source = ColourModelMask(tracker.scene, ColourModelSettings(learn_from="update"))
    inflations: list[tuple[int, float]] = []
    searches: list[int] = []
    inflate, search = tracker.filter.inflate, tracker.search.search

    def recording_inflate(factor):
        inflations.append((frame_index, factor))
        inflate(factor)

    def recording_search(*args, **kwargs):
        searches.append(frame_index)
        return search(*args, **kwargs)

    tracker.filter.inflate, tracker.search.search = recording_inflate, recording_search
    tracker.initialize(pose0)
    estimates = []
    for frame_index, view in enumerate(views):
        estimates.append(tracker.track(view.frame))
    return estimates, inflations, searches


def test_teleported_object_is_detected_and_recovered(scene):
    g = torch.Generator().manual_seed(700)
    view = random_view(scene, g)
    start = view.object2camera
    # teleport: 2.5 cm towards the camera-right and 1 rad about the viewing axis (no hand penetration; the filter,
    # iterating until converged, follows a 0.5 rad teleport within one frame)
    moved = make_transform(axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0], dtype=F64)) @ start[:3, :3],
                           start[:3, 3] + torch.tensor([0.025, 0.0, -0.01], dtype=F64))
    views = [view, move_object(scene, view, start, g, index=1)]
    views += [move_object(scene, view, moved, g, index=k) for k in range(2, 8)]
    estimates, inflations, searches = _track(scene, views, start)
    statuses = [e.status for e in estimates]
    errors = [_adds(scene, e.object2camera, v.object2camera) for e, v in zip(estimates, views, strict=True)]
    # measured (seed 700): tracking 0.04-0.05 cm; the jump at frame 2 is a bad frame (1.8 cm off); lost at frame 3
    # (lost_after 2): covariance inflated once, re-initialised there (0.16 cm), tracking again at frame 5
    # (recovered_after 2), 0.03-0.06 cm on the last frames
    assert statuses[:2] == ["tracking", "tracking"] and max(errors[:2]) < 0.002, (statuses, errors)
    lost_at = statuses.index("lost")
    assert 2 < lost_at <= 4, statuses  # detected within lost_after (+1) frames of the jump
    assert inflations == [(lost_at, RecoverySettings().covariance_inflation)], inflations
    assert searches and searches[0] == lost_at, searches
    assert "re-initialised" in estimates[searches[-1]].reason, [e.reason for e in estimates]
    recovered_at = statuses.index("tracking", lost_at)
    assert recovered_at <= searches[-1] + 2 and set(statuses[recovered_at:]) == {"tracking"}, statuses
    assert max(errors[recovered_at:]) < 0.001, errors  # back at the normal accuracy (measured <= 0.03 cm)


def test_occluded_object_is_held_through_the_occlusion(scene):
    g = torch.Generator().manual_seed(800)
    view = random_view(scene, g)
    pose = view.object2camera

    def occluded(k):
        v = move_object(scene, view, pose, g, index=k)
        ys, xs = torch.nonzero(v.object_mask > 0.5, as_tuple=True)
        rgb, depth = v.frame.rgb.clone(), v.frame.depth.clone()
        sl = (slice(int(ys.min()) - 3, int(ys.max()) + 4), slice(int(xs.min()) - 3, int(xs.max()) + 4))
        rgb[sl] = torch.tensor([90, 90, 90], dtype=torch.uint8)  # a grey board in front of the object
        depth[sl] = 0.12
        return dataclasses.replace(v, frame=dataclasses.replace(v.frame, rgb=rgb, depth=depth))

    views = [view, move_object(scene, view, pose, g, index=1)] + [occluded(k) for k in range(2, 6)]
    views += [move_object(scene, view, pose, g, index=k) for k in range(6, 10)]
    estimates, inflations, searches = _track(scene, views, pose)
    statuses = [e.status for e in estimates]
    errors = [_adds(scene, e.object2camera, v.object2camera) for e, v in zip(estimates, views, strict=True)]
    # every visible sample of the object lies behind the board: nothing contradicts the held pose (quality 1.0 by
    # design), so the track is held, not lost; measured (seed 800) 0.05-0.26 cm throughout
    assert [e.quality for e in estimates[2:6]] == [1.0] * 4, [e.reason for e in estimates]
    assert set(statuses) == {"tracking"} and not inflations and not searches, (statuses, inflations, searches)
    assert max(errors) < 0.006, errors
