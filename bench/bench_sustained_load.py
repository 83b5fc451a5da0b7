"""Sustained load on ``allegro_tracker``: frames at twice the camera rate for minutes, or a one-hour soak.

The tracker runs as its own process (EKF mode, ``config/allegro_tracking.yaml``, initial pose from the ground truth)
on a private ROS domain; this process plays rendered 640x480 RGB-D frames of the integration test's scene
(ping-pong, stamped with the current time) through :class:`bench.bench_ros_node.Feeder` at ``--rate`` for
``--duration`` seconds after a warm-up. Measured, and checked (the exit status is 1 when a check fails):

- dropped frames: frames offered whose pose never arrived, and the node's own counter (it keeps the newest frame
  when busy: at 60 Hz on 2 cores most frames are dropped by design; the check is that poses keep coming);
- latency of the processed frames (image stamp -> object TF received here): median, p95, max;
- RSS of the tracker sampled every second, and its slope [MB/min] after the warm-up (check: under
  ``--max-rss-slope``);
- the size of every queue of the node, from its /diagnostics (``size_*``: the mailbox, the depth / mask stamp
  buffers, the TF history and frames, the joint-state history, the error-log keys), checked against the bound each
  has by construction (``no_growth`` compares the last third of the run with the middle one, for information).

    .venv/bin/python bench/bench_sustained_load.py [--duration 600] [--rate 60]     # make bench: 10 min at 60 Hz
    .venv/bin/python bench/bench_sustained_load.py --soak                           # 1 h at 30 Hz (not in CI)

Writes ``bench/results/sustained_load.json`` (``--soak``: ``sustained_load_soak.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from bench._common import load_average, percentile, stop_process, write_results  # after the sys.path lines above
from bench.bench_ros_node import HEIGHT, WIDTH, Feeder, load_frames, proc_cpu_seconds, proc_memory_mb

WARM_UP_S = 20.0
JOINTS = 16
JOINT_HISTORY_S = 2.0  # allegro_tracker's JointStateBuffer window
TF_CACHE_S = 10.0  # allegro_tracker's TfBuffer cache time
STAMPED_BUFFER = 30  # depth / mask buffers of the node


def queue_bounds(rate_hz: float, robot_rates: dict[str, float]) -> dict[str, float]:
    """The most each queue can hold by construction with frames at ``rate_hz`` and the feeder's joint states and
    /tf at ``robot_rates`` (``{"joints": Hz, "tf": Hz}``); +25 % for jitter of the publishing loop."""
    frames, joints, tf = (1.25 * r for r in (rate_hz, robot_rates["joints"], robot_rates["tf"]))
    return {"size_mailbox": 1, "size_depth": STAMPED_BUFFER, "size_masks": STAMPED_BUFFER,
            "size_joint_samples": JOINTS * (JOINT_HISTORY_S * joints + 2),
            "size_tf_samples": TF_CACHE_S * tf + 2 + 4,  # the moving hand base + a few static edges
            "size_tf_frames": 8, "size_error_log": 257, "size_drop_times": 5.0 * frames + 2}


def slope_mb_per_min(times_s: list[float], rss_mb: list[float]) -> float:
    """Least-squares slope of RSS over time [MB/min]."""
    if len(times_s) < 3:
        return float("nan")
    return float(np.polyfit(np.asarray(times_s) / 60.0, np.asarray(rss_mb), 1)[0])


def run(duration: float, rate: float, frames_count: int, max_rss_slope: float) -> dict:
    import rclpy
    import torch
    from test_ros_tracker_integration import render_sequence

    from handypriors_core.geometry.transforms import pose_from_transform
    from handypriors_core.io.dev_sequence import load_ground_truth
    from handypriors_ros.ros_environment import reserve_domain_id, ros_environment

    work = Path(tempfile.mkdtemp(prefix="bench_sustained_"))
    folder = render_sequence(work / "frames", frames=frames_count, width=WIDTH, height=HEIGHT)
    position, quaternion = pose_from_transform(load_ground_truth(folder).object2camera[0].to(torch.float64))
    initial_pose = [float(v) for v in position.tolist() + quaternion.tolist()]
    meta = json.loads((folder / "meta.json").read_text())
    frames = load_frames(folder)
    results: dict = {"description": "allegro_tracker process fed 640x480 RGB-D frames at a fixed rate for a long "
                                    "time (EKF mode); latency = image stamp -> object TF received here",
                     "duration_s": duration, "rate_hz": rate, "warm_up_s": WARM_UP_S,
                     "image": f"{WIDTH}x{HEIGHT} rgb8 + 16UC1 depth", "machine": {
                         "cpus": os.cpu_count(), "load_average_at_start": load_average(), "device": "cpu",
                         "torch_threads_in_node": 1}}
    with reserve_domain_id() as domain:
        env = ros_environment(domain_id=domain.domain_id, log_dir=work / "ros_log", interpreter=sys.executable)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "FASTRTPS", "FASTDDS", "RMW"))})
        command = [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
                   str(ROOT / "config" / "allegro_tracking.yaml"), "-p",
                   f"object_mesh:={folder / 'object' / 'model.obj'}",
                   "-p", "initial_pose:=[" + ", ".join(repr(v) for v in initial_pose) + "]",
                   "-p", "tracking.mode:=filter", "-p", "torch_threads:=1", "-p", "diagnostics_period:=1.0"]
        log = (work / "tracker.log").open("w")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain.domain_id)
        feeder = Feeder(context, frames, meta)
        try:
            t0 = time.monotonic()
            while not feeder.ready():
                if process.poll() is not None or time.monotonic() - t0 > 180:
                    raise RuntimeError(f"tracker did not start: {(work / 'tracker.log').read_text()[-3000:]}")
                feeder.executor.spin_once(timeout_sec=0.1)
            results["startup_s"] = round(time.monotonic() - t0, 1)
            feeder.run(rate, WARM_UP_S)
            first_diagnostic = len(feeder.diagnostics)
            cpu0, start = proc_cpu_seconds(process.pid), time.monotonic()
            stamps: list[int] = []
            rss_t, rss = [], []
            while time.monotonic() - start < duration and process.poll() is None:
                sent, _, _ = feeder.run(rate, 1.0)
                stamps.extend(sent)
                rss_t.append(time.monotonic() - start)
                rss.append(proc_memory_mb(process.pid).get("VmRSS", float("nan")))
            wall = time.monotonic() - start
            feeder.spin_for(2.0)
            cpu = proc_cpu_seconds(process.pid) - cpu0
            alive = process.poll() is None
            results.update(summarize(feeder, stamps, wall, feeder.diagnostics[first_diagnostic:], rss_t, rss, rate,
                                     max_rss_slope))
            results["tracker_alive_at_end"] = alive
            results["tracker_cpu_percent_of_one_core"] = round(100.0 * cpu / wall, 1)
        finally:
            feeder.executor.shutdown(timeout_sec=0.0)
            feeder.node.destroy_node()
            rclpy.try_shutdown(context=context)
            stop_process(process)
            log.close()
            results["exit_code"] = process.returncode
            text = (work / "tracker.log").read_text()
            results["tracker_log_tracebacks"] = text.count("Traceback")
            if process.returncode != 0 or "Traceback" in text:
                results["log_tail"] = text[-3000:]
            shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_average_at_end"] = load_average()
    results["checks"]["tracker_alive"] = bool(results.get("tracker_alive_at_end")) and results["exit_code"] == 0
    results["checks"]["no_traceback"] = results["tracker_log_tracebacks"] == 0
    return results


def summarize(feeder: Feeder, stamps: list[int], wall: float, diagnostics: list, rss_t: list[float],
              rss: list[float], rate: float, max_rss_slope: float) -> dict:
    received = [s for s in stamps if s in feeder.arrived]
    latency = [(feeder.arrived[s] - s) / 1e6 for s in received]
    snapshots = [{kv.key: kv.value for kv in d.status[0].values} for d in diagnostics]
    after_warm_up = [(t, m) for t, m in zip(rss_t, rss, strict=True) if t >= min(60.0, 0.2 * rss_t[-1])]
    slope = slope_mb_per_min([t for t, _ in after_warm_up], [m for _, m in after_warm_up])
    bounds = queue_bounds(rate, feeder.robot_rates)
    queues: dict[str, dict] = {}
    third = max(1, len(snapshots) // 3)
    for key, bound in bounds.items():
        series = [int(float(s[key])) for s in snapshots if key in s]
        if not series:
            queues[key] = {"seen": False}
            continue
        middle, last = series[third:2 * third] or series, series[2 * third:] or series
        queues[key] = {"max": max(series), "bound": bound, "max_middle_third": max(middle),
                       "max_last_third": max(last), "within_bound": max(series) <= bound,
                       "no_growth": max(last) <= max(1, max(middle)) * 1.1 + 2}
    node_dropped = (int(snapshots[-1]["dropped_frames"]) - int(snapshots[0]["dropped_frames"])
                    if len(snapshots) >= 2 else None)
    out = {
        "frames_offered": len(stamps), "offered_rate_hz": round(len(stamps) / wall, 2),
        "poses_received": len(received), "sustained_rate_hz": round(len(received) / wall, 2),
        "dropped_frames": len(stamps) - len(received), "node_dropped_frames": node_dropped,
        "dropped_fraction": round(1 - len(received) / max(1, len(stamps)), 3),
        "latency_ms": {"median": round(percentile(latency, 50), 1), "p95": round(percentile(latency, 95), 1),
                       "max": round(max(latency), 1) if latency else None},
        "rss_mb": {"first": round(rss[0], 1), "last": round(rss[-1], 1), "max": round(max(rss), 1),
                   "slope_mb_per_min_after_warm_up": round(slope, 3), "samples": len(rss),
                   "every_10s": [round(m, 1) for m in rss[::10]]},
        "queues": queues,
        "node_state_last": snapshots[-1].get("node_state") if snapshots else None,
    }
    out["checks"] = {
        "poses_keep_coming": len(received) > 0 and all(
            any(t0 <= (s - stamps[0]) / 1e9 < t0 + 30 for s in received) for t0 in range(0, int(wall) - 30, 30)),
        "rss_slope_below_limit": bool(slope < max_rss_slope),
        "queues_bounded": all(q.get("within_bound", False) for q in queues.values()),
        "tracking_at_end": out["node_state_last"] == "tracking",
    }
    out["max_rss_slope_mb_per_min"] = max_rss_slope
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="measured seconds (after the warm-up)")
    parser.add_argument("--rate", type=float, default=60.0, help="frames offered per second")
    parser.add_argument("--soak", action="store_true", help="one hour at 30 Hz (not part of make bench)")
    parser.add_argument("--frames", type=int, default=8, help="distinct rendered frames (played ping-pong)")
    parser.add_argument("--max-rss-slope", type=float, default=2.0,
                        help="allowed RSS slope after warm-up [MB/min] (a leaked 640x480 frame per second: 70)")
    parser.add_argument("--out", help="results topic (default: sustained_load, or sustained_load_soak)")
    # run as a script: the command line; called as main() (bench/run_all.py): the defaults
    args = parser.parse_args(argv if argv is not None or __name__ == "__main__" else [])
    if args.soak:
        args.duration, args.rate = 3600.0, 30.0
    results = run(args.duration, args.rate, args.frames, args.max_rss_slope)
    results["command"] = " ".join(["bench/bench_sustained_load.py", *(argv if argv is not None else sys.argv[1:])])
    topic = args.out or ("sustained_load_soak" if args.soak else "sustained_load")
    print(f"{results['offered_rate_hz']} Hz offered for {args.duration:.0f} s: {results['poses_received']} poses "
          f"({results['sustained_rate_hz']} Hz), {results['dropped_frames']} dropped; latency median "
          f"{results['latency_ms']['median']} ms, p95 {results['latency_ms']['p95']} ms, max "
          f"{results['latency_ms']['max']} ms; RSS {results['rss_mb']['first']} -> {results['rss_mb']['last']} MB "
          f"(slope {results['rss_mb']['slope_mb_per_min_after_warm_up']} MB/min); load "
          f"{results['machine']['load_average_at_start']} -> {results['machine']['load_average_at_end']}")
    failed = [name for name, ok in results["checks"].items() if not ok]
    path = write_results(topic, results)
    print(f"checks: {'all passed' if not failed else 'FAILED ' + ', '.join(failed)}; wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
