"""Per-stage CPU cost of the filter step (``ObjectTracker.track``, filter mode) on the shared dev bags.

Loads each dev bag with the project's :class:`~handypriors_core.io.bag_reader.BagReader`, builds the tracker as
``handypriors track BAG --mode filter`` does (shipped ``config/*.yaml``; mask source ``none`` as the node ships,
``--masks colour`` for the command line's colour model), starts from frame-0 ground truth perturbed by 2 cm /
10 deg (seed 0; ``gt.json`` is read for that start only) and tracks the frames on one thread
(``torch.set_num_threads(1)``). Each stage's process CPU time (``time.process_time``: the renderer and the
signed-distance queries run warp launches on pool threads, which a thread clock misses) is summed per frame by
wrapping the tracker's stage functions (the wrappers only time; they change nothing), and the table prints the
median and p90 per stage over the frames (first frame excluded: warm-up). Stages nest: ``prepare`` includes
``depth_points`` and ``hand_sdf_depth``; ``update`` includes ``hand_zbuffer``, ``sd_begin``, ``iterated_update`` (which
includes ``sd_linearize``); ``quality_contacts`` includes ``quality`` and ``contact_context``; ``update_path`` is
``sd_begin`` + ``iterated_update`` per frame (the sparse update's own cost, issue 13's session-6 update-path work);
``bookkeeping`` is the frame's total less the stages ``track`` calls (the tracker's own work), ``other_stages`` that
plus ``kernel_stages`` (everything but the update path's normal equations; session 7).

    .venv/bin/python bench/bench_filter_step.py                     # both dev bags, 60 frames
    .venv/bin/python bench/bench_filter_step.py --frames 30 --cprofile out/filter.prof
    options: --sequences NAME... --masks none|colour --set KEY=VALUE (dotted below `tracking`)

Checks (60 frames, shipped settings, no mask): each sequence's median step, the median per-frame ``update_path``
(``sd_begin`` + ``iterated_update``), the median per-frame ``kernel_stages`` (the stages besides the update's normal
equations: pose_hand, predict, prepare, hand_zbuffer, quality, contact_context) and ``other_stages`` (those plus the
tracker's bookkeeping), the ``pose_hand`` and ``contact_context`` medians and the accuracy of its run against
``REGRESSION_BOUNDS`` (exit status 1 when one fails; the runs they come from are named there), and the goal of
issue 13 (8 ms median, reported, not enforced).
Writes ``bench/results/filter_step.json`` (``--output`` to change the topic).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import load_average, percentile, quiet_warp, write_results  # after the sys.path line above
from bench.bench_tracking import _parse_setting, configured, load_dev_sequence, shared_dev_dir
from handypriors_core.estimation import filter as filter_module
from handypriors_core.estimation import hand_occlusion, observation, sparse_depth, tracker
from handypriors_core.estimation.settings import load_tracking_settings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.evaluation import perturbed_pose
from handypriors_core.metrics import add_s, rotation_error
from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
from handypriors_core.physics.settings import load_physics_settings
from handypriors_core.render.settings import load_render_settings

#: Goal of issue 13: median step [ms CPU] on the dev bags.
STEP_GOAL_MS = 8.0
#: Regression bounds per dev sequence (60 frames, shipped settings, no mask): median total step and medians of the
#: per-frame ``update_path``, ``kernel_stages`` and ``other_stages`` sums and of the ``pose_hand`` and
#: ``contact_context`` stages [ms CPU], median ADD-S [cm] / rotation [deg] of the seed-0 run (set from the runs recorded
#: in docs/benchmarks.md; session 7's quiet re-run, six runs at load 0.7-1.1: total 5.2-7.6 / 5.5-9.4 ms, update
#: path 1.7-2.5 / 2.0-3.3, other stages 3.4-5.0 / 3.5-5.8; session 8 (s8step), nine runs at load 5-7.5 beside five
#: other engineers' jobs: total 6.0-8.1 / 5.9-9.1, update path 2.0-2.6 / 1.9-3.0, other stages 4.1-5.5 / 3.7-5.6
#: (kernel stages 3.3-4.3 in the four runs that kept them), contact context 0.7-1.0 / 0.8-1.2; the bounds are about
#: 1.4x the slowest of those runs (kernel stages: 1.25x the slowest other stages, which hold them), pose_hand and the
#: mug's contact context as session 7 set them).
REGRESSION_BOUNDS = {
    "block_lift_wrist": {"total_median_ms": 12.5, "update_path_median_ms": 4.3, "kernel_stages_median_ms": 7.0,
                         "other_stages_median_ms": 7.9, "pose_hand_median_ms": 1.2,
                         "contact_context_median_ms": 1.4, "add_s_median_cm": 0.02, "rotation_median_deg": 0.3},
    "mug_pivot_fixed": {"total_median_ms": 12.5, "update_path_median_ms": 4.3, "kernel_stages_median_ms": 7.0,
                        "other_stages_median_ms": 7.9, "pose_hand_median_ms": 1.2,
                        "contact_context_median_ms": 1.7, "add_s_median_cm": 0.03, "rotation_median_deg": 0.3},
}

#: The stages besides the update's normal equations (forward kinematics, prediction, crops, hand z-buffer, quality,
#: contact bookkeeping), reported per frame as their sum ``kernel_stages``.
KERNEL_STAGES = ("pose_hand", "predict", "prepare", "hand_zbuffer", "quality", "contact_context")

#: The stages called by ``ObjectTracker.track`` itself; the rest of a frame's time is the tracker's own bookkeeping
#: (``bookkeeping``: loss-of-track monitor, contact list, the estimate), reported per frame, and with
#: ``KERNEL_STAGES`` as ``other_stages`` (everything but the update's normal equations).
TOP_LEVEL_STAGES = ("pose_hand", "predict", "segment", "prepare", "update", "quality", "contact_context")

#: stage name -> (owner object, attribute) of the function timed as that stage.
STAGES = {
    "pose_hand": (None, "pose_hand"),  # bound per tracker (the scene)
    "predict": (filter_module.ObjectPoseFilter, "predict"),
    "segment": (None, "mask_source"),
    "prepare": (tracker, "prepare_observation"),
    "depth_points": (observation, "_depth_points"),
    "update": (filter_module.ObjectPoseFilter, "update"),
    "hand_zbuffer": (hand_occlusion.HandOcclusion, "__init__"),
    "sd_begin": (sparse_depth.SparseDepthModality, "begin"),
    "sd_linearize": (sparse_depth.SparseDepthModality, "normal_equations"),
    "iterated_update": (filter_module, "iterated_update"),
    "quality": (ObjectTracker, "quality"),
    "contact_context": (tracker, "contact_context"),
}


class StageClock:
    """Process CPU seconds per stage, summed over the calls within the current frame."""

    _instance: StageClock | None = None

    def __init__(self) -> None:
        self.frame: dict[str, float] = {}
        self.frames: list[dict[str, float]] = []

    @classmethod
    def instance(cls) -> StageClock:
        """The process's clock (the module-level wrappers are installed once and report to it)."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.frame[name] = self.frame.get(name, 0.0) + time.process_time() - t
        return timed

    def install(self, tracker_obj: ObjectTracker) -> None:
        """Wrap the module-level stage functions (once per process) and the tracker's own bound ones."""
        for name, (owner, attr) in STAGES.items():
            if owner is None:
                continue
            fn = getattr(owner, attr)
            if not getattr(fn, "_stage_clock", False):
                wrapped = self.wrap(name, fn)
                wrapped._stage_clock = True
                setattr(owner, attr, wrapped)
        scene = tracker_obj.scene
        scene.pose_hand = self.wrap("pose_hand", scene.pose_hand)
        sdf = scene.hand_geometry.signed_distance
        scene.hand_geometry.signed_distance = self.wrap("hand_sdf_depth", sdf)
        if tracker_obj.mask_source is not None:
            tracker_obj.mask_source = self.wrap("segment", tracker_obj.mask_source)

    def next_frame(self, total: float) -> None:
        self.frame["total"] = total
        self.frames.append(self.frame)
        self.frame = {}


def profile_sequence(path: Path, frames: int, settings, masks: str, hand: URDFHand,
                     profiler: cProfile.Profile | None) -> dict:
    """Track one dev bag; per-stage CPU ms (median / p90 over frames 1..N-1) and the accuracy of the run."""
    seq = load_dev_sequence(path, frames, hand)
    obj = RigidObject.from_mesh(seq.mesh_path)
    trk = ObjectTracker(hand, obj, settings, render_settings=load_render_settings(),
                        physics_settings=load_physics_settings())
    if masks == "colour":
        from handypriors_core.segmentation import load_segmentation_settings, make_mask_source

        trk.mask_source = make_mask_source(load_segmentation_settings(), trk.scene)
    clock = StageClock.instance()
    clock.frames = []
    clock.install(trk)
    trk.reset(perturbed_pose(seq.truth[0], 0))
    poses = []
    for i, frame in enumerate(seq.frames):
        if profiler is not None and i == 1:
            profiler.enable()
        t = time.process_time()
        est = trk.track(frame)
        clock.next_frame(time.process_time() - t)
        poses.append(est.object2camera.double())
    if profiler is not None:
        profiler.disable()
    pred = torch.stack(poses)
    err = add_s(obj.samples.double(), pred, seq.truth[:len(poses)])
    rot = rotation_error(pred, seq.truth[:len(poses)])
    timed = clock.frames[1:]
    for f in timed:  # per-frame sums of stages (REGRESSION_BOUNDS)
        f["update_path"] = f.get("sd_begin", 0.0) + f.get("iterated_update", 0.0)
        f["kernel_stages"] = sum(f.get(n, 0.0) for n in KERNEL_STAGES)
        f["bookkeeping"] = f["total"] - sum(f.get(n, 0.0) for n in TOP_LEVEL_STAGES)
        f["other_stages"] = f["kernel_stages"] + f["bookkeeping"]
    names = ["total"] + [n for n in list(STAGES) + ["hand_sdf_depth", "update_path", "kernel_stages", "bookkeeping",
                                                    "other_stages"] if any(n in f for f in timed)]
    stages = {}
    for n in names:
        values = [f.get(n, 0.0) for f in timed]
        stages[n] = {"median_ms": round(1e3 * percentile(values, 50), 2),
                     "p90_ms": round(1e3 * percentile(values, 90), 2)}
    return {"frames": len(seq.frames), "stages_cpu_ms": stages,
            "add_s_median_cm": round(100 * float(err.median()), 4), "rotation_median_deg":
            round(float(torch.rad2deg(rot.median())), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--sequences", nargs="*", default=None, help="dev sequence names (default: all)")
    parser.add_argument("--masks", choices=("none", "colour"), default="none")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cprofile", default=None, metavar="FILE", help="write cProfile stats (all sequences)")
    parser.add_argument("--output", default="filter_step")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quiet_warp()
    settings = configured(load_tracking_settings(), {"mode": "filter", **dict(_parse_setting(s) for s in args.set)})
    hand = URDFHand.from_urdf(allegro_urdf())
    dev = shared_dev_dir()
    if not dev.is_dir():
        print(f"no dev data at {dev}")
        return 1
    paths = [p for p in sorted(dev.iterdir()) if (p / "bag").is_dir()
             and (args.sequences is None or p.name in args.sequences)]
    profiler = cProfile.Profile() if args.cprofile else None
    results = {"description": __doc__.splitlines()[0], "frames": args.frames, "masks": args.masks,
               "settings_overrides": args.set, "torch_threads": torch.get_num_threads(),
               "load_average_start": load_average(), "sequences": {}}
    for path in paths:
        res = profile_sequence(path, args.frames, settings, args.masks, hand, profiler)
        results["sequences"][path.name] = res
        print(f"{path.name}: ADD-S median {res['add_s_median_cm']:.3f} cm, rotation {res['rotation_median_deg']:.2f}"
              f" deg, {res['frames']} frames; process CPU ms per frame (median / p90):")
        for name, v in res["stages_cpu_ms"].items():
            print(f"  {name:18s} {v['median_ms']:7.2f} / {v['p90_ms']:7.2f}")
    results["load_average_end"] = load_average()
    print(f"load average {results['load_average_start']} -> {results['load_average_end']}")
    results["checks"] = check(results, shipped=args.frames == 60 and not args.set and args.masks == "none")
    for c in results["checks"]:
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['sequence']}: {c['figure']} = {c['value']:.3f} "
              f"({c['kind']} {c['bound']})")
    if profiler is not None:
        profiler.dump_stats(args.cprofile)
    print(f"wrote {write_results(args.output, results)}")
    return 1 if any(c["kind"] == "bound" and not c["ok"] for c in results["checks"]) else 0


def check(results: dict, shipped: bool) -> list[dict]:
    """The goal (median total <= 8 ms) per sequence, and ``REGRESSION_BOUNDS`` for a run of the shipped settings."""
    out = []
    for name, res in results["sequences"].items():
        total = res["stages_cpu_ms"]["total"]["median_ms"]
        out.append({"sequence": name, "figure": "total_median_ms", "value": total, "bound": STEP_GOAL_MS,
                    "kind": "goal", "ok": total <= STEP_GOAL_MS})
        for key, bound in REGRESSION_BOUNDS.get(name, {}).items() if shipped else ():
            stage = key.removesuffix("_median_ms")
            value = res["stages_cpu_ms"][stage]["median_ms"] if stage in res["stages_cpu_ms"] else res[key]
            out.append({"sequence": name, "figure": key, "value": value, "bound": bound, "kind": "bound",
                        "ok": value <= bound})
    return out


if __name__ == "__main__":
    raise SystemExit(main())
