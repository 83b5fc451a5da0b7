"""Ablation of the estimators in the form of the paper's Table I, on generated and shared sequences.

Rows (optimizer):  ``init`` (the initial pose held), ``+render`` (Adam over mask + depth terms, constant-pose
prediction), ``+physics`` (all terms, quasistatic prediction).
Rows (filter):     ``O_hand`` (fingertips), ``O_object`` (object centre), ``O_hand+object``, ``+depth``,
``+depth+silhouette`` (the shipped default), each with the quasistatic motion model.
Columns: 2D error (Chamfer of projected vertices, px), 3D error (ADD-S, cm), rotation error (deg),
ADD-S AUC (10 cm), frames over 5 cm, runtime per frame (ms, median).

Sequences: the shared development sequences (``$HANDYPRIORS_SHARED_DIR/data/dev``, default
``../shared/data/dev``) when present, and the project's own generated sequence (``handypriors_core.synthetic``)
when the generator is available.
Initial pose: frame 0's ground truth perturbed by 2 cm and 10 degrees (fixed seed). Masks: the built-in
colour model (``--masks colour``, default), the oracle masks of the shared sequences (``--masks oracle``, labelled
so) or none.

    .venv/bin/python bench/bench_tracking.py [--frames N] [--rows filter|optimizer|all] [--quick]

Writes ``bench/results/tracking.json``.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import write_results  # after the sys.path line above
from handypriors_core.estimation.settings import TrackerSettings, load_tracking_settings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.io.dev_sequence import DevSequence, load_ground_truth, with_oracle_masks
from handypriors_core.metrics.chamfer import object_chamfer_errors
from handypriors_core.metrics.pose_errors import add_s, rotation_error, summarize_errors
from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
from handypriors_core.segmentation import load_segmentation_settings, make_mask_source


def perturbed(pose: torch.Tensor, seed: int = 0, translation: float = 0.02, angle_deg: float = 10.0) -> torch.Tensor:
    """``pose (4, 4)`` moved by ``translation`` [m] and rotated by ``angle_deg`` about random directions."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.randn(3, generator=g, dtype=torch.float64)
    axis = torch.randn(3, generator=g, dtype=torch.float64)
    out = pose.clone().double()
    out[:3, :3] = axis_angle_to_matrix(axis / axis.norm() * math.radians(angle_deg)) @ out[:3, :3]
    out[:3, 3] += dt / dt.norm() * translation
    return out


def rows(which: str) -> dict[str, dict]:
    """Settings overrides of each ablation row."""
    optimizer = {
        "init": {"mode": "filter", "filter.observations": [], "filter.motion_model": "constant_pose"},
        "+render": {"mode": "refine", "filter.observations": [], "filter.motion_model": "constant_pose",
                    "refine.terms": ["mask", "depth"]},
        "+physics": {"mode": "refine", "filter.observations": [], "filter.motion_model": "quasistatic",
                     "refine.terms": ["mask", "depth", "penetration", "sliding", "con", "smo"]},
    }
    filt = {
        "O_hand": {"mode": "filter", "filter.observations": ["fingertips"]},
        "O_object": {"mode": "filter", "filter.observations": ["centre"]},
        "O_hand+object": {"mode": "filter", "filter.observations": ["fingertips", "centre"]},
        "+depth": {"mode": "filter", "filter.observations": ["fingertips", "centre", "depth"]},
        "+depth+silhouette": {"mode": "filter", "filter.observations": ["fingertips", "depth", "silhouette"]},
        "+depth (no centre)": {"mode": "filter", "filter.observations": ["fingertips", "depth"]},
        "refine (default)": {"mode": "refine"},
    }
    # ablation rows: no loss-of-track re-initialisation (it would hide what each row contributes) and a fixed
    # iteration count instead of the time budget (results independent of machine load)
    ablation = {"recovery.lost_threshold": 0.0, "recovery.relative_threshold": 0.0, "refine.time_budget": 0.0}
    optimizer = {name: {**ablation, **row} for name, row in optimizer.items()}
    filt = {name: ({**ablation, **row} if name != "refine (default)" else row) for name, row in filt.items()}
    filt["filter (default)"] = {"mode": "filter"}
    if which == "optimizer":
        return optimizer
    if which == "filter":
        return filt
    return {**optimizer, **filt}


def configured(base: TrackerSettings, overrides: dict) -> TrackerSettings:
    """A copy of ``base`` with dotted-key overrides applied."""
    s = copy.deepcopy(base)
    for key, value in overrides.items():
        target = s
        parts = key.split(".")
        for part in parts[:-1]:
            target = getattr(target, part)
        setattr(target, parts[-1], value)
    s.__post_init__()
    return s


def run(path: Path, settings: TrackerSettings, frames: int, masks: str) -> dict:
    """Track one sequence folder; returns per-frame errors and timing."""
    seq = DevSequence(path)
    gt = load_ground_truth(path)
    hand = URDFHand.from_urdf(allegro_urdf())
    obj = RigidObject.from_mesh(seq.object_mesh_path)
    tracker = ObjectTracker(hand, obj, settings)
    label = {"colour": "colour model", "oracle": "oracle mask", "none": "no mask"}[masks]
    if masks == "colour":  # the built-in weight-free segmentation (handypriors_core.segmentation)
        tracker.mask_source = make_mask_source(load_segmentation_settings(), tracker.scene)
    tracker.initialize(perturbed(gt.object2camera[0]))
    n = min(frames, len(seq))
    preds, times = [], []
    for i in range(n):
        frame = seq[i]
        if masks == "oracle":
            frame = with_oracle_masks(frame, path)
        t = time.perf_counter()
        est = tracker.track(frame)
        times.append(time.perf_counter() - t)
        preds.append(est.object2camera)
    pred = torch.stack(preds)
    truth = gt.object2camera[:n]
    pts = obj.samples.double()
    e3 = add_s(pts, pred, truth)
    rot = rotation_error(pred, truth)
    ch = object_chamfer_errors(pts, pred, truth, seq.camera.to(dtype=torch.float64))
    summary = summarize_errors(e3)
    warm = sorted(times[1:]) if len(times) > 1 else times
    return {
        "frames": n,
        "masks": label,
        "add_s_median_cm": 100 * summary["median"],
        "add_s_auc": summary["auc"],
        "frames_over_5cm": summary["frames_over"],
        "rotation_median_deg": math.degrees(float(rot.median())),
        "error_2d_median_px": float(ch.chamfer_2d_px.median()),
        "error_3d_chamfer_median_cm": 100 * float(ch.chamfer_3d.median()),
        "runtime_median_ms": 1000 * warm[len(warm) // 2],
        "add_s_cm_per_frame": [round(100 * float(v), 3) for v in e3],
    }


def sequences(generate: bool, frames: int) -> list[tuple[str, Path]]:
    """Shared dev sequences (when present) and a generated one (when the generator exists)."""
    out = []
    shared = Path(os.environ.get("HANDYPRIORS_SHARED_DIR", ROOT.parent / "shared")) / "data" / "dev"
    if shared.is_dir():
        out += [(p.name, p) for p in sorted(shared.iterdir()) if (p / "meta.json").is_file()]
    if generate:
        from handypriors_core.synthetic import generate_sequence, load_scenario

        target = ROOT / "out" / "bench" / "generated_carry_box"
        if not (target / "meta.json").is_file():
            generate_sequence(load_scenario(overrides={"frames": frames, "seed": 0}), target, overwrite=True)
        out.append(("generated_carry_box", target))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rows", choices=("filter", "optimizer", "all"), default="all")
    parser.add_argument("--masks", choices=("colour", "oracle", "none"), default="colour")
    parser.add_argument("--no-generated", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="row names to run (default: all of --rows)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        import warp as wp

        wp.config.log_level = getattr(wp, "LOG_ERROR", 40)
    except ImportError:
        pass
    base = load_tracking_settings()
    results: dict = {"description": "Table I-style ablation; initial pose = GT frame 0 + 2 cm / 10 deg",
                     "device": base.device, "torch_threads": torch.get_num_threads(), "sequences": {}}
    for name, path in sequences(not args.no_generated, args.frames):
        results["sequences"][name] = {}
        for row, overrides in rows(args.rows).items():
            if args.only and row not in args.only:
                continue
            t = time.perf_counter()
            res = run(path, configured(base, overrides), args.frames, args.masks)
            results["sequences"][name][row] = res
            print(f"{name:22s} {row:18s} ADD-S {res['add_s_median_cm']:6.2f} cm  rot {res['rotation_median_deg']:5.1f}"
                  f" deg  2D {res['error_2d_median_px']:5.1f} px  >5cm {res['frames_over_5cm']:2d}  "
                  f"{res['runtime_median_ms']:6.1f} ms/frame  [{res['masks']}]  ({time.perf_counter() - t:.0f} s)",
                  flush=True)
    print(f"wrote {write_results('tracking', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
