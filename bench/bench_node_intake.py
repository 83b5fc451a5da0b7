"""Which executor design keeps message intake fed while a tracker computes in the same process?

A publisher process sends what a robot sends: joint states at 333 Hz, the wrist on ``/tf`` at 100 Hz and
640x480 colour (rgb8) + aligned depth (16UC1) + camera info at 30 Hz, every message stamped with the wall clock
at publish time. This process subscribes the way ``allegro_tracker`` does, while a worker thread runs a
stand-in for the tracker (small torch ops mixed with Python, the profile of one EKF step; about 80-90 % busy), and
records the **intake lag** of every joint state: wall clock when the callback ran minus the message's stamp.

Variants (each ``--seconds`` long):

- ``executor``: rclpy's ``SingleThreadedExecutor`` (Python wait-set loop), ``MultiThreadedExecutor`` with the
  high-rate subscriptions in their own callback group, or ``EventsExecutor`` (rclpy.experimental, C++ loop);
- ``raw``: joint states and TF taken as CDR bytes and parsed by :mod:`handypriors_ros.cdr` instead of
  deserialised into message objects;
- ``switch``: ``sys.setswitchinterval`` [ms] (CPython's default 5 ms is the longest a thread that wants the
  interpreter lock waits while another thread runs Python code);
- ``worker``: ``busy`` (the tracker stand-in) or ``none`` (no compute in this process: the lower bound for a
  design that runs the tracker in its own process, before the cost of moving frames to it);
- ``intake``: the node's design since session 5: joint states and TF raw, drained by a
  :class:`~handypriors_ros.raw_intake.RawIntake` thread (the executor keeps the images here).

    .venv/bin/python bench/bench_node_intake.py [--seconds 6]

Writes ``bench/results/node_intake.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import write_results  # after the sys.path line above

JOINT_NAMES = [f"joint_{i}.0" for i in range(16)]


def publish(seconds: float, joint_hz: float = 333.0, tf_hz: float = 100.0, image_hz: float = 30.0) -> None:
    """The publisher process: joint states, /tf and RGB-D at their rates for ``seconds``."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from tf2_msgs.msg import TFMessage

    from handypriors_ros import conversions as cv
    from handypriors_ros.qos import JOINT_STATES_QOS, SENSOR_PUBLISHER_QOS, TF_QOS

    rclpy.init()
    node = Node("intake_publisher")
    joints = node.create_publisher(JointState, "/joint_states", JOINT_STATES_QOS)
    tf = node.create_publisher(TFMessage, "/tf", TF_QOS)
    image = node.create_publisher(Image, "/camera/color/image_raw", SENSOR_PUBLISHER_QOS)
    depth = node.create_publisher(Image, "/camera/depth/image_raw", SENSOR_PUBLISHER_QOS)
    info = node.create_publisher(CameraInfo, "/camera/color/camera_info", SENSOR_PUBLISHER_QOS)
    rgb = np.zeros((480, 640, 3), np.uint8)
    depth_mm = np.full((480, 640), 400, np.uint16)
    deadline = time.monotonic() + 20.0
    while joints.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    periods = {"joints": 1.0 / joint_hz, "tf": 1.0 / tf_hz, "image": 1.0 / image_hz}
    start = time.monotonic()
    due = dict.fromkeys(periods, start)
    T = np.eye(4)
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        for key, period in periods.items():
            if now < due[key]:
                continue
            due[key] += period
            stamp = time.time_ns()
            if key == "joints":
                joints.publish(JointState(header=cv.make_header(stamp), name=JOINT_NAMES,
                                          position=[0.1 * i for i in range(16)]))
            elif key == "tf":
                T[0, 3] = 0.01 * np.sin(now)
                tf.publish(TFMessage(transforms=[cv.matrix_to_transform_stamped(T, "camera", "hand_root", stamp)]))
            else:
                info.publish(CameraInfo(header=cv.make_header(stamp, "camera"), width=640, height=480))
                depth.publish(cv.array_to_image(depth_mm, "16UC1", stamp, "camera"))
                image.publish(cv.rgb_to_image(rgb, stamp, "camera"))
        time.sleep(max(0.0, min(due.values()) - time.monotonic()))
    node.destroy_node()
    rclpy.try_shutdown()


class TrackerStandIn:
    """A worker thread with the profile of a tracker step: small torch ops between lines of Python."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.stop = threading.Event()
        self.steps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        torch = self.torch
        x = torch.rand(64, 64)
        while not self.stop.is_set():
            for _ in range(200):  # ~ one frame of small ops
                y = (x @ x).clamp(-1, 1)
                values = [float(v) for v in y[0, :8]]  # Python work between ops
                x = x * 0.5 + 0.5 * y / (1.0 + sum(abs(v) for v in values))
            self.steps += 1
            time.sleep(0.004)  # the node waits a little between frames


def measure(executor_name: str, raw: bool, switch_ms: float, worker: str, seconds: float, env: dict) -> dict:
    import rclpy
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from tf2_msgs.msg import TFMessage

    from handypriors_ros import cdr
    from handypriors_ros.qos import JOINT_STATES_QOS, SENSOR_SUBSCRIBER_QOS, TF_LISTENER_QOS

    sys.setswitchinterval(switch_ms / 1e3)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("intake_bench", context=context)
    lags: list[int] = []
    counts = {"tf": 0, "image": 0, "depth": 0}

    def on_joints(msg) -> None:
        now = time.time_ns()
        stamp = cdr.parse_joint_state(msg).stamp_ns if raw else msg.header.stamp.sec * 1_000_000_000 + \
            msg.header.stamp.nanosec
        lags.append(now - stamp)

    def on_tf(msg) -> None:
        if raw:
            cdr.parse_tf_message(msg)
        counts["tf"] += 1

    if executor_name == "intake":  # the node's design: a RawIntake thread drains the raw high-rate streams
        from handypriors_ros.raw_intake import ServedElsewhere

        group = ServedElsewhere()
    else:
        group = MutuallyExclusiveCallbackGroup() if executor_name == "multi" else None
    high_rate = [
        node.create_subscription(JointState, "/joint_states", on_joints, JOINT_STATES_QOS, raw=raw,
                                 callback_group=group),
        node.create_subscription(TFMessage, "/tf", on_tf, TF_LISTENER_QOS, raw=raw, callback_group=group)]
    def counter(key: str):
        return lambda msg: counts.__setitem__(key, counts[key] + 1)

    node.create_subscription(Image, "/camera/color/image_raw", counter("image"), SENSOR_SUBSCRIBER_QOS)
    node.create_subscription(Image, "/camera/depth/image_raw", counter("depth"), SENSOR_SUBSCRIBER_QOS)
    node.create_subscription(CameraInfo, "/camera/color/camera_info", lambda m: None, SENSOR_SUBSCRIBER_QOS)
    if executor_name == "events":
        from rclpy.experimental import EventsExecutor

        executor = EventsExecutor(context=context)
    elif executor_name == "multi":
        executor = MultiThreadedExecutor(num_threads=2, context=context)
    else:
        executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    intake = None
    if executor_name == "intake":
        from handypriors_ros.raw_intake import RawIntake

        intake = RawIntake(context, high_rate)
        intake.start()
    stand_in = TrackerStandIn() if worker == "busy" else None
    publisher = subprocess.Popen([sys.executable, __file__, "--publish", str(seconds)], env=env)
    if stand_in is not None:
        stand_in.thread.start()
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    cpu0 = time.process_time()
    publisher.wait(timeout=seconds + 60)
    time.sleep(0.3)
    cpu = time.process_time() - cpu0
    if stand_in is not None:
        stand_in.stop.set()
        stand_in.thread.join()
    if intake is not None:
        intake.stop()
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    sys.setswitchinterval(0.005)
    lag_ms = np.asarray(lags[len(lags) // 10:], dtype=np.float64) / 1e6  # the first 10 %: discovery transients
    return {
        "executor": executor_name, "raw": raw, "switch_ms": switch_ms, "worker": worker,
        "joint_states_received": len(lags), "joint_states_offered": round(333 * seconds),
        "tf_received": counts["tf"], "images_received": counts["image"],
        "lag_ms_median": float(np.median(lag_ms)) if lag_ms.size else None,
        "lag_ms_p99": float(np.percentile(lag_ms, 99)) if lag_ms.size else None,
        "worker_steps_per_s": (stand_in.steps / seconds) if stand_in is not None else None,
        "process_cpu_s": cpu,
        "process_cpu_ms_per_high_rate_message": 1e3 * cpu / max(1, len(lags) + counts["tf"]),
        "load_average": os.getloadavg()[0],
    }


VARIANTS = [
    ("single", False, 5.0, "none"),
    ("single", False, 5.0, "busy"),
    ("multi", False, 5.0, "busy"),
    ("single", True, 5.0, "busy"),
    ("single", False, 0.5, "busy"),
    ("single", True, 0.5, "busy"),
    ("single", True, 0.2, "busy"),
    ("single", True, 0.5, "none"),
    ("intake", True, 0.5, "none"),
    ("intake", True, 0.5, "busy"),
    ("single", True, 5.0, "none"),
    ("intake", True, 5.0, "busy"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--publish", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help="comma-separated variant indices")
    parser.add_argument("--output", default="node_intake", help="results name (bench/results/<name>.json)")
    args = parser.parse_args(argv if argv is not None or __name__ == "__main__" else [])
    if args.publish is not None:
        publish(args.publish)
        return 0
    import tempfile

    from handypriors_ros.ros_environment import reserve_domain_id, ros_environment

    rows = []
    chosen = [VARIANTS[int(i)] for i in args.only.split(",")] if args.only else VARIANTS
    with reserve_domain_id() as domain, tempfile.TemporaryDirectory() as logs:
        env = ros_environment(domain_id=domain.domain_id, log_dir=Path(logs), interpreter=sys.executable)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "FASTRTPS", "FASTDDS", "RMW"))})
        for variant in chosen:
            row = measure(*variant, seconds=args.seconds, env=env)
            rows.append(row)
            print(f"{row['executor']:7s} raw={row['raw']!s:5s} switch={row['switch_ms']:3.1f} ms "
                  f"worker={row['worker']:4s}: "
                  f"joint states {row['joint_states_received']}/{row['joint_states_offered']}, lag median "
                  f"{row['lag_ms_median']:.2f} ms p99 {row['lag_ms_p99']:.2f} ms, worker "
                  f"{row['worker_steps_per_s'] or 0:.1f} steps/s, CPU "
                  f"{row['process_cpu_ms_per_high_rate_message']:.2f} "
                  f"ms per high-rate message, load {row['load_average']:.2f}", flush=True)
    write_results(args.output, {"description": __doc__.splitlines()[0], "seconds_per_variant": args.seconds,
                                  "cpus": os.cpu_count(), "variants": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
