"""allegro_tracker as a process, fed like a robot: sustained rate, stamp-to-TF latency, intake lag, CPU, memory.

Live runs: this process renders a few frames of the integration test's scene (the Allegro hand carrying a box,
numpy z-buffer, ``test/test_ros_tracker_integration.py``) at 640x480 and publishes them as a RealSense camera and
the hand driver would: colour (rgb8), aligned depth (16UC1) and camera infos per frame, and beside them joint
states at 333 Hz and the hand base on /tf at 100 Hz, every message stamped with the current time. The tracker runs
as a separate process (``python -m handypriors_ros.allegro_tracker`` with ``config/allegro_tracking.yaml``, the
initial pose from the frames' ground truth) on a private ROS domain with the project's shared-memory Fast DDS
profile. Frames are offered at 30 Hz, and as fast as the tracker goes (closed loop: the next frame as soon as the
previous pose arrived), in EKF mode (``tracking.mode: filter``) and, unless ``--quick``, with the time-budgeted
refinement (``refine``).

Replays: each shared dev bag (``../shared/data/dev/*/bag``; 640x480 RGB-D at 30 Hz, joint states at 150 Hz, the
wrist on /tf) played at its recorded rate by ``sequence_player`` into the tracker (EKF mode; initial pose: the
sequence's frame-0 ground truth, the only use of it here): frames posed / frames offered, and why the others were
dropped (``busy``: the tracker was computing; ``input``: an input missing or late beyond ``sync_timeout``).

Measured:

- sustained rate: object poses on /tf per second (the node drops what it cannot process: newest frame wins);
- latency: image stamp (= publish time) -> the object's TF received here (median, p95) [ms];
- intake lag of joint states and /tf inside the node (callback wall clock minus stamp; median, p99) [ms];
- CPU (utime + stime from /proc, % of one core) per thread role of the node process (``executor``: rclpy's spin;
  ``intake``: the RawIntake thread that takes every input; ``worker``; ``dds``: Fast DDS's threads), of its tracker
  process and of this benchmark's feeder, and per unit: ms of CPU per offered image, per input message (intake),
  per posed frame (worker, tracker process); during the replays the player's CPU while the bag plays;
  memory (VmRSS);
- the node's own counters from /diagnostics: dropped frames by reason, its input errors by kind and the last one,
  and per frame (medians) the time spent waiting in the mailbox (``queue_ms``), assembling the inputs
  (``inputs_ms``: waiting for them, decoding, shared-memory write), held assembled while the tracker finished the
  frame before (``held_ms``), tracking (``track_ms``: sent -> estimate back) and publishing (``publish_ms``: the
  next frame's send included), and the worker thread's CPU in each (``*_cpu_ms``; ``prepare_cpu_ms``: decoding a
  frame's images while it waited, ``wait_ms``: until its inputs were all there); the tracker process's CPU in
  its last ``track`` call (``tracker_receive_cpu_ms``: the frame taken in and decoded, ``tracker_step_cpu_ms``:
  ``ObjectTracker.track``, ``tracker_reply_cpu_ms``: the estimate sent back);
- the latency's parts (``latency_breakdown_ms``): the feeder's publish calls, the colour image's way into the node
  (``image_lag_*`` in /diagnostics), the stages above, the node's stamp-to-TF-published lag (``object_tf_out_lag_*``)
  and the TF's way back (the latency minus that).

Every figure is written with the load average of the machine when it was taken. ``checks`` in the results: the
issue's goals (``goal_*``: joint-state intake lag p99 < 5 ms, 30 Hz sustained, median latency <= tracker step +
10 ms, dev bags >= 95 % posed with no ``input`` drop), pass or fail, and regression bounds on the node's CPU per
unit (``regression_*``); the benchmark exits 1 when a regression check fails. ``HANDYPRIORS_PROFILE_DIR=<dir>``
passes through to the node (cProfile of its threads, docs/node_runtime.md).

    .venv/bin/python bench/bench_ros_node.py [--seconds 15] [--quick] [--no-replay]

Writes ``bench/results/ros_node.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from bench._common import stop_process, write_results  # after the sys.path lines above

WIDTH, HEIGHT = 640, 480
#: The node's intake thread at a higher priority (docs/node_runtime.md; applied where CAP_SYS_NICE allows it).
INTAKE_NICE = "intake_nice:=-10"
#: The node's per-frame stages in /diagnostics: wall times, and its worker thread's CPU per stage [ms].
STAGES = ("queue_ms", "inputs_ms", "wait_ms", "held_ms", "track_ms", "publish_ms", "inputs_cpu_ms",
          "prepare_cpu_ms", "track_cpu_ms", "publish_cpu_ms", "tracker_receive_cpu_ms", "tracker_step_cpu_ms",
          "tracker_reply_cpu_ms")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime [s] of ``pid`` and its live children (the tracker process) from /proc."""
    total = 0.0
    for child in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return total


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """utime + stime [s] of each thread of ``pid`` (not its children), summed by role: ``executor`` (the main
    thread, where rclpy spins), the node's named threads (``hp_worker``, ``hp_intake``), ``dds`` (Fast DDS's own
    threads) and ``other`` (torch, logging...)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(task.name) == pid:
            role = "executor"
        elif comm.startswith("hp_"):
            role = comm[3:]
        elif comm.startswith("dds."):
            role = "dds"
        else:
            role = "other"
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return out


def cpu_split(pid: int) -> dict[str, float]:
    """CPU seconds of the node's threads by role (:func:`thread_cpu_seconds`) plus ``tracker_process`` (its
    children) and ``node_process`` (the node's threads together)."""
    threads = thread_cpu_seconds(pid)
    threads["node_process"] = proc_cpu_seconds_self(pid)
    threads["tracker_process"] = proc_cpu_seconds(pid) - proc_cpu_seconds_self(pid)
    return threads


def proc_cpu_seconds_self(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` [MB] from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values


def load_frames(folder: Path) -> list[dict]:
    """The rendered frames as arrays (rgb, depth_mm, joints, hand2camera) plus the camera."""
    import cv2

    meta = json.loads((folder / "meta.json").read_text())
    frames = []
    for entry in meta["frames"]:
        T = np.eye(4)
        T[:3, :3] = entry["hand_base_pose_cam"]["R"]
        T[:3, 3] = entry["hand_base_pose_cam"]["t"]
        frames.append({
            "rgb": np.ascontiguousarray(cv2.imread(str(folder / entry["rgb"]))[..., ::-1]),
            "depth": cv2.imread(str(folder / entry["depth"]), cv2.IMREAD_UNCHANGED),
            "joints": entry["joint_positions"], "hand2camera": T,
        })
    return frames


class Feeder:
    """Publishes frames stamped now and records when the object's TF for each stamp arrives."""

    def __init__(self, context, frames, meta):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from tf2_msgs.msg import TFMessage

        from handypriors_core.geometry.camera import PinholeCamera
        from handypriors_ros import conversions as cv
        from handypriors_ros.qos import SENSOR_PUBLISHER_QOS, TF_QOS

        self.cv = cv
        self.node = Node("bench_feeder", context=context)
        self.frames = frames
        self.joint_names = meta["hand"]["joint_names"]
        K = np.asarray(meta["camera"]["K"], dtype=float).reshape(-1).tolist()
        self.camera = PinholeCamera.from_camera_info(K, [], WIDTH, HEIGHT)
        self.frame_id = meta["camera"]["frame_id"]
        n = self.node
        self.pub = {
            "image": n.create_publisher(Image, "/camera/camera/color/image_raw", SENSOR_PUBLISHER_QOS),
            "info": n.create_publisher(CameraInfo, "/camera/camera/color/camera_info", SENSOR_PUBLISHER_QOS),
            "depth": n.create_publisher(Image, "/camera/camera/aligned_depth_to_color/image_raw",
                                        SENSOR_PUBLISHER_QOS),
            "depth_info": n.create_publisher(CameraInfo, "/camera/camera/aligned_depth_to_color/camera_info",
                                             SENSOR_PUBLISHER_QOS),
            "joints": n.create_publisher(JointState, "/joint_states", SENSOR_PUBLISHER_QOS),
        }
        self.tf_pub = n.create_publisher(TFMessage, "/tf", TF_QOS)
        self.sent: dict[int, float] = {}
        self.arrived: dict[int, float] = {}
        self.diagnostics: list = []
        # the feeder must cost little beside the node on 2 cores: /tf (its own 100 Hz too) raw, drained by an intake
        # thread like the node's; the executor (diagnostics only) spins in a thread; publishing paces with sleeps
        from handypriors_ros.raw_intake import RawIntake, ServedElsewhere

        tf_sub = n.create_subscription(TFMessage, "/tf", self._on_tf, TF_QOS, raw=True,
                                       callback_group=ServedElsewhere())
        n.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.intake = RawIntake(context, [tf_sub], name="feeder_intake")
        self.intake.start()
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(n)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()
        self.count = 0
        self.frame = frames[0]
        self.robot_rates = {"joints": 333.0, "tf": 100.0}
        self._robot_due = dict.fromkeys(self.robot_rates, 0.0)
        self.robot_sent = dict.fromkeys(self.robot_rates, 0)

    def _serialized(self, frame: dict) -> dict[str, bytes]:
        """The CDR bytes of every message of ``frame`` (made once per rendered frame; each publish only patches
        the stamp, so the feeder costs little CPU beside the node on the 2 cores)."""
        if "cdr" not in frame:
            from rclpy.serialization import serialize_message
            from sensor_msgs.msg import JointState
            from tf2_msgs.msg import TFMessage

            cv = self.cv
            info = serialize_message(cv.camera_to_camera_info(self.camera, 0, self.frame_id))
            frame["cdr"] = {
                "joints": serialize_message(JointState(header=cv.make_header(0), name=self.joint_names,
                                                       position=frame["joints"])),
                "tf": serialize_message(TFMessage(transforms=[cv.matrix_to_transform_stamped(
                    frame["hand2camera"], self.frame_id, "hand_root", 0)])),
                "info": info, "depth_info": info,
                "depth": serialize_message(cv.array_to_image(frame["depth"], "16UC1", 0, self.frame_id)),
                "image": serialize_message(cv.rgb_to_image(frame["rgb"], 0, self.frame_id))}
        return frame["cdr"]

    def pump_robot_streams(self) -> None:
        """Publish the joint states (333 Hz) and hand base TF (100 Hz) that are due, stamped now."""
        from handypriors_ros.cdr import restamp_header

        now = time.monotonic()
        for key, rate in self.robot_rates.items():
            if now < self._robot_due[key]:
                continue
            self._robot_due[key] = max(self._robot_due[key] + 1.0 / rate, now)
            data = self._serialized(self.frame)[key]
            if key == "joints":
                self.pub["joints"].publish(restamp_header(data, time.time_ns()))
            else:  # TFMessage: a uint32 count, then the first transform's header (its stamp at byte 8)
                patched = restamp_header(data[:4] + data[8:], time.time_ns())
                self.tf_pub.publish(patched[:4] + data[4:8] + patched[4:])
            self.robot_sent[key] += 1

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shut down under it
            pass

    def close(self) -> None:
        self.intake.stop()
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()

    def spin_once(self, timeout: float) -> None:
        """Keep the robot streams on time for ``timeout`` s (callbacks run in their own threads)."""
        end = time.monotonic() + timeout
        while True:
            self.pump_robot_streams()
            due = min(self._robot_due.values())
            time.sleep(max(0.0, min(end, due) - time.monotonic()))
            if time.monotonic() >= end:
                return

    def _on_tf(self, data: bytes) -> None:
        from handypriors_ros.cdr import parse_tf_message

        now = time.time_ns()
        for t in parse_tf_message(data).transforms:
            if t.child_frame_id == "object":
                self.arrived[self.cv.stamp_ns(t)] = now

    def ready(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.pub.values())

    def publish_next(self) -> int:
        from handypriors_ros.cdr import restamp_header

        period = 2 * len(self.frames) - 2
        k = self.count % period
        frame = self.frames[k if k < len(self.frames) else period - k]  # ping-pong: continuous motion
        self.frame = frame  # the robot streams carry this frame's joints and base pose from now on
        self.count += 1
        stamp = time.time_ns()
        data = self._serialized(frame)
        for key in ("info", "depth_info", "depth", "image"):
            self.pub[key].publish(restamp_header(data[key], stamp))
        self.sent[stamp] = time.time_ns()
        return stamp

    def run_closed_loop(self, seconds: float, timeout: float = 2.0) -> tuple[list[int], float, float]:
        """As fast as the tracker goes: the next frame as soon as the previous one's pose arrived."""
        stamps = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            stamp = self.publish_next()
            stamps.append(stamp)
            deadline = time.monotonic() + timeout
            while stamp not in self.arrived and time.monotonic() < deadline:
                self.spin_once(0.002)
        return stamps, start, time.monotonic()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.spin_once(max(0.0, min(0.005, end - time.monotonic())))

    def run(self, rate_hz: float, seconds: float) -> tuple[list[int], float, float]:
        """Publish at ``rate_hz`` for ``seconds``; returns (stamps sent, wall start, wall end)."""
        stamps = []
        period = 1.0 / rate_hz
        start = time.monotonic()
        due = start
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            if now >= due:
                stamps.append(self.publish_next())
                due = max(due + period, now)  # never burst to catch up
            self.spin_once(max(0.0, min(0.002, due - time.monotonic())))
        return stamps, start, time.monotonic()


def summarize(feeder: Feeder, stamps: list[int], wall: float, diagnostics: list) -> dict:
    received = [s for s in stamps if s in feeder.arrived]
    latency = np.array([(feeder.arrived[s] - s) / 1e6 for s in received])
    snapshots = [{kv.key: kv.value for kv in d.status[0].values} for d in diagnostics]
    values = snapshots[-1] if snapshots else {}
    stages = {k: float(np.median([float(v[k]) for v in snapshots if k in v]))
              for k in STAGES if any(k in v for v in snapshots)}
    out = {
        "frames_offered": len(stamps),
        "offered_rate_hz": len(stamps) / wall,
        "poses_received": len(received),
        "sustained_rate_hz": len(received) / wall,
        "latency_ms_median": float(np.median(latency)) if len(latency) else None,
        "latency_ms_p95": float(np.percentile(latency, 95)) if len(latency) else None,
        "latency_ms_min": float(latency.min()) if len(latency) else None,
        # stamp -> the feeder's publish calls of the frame's four messages returned
        "feeder_publish_ms_median": float(np.median([(feeder.sent[s] - s) / 1e6 for s in stamps])) if stamps else None,
        "node_dropped_frames_in_run": (int(values["dropped_frames"]) - int(snapshots[0]["dropped_frames"])
                                       if len(snapshots) >= 2 and "dropped_frames" in values else None),
        "node_processing_ms": float(values["processing_ms"]) if "processing_ms" in values else None,
        "node_tracker_ms": float(values["tracker_ms"]) if "tracker_ms" in values else None,
        "node_state": values.get("node_state"),
        "node_stage_ms_median": stages,
        "node_dropped_by_reason": _drops(values),
        **_errors(snapshots),
        "joint_states_intake_lag_ms": _lag(values, "joint_states"),
        "tf_intake_lag_ms": _lag(values, "tf"),
        "image_intake_lag_ms": _lag(values, "image"),
        "object_tf_out_lag_ms": _lag(values, "object_tf_out"),
        "load_average": os.getloadavg(),
    }
    out["latency_breakdown_ms"] = latency_breakdown(out)
    return out


def latency_breakdown(summary: dict) -> dict:
    """Where the median stamp-to-TF latency goes [ms] (medians of each part, so they need not add up exactly):
    ``feeder_publish``: stamp -> the feeder's four publish calls returned; ``in``: stamp -> the colour image
    taken by the node's intake (the feeder's publish and DDS included); ``queue``,
    ``wait`` (for the inputs after the stamp), ``assemble`` (inputs minus wait), ``held``, ``track`` (the step as
    the node sees it); ``out``: stamp -> the object TF published by the node, ``back``: the latency minus ``out``
    (the TF's way back to the feeder)."""
    stages = summary["node_stage_ms_median"]
    image, out = summary["image_intake_lag_ms"].get("median"), summary["object_tf_out_lag_ms"].get("median")
    latency = summary["latency_ms_median"]
    parts = {"feeder_publish": summary.get("feeder_publish_ms_median"), "in": image, "queue": stages.get("queue_ms"),
             "wait": stages.get("wait_ms"),
             "assemble": (stages["inputs_ms"] - stages["wait_ms"]) if "wait_ms" in stages else None,
             "held": stages.get("held_ms"), "track": stages.get("track_ms"), "out": out,
             "back": (latency - out) if latency is not None and out is not None else None}
    return {k: None if v is None else round(float(v), 2) for k, v in parts.items()}


def _drops(values: dict) -> dict:
    return {k[len("dropped_"):]: int(v) for k, v in values.items()
            if k.startswith("dropped_") and k not in ("dropped_frames", "dropped_frames_recent")}


def _errors(snapshots: list[dict]) -> dict:
    """The node's input errors by kind (``errors_*`` in /diagnostics) and the last error message it reported."""
    values = snapshots[-1] if snapshots else {}
    last = next((v["last_error"] for v in reversed(snapshots) if v.get("last_error")), "")
    return {"node_errors": {k[len("errors_"):]: int(v) for k, v in values.items() if k.startswith("errors_")},
            "node_last_error": last}


def _lag(values: dict, name: str) -> dict:
    return {key: float(values[f"{name}_lag_{key}_ms"]) for key in ("median", "p99", "max")
            if f"{name}_lag_{key}_ms" in values}


def run_mode(mode: str, rates: list[tuple[str, float]], seconds: float, folder: Path, env: dict,
             initial_pose: list[float], context) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    frames = load_frames(folder)
    command = [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
               str(ROOT / "config" / "allegro_tracking.yaml"), "-p", f"object_mesh:={folder / 'object' / 'model.obj'}",
               "-p", "initial_pose:=[" + ", ".join(repr(v) for v in initial_pose) + "]",
               "-p", f"tracking.mode:={mode}", "-p", "torch_threads:=1", "-p", "diagnostics_period:=0.5",
               "-p", INTAKE_NICE]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    feeder = Feeder(context, frames, meta)
    results = {}
    try:
        t0 = time.monotonic()
        while not feeder.ready():  # the node subscribes once its tracker is built and warmed up
            if process.poll() is not None or time.monotonic() - t0 > 180:
                raise RuntimeError(f"tracker did not start: {process.communicate()[0][-3000:]}")
            time.sleep(0.1)
        results["startup_s"] = time.monotonic() - t0
        feeder.run(10.0, 3.0)  # warm-up: first frames, joint map, TF buffer
        feeder.spin_for(2.5)  # (the node's intake-lag window: 2000 samples, about 6 s at 333 Hz)
        for name, rate in rates:
            cpu0, wall0, feeder_cpu0 = cpu_split(process.pid), time.monotonic(), time.process_time()
            sent0 = dict(feeder.robot_sent)
            first_diagnostic = len(feeder.diagnostics)
            stamps, start, end = feeder.run(rate, seconds) if rate > 0 else feeder.run_closed_loop(seconds)
            feeder.spin_for(1.0)  # let the last poses arrive
            cpu1 = cpu_split(process.pid)
            cpu = {role: cpu1[role] - cpu0.get(role, 0.0) for role in cpu1}
            wall = time.monotonic() - wall0
            summary = summarize(feeder, stamps, end - start, feeder.diagnostics[first_diagnostic:])
            summary["tracker_cpu_percent_of_one_core"] = 100.0 * (cpu["node_process"] + cpu["tracker_process"]) / wall
            summary["cpu_percent_of_one_core"] = {role: round(100.0 * value / wall, 1) for role, value in cpu.items()}
            summary["cpu_percent_of_one_core"]["feeder_process"] = round(
                100.0 * (time.process_time() - feeder_cpu0) / wall, 1)
            high_rate = sum(feeder.robot_sent[k] - sent0[k] for k in sent0)
            posed = max(1, summary["poses_received"])
            summary["cpu_ms_per_unit"] = {  # /proc counts CPU in 10 ms ticks: meaningful over a whole run
                "node_process_per_image": 1e3 * cpu["node_process"] / max(1, len(stamps)),
                "executor_per_image": 1e3 * cpu.get("executor", 0.0) / max(1, len(stamps)),
                # (the intake thread takes every input: joint states, /tf, and colour + depth + 2 infos per image)
                "intake_per_message": 1e3 * cpu.get("intake", 0.0) / max(1, high_rate + 4 * len(stamps)),
                "worker_per_posed_frame": 1e3 * cpu.get("worker", 0.0) / posed,
                "tracker_process_per_posed_frame": 1e3 * cpu["tracker_process"] / posed,
                "dds_per_image": 1e3 * cpu.get("dds", 0.0) / max(1, len(stamps)),
            }
            summary["high_rate_messages_sent"] = high_rate
            summary.update({f"tracker_{k}_mb": v for k, v in proc_memory_mb(process.pid).items()})
            results[name] = summary
            print(f"  {mode:7s} {name:8s} offered {summary['offered_rate_hz']:5.1f} Hz -> sustained "
                  f"{summary['sustained_rate_hz']:5.1f} Hz, latency median {summary['latency_ms_median']} ms, "
                  f"p95 {summary['latency_ms_p95']} ms, breakdown {summary['latency_breakdown_ms']}, "
                  f"stages {summary['node_stage_ms_median']}, joint-state "
                  f"intake lag {summary['joint_states_intake_lag_ms']}, CPU % of a core "
                  f"{summary['cpu_percent_of_one_core']}, CPU ms per unit "
                  f"{ {k: round(v, 3) for k, v in summary['cpu_ms_per_unit'].items()} }, "
                  f"drops {summary['node_dropped_by_reason']}, last error {summary['node_last_error']!r}, "
                  f"load {summary['load_average'][0]:.1f}", flush=True)
    finally:
        feeder.close()
        output = stop_process(process)
        results["exit_code"] = process.returncode
        if process.returncode != 0:
            results["log_tail"] = output[-2000:]
    return results


def _settled(diagnostics: list, offered: int, posed: int) -> bool:
    """The node received ``offered`` images and accounts for each (``posed`` here, or dropped), mailbox empty."""
    if not diagnostics:
        return False
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    dropped = sum(_drops(values).values())
    return (int(values.get("images_received", 0)) >= offered and values.get("size_mailbox") == "0"
            and int(values.get("frames_processed", -1)) == posed and posed + dropped >= offered)


def run_replay(sequence: Path, env: dict, context) -> dict:
    """A shared dev bag played at its recorded rate by sequence_player into the tracker (EKF mode)."""
    import torch
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rosbags.rosbag2 import Reader
    from tf2_msgs.msg import TFMessage

    from handypriors_core.geometry.transforms import pose_from_transform
    from handypriors_core.io.dev_sequence import load_ground_truth
    from handypriors_ros import conversions as cv
    from handypriors_ros.qos import TF_QOS

    with Reader(sequence / "bag") as reader:
        images = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/Image" and "depth" not in c.topic]
        offered = sum(1 for _ in reader.messages(connections=images))
        duration_s = reader.duration / 1e9
    position, quaternion = pose_from_transform(load_ground_truth(sequence).object2camera[0].to(torch.float64))
    initial = "initial_pose:=[" + ", ".join(repr(float(v)) for v in position.tolist() + quaternion.tolist()) + "]"
    node = Node("bench_replay", context=context)
    posed: set[int] = set()
    diagnostics: list = []
    node.create_subscription(TFMessage, "/tf", lambda m: posed.update(
        cv.stamp_ns(t) for t in m.transforms if t.child_frame_id == "object"), TF_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    tracker = subprocess.Popen(
        [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
         str(ROOT / "config" / "allegro_tracking.yaml"), "-p", f"object_mesh:={sequence / 'object' / 'model.obj'}",
         "-p", initial, "-p", "tracking.mode:=filter", "-p", "torch_threads:=1", "-p", "diagnostics_period:=0.5",
         "-p", INTAKE_NICE,
         "-p", "global_search:=false"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result: dict = {"sequence": sequence.name, "frames_offered": offered, "load_average_at_start": os.getloadavg()}
    try:
        t0 = time.monotonic()
        while node.count_subscribers("/camera/camera/color/image_raw") == 0:
            if tracker.poll() is not None or time.monotonic() - t0 > 180:
                raise RuntimeError(f"tracker did not start: {tracker.communicate()[0][-3000:]}")
            executor.spin_once(timeout_sec=0.1)
        cpu0, children0 = cpu_split(tracker.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
        played = time.monotonic()
        player = subprocess.Popen(
            [sys.executable, "-m", "handypriors_ros.sequence_player", "--ros-args", "-p",
             f"source:={sequence / 'bag'}", "-p", "rate:=1.0", "-p", "wait_for_subscribers:=1"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        end = time.monotonic() + 120.0  # spin while it plays: a probe that does not read /tf loses poses
        samples = []  # (time, player CPU, node CPU by role): CPU while the bag plays, not the player's start-up
        while player.poll() is None and time.monotonic() < end:  # (its depth-100 queue beside 100 Hz wrist TF)
            executor.spin_once(timeout_sec=0.05)
            samples.append((time.monotonic(), proc_cpu_seconds_self(player.pid), cpu_split(tracker.pid)))
        player_output = player.communicate(timeout=30)[0]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # (the player is the only child reaped meanwhile)
        player_cpu = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
        player_wall = time.monotonic() - played
        last = samples[-1]
        first = next(sample for sample in samples if sample[0] >= last[0] - duration_s - 0.5)
        window = max(last[0] - first[0], 1e-3)
        end = time.monotonic() + 20.0  # until the node accounts for every image (posed or dropped)
        while time.monotonic() < end and not _settled(diagnostics, offered, len(posed)):
            executor.spin_once(timeout_sec=0.05)
        result["tracker_cpu_s"] = proc_cpu_seconds(tracker.pid) - cpu0["node_process"] - cpu0["tracker_process"]
        # over the last (bag duration + 0.5 s) before the player ended: while it played (/proc: 10 ms ticks)
        result["cpu_percent_of_one_core_while_playing"] = {
            **{role: round(100.0 * (last[2][role] - first[2].get(role, 0.0)) / window, 1) for role in last[2]},
            "player_process": round(100.0 * (last[1] - first[1]) / window, 1), "window_s": round(window, 2)}
        result["player_cpu_s_total"] = player_cpu  # (start-up included: imports, reading the bag)
        result["player_wall_s_total"] = player_wall
        values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values} if diagnostics else {}
        lag_lines = [line for line in player_output.splitlines() if "publish lag" in line]
        result.update({
            "frames_posed": len(posed), "posed_fraction": len(posed) / max(offered, 1),
            "images_received_by_node": int(values.get("images_received", 0)),
            "frames_processed_by_node": int(values.get("frames_processed", 0)),
            "node_dropped_by_reason": _drops(values),
            **_errors([{kv.key: kv.value for kv in d.status[0].values} for d in diagnostics]),
            "node_tracker_ms_last": float(values.get("tracker_ms", "nan")),
            "node_stage_ms_median": {k: float(np.median([float(v[k]) for v in (
                {kv.key: kv.value for kv in d.status[0].values} for d in diagnostics) if k in v]))
                for k in STAGES if k in values},
            "player_exit_code": player.returncode, "player_lag": lag_lines[-1].split("]: ")[-1] if lag_lines else "",
            "load_average_at_end": os.getloadavg(),
        })
    finally:
        executor.shutdown(timeout_sec=0.0)
        node.destroy_node()
        stop_process(tracker)
        result["tracker_exit_code"] = tracker.returncode
    print(f"  replay {sequence.name}: posed {result.get('frames_posed')}/{offered}, drops "
          f"{result.get('node_dropped_by_reason')} (last error {result.get('node_last_error')!r}), stages "
          f"{result.get('node_stage_ms_median')}, CPU % of a core while "
          f"playing {result.get('cpu_percent_of_one_core_while_playing')}, "
          f"{result.get('player_lag')}, load {os.getloadavg()[0]:.1f}", flush=True)
    return result


#: Regression bounds on the node process's CPU per message / frame: intake 0.34-0.50 ms per message at load 5-8
#: (session 6), 0.40-0.47 quiet (session 7); worker 3.3-4.0 ms per posed frame quiet and 4.0 at load 7-8 (session 7;
#: 4.9-7.3 in session 6); executor 0.30-0.37 ms per image quiet (it was 17.7 ms with every input in rclpy's executor;
#: docs/benchmarks-history.md, "Session 5"). About 1.5x the highest at load, so a quiet run stays well inside.
#: Exceeding one makes the benchmark exit 1.
CPU_BOUNDS_MS = {"intake_per_message": 0.7, "executor_per_image": 0.6, "worker_per_posed_frame": 6.5}
#: Regression bounds on the worker's CPU per frame in its stages (medians of /diagnostics, 30 Hz run) [ms]: session 7
#: with the images crossing as received, inputs 1.15-1.65 ms quiet and 1.45-1.55 at load 7-8, publish 0.73-0.84 quiet
#: (session 6: inputs 2.2-2.4, publish 0.8-1.1 at load 5-8; before the overlapped worker and the CDR outputs 4.0-4.8 and
#: 2.6-3.2). ``input_cpu_ms``: assembling plus decoding while the frame waited (``inputs_cpu_ms`` +
#: ``prepare_cpu_ms``); 2.9-3.1 ms before the images crossed as received. About 1.5x the highest at load.
#: ``tracker_receive_cpu_ms`` / ``tracker_reply_cpu_ms``: the tracker process's CPU per frame taking the frame in
#: (request, shared-memory copy, decoding, the frame's checks) and sending the estimate back, 1.8-2.5 / 0.28-0.44 ms
#: at load 7 (session 8; receiving was 2.7-4.1 ms at load 5-6 before millimetre depth was decoded in place and its
#: value scan skipped).
STAGE_CPU_BOUNDS_MS = {"inputs_cpu_ms": 2.5, "publish_cpu_ms": 1.3, "input_cpu_ms": 2.5, "tracker_receive_cpu_ms": 3.5,
                       "tracker_reply_cpu_ms": 0.7}


def _check(value: float | None, bound: float, below: bool = True) -> dict:
    ok = value is not None and (value <= bound if below else value >= bound)
    return {"value": value, "bound": bound, "pass": bool(ok)}


def goal_checks(results: dict) -> dict:
    """The issue's goals (pass / fail; not met on a 2-core machine with the tracker's step as it is) and the
    regression checks of the node's CPU per unit (``regression_*``: the benchmark fails when one fails)."""
    checks: dict = {}
    live = results.get("modes", {}).get("filter", {}).get("30hz")
    if live:
        lag = live["joint_states_intake_lag_ms"].get("p99")
        checks["goal_joint_state_intake_lag_p99_below_5_ms"] = _check(lag, 5.0)
        checks["goal_sustained_30_hz"] = _check(live["sustained_rate_hz"], 0.95 * live["offered_rate_hz"], below=False)
        step = live["node_stage_ms_median"].get("track_ms")
        checks["goal_latency_median_within_tracker_step_plus_10_ms"] = _check(
            live["latency_ms_median"], (step or 0.0) + 10.0)
        for key, bound in CPU_BOUNDS_MS.items():
            checks[f"regression_cpu_ms_{key}"] = _check(live["cpu_ms_per_unit"].get(key), bound)
        stages = dict(live["node_stage_ms_median"])
        if "prepare_cpu_ms" in stages:
            stages["input_cpu_ms"] = stages["inputs_cpu_ms"] + stages["prepare_cpu_ms"]
        for key, bound in STAGE_CPU_BOUNDS_MS.items():
            checks[f"regression_worker_{key}"] = _check(stages.get(key), bound)
    for replay in results.get("replays", []):
        name = replay["sequence"]
        checks[f"goal_replay_{name}_posed_95_percent"] = _check(replay.get("posed_fraction"), 0.95, below=False)
        checks[f"goal_replay_{name}_no_input_drops"] = _check(
            float(replay.get("node_dropped_by_reason", {}).get("input", 0)), 0.0)
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring time per run")
    parser.add_argument("--frames", type=int, default=6, help="distinct rendered frames (played ping-pong)")
    parser.add_argument("--quick", action="store_true", help="EKF mode only")
    parser.add_argument("--no-replay", action="store_true", help="skip the recorded-rate replays of the dev bags")
    parser.add_argument("--no-live", action="store_true", help="only the replays")
    # run as a script: the command line; called as main() (bench/run_all.py): the defaults
    args = parser.parse_args(argv if argv is not None or __name__ == "__main__" else [])

    import rclpy
    import torch
    from test_ros_tracker_integration import render_sequence

    from handypriors_core.geometry.transforms import pose_from_transform
    from handypriors_core.io.dev_sequence import load_ground_truth
    from handypriors_ros.ros_environment import reserve_domain_id, ros_environment

    work = Path(tempfile.mkdtemp(prefix="bench_ros_node_"))
    folder, initial_pose = None, None
    if not args.no_live:
        t = time.monotonic()
        folder = render_sequence(work / "frames", frames=args.frames, width=WIDTH, height=HEIGHT)
        print(f"rendered {args.frames} frames of {WIDTH}x{HEIGHT} in {time.monotonic() - t:.1f} s", flush=True)
        position, quaternion = pose_from_transform(load_ground_truth(folder).object2camera[0].to(torch.float64))
        initial_pose = [float(v) for v in position.tolist() + quaternion.tolist()]
    modes = ["filter"] if args.quick else ["filter", "refine"]
    rates = [("30hz", 30.0), ("closed_loop", 0.0)]
    results = {
        "description": "allegro_tracker process fed 640x480 RGB-D frames at 30 Hz with joint states at 333 Hz and /tf "
                       "at 100 Hz (stamp = publish time); latency = image stamp -> object TF received by the feeder "
                       "process; sustained rate = object poses per second; replays: dev bags at recorded rate",
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                    "python": platform.python_version(), "torch": torch.__version__, "torch_threads_in_node": 1,
                    "device": "cpu"},
        "image": f"{WIDTH}x{HEIGHT} rgb8 + 16UC1 depth",
        "seconds_per_run": args.seconds,
        "goal": "30 Hz sustained in EKF mode with median latency <= tracker step + 10 ms; joint-state intake lag p99 "
                "< 5 ms with 333 Hz joint states and 100 Hz /tf; dev bags at recorded rate: >= 95 % of frames posed",
        "modes": {},
    }
    with reserve_domain_id() as domain:
        env = ros_environment(domain_id=domain.domain_id, log_dir=work / "ros_log", interpreter=sys.executable)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "FASTRTPS", "FASTDDS", "RMW"))})
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain.domain_id)
        try:
            for mode in modes if not args.no_live else []:
                results["modes"][mode] = run_mode(mode, rates, args.seconds, folder, env, initial_pose, context)
            shared = ROOT.parent / "shared" / "data" / "dev"
            if not args.no_replay and shared.is_dir():
                results["replays"] = [run_replay(sequence, env, context) for sequence in sorted(shared.iterdir())
                                      if (sequence / "bag" / "metadata.yaml").is_file()]
        finally:
            rclpy.try_shutdown(context=context)
            shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["checks"] = goal_checks(results)
    for name, check in results["checks"].items():
        print(f"  {'PASS' if check['pass'] else 'FAIL'} {name}: {check['value']} (bound {check['bound']})")
    print(f"wrote {write_results('ros_node', results)}")
    failed = [name for name, check in results["checks"].items() if name.startswith("regression") and not check["pass"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
