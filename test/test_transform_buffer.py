"""TransformBuffer: chains in both directions, interpolation (lerp + slerp), typed errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from handypriors_core.errors import HandyPriorsError, InvalidValueError
from handypriors_core.io.transform_buffer import (
    ExtrapolationError,
    NoPathError,
    TransformBuffer,
    UnknownFrameError,
    slerp,
)

S = 1_000_000_000


def rigid(rotvec, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def test_static_chain_both_directions():
    rng = np.random.default_rng(0)
    a2w = rigid(rng.normal(size=3), rng.normal(size=3))
    b2a = rigid(rng.normal(size=3), rng.normal(size=3))
    c2w = rigid(rng.normal(size=3), rng.normal(size=3))
    buf = TransformBuffer()
    buf.add_static("world", "a", a2w)
    buf.add_static("a", "b", b2a)
    q = Rotation.from_matrix(c2w[:3, :3]).as_quat()  # xyzw, like geometry_msgs
    buf.add_static("/world", "c", position=c2w[:3, 3], quaternion=q)
    b2w = a2w @ b2a
    np.testing.assert_allclose(buf.lookup("world", "b", 5 * S).numpy(), b2w, atol=1e-12)
    np.testing.assert_allclose(buf.lookup("b", "world").numpy(), np.linalg.inv(b2w), atol=1e-12)
    # through the common ancestor: b -> world -> c
    expected = np.linalg.inv(c2w) @ b2w
    got = buf.lookup("c", "b", 0)
    assert got.dtype == torch.float64 and got.shape == (4, 4)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(buf.lookup("b", "c", 0).numpy(), np.linalg.inv(expected), atol=1e-12)
    np.testing.assert_allclose(buf.lookup("a", "a", 0).numpy(), np.eye(4))
    assert buf.frames == {"world", "a", "b", "c"} and buf.parent("b") == "a" and buf.is_static("c")


def test_dynamic_interpolation_lerp_and_slerp():
    buf = TransformBuffer()
    t0, t1 = 10 * S, 11 * S
    buf.add_dynamic("cam", "hand", t1, rigid([0, 0, math.pi / 2], [1.0, 0.0, 0.0]))  # out of order on purpose
    buf.add_dynamic("cam", "hand", t0, rigid([0, 0, 0], [0.0, 0.0, 0.0]))
    mid = buf.lookup("cam", "hand", t0 + S // 4).numpy()
    np.testing.assert_allclose(mid, rigid([0, 0, math.pi / 8], [0.25, 0.0, 0.0]), atol=1e-12)
    np.testing.assert_allclose(buf.lookup("cam", "hand", t1).numpy(), rigid([0, 0, math.pi / 2], [1, 0, 0]),
                               atol=1e-12)
    # the inverse direction interpolates the same edge
    np.testing.assert_allclose(buf.lookup("hand", "cam", t0 + S // 4).numpy(), np.linalg.inv(mid), atol=1e-12)
    assert buf.time_range("hand") == (t0, t1)


def test_slerp_matches_scipy_and_takes_short_arc():
    rng = np.random.default_rng(1)
    for _ in range(20):
        r = Rotation.random(2, random_state=rng)
        q = r.as_quat()
        w = float(rng.uniform())
        ref = Slerp([0.0, 1.0], r)(w).as_matrix()
        got = Rotation.from_quat(slerp(q[0], q[1], w)).as_matrix()
        np.testing.assert_allclose(got, ref, atol=1e-9)
        # -q is the same rotation: the result must not change
        got_neg = Rotation.from_quat(slerp(q[0], -q[1], w)).as_matrix()
        np.testing.assert_allclose(got_neg, ref, atol=1e-9)


def test_moving_base_on_static_mount():
    """camera_link -> optical (static mount), world -> camera_link (static), world -> hand (dynamic arm)."""
    rng = np.random.default_rng(2)
    optical2link = rigid([-math.pi / 2, 0, -math.pi / 2], [0, 0.015, 0])
    link2world = rigid(rng.normal(size=3) * 0.3, [0.5, 0.0, 0.4])
    hand_samples = [rigid(rng.normal(size=3) * 0.2, rng.normal(size=3) * 0.1) for _ in range(3)]
    buf = TransformBuffer()
    buf.add_static("camera_link", "camera_color_optical_frame", optical2link)
    buf.add_static("world", "camera_link", link2world)
    for k, T in enumerate(hand_samples):
        buf.add_dynamic("world", "hand_root", k * S // 10, T)
    stamp = S // 10 + S // 20  # half way between samples 1 and 2
    r = Slerp([0, 1], Rotation.from_matrix([hand_samples[1][:3, :3], hand_samples[2][:3, :3]]))(0.5).as_matrix()
    hand2world = np.eye(4)
    hand2world[:3, :3] = r
    hand2world[:3, 3] = 0.5 * (hand_samples[1][:3, 3] + hand_samples[2][:3, 3])
    expected = np.linalg.inv(link2world @ optical2link) @ hand2world
    np.testing.assert_allclose(buf.lookup("camera_color_optical_frame", "hand_root", stamp).numpy(), expected,
                               atol=1e-12)


def test_errors_are_typed():
    buf = TransformBuffer()
    buf.add_dynamic("cam", "hand", 2 * S, np.eye(4))
    buf.add_dynamic("cam", "hand", 3 * S, np.eye(4))
    buf.add_static("other_root", "other", np.eye(4))
    with pytest.raises(UnknownFrameError, match="'nowhere'.*known frames: cam, hand"):
        buf.lookup("cam", "nowhere", 2 * S)
    with pytest.raises(ExtrapolationError, match="after the last"):
        buf.lookup("cam", "hand", 4 * S)
    with pytest.raises(ExtrapolationError, match="before the first"):
        buf.lookup("hand", "cam", S)
    with pytest.raises(NoPathError):
        buf.lookup("cam", "other", 2 * S)
    for err in (UnknownFrameError, ExtrapolationError, NoPathError):
        assert issubclass(err, HandyPriorsError) and issubclass(err, LookupError)
    assert not buf.can_transform("cam", "hand", 10 * S) and buf.can_transform("cam", "hand", 2 * S)
    with pytest.raises(InvalidValueError, match="loop"):
        buf.add_static("hand", "cam", np.eye(4))
    with pytest.raises(InvalidValueError, match="not rigid"):
        buf.add_static("cam", "x", np.diag([2.0, 1, 1, 1]))
    with pytest.raises(InvalidValueError, match="stamp_ns"):
        buf.add_dynamic("cam", "y", 1.5, np.eye(4))
    with pytest.raises(InvalidValueError, match="quaternion"):
        buf.add_static("cam", "z", position=[0, 0, 0], quaternion=[0, 0, 0, 0])


def test_extrapolation_tolerance_clamps_to_nearest():
    buf = TransformBuffer(max_extrapolation_s=0.05)
    buf.add_dynamic("cam", "hand", S, rigid([0, 0, 0], [1, 2, 3]))
    np.testing.assert_allclose(buf.lookup("cam", "hand", S + S // 25).numpy()[:3, 3], [1, 2, 3])
    with pytest.raises(ExtrapolationError):
        buf.lookup("cam", "hand", S + S // 10)


def test_latest_common_time_and_tf_message():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    V3, Q = ts.types["geometry_msgs/msg/Vector3"], ts.types["geometry_msgs/msg/Quaternion"]
    Tr, TS = ts.types["geometry_msgs/msg/Transform"], ts.types["geometry_msgs/msg/TransformStamped"]
    TFM = ts.types["tf2_msgs/msg/TFMessage"]

    def stamped(parent, child, sec, x):
        return TS(header=Header(stamp=Time(sec=sec, nanosec=0), frame_id=parent), child_frame_id=child,
                  transform=Tr(translation=V3(x=x, y=0.0, z=0.0), rotation=Q(x=0.0, y=0.0, z=0.0, w=1.0)))

    buf = TransformBuffer()
    n = buf.add_tf_message(TFM(transforms=[stamped("w", "a", 1, 1.0), stamped("w", "b", 1, 5.0)]))
    buf.add_tf_message(TFM(transforms=[stamped("w", "a", 3, 3.0)]))
    buf.add_tf_message(TFM(transforms=[stamped("w", "b", 2, 7.0)]))
    assert n == 2
    # latest time with data on both edges is t = 2 s: a at x = 2 (interpolated), b at x = 7
    np.testing.assert_allclose(buf.lookup("a", "b").numpy()[:3, 3], [5.0, 0, 0])


def test_stamp_zero_is_latest_and_same_frame_is_identity():
    """tf2 semantics: ``Time(0)`` = the latest common time; a frame to itself is the identity, known or not."""
    buf = TransformBuffer()
    buf.add_dynamic("w", "a", 2 * S, rigid([0, 0, 0], [2.0, 0, 0]))
    buf.add_dynamic("w", "a", 4 * S, rigid([0, 0, 0], [4.0, 0, 0]))
    np.testing.assert_allclose(buf.lookup("w", "a", 0).numpy()[:3, 3], [4.0, 0, 0])
    np.testing.assert_array_equal(buf.lookup("w", "a", 0).numpy(), buf.lookup("w", "a", None).numpy())
    np.testing.assert_array_equal(buf.lookup("ghost", "/ghost", 3 * S).numpy(), np.eye(4))
    with pytest.raises(UnknownFrameError, match="'ghost' is unknown"):
        buf.lookup("w", "ghost", 3 * S)


def test_exact_stamp_returns_the_stored_matrix():
    T = rigid([0.3, -1.2, 2.0], [0.1, 0.2, 0.3])
    buf = TransformBuffer()
    buf.add_dynamic("w", "a", S, T)
    buf.add_dynamic("w", "a", 2 * S, np.eye(4))
    np.testing.assert_array_equal(buf.lookup_numpy("w", "a", S), T)


def test_cache_time_prunes_restarts_on_jump_back_and_clear_keeps_static():
    buf = TransformBuffer(cache_time_s=1.0)
    buf.add_static("w", "s", rigid([0, 0, 0], [0, 0, 1.0]))
    for i in range(30):  # 3 s at 10 Hz
        buf.add_dynamic("w", "a", 10 * S + i * S // 10, rigid([0, 0, 0], [i, 0, 0]))
    assert buf.time_range("a") == (10 * S + 19 * S // 10, 10 * S + 29 * S // 10)
    buf.add_dynamic("w", "a", 10 * S + 2 * S, rigid([0, 0, 0], [-5.0, 0, 0]))  # same stamp: replaces
    assert buf.lookup_numpy("w", "a", 12 * S)[0, 3] == -5.0
    buf.add_dynamic("w", "a", 5 * S, rigid([0, 0, 0], [-1.0, 0, 0]))  # clock jumped back: history restarts
    assert buf.time_range("a") == (5 * S, 5 * S)
    unlimited = TransformBuffer()
    for stamp in (10 * S, 5 * S):
        unlimited.add_dynamic("w", "a", stamp, np.eye(4))
    assert unlimited.time_range("a") == (5 * S, 10 * S)
    buf.clear()
    assert buf.frames == {"w", "s"} and buf.is_static("s")
    with pytest.raises(InvalidValueError, match="cache_time_s"):
        TransformBuffer(cache_time_s=0.0)


def test_interpolate_transform_is_the_buffers_interpolation():
    from handypriors_core.io.transform_buffer import interpolate_transform

    rng = np.random.default_rng(3)
    a, b = rigid(rng.normal(size=3), rng.normal(size=3)), rigid(rng.normal(size=3), rng.normal(size=3))
    buf = TransformBuffer()
    buf.add_dynamic("w", "x", 0, a)
    buf.add_dynamic("w", "x", S, b)
    np.testing.assert_allclose(interpolate_transform(a, b, 0.3), buf.lookup_numpy("w", "x", 3 * S // 10),
                               atol=1e-12)
    out = interpolate_transform(torch.from_numpy(a), torch.from_numpy(b), 0.0)
    assert isinstance(out, torch.Tensor) and torch.allclose(out, torch.from_numpy(a), atol=1e-12)
