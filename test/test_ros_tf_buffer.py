"""handypriors_ros.tf_buffer: chains, interpolation, static + dynamic, errors, and the DDS-fed fallback lookup."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from handypriors_core.geometry.rotations import axis_angle_to_matrix, matrix_to_quaternion, quaternion_to_matrix
from handypriors_core.geometry.transforms import invert_transform, make_transform
from handypriors_ros.tf_buffer import (
    ExtrapolationError,
    NoPathError,
    TfBuffer,
    TransformLookupError,
    UnknownFrameError,
    add_tf_message_safely,
    interpolate_transform,
)

S = 1_000_000_000  # ns per second
T0 = 1_700_000_000 * S


def _transform(axis_angle, translation) -> torch.Tensor:
    rotation = axis_angle_to_matrix(torch.tensor(axis_angle, dtype=torch.float64))
    return make_transform(rotation, torch.tensor(translation, dtype=torch.float64))


def _random_transform(gen: torch.Generator) -> torch.Tensor:
    return make_transform(
        axis_angle_to_matrix(torch.randn(3, generator=gen, dtype=torch.float64)),
        torch.randn(3, generator=gen, dtype=torch.float64),
    )


def _slerp_reference(q0: np.ndarray, q1: np.ndarray, w: float) -> np.ndarray:
    """Textbook quaternion slerp (shortest arc), written independently of the buffer's."""
    if np.dot(q0, q1) < 0:
        q1 = -q1
    omega = math.acos(min(1.0, float(np.dot(q0, q1))))
    if omega < 1e-12:
        return q0
    return (math.sin((1 - w) * omega) * q0 + math.sin(w * omega) * q1) / math.sin(omega)


@pytest.fixture
def tree():
    """world -(static)-> base -(dynamic)-> hand ; world -(static)-> camera ; other tree: map -> robot."""
    buffer = TfBuffer(cache_time_s=10.0, max_extrapolation_s=0.01)
    frames = {
        "base2world": _transform([0.0, 0.0, 0.3], [1.0, 0.0, 0.0]),
        "camera2world": _transform([0.2, -0.1, 0.0], [0.0, 2.0, 1.0]),
        "hand2base@0": _transform([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
        "hand2base@1": _transform([0.0, 0.0, math.pi / 2], [2.0, 0.0, 0.0]),
    }
    buffer.add_transform("world", "base", 0, frames["base2world"], static=True)
    buffer.add_transform("/world", "camera", 0, frames["camera2world"], static=True)
    buffer.add_transform("base", "hand", T0, frames["hand2base@0"])
    buffer.add_transform("base", "hand", T0 + S, frames["hand2base@1"])
    buffer.add_transform("map", "robot", T0, torch.eye(4, dtype=torch.float64), static=True)
    return buffer, frames


def test_chain_through_common_ancestor_and_inverse(tree):
    buffer, f = tree
    hand2world = f["base2world"] @ f["hand2base@0"]
    assert torch.allclose(buffer.lookup("world", "hand", T0), hand2world, atol=1e-12)
    expected = invert_transform(f["camera2world"]) @ f["base2world"] @ f["hand2base@1"]
    assert torch.allclose(buffer.lookup("camera", "hand", T0 + S), expected, atol=1e-12)
    assert torch.allclose(buffer.lookup("hand", "camera", T0 + S), invert_transform(expected), atol=1e-12)
    assert torch.allclose(buffer.lookup("/camera", "camera", T0), torch.eye(4, dtype=torch.float64))
    assert buffer.frames == {"world", "base", "camera", "hand", "map", "robot"}


def test_interpolation_midpoint(tree):
    buffer, f = tree
    mid = buffer.lookup("base", "hand", T0 + S // 2)
    assert torch.allclose(mid, _transform([0.0, 0.0, math.pi / 4], [1.0, 0.0, 0.0]), atol=1e-12)
    quarter = buffer.lookup("world", "hand", T0 + S // 4)
    assert torch.allclose(quarter, f["base2world"] @ _transform([0.0, 0.0, math.pi / 8], [0.5, 0.0, 0.0]), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_interpolation_matches_quaternion_slerp(seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = _random_transform(gen), _random_transform(gen)
    w = float(torch.rand(1, generator=gen))
    result = interpolate_transform(a, b, w)
    q0 = matrix_to_quaternion(a[:3, :3]).numpy()
    q1 = matrix_to_quaternion(b[:3, :3]).numpy()
    R_ref = quaternion_to_matrix(torch.from_numpy(_slerp_reference(q0, q1, w)))
    assert torch.allclose(result[:3, :3], R_ref, atol=1e-10)
    assert torch.allclose(result[:3, 3], (1 - w) * a[:3, 3] + w * b[:3, 3], atol=1e-12)


def test_latest_common_time():
    buffer = TfBuffer()
    buffer.add_transform("world", "a", T0, _transform([0, 0, 0], [0, 0, 0]))
    buffer.add_transform("world", "a", T0 + 2 * S, _transform([0, 0, 0], [2, 0, 0]))
    buffer.add_transform("a", "b", T0, _transform([0, 0, 0], [0, 0, 0]))
    buffer.add_transform("a", "b", T0 + S, _transform([0, 0, 0], [0, 1, 0]))
    # newest time common to both edges is T0 + 1 s: a at x = 1, b at y = 1
    latest = buffer.lookup("world", "b", None)
    assert torch.allclose(latest[:3, 3], torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.equal(buffer.lookup("world", "b", 0), latest)


def test_extrapolation_errors_and_tolerance(tree):
    buffer, f = tree
    held = buffer.lookup("base", "hand", T0 + S + 5_000_000)  # 5 ms after the newest: within 10 ms
    assert torch.equal(held, f["hand2base@1"])
    with pytest.raises(ExtrapolationError, match=r"50\.000 ms into the future.*tolerance 10\.000 ms"):
        buffer.lookup("world", "hand", T0 + S + 50_000_000)
    with pytest.raises(ExtrapolationError, match=r"into the past"):
        buffer.lookup("hand", "camera", T0 - 20_000_000)
    assert not buffer.can_transform("world", "hand", T0 - S)
    # static-only chains are valid at any time
    assert buffer.can_transform("camera", "base", 12345)


def test_unknown_frame_and_no_path(tree):
    buffer, _ = tree
    with pytest.raises(UnknownFrameError, match="'gripper' is unknown") as info:
        buffer.lookup("world", "gripper", T0)
    assert isinstance(info.value, LookupError) and isinstance(info.value, TransformLookupError)
    with pytest.raises(NoPathError, match="no TF path between 'robot'.*'hand'"):
        buffer.lookup("hand", "robot", T0)


def test_history_is_time_limited_and_resets_on_time_jump():
    buffer = TfBuffer(cache_time_s=1.0)
    for i in range(30):  # 3 s at 10 Hz
        buffer.add_transform("world", "a", T0 + i * S // 10, _transform([0, 0, 0], [i, 0, 0]))
    with pytest.raises(ExtrapolationError):
        buffer.lookup("world", "a", T0 + S)  # older than 1 s before the newest sample
    assert buffer.lookup("world", "a", T0 + 2 * S)[0, 3] == 20.0
    # a looped bag: the clock jumps back by more than the cache time -> the history restarts
    buffer.add_transform("world", "a", T0, _transform([0, 0, 0], [-1, 0, 0]))
    assert buffer.lookup("world", "a", None)[0, 3] == -1.0
    with pytest.raises(ExtrapolationError):
        buffer.lookup("world", "a", T0 + 2 * S)


def test_static_replaces_dynamic_and_reparenting():
    buffer = TfBuffer()
    buffer.add_transform("world", "z", 0, torch.eye(4), static=True)
    buffer.add_transform("world", "a", T0, _transform([0, 0, 0], [1, 0, 0]))
    buffer.add_transform("world", "a", 0, _transform([0, 0, 0], [5, 0, 0]), static=True)
    assert buffer.lookup("world", "a", T0 + 100 * S)[0, 3] == 5.0
    buffer.add_transform("other", "a", T0, _transform([0, 0, 0], [7, 0, 0]))
    assert buffer.lookup("other", "a", T0)[0, 3] == 7.0
    with pytest.raises(NoPathError):
        buffer.lookup("world", "a", T0)
    buffer.clear()
    with pytest.raises(UnknownFrameError):
        buffer.lookup("other", "a", T0)


def test_tf_message_input():
    from tf2_msgs.msg import TFMessage

    from handypriors_ros.conversions import matrix_to_transform_stamped

    hand2camera = _transform([0.1, 0.2, 0.3], [0.0, 0.05, 0.45])
    msg = TFMessage(transforms=[matrix_to_transform_stamped(hand2camera, "/camera_color_optical_frame", "hand_root",
                                                            T0)])
    buffer = TfBuffer()
    buffer.add_tf_message(msg, static=True)
    assert torch.allclose(buffer.lookup("camera_color_optical_frame", "hand_root", T0), hand2camera, atol=1e-12)


def test_rejects_bad_input():
    buffer = TfBuffer()
    with pytest.raises(ValueError):
        buffer.add_transform("a", "a", 0, torch.eye(4))
    with pytest.raises(ValueError):
        buffer.add_transform("a", "", 0, torch.eye(4))
    with pytest.raises(ValueError):
        buffer.add_transform("a", "b", 0, torch.full((4, 4), math.nan))
    with pytest.raises(ValueError):
        TfBuffer(cache_time_s=0.0)


def test_bad_transforms_of_a_message_are_reported_and_the_good_ones_kept():
    """A subscription callback must never raise: each bad transform is one reported line, the rest is added."""
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    from handypriors_ros.conversions import matrix_to_transform_stamped

    good = _transform([0.1, 0.2, 0.3], [0.0, 0.05, 0.45])
    nan = TransformStamped()
    nan.header.frame_id, nan.child_frame_id = "camera", "a"
    nan.transform.rotation.w = math.nan
    scaled = matrix_to_transform_stamped(good, "camera", "b", T0)
    scaled.transform.rotation.w *= 3.0  # not a unit quaternion (tf2 refuses it too)
    loop = matrix_to_transform_stamped(torch.eye(4, dtype=torch.float64), "hand_root", "camera", T0)
    msg = TFMessage(transforms=[nan, matrix_to_transform_stamped(good, "camera", "hand_root", T0), scaled, loop])
    buffer, errors = TfBuffer(), []
    assert add_tf_message_safely(buffer, msg, False, errors.append) == 1
    assert len(errors) == 3 and all(e.startswith("/tf: transform ") for e in errors), errors
    assert "finite" in errors[0] and "unit quaternion" in errors[1] and "loop" in errors[2], errors
    assert torch.allclose(buffer.lookup("camera", "hand_root", T0), good, atol=1e-12)
    assert "a" not in buffer.frames and "b" not in buffer.frames


# -- make_tf_lookup over DDS (fallback backend), in one process with a private domain (conftest.ros_context) ---
def test_make_tf_lookup_fallback_over_dds(ros_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from tf2_msgs.msg import TFMessage

    from handypriors_ros.conversions import matrix_to_transform_stamped
    from handypriors_ros.qos import TF_QOS, TF_STATIC_QOS
    from handypriors_ros.tf_buffer import make_tf_lookup

    camera2world = _transform([0.0, 0.4, 0.0], [0.5, 0.0, 1.2])
    hand2world = [_transform([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]), _transform([0.0, 0.0, 0.2], [0.2, 0.0, 0.0])]
    talker = Node("tf_talker", context=ros_context)
    static_pub = talker.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    dynamic_pub = talker.create_publisher(TFMessage, "/tf", TF_QOS)
    static_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(camera2world, "world", "camera", 0)]))
    listener = Node("tf_listener", context=ros_context)  # joins after the static message: latched
    lookup = make_tf_lookup(listener, prefer_tf2_ros=False)
    assert lookup.backend == "tf_buffer"
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(talker)
    executor.add_node(listener)
    expected = invert_transform(camera2world) @ interpolate_transform(hand2world[0], hand2world[1], 0.5)
    deadline = time.monotonic() + 15.0
    result = None
    try:
        while time.monotonic() < deadline:
            dynamic_pub.publish(TFMessage(transforms=[
                matrix_to_transform_stamped(T, "world", "hand", T0 + i * S) for i, T in enumerate(hand2world)
            ]))
            executor.spin_once(timeout_sec=0.1)
            try:
                result = lookup("camera", "hand", T0 + S // 2)
                break
            except TransformLookupError:
                continue
    finally:
        executor.shutdown(timeout_sec=0.0)
        listener.destroy_node()
        talker.destroy_node()
    assert result is not None, "no transform arrived over /tf and /tf_static within 15 s"
    assert torch.allclose(result, expected, atol=1e-9)
