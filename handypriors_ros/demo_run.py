"""``python -m handypriors_ros.demo_run``: the demo's ROS path as a process of its own.

:mod:`handypriors_core.app.demo_ros` runs ``python -m handypriors_ros.demo_run --sequence BAG --stamps STAMPS.json
--object-mesh MESH --out DIR ...`` (the core never imports this package): one
:func:`~handypriors_ros.demo_recorder.run_sequence_through_nodes` run, written by :func:`write_run` to
``DIR/run.json`` and ``DIR/overlays.npz``; its stdout carries the progress lines, a failure ends with one line on
stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .demo_recorder import RosRun, run_sequence_through_nodes

__all__ = ["main", "write_run"]


def write_run(run: RosRun, out_dir: str | os.PathLike) -> Path:
    """``out_dir/run.json`` (everything but the images; poses by frame index with ``object2camera`` and
    ``covariance`` as row-major lists) and ``out_dir/overlays.npz`` (``frame_<index>``: ``(H, W, 3)`` uint8).
    Returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "poses": {str(i): {"stamp_ns": p.stamp_ns, "object2camera": p.object2camera.double().tolist(),
                           "covariance": np.asarray(p.covariance, np.float64).tolist(), "frame_id": p.frame_id}
                  for i, p in run.poses.items()},
        "num_frames": run.num_frames, "ok": run.ok, "reason": run.reason, "wall_s": run.wall_s,
        "latency_ms": run.latency_ms, "startup_s": run.startup_s, "diagnostics": run.diagnostics,
        "node_ms": run.node_ms, "stages_ms": run.stages_ms, "log": str(run.log), "returncodes": run.returncodes,
        "unmatched": run.unmatched, "commands": run.commands, "rate": run.rate, "fps": run.fps,
        "dropped": run.dropped,
    }
    np.savez(out / "overlays.npz", **{f"frame_{i}": img for i, img in run.overlays.items()})
    path = out / "run.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m handypriors_ros.demo_recorder``: one :func:`run_sequence_through_nodes` run into ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m handypriors_ros.demo_recorder",
                                     description="Play a sequence through sequence_player -> allegro_tracker and "
                                                 "record the poses (the demo's ROS path).")
    parser.add_argument("--sequence", required=True, help="what sequence_player plays (a rosbag2 or sequence folder)")
    parser.add_argument("--stamps", required=True, help="JSON list of the colour frames' stamps [ns], in order")
    parser.add_argument("--object-mesh", required=True)
    parser.add_argument("--initial-pose", type=float, nargs=7, metavar="V", help="x y z qx qy qz qw [m]")
    parser.add_argument("--mode", default="filter")
    parser.add_argument("--rate", type=float, default=0.5, help="playback speed factor")
    parser.add_argument("--overlay", action="store_true", help="also record ~/overlay")
    parser.add_argument("--log", help="the nodes' output (default: a temporary file)")
    parser.add_argument("--out", required=True, help="folder for run.json and overlays.npz")
    args = parser.parse_args(argv)
    try:
        stamps = json.loads(Path(args.stamps).read_text())
        run = run_sequence_through_nodes(args.sequence, stamps, args.object_mesh, args.initial_pose, mode=args.mode,
                                         rate=args.rate, overlay=args.overlay, log_path=args.log,
                                         report=lambda line: print(line, flush=True))
        write_run(run, args.out)
    except Exception as exc:  # noqa: BLE001 - one line for the demo's note (it falls back to the offline path)
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - run by handypriors_core.app.demo_ros
    from .node_runtime import exit_process

    exit_process(main())
