"""sequence_player as a subprocess: a generated dev-sequence folder and a generated rosbag2 (mcap), received here.

Every test reserves its own ROS domain; the player runs with ``wait_for_subscribers`` so no fixed sleeps are
needed, and every wait has a deadline.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from handypriors_core.geometry.rotations import axis_angle_to_matrix, matrix_to_quaternion
from handypriors_ros.ros_environment import reserve_domain_id, ros_environment

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FRAMES = 64, 48, 4
T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 33_333_333
CAMERA_FRAME = "camera_color_optical_frame"
JOINTS = [f"joint_{i}.0" for i in range(16)]
K = [[60.0, 0.0, 31.5], [0.0, 61.0, 23.5], [0.0, 0.0, 1.0]]
K_FLAT = [v for row in K for v in row]
DEADLINE_S = 40.0


# -- test data -------------------------------------------------------------------------------------------------
def _rgb(i: int) -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack((x * 4, y * 5, np.full_like(x, 10 * i + 3)), -1).astype(np.uint8)


def _depth_mm(i: int) -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    depth = (400 + 10 * x + y + i).astype(np.uint16)
    depth[:4, :4] = 0  # no return
    return depth


def _joints(i: int) -> list[float]:
    return [0.01 * j + 0.1 * i for j in range(16)]


def _hand2camera(i: int) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = axis_angle_to_matrix(torch.tensor([0.1 * i, 0.5, -0.2], dtype=torch.float64)).numpy()
    T[:3, 3] = [0.01 * i, -0.02, 0.45]
    return T


def write_dev_sequence(folder: Path, base_moving: bool = False) -> Path:
    """A tiny sequence in the dev-sequence format (meta.json + rgb/ + depth/), plus gt.json and mask/ that the
    player must never publish."""
    for sub in ("rgb", "depth", "mask", "object"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(FRAMES):
        cv2.imwrite(str(folder / f"rgb/{i:06d}.png"), _rgb(i)[..., ::-1])
        cv2.imwrite(str(folder / f"depth/{i:06d}.png"), _depth_mm(i))
        cv2.imwrite(str(folder / f"mask/{i:06d}.png"), np.full((HEIGHT, WIDTH), 2, np.uint8))
        T = _hand2camera(i)
        quat = matrix_to_quaternion(torch.from_numpy(T[:3, :3])).tolist()
        stamp_ns = T0_NS + i * PERIOD_NS
        frames.append({
            "index": i, "stamp": stamp_ns / 1e9, "stamp_ns": stamp_ns,
            "rgb": f"rgb/{i:06d}.png", "depth": f"depth/{i:06d}.png", "mask": f"mask/{i:06d}.png",
            "joint_positions": _joints(i),
            "hand_base_pose_cam": {"R": T[:3, :3].tolist(), "t": T[:3, 3].tolist(), "quat_xyzw": quat},
        })
    meta = {
        "sequence": "tiny", "fps": 30, "width": WIDTH, "height": HEIGHT,
        "camera": {"frame_id": CAMERA_FRAME, "K": K, "distortion_model": "plumb_bob", "D": [0.0] * 5},
        "depth": {"unit": "millimetre", "scale_to_m": 0.001, "invalid": 0, "dtype": "uint16"},
        "mask": {"values": {"0": "background", "1": "hand", "2": "object"}},
        "hand": {"joint_names": JOINTS, "root_frame": "hand_root", "base_moving": base_moving},
        "object": {"name": "box", "mesh": "object/model.obj", "mass_kg": 0.1},
        "frames": frames,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    ground_truth = {"frames": [{"index": i, "object_pose_cam": {}} for i in range(FRAMES)]}
    (folder / "gt.json").write_text(json.dumps(ground_truth))
    return folder


def write_bag(folder: Path, storage: str = "mcap") -> Path:
    """A tiny rosbag2 (mcap): RealSense-style colour topics, joint states at 3x the image rate, /tf, two
    /tf_static messages and a ground-truth topic that must not be republished."""
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import JointState
    from tf2_msgs.msg import TFMessage

    from handypriors_core.geometry.camera import PinholeCamera
    from handypriors_ros import conversions as cv

    typestore = get_typestore(Stores.ROS2_JAZZY)
    camera = PinholeCamera.from_camera_info(K_FLAT, [], WIDTH, HEIGHT)
    bag = folder / "bag"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(bag, version=9, storage_plugin=plugin) as writer:
        def connection(topic, msgtype):
            return writer.add_connection(topic, msgtype, typestore=typestore)

        image = connection("/camera/color/image_raw", "sensor_msgs/msg/Image")
        info = connection("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo")
        joints = connection("/allegroHand/joint_states", "sensor_msgs/msg/JointState")
        tf = connection("/tf", "tf2_msgs/msg/TFMessage")
        tf_static = connection("/tf_static", "tf2_msgs/msg/TFMessage")
        truth = connection("/object/ground_truth_pose", "geometry_msgs/msg/PoseStamped")
        for name, matrix in (("camera_link", np.eye(4)), ("hand_mount", _hand2camera(0))):
            msg = TFMessage(transforms=[cv.matrix_to_transform_stamped(matrix, "world", name, T0_NS)])
            writer.write(tf_static, T0_NS, serialize_message(msg))
        for k in range(3 * FRAMES):
            stamp = T0_NS + k * PERIOD_NS // 3
            msg = JointState(header=cv.make_header(stamp), name=JOINTS, position=[0.001 * k] * 16)
            writer.write(joints, stamp, serialize_message(msg))
        for i in range(FRAMES):
            stamp = T0_NS + i * PERIOD_NS
            writer.write(image, stamp, serialize_message(cv.rgb_to_image(_rgb(i), stamp, CAMERA_FRAME)))
            writer.write(info, stamp, serialize_message(cv.camera_to_camera_info(camera, stamp, CAMERA_FRAME)))
            hand = cv.matrix_to_transform_stamped(_hand2camera(i), "world", "hand_root", stamp)
            moving = TFMessage(transforms=[hand])
            writer.write(tf, stamp, serialize_message(moving))
            truth_msg = PoseStamped(header=cv.make_header(stamp, CAMERA_FRAME), pose=cv.matrix_to_pose(np.eye(4)))
            writer.write(truth, stamp, serialize_message(truth_msg))
    return bag


# -- ROS plumbing ------------------------------------------------------------------------------------------------
@pytest.fixture
def ros(tmp_path):
    """A private domain: ``(context, env)`` for this process and the player subprocess."""
    import rclpy

    with reserve_domain_id() as domain:
        env = ros_environment(domain_id=domain.domain_id, log_dir=tmp_path / "ros_log", interpreter=sys.executable)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain.domain_id)
        try:
            yield context, env
        finally:
            rclpy.try_shutdown(context=context)


class Collector:
    """Subscriptions in the test process that store every message per topic."""

    def __init__(self, context, topics: dict[str, type]):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        from handypriors_ros.qos import RELIABLE_SUBSCRIBER_QOS, TF_STATIC_LISTENER_QOS

        self.node = Node("player_test_collector", context=context)
        self.received: dict[str, list] = {topic: [] for topic in topics}
        for topic, cls in topics.items():
            qos = TF_STATIC_LISTENER_QOS if topic == "/tf_static" else RELIABLE_SUBSCRIBER_QOS
            if topic != "/tf_static":
                qos = type(qos)(depth=100, reliability=qos.reliability, durability=qos.durability)
            self.node.create_subscription(cls, topic, self.received[topic].append, qos)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, condition, process: subprocess.Popen | None = None, timeout: float = DEADLINE_S) -> bool:
        """Spin until ``condition()``; gives up at the deadline, or shortly after ``process`` has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if process is not None and process.poll() is not None:
                deadline = min(deadline, time.monotonic() + 1.0)  # what it sent may still be in flight
                process = None
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def close(self):
        self.executor.shutdown(timeout_sec=0.0)
        self.node.destroy_node()


def start_player(env: dict, *params: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "handypriors_ros.sequence_player", "--ros-args"]
    for param in params:
        args += ["-p", param]
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"player did not exit within {timeout} s:\n{output}")
    return process.returncode, output


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


# -- tests ----------------------------------------------------------------------------------------------------------
def test_dev_sequence_folder_is_published_with_recorded_stamps(ros, tmp_path):
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from tf2_msgs.msg import TFMessage

    from handypriors_ros import conversions as cv

    context, env = ros
    folder = write_dev_sequence(tmp_path / "tiny", base_moving=False)
    topics = {
        "/camera/camera/color/image_raw": Image,
        "/camera/camera/color/camera_info": CameraInfo,
        "/camera/camera/aligned_depth_to_color/image_raw": Image,
        "/camera/camera/aligned_depth_to_color/camera_info": CameraInfo,
        "/joint_states": JointState,
        "/tf_static": TFMessage,
        "/tf": TFMessage,
    }
    collector = Collector(context, topics)
    process = start_player(env, f"source:={folder}", "rate:=4.0", "wait_for_subscribers:=1")
    try:
        got = collector.received
        done = collector.spin_until(
            lambda: all(len(got[t]) >= FRAMES for t in list(topics)[:5]) and got["/tf_static"], process
        )
        rc, output = finish(process)
    finally:
        collector.close()
    assert done, f"missing messages: { {t: len(v) for t, v in got.items()} }\n{output}"
    assert rc == 0, output
    stamps = [T0_NS + i * PERIOD_NS for i in range(FRAMES)]
    for i, msg in enumerate(got["/camera/camera/color/image_raw"]):
        assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == ("rgb8", WIDTH, HEIGHT, CAMERA_FRAME)
        assert _stamp(msg) == stamps[i]
        assert np.array_equal(cv.image_to_rgb(msg, backend="numpy"), _rgb(i))
    for i, msg in enumerate(got["/camera/camera/aligned_depth_to_color/image_raw"]):
        assert msg.encoding == "16UC1" and _stamp(msg) == stamps[i]
        assert np.array_equal(cv.image_to_array(msg, backend="numpy"), _depth_mm(i))
    for topic in ("/camera/camera/color/camera_info", "/camera/camera/aligned_depth_to_color/camera_info"):
        for i, msg in enumerate(got[topic]):
            assert _stamp(msg) == stamps[i] and msg.header.frame_id == CAMERA_FRAME
            assert list(msg.k) == K_FLAT and (msg.width, msg.height) == (WIDTH, HEIGHT)
    for i, msg in enumerate(got["/joint_states"]):
        assert list(msg.name) == JOINTS and _stamp(msg) == stamps[i]
        assert np.allclose(msg.position, _joints(i))
    [static] = got["/tf_static"]
    [transform] = static.transforms
    assert (transform.header.frame_id, transform.child_frame_id) == (CAMERA_FRAME, "hand_root")
    assert np.allclose(cv.transform_to_matrix(transform).numpy(), _hand2camera(0), atol=1e-9)
    assert got["/tf"] == []  # fixed hand base: static only


def test_bag_is_remapped_restamped_and_ground_truth_is_dropped(ros, tmp_path):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from tf2_msgs.msg import TFMessage

    context, env = ros
    bag = write_bag(tmp_path)
    topics = {
        "/cam/color": Image,
        "/camera/camera/color/camera_info": CameraInfo,
        "/joint_states": JointState,
        "/tf": TFMessage,
        "/tf_static": TFMessage,
        "/object/ground_truth_pose": PoseStamped,
    }
    collector = Collector(context, topics)
    before = collector.node.get_clock().now().nanoseconds
    process = start_player(env, f"source:={bag / 'bag.mcap'}", "rate:=3.0", "restamp:=true",
                           "wait_for_subscribers:=1", "color_topic:=/cam/color")
    try:
        got = collector.received
        expected = {"/cam/color": FRAMES, "/camera/camera/color/camera_info": FRAMES, "/joint_states": 3 * FRAMES,
                    "/tf": FRAMES, "/tf_static": 1}
        graph = {"truth publishers": 0, "colour publishers": 0}

        def received_all() -> bool:  # also watches the graph: the ground-truth topic must never get a publisher
            graph["truth publishers"] += collector.node.count_publishers("/object/ground_truth_pose")
            graph["colour publishers"] += collector.node.count_publishers("/cam/color")
            return all(len(got[t]) >= n for t, n in expected.items())

        done = collector.spin_until(received_all, process)
        rc, output = finish(process)
    finally:
        collector.close()
    assert done, f"missing messages: { {t: len(v) for t, v in got.items()} }\n{output}"
    assert rc == 0, output
    assert graph["colour publishers"] > 0 and graph["truth publishers"] == 0
    assert got["/object/ground_truth_pose"] == [] and "ground_truth_pose" in output  # excluded, and said so
    images, infos = got["/cam/color"], got["/camera/camera/color/camera_info"]
    assert [_stamp(m) for m in images] == [_stamp(m) for m in infos]  # restamped consistently
    assert _stamp(images[0]) >= before
    steps = np.diff([_stamp(m) for m in images])
    assert np.allclose(steps, PERIOD_NS / 3.0, atol=2)  # recorded spacing divided by the rate
    joint_steps = np.diff([_stamp(m) for m in got["/joint_states"]])
    assert np.allclose(joint_steps, PERIOD_NS / 9.0, atol=2)  # joint states keep their own rate
    assert np.allclose(got["/joint_states"][-1].position, [0.001 * (3 * FRAMES - 1)] * 16)
    [static] = got["/tf_static"]  # both recorded static frames, merged into one message
    assert sorted(t.child_frame_id for t in static.transforms) == ["camera_link", "hand_mount"]
    assert [t.child_frame_id for m in got["/tf"] for t in m.transforms] == ["hand_root"] * FRAMES


def test_loop_shifts_stamps_and_sigint_exits_cleanly(ros, tmp_path):
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from tf2_msgs.msg import TFMessage

    context, env = ros
    folder = write_dev_sequence(tmp_path / "tiny_moving", base_moving=True)
    topics = {
        "/camera/camera/color/image_raw": Image,
        "/camera/camera/color/camera_info": CameraInfo,
        "/camera/camera/aligned_depth_to_color/image_raw": Image,
        "/camera/camera/aligned_depth_to_color/camera_info": CameraInfo,
        "/joint_states": JointState,
        "/tf": TFMessage,
    }
    collector = Collector(context, topics)  # every sensor topic, so wait_for_subscribers is met
    process = start_player(env, f"source:={folder}", "rate:=0.0", "loop:=true", "wait_for_subscribers:=1")
    try:
        got = collector.received
        looped = collector.spin_until(lambda: len(got["/camera/camera/color/image_raw"]) > FRAMES + 1, process)
        process.send_signal(signal.SIGINT)
        rc, output = finish(process)
    finally:
        collector.close()
    assert looped, output
    assert rc == 0, output
    assert "Traceback" not in output
    stamps = [_stamp(m) for m in got["/camera/camera/color/image_raw"]]
    assert all(b > a for a, b in itertools.pairwise(stamps)), "stamps must keep increasing across repetitions"
    assert stamps[FRAMES] == T0_NS + FRAMES * PERIOD_NS  # second run shifted by one sequence length + one period
    hand = [m.transforms[0] for m in got["/tf"]]
    assert hand and all(t.child_frame_id == "hand_root" for t in hand)


def test_bad_source_exits_with_code_2(ros, tmp_path):
    _, env = ros
    (tmp_path / "empty").mkdir()
    rc, output = finish(start_player(env, f"source:={tmp_path / 'empty'}"))
    assert rc == 2, output
    assert "neither a rosbag2 folder" in output and "Traceback" not in output


def test_topics_and_events_of_a_folder_source(tmp_path):
    from handypriors_ros.playback_sources import TopicNames, open_source

    source = open_source(write_dev_sequence(tmp_path / "s", base_moving=True), TopicNames(joint_states="/js"))
    assert source.kind == "dev_sequence"
    assert set(source.topics) == {"/camera/camera/color/image_raw", "/camera/camera/color/camera_info",
                                  "/camera/camera/aligned_depth_to_color/image_raw",
                                  "/camera/camera/aligned_depth_to_color/camera_info", "/js", "/tf"}
    assert source.static_message() is None
    events = list(source.events())
    assert [e.time_ns for e in events] == [T0_NS + i * PERIOD_NS for i in range(FRAMES)]
    assert not math.isnan(events[0].messages[0][1].height)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_source_roles_static_merge_and_exclusion(tmp_path, storage):
    from handypriors_ros.playback_sources import BagSource, TopicNames, open_source

    bag = write_bag(tmp_path, storage)
    source = open_source(bag, TopicNames())
    assert isinstance(source, BagSource)
    try:
        assert set(source.topics) == {"/camera/camera/color/image_raw", "/camera/camera/color/camera_info",
                                      "/joint_states", "/tf"}
        assert source.excluded == ["/object/ground_truth_pose"]
        assert sorted(t.child_frame_id for t in source.static_message().transforms) == ["camera_link", "hand_mount"]
        events = list(source.events())
        assert len(events) == 3 * FRAMES + 3 * FRAMES  # joint states + (image, info, tf) per frame
        assert all(a.time_ns <= b.time_ns for a, b in itertools.pairwise(events))
    finally:
        source.close()
    kept = open_source(bag, TopicNames(), remap_recorded_topics=False, exclude_topics=[])
    try:
        assert "/allegroHand/joint_states" in kept.topics and "/object/ground_truth_pose" in kept.topics
    finally:
        kept.close()
