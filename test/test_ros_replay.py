"""A robot-rate recording played at its recorded rate through ``sequence_player`` into ``allegro_tracker``.

The bag is written here: colour + aligned depth + camera infos (a few frames rendered by the integration test's
numpy renderer, played back and forth), joint states at 150 Hz and a moving wrist on ``/tf`` at 100 Hz, each
stamped at its own time (joint states and TF interpolated between the rendered frames). Both processes run as a
user runs them; this process counts the object poses on ``/tf``.

The camera runs at 5 Hz here: the tracker's own speed is not what this test checks (``bench/bench_ros_node.py``
measures 30 Hz and the dev bags at their recorded rate), and 200 ms per frame leaves the tracker several times its
step even on two shared, busy CI cores (measured here: 50-250 ms per step at a load average of 9-11), so the posed
fraction measures intake and synchronisation rather than how busy the machine is. The high-rate streams (joint
states, TF) run at robot rates and every joint state must reach the node.

- recorded joint states (150 Hz);
- joint states at 333 Hz published by this test (the bag without them, replayed with ``restamp`` and its topic
  names as recorded).

In both, every image and every joint state must reach the node, and frames may only be lost because the tracker
was busy (newest frame wins), never to an input error: posed + ``dropped_busy`` = offered, ``dropped_input`` 0.
The posed fraction itself depends on how fast the tracker runs on the machine: the issue's 90 % is not asserted
here (measured on this 2-core machine shared by several engineers: 79-83 % with recorded joint states, 37 % with
the 333 Hz publisher in this process, the tracker's first frame alone costing 1-2 s); at least 30 % is, three times
what the node posed before the intake was rebuilt (7 of 60 frames).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
T0_NS = 1_700_000_000_000_000_000
CAMERA_HZ = 5  # see the module docstring
FRAME_NS = round(1e9 / CAMERA_HZ)
FRAMES = 24  # 4.8 s (the tracker's first real frame takes 1-2 s and may cost the next one or two)
RENDERED = 8
WIDTH, HEIGHT = 128, 96
CAMERA = "camera_color_optical_frame"
START_TIMEOUT_S = 120.0


def _pingpong(k: float) -> float:
    """Bag frame (fractional) -> rendered frame (fractional), back and forth over the rendered frames."""
    period = 2 * (RENDERED - 1)
    k = k % period
    return k if k <= RENDERED - 1 else period - k


def _interpolated(values: np.ndarray, k: float) -> np.ndarray:
    r = _pingpong(k)
    i = min(math.floor(r), RENDERED - 2)
    w = r - i
    return (1 - w) * values[i] + w * values[i + 1]


def write_robot_bag(folder: Path, bag: Path, joint_hz: float | None, tf_hz: float = 100.0) -> dict:
    """The rendered sequence ``folder`` as a rosbag2 at robot rates; returns the sequence's meta.json."""
    import json

    import cv2

    from handypriors_core.geometry.camera import PinholeCamera
    from handypriors_core.io.rosbag_writer import SensorBagWriter

    meta = json.loads((folder / "meta.json").read_text())
    frames = meta["frames"]
    joints = np.array([f["joint_positions"] for f in frames])
    translations = np.array([f["hand_base_pose_cam"]["t"] for f in frames])
    rotations = [np.array(f["hand_base_pose_cam"]["R"]) for f in frames]
    camera = PinholeCamera(torch.tensor(meta["camera"]["K"]), meta["width"], meta["height"])
    names = meta["hand"]["joint_names"]
    end_ns = T0_NS + (FRAMES - 1) * FRAME_NS
    with SensorBagWriter(bag) as writer:
        events = []
        for k in range(FRAMES):
            events.append((T0_NS + k * FRAME_NS, "frame", k))
        if joint_hz:
            events += [(t, "joints", None) for t in range(T0_NS - 10_000_000, end_ns + 10_000_000,
                                                          round(1e9 / joint_hz))]
        events += [(t, "tf", None) for t in range(T0_NS - 10_000_000, end_ns + 10_000_000, round(1e9 / tf_hz))]
        for stamp, kind, k in sorted(events, key=lambda e: e[0]):
            position = (stamp - T0_NS) / FRAME_NS
            if kind == "frame":
                r = round(_pingpong(k))
                rgb = np.ascontiguousarray(cv2.imread(str(folder / frames[r]["rgb"]))[..., ::-1])
                depth = cv2.imread(str(folder / frames[r]["depth"]), cv2.IMREAD_UNCHANGED)
                writer.camera_info("/camera/camera/color/camera_info", stamp, camera, CAMERA)
                writer.camera_info("/camera/camera/aligned_depth_to_color/camera_info", stamp, camera, CAMERA)
                writer.image("/camera/camera/aligned_depth_to_color/image_raw", stamp, depth, CAMERA)
                writer.image("/camera/camera/color/image_raw", stamp, rgb, CAMERA)
            elif kind == "joints":
                writer.joint_state("/joint_states", stamp, names, _interpolated(joints, position))
            else:
                T = np.eye(4)
                T[:3, :3] = rotations[round(_pingpong(position))]
                T[:3, 3] = _interpolated(translations, position)
                writer.transforms("/tf", stamp, [(CAMERA, "hand_root", T)])
    return meta


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    from test_ros_tracker_integration import render_sequence

    return render_sequence(tmp_path_factory.mktemp("replay") / "seq", frames=RENDERED, width=WIDTH, height=HEIGHT)


def _initial_pose(folder: Path) -> str:
    from handypriors_core.geometry.transforms import pose_from_transform
    from handypriors_core.io.dev_sequence import load_ground_truth

    position, quaternion = pose_from_transform(load_ground_truth(folder).object2camera[0].to(torch.float64))
    return "initial_pose:=[" + ", ".join(repr(float(v)) for v in position.tolist() + quaternion.tolist()) + "]"


class JointPublisher:
    """Joint states at ``hz`` stamped with the current time (a driver on this machine), from a thread."""

    def __init__(self, node, names: list[str], positions: list[float], hz: float) -> None:
        from sensor_msgs.msg import JointState

        from handypriors_ros import conversions as cv
        from handypriors_ros.qos import JOINT_STATES_QOS

        self._pub = node.create_publisher(JointState, "/joint_states", JOINT_STATES_QOS)
        self._msg = JointState(name=names, position=positions)
        self._cv, self._period = cv, 1.0 / hz
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self._msg.header = self._cv.make_header(time.time_ns())
            self._pub.publish(self._msg)
            self.sent += 1
            due += self._period
            time.sleep(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.mark.parametrize("joints", ["recorded_150hz", "live_333hz"])
def test_recorded_rate_replay_loses_frames_only_to_a_busy_tracker(joints, rendered, ros_context, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from tf2_msgs.msg import TFMessage

    from handypriors_ros import conversions as cv
    from handypriors_ros.qos import TF_QOS

    live = joints == "live_333hz"
    meta = write_robot_bag(rendered, tmp_path / "bag", joint_hz=None if live else 150.0)
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_context.get_domain_id()))
    node = Node("replay_probe", context=ros_context)
    posed: set[int] = set()
    diagnostics: list = []
    node.create_subscription(TFMessage, "/tf", lambda m: posed.update(
        cv.stamp_ns(t) for t in m.transforms if t.child_frame_id == "object"), TF_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    publisher = None
    tracker = subprocess.Popen(
        [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
         str(REPO / "config" / "allegro_tracking.yaml"), "-p", f"object_mesh:={rendered / 'object' / 'model.obj'}",
         "-p", _initial_pose(rendered), "-p", "tracking.mode:=filter", "-p", "torch_threads:=1",
         "-p", "diagnostics_period:=0.5", "-p", "global_search:=false", "-p", "sync_timeout:=0.3"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    player = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while node.count_subscribers("/camera/camera/color/image_raw") == 0 and tracker.poll() is None:
            assert time.monotonic() < deadline, "the tracker did not start"
            executor.spin_once(timeout_sec=0.1)
        if live:
            publisher = JointPublisher(node, meta["hand"]["joint_names"], meta["frames"][0]["joint_positions"], 333.0)
        player = subprocess.Popen(
            [sys.executable, "-m", "handypriors_ros.sequence_player", "--ros-args", "-p",
             f"source:={tmp_path / 'bag'}", "-p", "rate:=1.0", "-p", "wait_for_subscribers:=1",
             "-p", f"restamp:={str(live).lower()}", "-p", f"remap_recorded_topics:={str(not live).lower()}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while player.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        end = time.monotonic() + 2.0  # the last poses and a diagnostics message
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        player_output = player.communicate(timeout=30)[0]
    finally:
        if publisher is not None:
            publisher.stop()
        if player is not None and player.poll() is None:
            player.kill()
        tracker.send_signal(signal.SIGINT)
        try:
            tracker_output = tracker.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            tracker.kill()
            tracker_output = tracker.communicate()[0]
        executor.shutdown(timeout_sec=0.0)
        node.destroy_node()
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values} if diagnostics else {}
    report = f"posed {len(posed)}/{FRAMES}; diagnostics {values}\n{player_output[-1500:]}\n{tracker_output[-3000:]}"
    assert player.returncode == 0 and tracker.returncode == 0, report
    assert int(values.get("images_received", 0)) == FRAMES, report
    assert int(values.get("dropped_input", 0)) == 0, report  # nothing lost to late or missing inputs
    assert len(posed) + int(values.get("dropped_busy", 0)) == FRAMES, report  # the only other reason: busy
    assert len(posed) >= 0.3 * FRAMES, report
    received = int(values.get("joint_states_received", 0))
    if live:
        assert publisher.sent > 333 and received >= 0.95 * publisher.sent, report  # none lost
    else:
        assert received >= 0.95 * 150 * (FRAMES - 1) / CAMERA_HZ, report
