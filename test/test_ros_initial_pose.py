"""The tracker node's initial pose without DDS: ~/initial_pose (any frame), the parameter, the global search."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from handypriors_core.geometry.transforms import make_transform
from handypriors_core.io.transform_buffer import TransformLookupError
from handypriors_ros import conversions as cv
from handypriors_ros.initial_pose import SEARCH_RETRY_S, InitialPoseSource, WaitingForPose

F64 = torch.float64


class FakeTracker:
    def __init__(self, search_ok: bool = False) -> None:
        self.initialized = False
        self.calls: list[tuple[str, object]] = []
        self.search_ok = search_ok

    def reset(self, pose):
        self.calls.append(("reset", pose))
        self.initialized = pose is not None

    def initialize(self, pose):
        self.calls.append(("initialize", pose))
        self.initialized = True

    def initialize_from_frame(self, frame):
        self.calls.append(("search", frame))
        self.initialized = self.search_ok
        return SimpleNamespace(ok=self.search_ok, score=0.9, status="ok" if self.search_ok else "no_mask")


def pose(x: float) -> torch.Tensor:
    return make_transform(torch.eye(3, dtype=F64), torch.tensor([x, 0.0, 0.5], dtype=F64))


def make_source(now: list[float]):
    reports, logs, lookups = [], [], []
    hand2camera = pose(0.1)

    def lookup(target, source, stamp):
        lookups.append((target, source, stamp))
        if source != "hand_root":
            raise TransformLookupError(f"frame {source!r} is not in the TF tree")
        return hand2camera

    source = InitialPoseSource(lookup, lambda message, warn=False: reports.append(message) or True, logs.append,
                               clock=lambda: now[0])
    return source, reports, logs, lookups, hand2camera


def test_a_received_pose_in_another_frame_goes_through_tf_and_resets_the_track():
    now = [0.0]
    source, reports, logs, lookups, hand2camera = make_source(now)
    tracker = FakeTracker()
    source.received(cv.matrix_to_pose_stamped(pose(0.02), "hand_root", 1_500_000_000))
    source.ensure(tracker, "frame", "camera", parameter_pose=None, global_search=False)
    (kind, applied), = tracker.calls
    assert kind == "reset" and torch.allclose(applied, hand2camera @ pose(0.02))
    assert lookups == [("camera", "hand_root", 1_500_000_000)] and source.pending is None and not reports
    # a pose in the camera frame needs no lookup; the next frame then tracks without asking again
    source.received(cv.matrix_to_pose_stamped(pose(0.3), "camera"))
    source.ensure(tracker, "frame", "camera", parameter_pose=None, global_search=False)
    assert torch.allclose(tracker.calls[-1][1], pose(0.3)) and len(lookups) == 1
    source.ensure(tracker, "frame", "camera", parameter_pose=None, global_search=False)
    assert len(tracker.calls) == 2 and any("~/initial_pose" in line for line in logs)


def test_a_bad_received_pose_is_reported_and_the_parameter_is_used():
    now = [0.0]
    source, reports, _, _, _ = make_source(now)
    tracker = FakeTracker()
    source.received(cv.matrix_to_pose_stamped(pose(0.02), "nowhere"))
    source.ensure(tracker, "frame", "camera", parameter_pose=pose(0.2), global_search=False)
    assert len(reports) == 1 and "'nowhere'" in reports[0] and "ignored" in reports[0]
    assert tracker.calls[0][0] == "initialize" and torch.equal(tracker.calls[0][1], pose(0.2))


def test_without_a_pose_the_global_search_runs_at_most_once_per_retry_period():
    now = [10.0]
    source, reports, logs, _, _ = make_source(now)
    tracker = FakeTracker(search_ok=False)
    with pytest.raises(WaitingForPose):
        source.ensure(tracker, "f0", "camera", parameter_pose=None, global_search=True)
    assert [c[0] for c in tracker.calls] == ["search"] and "found no pose" in reports[-1]
    now[0] += SEARCH_RETRY_S / 2
    with pytest.raises(WaitingForPose):  # too soon for another search
        source.ensure(tracker, "f1", "camera", parameter_pose=None, global_search=True)
    assert len(tracker.calls) == 1
    now[0] += SEARCH_RETRY_S
    tracker.search_ok = True
    source.ensure(tracker, "f2", "camera", parameter_pose=None, global_search=True)
    assert tracker.calls[-1] == ("search", "f2") and tracker.initialized and "global search" in logs[-1]
    with pytest.raises(WaitingForPose):  # search off and nothing else: the frame waits
        source.ensure(FakeTracker(), "f3", "camera", parameter_pose=None, global_search=False)
