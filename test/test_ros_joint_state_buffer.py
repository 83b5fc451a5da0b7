"""handypriors_ros.joint_state_buffer: interpolation to image stamps, partial / bad / unknown / backwards messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handypriors_core.errors import JointNameError
from handypriors_core.models.joint_maps import JointMap
from handypriors_ros.joint_state_buffer import JointStateBuffer, JointStateLookupError

S = 1_000_000_000
T0 = 1_700_000_000 * S
HAND = [f"joint_{i}.0" for i in range(16)]


def _ramp(t_ns: int) -> np.ndarray:
    """Joint i moves linearly: q_i(t) = 0.1 i + (i + 1) * (t - T0) [s]."""
    t = (t_ns - T0) / S
    return np.array([0.1 * i + (i + 1) * t for i in range(16)])


def _filled(period_ns: int = S // 100, count: int = 50, **kwargs) -> JointStateBuffer:
    buffer = JointStateBuffer(HAND, **kwargs)
    for k in range(count):
        stamp = T0 + k * period_ns
        assert buffer.add(HAND, _ramp(stamp).tolist(), stamp) == []
    return buffer


def test_interpolates_linearly_between_bracketing_messages():
    buffer = _filled()
    stamp = T0 + 123_456_789  # between the 12th and 13th message (10 ms apart)
    sample = buffer.positions_at(stamp)
    assert sample.status == "interpolated" and sample.joint_names == tuple(HAND)
    assert sample.positions.dtype == torch.float64 and sample.positions.shape == (16,)
    assert np.allclose(sample.positions.numpy(), _ramp(stamp), atol=1e-12)
    assert sample.max_offset_ns == 6_543_211  # distance to the farther bracketing message
    exact = buffer.positions_at(T0 + 20 * S // 100)
    assert exact.status == "exact" and np.allclose(exact.positions.numpy(), _ramp(T0 + 20 * S // 100))
    assert buffer.time_range_ns() == (T0, T0 + 49 * S // 100)


def test_outside_the_range_holds_within_tolerance_else_raises():
    buffer = _filled(max_extrapolation_s=0.02)
    newest = T0 + 49 * S // 100
    held = buffer.positions_at(newest + 15_000_000)
    assert held.status == "held" and held.max_offset_ns == 15_000_000
    assert np.allclose(held.positions.numpy(), _ramp(newest))
    with pytest.raises(JointStateLookupError, match=r"25\.000 ms after the newest joint state of joint_0\.0"):
        buffer.positions_at(newest + 25_000_000)
    with pytest.raises(JointStateLookupError, match=r"before the oldest"):
        buffer.positions_at(T0 - 21_000_000)


def test_partial_messages_are_interpolated_per_joint():
    buffer = JointStateBuffer(HAND)
    fingers, thumb = HAND[:12], HAND[12:]
    for k in range(4):  # a driver publishing the fingers and the thumb in separate messages, 3 ms apart
        stamp = T0 + k * 10_000_000
        assert buffer.add(fingers, _ramp(stamp)[:12].tolist(), stamp) == []
        assert buffer.add(thumb, _ramp(stamp + 3_000_000)[12:].tolist(), stamp + 3_000_000) == []
    stamp = T0 + 15_000_000
    assert np.allclose(buffer.positions_at(stamp).positions.numpy(), _ramp(stamp), atol=1e-12)


def test_missing_joints_are_named():
    buffer = JointStateBuffer(HAND)
    buffer.add(HAND[:15], [0.0] * 15, T0)
    with pytest.raises(JointStateLookupError, match=r"no joint_states received yet for joint\(s\) \['joint_15.0'\]"):
        buffer.positions_at(T0)


def test_nan_values_are_rejected_naming_the_joint():
    buffer = JointStateBuffer(HAND)
    values = _ramp(T0)
    values[3] = math.nan
    issues = buffer.add(HAND, values.tolist(), T0)
    assert len(issues) == 1 and issues[0].level == "error" and "joint_3.0" in issues[0].message
    buffer.add(HAND, _ramp(T0 + S // 10).tolist(), T0 + S // 10)
    # joint 3 has only the second sample; the others interpolate normally
    with pytest.raises(JointStateLookupError, match="before the oldest joint state of joint_3.0"):
        buffer.positions_at(T0 + S // 20)
    assert buffer.positions_at(T0 + S // 10).status == "exact"


def test_implausible_values_are_dropped_like_nan():
    buffer = JointStateBuffer(HAND)
    values = _ramp(T0)
    values[[2, 5]] = [1e6, -1e300]  # no joint turns that far
    issues = buffer.add(HAND, values.tolist(), T0)
    assert len(issues) == 1 and "joint_2.0" in issues[0].message and "joint_5.0" in issues[0].message
    assert "joint_0.0" not in issues[0].message
    values[[2, 5]] = [99.0, -99.0]  # within the bound: kept
    assert buffer.add(HAND, values.tolist(), T0 + S // 10) == []


def test_unknown_names_are_reported_once():
    buffer = JointStateBuffer(HAND)
    names = [*HAND, "arm_joint_1"]
    first = buffer.add(names, [0.0] * 17, T0)
    assert len(first) == 1 and "arm_joint_1" in first[0].message and "reported once" in first[0].message
    assert buffer.add(names, [0.0] * 17, T0 + 1) == []
    assert len(buffer.add([*names, "arm_joint_2"], [0.0] * 18, T0 + 2)) == 1
    assert buffer.positions_at(T0 + 1).status == "exact"


def test_stamps_going_backwards_reset_the_buffer():
    buffer = _filled(count=10)
    issues = buffer.add(HAND, _ramp(T0).tolist(), T0 - S)  # e.g. a looped bag
    assert [i.level for i in issues] == ["warn"] and "went backwards" in issues[0].message
    assert "buffer reset" in issues[0].message
    assert buffer.time_range_ns() == (T0 - S, T0 - S)
    with pytest.raises(JointStateLookupError):
        buffer.positions_at(T0 + S // 20)


def test_duplicate_stamp_replaces_and_length_mismatch_is_dropped():
    buffer = JointStateBuffer(HAND)
    buffer.add(HAND, [1.0] * 16, T0)
    assert buffer.add(HAND, [2.0] * 16, T0) == []
    assert buffer.positions_at(T0).positions.tolist() == [2.0] * 16
    issues = buffer.add(HAND, [0.0] * 3, T0 + 1)
    assert issues[0].level == "error" and "16 names but 3 positions" in issues[0].message


def test_history_is_time_limited():
    buffer = _filled(period_ns=S // 10, count=40, history_s=1.0)  # 4 s of data, keep 1 s
    oldest, newest = buffer.time_range_ns()
    assert newest - oldest == S


def test_wonik_driver_names_map_to_urdf_order():
    buffer = JointStateBuffer(HAND, JointMap.shipped("wonik_ros2"))
    wonik = JointMap.shipped("wonik_ros2")
    names = list(wonik.mapping)  # ah_joint00 (thumb) first
    positions = [float(HAND.index(wonik.mapping[n])) for n in names]  # value = URDF index
    buffer.add(names, positions, T0)
    assert buffer.positions_at(T0).positions.tolist() == [float(i) for i in range(16)]


def test_sign_and_offset_of_the_map_are_applied():
    mapping = {f"drv{i}": HAND[i] for i in range(16)}
    joint_map = JointMap("custom", mapping, sign={"drv2": -1.0}, offset={"drv5": 0.25})
    buffer = JointStateBuffer(HAND, joint_map)
    buffer.add(list(mapping), [1.0] * 16, T0)
    q = buffer.positions_at(T0).positions
    assert q[2] == -1.0 and q[5] == 1.25 and q[0] == 1.0


def test_map_must_cover_the_hand():
    with pytest.raises(JointNameError, match="joint_15.0"):
        JointStateBuffer(HAND, JointMap("short", {f"d{i}": HAND[i] for i in range(15)}))


def test_add_message_reads_a_joint_state():
    from sensor_msgs.msg import JointState

    from handypriors_ros.conversions import make_header

    buffer = JointStateBuffer(HAND)
    msg = JointState(header=make_header(T0 + 7, ""), name=HAND, position=[0.5] * 16, velocity=[], effort=[])
    assert buffer.add_message(msg) == []
    assert buffer.positions_at(T0 + 7).positions.tolist() == [0.5] * 16
