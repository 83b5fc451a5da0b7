"""A robot-rate recording played at its recorded rate through ``sequence_player`` into ``allegro_tracker``.

The bag is written here: colour + aligned depth + camera infos (a few frames rendered by the integration test's
numpy renderer, played back and forth), joint states at 150 Hz and a moving wrist on ``/tf`` at 100 Hz, each
stamped at its own time (joint states and TF interpolated between the rendered frames). Both processes run as a
user runs them; this process counts the object poses on ``/tf``. Two variants:

- recorded joint states (150 Hz);
- joint states at 333 Hz published by this test (the bag without them, replayed with ``restamp``; the test
  publishes pre-serialised CDR bytes with a fresh stamp, as cheap as a C++ driver, so that the test's own
  Python does not take the CPU the node needs).

Every image and (nearly) every joint state must reach the node, frames may only be lost because the tracker was busy
(newest frame wins), never to an input error (``dropped_input`` 0), and at least 90 % of the frames are posed (the
issue's bound).

Why the camera runs at 1 Hz here: the posed fraction must measure intake and synchronisation, not how busy the
machine is. The tracker's step costs 30-45 ms of CPU (filter mode, one torch thread, 128x96 or 640x480 alike:
measured after the node's warm-up, the first frame included), but on two cores shared with a second pytest worker
and other load its wall time stretches: measured here at a load average of 8, 280-400 ms per step, and the player
stalled for up to 0.3 s; at 2 Hz that lost 11 of 20 frames to a busy tracker. A 1 s period leaves the step more
than 20 times its CPU cost, so a frame is lost only when the machine stalls the node for about a second.
``sync_timeout`` is 1 s for the same reason: a starved player may send the TF sample after an image 0.3 s late,
which is lateness the node must wait out, not an input error. The high-rate streams keep robot rates (150 Hz /
333 Hz joint states, 100 Hz TF), so the node takes in 150-330 messages per frame. The speed goals (30 Hz, the dev
bags at their recorded rate) are measured by ``bench/bench_ros_node.py``.

The player starts only once the node subscribes to the camera: the node builds and warms up its tracker before it
creates its subscriptions, so no frame reaches a tracker that is not ready.
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
CAMERA_HZ = 1  # see the module docstring
FRAME_NS = round(1e9 / CAMERA_HZ)
FRAMES = 20  # 19 s: 90 % posed allows two lost frames
POSED_FRACTION = 0.9  # the bound
RENDERED = 8
WIDTH, HEIGHT = 128, 96
CAMERA = "camera_color_optical_frame"
START_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 30.0  # after the player ends: the node accounts for every image (posed or dropped)


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
    """Joint states at ``hz`` stamped with the current time (a driver on this machine), from a thread: one message
    serialised once, then its CDR bytes with a fresh stamp each period (no message object per sample)."""

    def __init__(self, node, names: list[str], positions: list[float], hz: float) -> None:
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import JointState

        from handypriors_ros.qos import JOINT_STATES_QOS

        self._pub = node.create_publisher(JointState, "/joint_states", JOINT_STATES_QOS)
        self._data = serialize_message(JointState(name=names, position=positions))
        self._period = 1.0 / hz
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from handypriors_ros.cdr import restamp_header

        # first the node's subscription must match (discovery takes seconds on a loaded machine): what is sent
        # before that is lost to nobody's fault
        while self._pub.get_subscription_count() == 0 and not self._stop.wait(0.01):
            pass
        self._stop.wait(0.5)  # (the node's side of the match)
        due = time.monotonic()
        while not self._stop.is_set():
            self._pub.publish(restamp_header(self._data, time.time_ns()))
            self.sent += 1
            due = max(due + self._period, time.monotonic())  # a driver starved by the machine does not burst
            time.sleep(max(0.0, due - time.monotonic()))  # (a burst overflows the depth-100 history: lost to DDS)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Probe:
    """This test's view of the node: object poses on ``/tf`` (raw CDR, parsed by :mod:`handypriors_ros.cdr`: the
    player's 100 Hz ``/tf`` costs this process next to nothing) and the last ``/diagnostics`` values."""

    def __init__(self, context) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from tf2_msgs.msg import TFMessage

        from handypriors_ros.qos import TF_QOS

        self.node = Node("replay_probe", context=context)
        self.posed: set[int] = set()
        self.values: dict[str, str] = {}
        self.node.create_subscription(TFMessage, "/tf", self._on_tf, TF_QOS, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on_tf(self, data: bytes) -> None:
        from handypriors_ros.cdr import parse_tf_message

        for t in parse_tf_message(data).transforms:
            if t.child_frame_id == "object":
                self.posed.add(t.header.stamp.sec * 1_000_000_000 + t.header.stamp.nanosec)

    def _on_diagnostics(self, msg) -> None:
        self.values = {kv.key: kv.value for kv in msg.status[0].values}

    def settled(self) -> bool:
        """Every image reached the node and is accounted for (posed here or dropped), the mailbox is empty."""
        v = self.values
        dropped = sum(int(value) for key, value in v.items() if key.startswith("dropped_") and key not in (
            "dropped_frames", "dropped_frames_recent"))
        return (int(v.get("images_received", 0)) == FRAMES and v.get("size_mailbox") == "0"
                and int(v.get("frames_processed", -1)) == len(self.posed) and len(self.posed) + dropped == FRAMES)

    def spin_until(self, done, deadline: float) -> bool:
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=0.0)
        self.node.destroy_node()


@pytest.mark.parametrize("joints", ["recorded_150hz", "live_333hz"])
def test_recorded_rate_replay_poses_nine_frames_in_ten(joints, rendered, ros_context, tmp_path):
    live = joints == "live_333hz"
    meta = write_robot_bag(rendered, tmp_path / "bag", joint_hz=None if live else 150.0)
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_context.get_domain_id()))
    probe = Probe(ros_context)
    publisher = None
    tracker = subprocess.Popen(
        [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
         str(REPO / "config" / "allegro_tracking.yaml"), "-p", f"object_mesh:={rendered / 'object' / 'model.obj'}",
         "-p", _initial_pose(rendered), "-p", "tracking.mode:=filter", "-p", "torch_threads:=1",
         "-p", "diagnostics_period:=0.5", "-p", "global_search:=false", "-p", "sync_timeout:=1.0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    player = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        # ready = subscribed: the node creates its subscriptions after building and warming up its tracker
        assert probe.spin_until(lambda: probe.node.count_subscribers("/camera/camera/color/image_raw") > 0
                                or tracker.poll() is not None, deadline) and tracker.poll() is None, \
            "the tracker did not start"
        if live:
            publisher = JointPublisher(probe.node, meta["hand"]["joint_names"], meta["frames"][0]["joint_positions"],
                                       333.0)
        player = subprocess.Popen(
            [sys.executable, "-m", "handypriors_ros.sequence_player", "--ros-args", "-p",
             f"source:={tmp_path / 'bag'}", "-p", "rate:=1.0", "-p", "wait_for_subscribers:=1",
             "-p", f"restamp:={str(live).lower()}", "-p", f"remap_recorded_topics:={str(not live).lower()}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        probe.spin_until(lambda: player.poll() is not None, deadline)
        probe.spin_until(probe.settled, time.monotonic() + SETTLE_TIMEOUT_S)
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
        probe.close()
    values, posed = probe.values, len(probe.posed)
    report = (f"posed {posed}/{FRAMES}, load average {os.getloadavg()}; diagnostics {values}\n"
              f"{player_output[-1500:]}\n{tracker_output[-3000:]}")
    print(report.splitlines()[0])  # (pytest -rA shows it: the measured fraction beside the bound)
    assert player.returncode == 0 and tracker.returncode == 0, report
    assert int(values.get("images_received", 0)) == FRAMES, report
    assert int(values.get("dropped_input", 0)) == 0, report  # nothing lost to late or missing inputs
    assert posed + int(values.get("dropped_busy", 0)) == FRAMES, report  # the only other reason: busy
    assert posed >= POSED_FRACTION * FRAMES, report
    received = int(values.get("joint_states_received", 0))
    sent = publisher.sent if live else round(150 * (FRAMES - 1) / CAMERA_HZ)
    # Measured: at least 95 % at a load average of 4-5; at 8-9 on the 2 cores 94-99 % of the recorded 150 Hz and
    # 86-87 % of the live 333 Hz, where the node's process does not get the ~1 ms of CPU per message that rclpy's
    # executor costs and the reliable depth-100 queue overflows; frames are posed all the same, from the joint
    # states that did arrive. So: most of them (a node that stops taking them in fails this), not all of them.
    assert sent > 333 and received >= 0.8 * sent, report
