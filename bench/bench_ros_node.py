"""allegro_tracker as a process, fed 640x480 RGB-D frames: sustained rate, stamp-to-TF latency, CPU, memory.

This process renders a few frames of the integration test's scene (the Allegro hand carrying a box, numpy z-buffer,
``test/test_ros_tracker_integration.py``) at 640x480, then publishes them in a ping-pong loop as a RealSense camera
and the hand driver would: colour (rgb8), aligned depth (16UC1), camera info, joint states and the hand base on
/tf, all stamped with the current time. The tracker runs as a separate process (``python -m
handypriors_ros.allegro_tracker`` with ``config/allegro_tracking.yaml``, the initial pose from the frames' ground
truth) on a private ROS domain with the project's shared-memory Fast DDS profile.

Runs (each ``--seconds`` long after a warm-up): frames offered at 30 Hz, and as fast as the tracker goes (closed
loop: the next frame as soon as the previous pose arrived, so no frame waits and none is dropped), in EKF mode
(``tracking.mode: filter``) and, unless ``--quick``, with the time-budgeted refinement (``refine``). Measured:

- sustained rate: object poses on /tf per second (the node drops what it cannot process: newest frame wins);
- latency: image stamp (= publish time) -> the object's TF received here (median, p95) [ms];
- CPU of the tracker process (utime + stime from /proc, % of one core) and its memory (VmRSS, VmHWM);
- the node's own counters from /diagnostics: dropped frames, and per frame the time spent waiting in the mailbox,
  converting inputs, tracking (the core) and publishing (medians over the run).

Overlay and markers are built only for subscribers, and this benchmark subscribes to /tf and /diagnostics only.

    .venv/bin/python bench/bench_ros_node.py [--seconds 15] [--quick]

Writes ``bench/results/ros_node.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from bench._common import write_results  # after the sys.path lines above

WIDTH, HEIGHT = 640, 480
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` [s] from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


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
        n.create_subscription(TFMessage, "/tf", self._on_tf, TF_QOS)
        n.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(n)
        self.count = 0

    def _on_tf(self, msg):
        now = time.time_ns()
        for t in msg.transforms:
            if t.child_frame_id == "object":
                self.arrived[self.cv.stamp_ns(t)] = now

    def ready(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.pub.values())

    def publish_next(self) -> int:
        from sensor_msgs.msg import JointState
        from tf2_msgs.msg import TFMessage

        cv = self.cv
        period = 2 * len(self.frames) - 2
        k = self.count % period
        frame = self.frames[k if k < len(self.frames) else period - k]  # ping-pong: continuous motion
        self.count += 1
        stamp = time.time_ns()
        self.tf_pub.publish(TFMessage(transforms=[cv.matrix_to_transform_stamped(frame["hand2camera"],
                                                                                 self.frame_id, "hand_root", stamp)]))
        self.pub["joints"].publish(JointState(header=cv.make_header(stamp), name=self.joint_names,
                                              position=frame["joints"]))
        info = cv.camera_to_camera_info(self.camera, stamp, self.frame_id)
        self.pub["info"].publish(info)
        self.pub["depth_info"].publish(info)
        self.pub["depth"].publish(cv.array_to_image(frame["depth"], "16UC1", stamp, self.frame_id))
        self.pub["image"].publish(cv.rgb_to_image(frame["rgb"], stamp, self.frame_id))
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
                self.executor.spin_once(timeout_sec=0.002)
        return stamps, start, time.monotonic()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.005, end - time.monotonic())))

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
            self.executor.spin_once(timeout_sec=max(0.0, min(0.002, due - time.monotonic())))
        return stamps, start, time.monotonic()


def summarize(feeder: Feeder, stamps: list[int], wall: float, diagnostics: list) -> dict:
    received = [s for s in stamps if s in feeder.arrived]
    latency = np.array([(feeder.arrived[s] - s) / 1e6 for s in received])
    snapshots = [{kv.key: kv.value for kv in d.status[0].values} for d in diagnostics]
    values = snapshots[-1] if snapshots else {}
    stages = {k: float(np.median([float(v[k]) for v in snapshots if k in v]))
              for k in ("queue_ms", "inputs_ms", "track_ms", "publish_ms") if any(k in v for v in snapshots)}
    out = {
        "frames_offered": len(stamps),
        "offered_rate_hz": len(stamps) / wall,
        "poses_received": len(received),
        "sustained_rate_hz": len(received) / wall,
        "latency_ms_median": float(np.median(latency)) if len(latency) else None,
        "latency_ms_p95": float(np.percentile(latency, 95)) if len(latency) else None,
        "latency_ms_min": float(latency.min()) if len(latency) else None,
        "node_dropped_frames_in_run": (int(values["dropped_frames"]) - int(snapshots[0]["dropped_frames"])
                                       if len(snapshots) >= 2 and "dropped_frames" in values else None),
        "node_processing_ms": float(values["processing_ms"]) if "processing_ms" in values else None,
        "node_tracker_ms": float(values["tracker_ms"]) if "tracker_ms" in values else None,
        "node_state": values.get("node_state"),
        "node_stage_ms_median": stages,
    }
    return out


def run_mode(mode: str, rates: list[tuple[str, float]], seconds: float, folder: Path, env: dict,
             initial_pose: list[float], context) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    frames = load_frames(folder)
    command = [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
               str(ROOT / "config" / "allegro_tracking.yaml"), "-p", f"object_mesh:={folder / 'object' / 'model.obj'}",
               "-p", "initial_pose:=[" + ", ".join(repr(v) for v in initial_pose) + "]",
               "-p", f"tracking.mode:={mode}", "-p", "torch_threads:=1", "-p", "diagnostics_period:=0.5"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    feeder = Feeder(context, frames, meta)
    results = {}
    try:
        t0 = time.monotonic()
        while not feeder.ready():  # the node subscribes once its tracker is built and warmed up
            if process.poll() is not None or time.monotonic() - t0 > 180:
                raise RuntimeError(f"tracker did not start: {process.communicate()[0][-3000:]}")
            feeder.executor.spin_once(timeout_sec=0.1)
        results["startup_s"] = time.monotonic() - t0
        feeder.run(10.0, 3.0)  # warm-up: first frames, joint map, TF buffer
        feeder.spin_for(1.0)
        for name, rate in rates:
            cpu0, wall0 = proc_cpu_seconds(process.pid), time.monotonic()
            first_diagnostic = len(feeder.diagnostics)
            stamps, start, end = feeder.run(rate, seconds) if rate > 0 else feeder.run_closed_loop(seconds)
            feeder.spin_for(1.0)  # let the last poses arrive
            cpu = proc_cpu_seconds(process.pid) - cpu0
            wall = time.monotonic() - wall0
            summary = summarize(feeder, stamps, end - start, feeder.diagnostics[first_diagnostic:])
            summary["tracker_cpu_percent_of_one_core"] = 100.0 * cpu / wall
            summary.update({f"tracker_{k}_mb": v for k, v in proc_memory_mb(process.pid).items()})
            results[name] = summary
            print(f"  {mode:7s} {name:8s} offered {summary['offered_rate_hz']:5.1f} Hz -> sustained "
                  f"{summary['sustained_rate_hz']:5.1f} Hz, latency median {summary['latency_ms_median']} ms, "
                  f"p95 {summary['latency_ms_p95']} ms, CPU {summary['tracker_cpu_percent_of_one_core']:.0f} %, "
                  f"RSS {summary.get('tracker_VmRSS_mb', 0):.0f} MB", flush=True)
    finally:
        feeder.executor.shutdown(timeout_sec=0.0)
        feeder.node.destroy_node()
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        results["exit_code"] = process.returncode
        if process.returncode != 0:
            results["log_tail"] = output[-2000:]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring time per run")
    parser.add_argument("--frames", type=int, default=6, help="distinct rendered frames (played ping-pong)")
    parser.add_argument("--quick", action="store_true", help="EKF mode only")
    # run as a script: the command line; called as main() (bench/run_all.py): the defaults
    args = parser.parse_args(argv if argv is not None or __name__ == "__main__" else [])

    import rclpy
    import torch
    from test_ros_tracker_integration import render_sequence

    from handypriors_core.geometry.transforms import pose_from_transform
    from handypriors_core.io.dev_sequence import load_ground_truth
    from handypriors_ros.ros_environment import reserve_domain_id, ros_environment

    work = Path(tempfile.mkdtemp(prefix="bench_ros_node_"))
    t = time.monotonic()
    folder = render_sequence(work / "frames", frames=args.frames, width=WIDTH, height=HEIGHT)
    print(f"rendered {args.frames} frames of {WIDTH}x{HEIGHT} in {time.monotonic() - t:.1f} s", flush=True)
    position, quaternion = pose_from_transform(load_ground_truth(folder).object2camera[0].to(torch.float64))
    initial_pose = [float(v) for v in position.tolist() + quaternion.tolist()]
    modes = ["filter"] if args.quick else ["filter", "refine"]
    rates = [("30hz", 30.0), ("closed_loop", 0.0)]
    results = {
        "description": "allegro_tracker process fed 640x480 RGB-D frames (stamp = publish time); latency = image "
                       "stamp -> object TF received by the feeder process; sustained rate = object poses per second",
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                    "python": platform.python_version(), "torch": torch.__version__, "torch_threads_in_node": 1,
                    "device": "cpu"},
        "image": f"{WIDTH}x{HEIGHT} rgb8 + 16UC1 depth",
        "seconds_per_run": args.seconds,
        "goal": "30 Hz sustained in EKF mode with median latency under 30 ms on 2 cores",
        "modes": {},
    }
    with reserve_domain_id() as domain:
        env = ros_environment(domain_id=domain.domain_id, log_dir=work / "ros_log", interpreter=sys.executable)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "FASTRTPS", "FASTDDS", "RMW"))})
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain.domain_id)
        try:
            for mode in modes:
                results["modes"][mode] = run_mode(mode, rates, args.seconds, folder, env, initial_pose, context)
        finally:
            rclpy.try_shutdown(context=context)
            shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    print(f"wrote {write_results('ros_node', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
