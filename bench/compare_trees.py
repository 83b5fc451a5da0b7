"""Compare the filter step of two source trees on the shared dev bags: the same output, and paired CPU timing.

A speed change must keep the tracker's output; on this shared 2-core machine a before / after pair of benchmark runs
moves by a third with the load. Each tree runs in a worker process of its own (its own ``handypriors_core``), built
as ``bench/bench_filter_step.py`` builds the tracker (shipped settings, filter mode, no mask, one torch thread, the
2 cm / 10 deg start of a seed):

    .venv/bin/python bench/compare_trees.py output BEFORE AFTER [--frames 60] [--seeds 0 3]
    .venv/bin/python bench/compare_trees.py timing BEFORE AFTER [--passes 3]

``BEFORE`` / ``AFTER`` are tree roots (e.g. a ``git archive`` of main and a worktree). ``output`` tracks both dev
bags from each seed's start and compares every frame's pose (largest entry difference [m]), covariance (largest entry
difference over the largest entry) and quality, status, update results and published contacts; exit status 1 when
a pose differs by more than 1e-6 m or a covariance by more than 1e-5 relative. ``timing`` has the two workers track
the same frames in turn, frame by frame (the order alternating), so both see the same load; per frame the smallest
process CPU of the passes, then the median and p90 over frames 1..N-1 and the settling frames 1-10 (the region
observation joins there). Neither writes into the trees; ``--output FILE`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEQUENCES = ("block_lift_wrist", "mug_pivot_fixed")
POSE_TOLERANCE_M = 1e-6
COVARIANCE_TOLERANCE = 1e-5


def _tracker_setup(root: Path, frames: int):
    """``(sequences, trackers, perturbed_pose)`` from the tree at ``root`` (imported from there)."""
    sys.path.insert(0, str(root))
    os.chdir(root)
    import torch

    import handypriors_core
    from bench._common import quiet_warp
    from bench.bench_tracking import configured, load_dev_sequence, shared_dev_dir
    from handypriors_core.estimation.settings import load_tracking_settings
    from handypriors_core.estimation.tracker import ObjectTracker
    from handypriors_core.evaluation import perturbed_pose
    from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
    from handypriors_core.physics.settings import load_physics_settings
    from handypriors_core.render.settings import load_render_settings

    if Path(handypriors_core.__file__).resolve().parent.parent != root:  # e.g. an installed copy that comes first
        raise SystemExit(f"handypriors_core was imported from {handypriors_core.__file__}, not from {root}")
    torch.set_num_threads(1)
    quiet_warp()
    settings = configured(load_tracking_settings(), {"mode": "filter"})
    hand = URDFHand.from_urdf(allegro_urdf())
    bags = {}
    for name in SEQUENCES:
        seq = load_dev_sequence(shared_dev_dir() / name, frames, hand)
        bags[name] = (seq, ObjectTracker(hand, RigidObject.from_mesh(seq.mesh_path), settings,
                                         render_settings=load_render_settings(),
                                         physics_settings=load_physics_settings()))
    return bags, perturbed_pose


def _worker_output(root: Path, frames: int, seeds: list[int], out: Path) -> None:
    bags, perturbed_pose = _tracker_setup(root, frames)
    result = {}
    for name, (seq, trk) in bags.items():
        for seed in seeds:
            trk.reset(perturbed_pose(seq.truth[0], seed))
            rows = []
            for frame in seq.frames:
                e = trk.track(frame)
                rows.append({"pose": e.object2camera.double().numpy().copy(), "covariance": e.covariance.numpy().copy(),
                             "quality": e.quality, "status": e.status, "updates": dict(e.updates),
                             "contacts": [a.numpy().copy() for a in (e.contact_points, e.contact_values,
                                                                      e.contact_normals)]})
            result[f"{name} seed {seed}"] = rows
    out.write_bytes(pickle.dumps(result))


def _worker_timing(root: Path, frames: int) -> None:
    """Track frames on request (stdin ``reset NAME`` / ``track NAME INDEX``), answer the process CPU [s] per step."""
    bags, perturbed_pose = _tracker_setup(root, frames)
    print("ready", flush=True)
    for line in sys.stdin:
        command, name, index = line.split()
        seq, trk = bags[name]
        if command == "reset":
            trk.reset(perturbed_pose(seq.truth[0], int(index)))
            print("ok", flush=True)
            continue
        frame = seq.frames[int(index)]
        t = time.process_time()
        trk.track(frame)
        print(f"{time.process_time() - t:.9f}", flush=True)


def _spawn(root: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_worker", str(Path(root).resolve()),
                             *args], **kwargs)


def compare_output(before: str, after: str, frames: int, seeds: list[int]) -> dict:
    """Track both trees (one after the other) and compare their outputs frame by frame."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        dumps = []
        for i, root in enumerate((before, after)):
            path = Path(tmp) / f"{i}.pkl"
            worker = _spawn(root, "output", str(frames), ",".join(map(str, seeds)), str(path))
            if worker.wait() != 0:
                raise SystemExit(f"the worker of {root} failed")
            dumps.append(pickle.loads(path.read_bytes()))
    report = {}
    for key, rows_a in dumps[0].items():
        rows_b = dumps[1][key]
        pose = max(float(np.abs(a["pose"] - b["pose"]).max()) for a, b in zip(rows_a, rows_b, strict=True))
        cov = max(float(np.abs(a["covariance"] - b["covariance"]).max() / np.abs(a["covariance"]).max())
                  for a, b in zip(rows_a, rows_b, strict=True))
        other = [i for i, (a, b) in enumerate(zip(rows_a, rows_b, strict=True))
                 if any(a[k] != b[k] for k in ("quality", "status", "updates"))
                 or any(x.shape != y.shape or (x.size and float(np.abs(x - y).max()) > POSE_TOLERANCE_M)
                        for x, y in zip(a["contacts"], b["contacts"], strict=True))]
        report[key] = {"pose_max_m": pose, "covariance_max_relative": cov, "frames_differing_otherwise": other,
                       "ok": pose <= POSE_TOLERANCE_M and cov <= COVARIANCE_TOLERANCE}
    return report


def compare_timing(before: str, after: str, passes: int, frames: int) -> dict:
    """Paired per-frame CPU of both trees (see the module docstring)."""
    workers = {"before": _spawn(before, "timing", str(frames), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True),
               "after": _spawn(after, "timing", str(frames), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)}
    for w in workers.values():
        if w.stdout.readline().strip() != "ready":
            raise SystemExit("a timing worker failed to start")

    def ask(k: str, message: str) -> str:
        workers[k].stdin.write(message + "\n")
        workers[k].stdin.flush()
        return workers[k].stdout.readline().strip()

    load = [os.getloadavg()[0]]
    report = {}
    for name in SEQUENCES:
        times = {k: [] for k in workers}
        for p in range(passes):
            for k in workers:
                ask(k, f"reset {name} 0")
            rows = {k: [] for k in workers}
            for i in range(frames):
                for k in (list(workers) if (i + p) % 2 == 0 else list(workers)[::-1]):
                    rows[k].append(float(ask(k, f"track {name} {i}")))
            for k in workers:
                times[k].append(rows[k][1:])
        report[name] = {}
        for k in workers:
            smallest = [1e3 * min(c) for c in zip(*times[k], strict=True)]
            ordered = sorted(smallest)
            report[name][k] = {"median_ms": statistics.median(smallest),
                               "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
                               "settling_median_ms": statistics.median(smallest[:10]),
                               "pass_medians_ms": [round(1e3 * statistics.median(r), 2) for r in times[k]]}
    for w in workers.values():
        w.stdin.close()
        w.wait()
    load.append(os.getloadavg()[0])
    return {"load_average": load, "passes": passes, "sequences": report}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        root, mode, frames = Path(argv[1]), argv[2], int(argv[3])
        if mode == "output":
            _worker_output(root, frames, [int(s) for s in argv[4].split(",")], Path(argv[5]))
        else:
            _worker_timing(root, frames)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("output", "timing"))
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 3], help="output: starts compared")
    parser.add_argument("--passes", type=int, default=3, help="timing: passes over the frames")
    parser.add_argument("--output", default=None, metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    if args.mode == "output":
        report = compare_output(args.before, args.after, args.frames, args.seeds)
        for key, r in report.items():
            print(f"{key}: pose {r['pose_max_m']:.2e} m, covariance {r['covariance_max_relative']:.2e} relative, "
                  f"frames differing otherwise {r['frames_differing_otherwise'] or 'none'}: "
                  f"{'ok' if r['ok'] else 'DIFFERENT'}")
        status = 0 if all(r["ok"] for r in report.values()) else 1
    else:
        report = compare_timing(args.before, args.after, args.passes, args.frames)
        print(f"load average {report['load_average'][0]:.1f} -> {report['load_average'][1]:.1f}, "
              f"{args.passes} passes, per frame the smallest process CPU [ms]:")
        for name, r in report["sequences"].items():
            b, a = r["before"], r["after"]
            print(f"{name}: median {b['median_ms']:.2f} -> {a['median_ms']:.2f} "
                  f"({a['median_ms'] / b['median_ms']:.2f}x), p90 {b['p90_ms']:.2f} -> {a['p90_ms']:.2f}, settling "
                  f"{b['settling_median_ms']:.2f} -> {a['settling_median_ms']:.2f}; pass medians "
                  f"{b['pass_medians_ms']} -> {a['pass_medians_ms']}")
        status = 0
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
