"""What a 640x480 RGB-D frame costs on its way to the node's tracker process: pipe vs shared memory.

The node's worker hands each frame to the tracker process (``handypriors_ros.tracker_process``). Two transports
of the frame's images (colour uint8, depth float32) are compared on the same frames of a shared dev sequence:

- ``pipe``: everything pickled through the child's stdin (the transport before shared memory);
- ``shared_memory``: the images written into a ``multiprocessing.shared_memory`` ring, only their descriptor
  pickled through the pipe (``handypriors_ros.shared_frames``; the node's default).

Per frame: CPU of the calling thread in the node's process (``time.thread_time``), CPU of the tracker process
(utime + stime from /proc; it also tracks the frame, so the difference between the two rows is the transport),
and wall time of the call (CPU: means per frame, /proc counts in 10 ms ticks). Tracker: filter mode, one torch
thread, the sequence's frame-0 pose as initial pose.
Wall times depend on the machine's load (written beside them); CPU times much less.

    .venv/bin/python bench/bench_tracker_transport.py [--frames 40] [--sequence block_lift_wrist]

Writes ``bench/results/tracker_transport.json``; exits 1 when shared memory no longer halves the node thread's CPU
per frame against the pipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import shared_dir, write_results  # after the sys.path line above
from bench.bench_ros_node import proc_cpu_seconds


def measure(transport: str, frames: list, pose, settings, mesh: str) -> dict:
    from handypriors_ros import tracker_process

    proxy = tracker_process.TrackerProcess()
    saved = tracker_process.SHARED_MIN_BYTES
    try:
        proxy.build("", mesh, 1.0, settings, "none", warm_up=True, threads=1)
        proxy.initialize(pose)
        tracker_process.SHARED_MIN_BYTES = saved if transport == "shared_memory" else 1 << 62  # (pipe: no tensor)
        proxy.track(frames[0])  # (first frame at this size)
        child = proxy._process.pid  # (the tracker process of this proxy)
        node_cpu, child_cpu, wall = [], [], []
        for frame in frames[1:]:
            c0, t0, w0 = proc_cpu_seconds(child), time.thread_time(), time.monotonic()
            proxy.track(frame)
            wall.append(time.monotonic() - w0)
            node_cpu.append(time.thread_time() - t0)
            child_cpu.append(proc_cpu_seconds(child) - c0)
    finally:
        tracker_process.SHARED_MIN_BYTES = saved
        proxy.close()

    def ms(values: list[float]) -> dict:  # (mean: /proc counts CPU in 10 ms ticks, a per-frame median would too)
        v = 1e3 * np.asarray(values)
        return {"mean": float(v.mean()), "median": float(np.median(v)), "p95": float(np.percentile(v, 95))}

    return {"node_thread_cpu_ms": ms(node_cpu), "tracker_process_cpu_ms": ms(child_cpu), "call_wall_ms": ms(wall),
            "frames": len(wall), "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames per transport (the sequence is repeated)")
    parser.add_argument("--sequence", default="block_lift_wrist", help="shared dev sequence")
    args = parser.parse_args(argv if argv is not None or __name__ == "__main__" else [])

    import torch

    from handypriors_core.config import load_yaml, settings_from_dict
    from handypriors_core.estimation.settings import TrackerSettings
    from handypriors_core.io.dev_sequence import DevSequence, load_ground_truth

    torch.set_num_threads(1)
    folder = shared_dir() / "data" / "dev" / args.sequence
    if not folder.is_dir():
        print(f"skipped: {folder} is absent (the shared dev data)")
        return 0
    sequence = DevSequence(folder)
    frames = [dataclasses.replace(sequence[i % len(sequence)], object_mask=None) for i in range(args.frames + 1)]
    config = load_yaml(ROOT / "config" / "allegro_tracking.yaml")["/**"]["ros__parameters"]["tracking"]
    settings = dataclasses.replace(settings_from_dict(TrackerSettings, config), mode="filter")
    pose = load_ground_truth(folder).object2camera[0].to(torch.float64)
    mesh = str(folder / "object" / "model.obj")
    results = {"description": __doc__.splitlines()[0], "sequence": args.sequence,
               "image": f"{frames[0].camera.width}x{frames[0].camera.height} rgb8 + float32 depth",
               "load_average_at_start": os.getloadavg(), "cpus": os.cpu_count(), "transports": {}}
    for transport in ("pipe", "shared_memory", "pipe", "shared_memory"):  # twice, interleaved: load drifts
        result = measure(transport, frames, pose, settings, mesh)
        results["transports"].setdefault(transport, []).append(result)
        print(f"{transport:14s} node thread CPU {result['node_thread_cpu_ms']['mean']:5.1f} ms, tracker process "
              f"CPU {result['tracker_process_cpu_ms']['mean']:5.1f} ms, call {result['call_wall_ms']['median']:6.1f}"
              f" ms (p95 {result['call_wall_ms']['p95']:.1f}) per frame; load {result['load_average'][0]:.1f}",
              flush=True)
    results["load_average_at_end"] = os.getloadavg()
    cost = {name: float(np.mean([r["node_thread_cpu_ms"]["mean"] for r in runs]))
            for name, runs in results["transports"].items()}
    # check: shared memory must save the node's thread at least half of what the pipe costs it (measured 2.7x)
    results["check_shared_memory_halves_node_cpu"] = ok = cost["shared_memory"] <= 0.5 * cost["pipe"]
    print(f"wrote {write_results('tracker_transport', results)}")
    if not ok:
        print(f"REGRESSION: node thread CPU per frame {cost['shared_memory']:.1f} ms with shared memory, "
              f"{cost['pipe']:.1f} ms with the pipe")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
