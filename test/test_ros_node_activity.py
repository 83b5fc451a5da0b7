"""The tracker node's activity record (rate, drops, throttled error log) without DDS, on a fake clock."""

from __future__ import annotations

import math

import pytest

from handypriors_ros.node_activity import DROP_WINDOW_S, RATE_WINDOW_S, NodeActivity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_latency_and_staleness_from_published_frames():
    clock = Clock()
    activity = NodeActivity(clock)
    assert math.isnan(activity.health("tracking", 0.9, 2.0).rate_hz)  # nothing tracked yet: unknown
    for _ in range(5):  # 10 Hz
        assert activity.frame_tracked() >= 1
        activity.frame_published(0.05, 0.03, {"total": 0.02})
        clock.now += 0.1
    health = activity.health("tracking", 0.9, 2.0)
    assert health.rate_hz == pytest.approx(10.0)
    assert health.latency_s == 0.05 and health.frames_processed == 5 and health.quality == 0.9
    assert health.seconds_since_last_frame == pytest.approx(0.1)
    values = activity.values()
    assert values["tracker_ms"] == pytest.approx(20.0) and values["processing_ms"] == pytest.approx(30.0)
    assert values["waiting"] == ""
    clock.now += RATE_WINDOW_S + 1  # frames older than the window no longer make a rate
    assert activity.health("tracking", 0.9, 2.0).rate_hz == 0.0


def test_drops_are_counted_by_reason_and_recent_only_within_the_window():
    clock = Clock()
    activity = NodeActivity(clock)
    activity.count_drop("busy")
    activity.count_drop("not ready")
    clock.now += DROP_WINDOW_S / 2
    activity.count_drop("busy")
    health = activity.health("initialising", math.nan, 2.0)
    assert health.dropped_frames == 3 and health.dropped_frames_recent == 3
    clock.now += DROP_WINDOW_S / 2 + 0.1
    health = activity.health("initialising", math.nan, 2.0)
    assert health.dropped_frames == 3 and health.dropped_frames_recent == 1
    assert activity.values()["size_drop_times"] == 3
    activity.count_drop("input")  # the next drop trims the times outside the window
    values = activity.values()
    assert values["dropped_busy"] == 2 and values["dropped_not_ready"] == 1 and values["dropped_input"] == 1
    assert values["size_drop_times"] == 2


def test_the_same_problem_is_logged_once_per_hold_and_counted_every_time():
    clock = Clock()
    activity = NodeActivity(clock)
    assert activity.report("depth image stamp 1.250 s has no match", hold_s=2.0)
    assert not activity.report("depth image stamp 1.283 s has no match", hold_s=2.0)  # same problem, other stamp
    assert activity.report("joint_states: unknown joint 'x'", hold_s=2.0)  # another problem
    assert activity.health("tracking", 1.0, 2.0).last_error == "joint_states: unknown joint 'x'"
    clock.now += 2.5
    assert activity.report("depth image stamp 1.316 s has no match", hold_s=2.0)
    assert activity.health("tracking", 1.0, 2.0).last_error.startswith("depth image")
    clock.now += 2.5
    assert activity.health("tracking", 1.0, 2.0).last_error == ""  # older than the hold
    values = activity.values()
    assert values["errors_depth"] == 3 and values["errors_joint_states"] == 1 and values["errors_total"] == 4
    assert values["size_error_log"] == 2
