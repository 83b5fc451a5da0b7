"""Tracking accuracy harness: filter and refine on the shared dev bags and on generated sequences.

One command scores the tracker (``filter`` and ``refine`` modes, shipped configuration) on

- the shared development sequences (``../shared/data/dev/*`` or ``$HANDYPRIORS_SHARED_DIR/data/dev``), read from
  their rosbag2 recordings with the project's :class:`~handypriors_core.io.bag_reader.BagReader` (640x480 RGB-D,
  joint states, TF), ``gt.json`` for scoring only;
- generated sequences (:mod:`handypriors_core.synthetic`): box, cylinder and the textured built-in mesh (bottle),
  carried by the fingers, with the generator's sensor effects (noise, blur, exposure, depth holes, edge dropout)
  plus flying pixels ("hard"), read with :class:`~handypriors_core.io.dev_sequence.DevSequence`. Cached in
  ``out/bench/`` by their settings.

For each sequence and row: N initial poses (frame-0 ground truth perturbed by 2 cm and 10 degrees about random
directions, seeds 0..N-1), each tracked over the frames. Per perturbation: median and max ADD-S, median ADD
(non-symmetric objects), median rotation error, ADD-S AUC (10 cm), frames over 5 cm, mean NEES of the
translation and of the rotation (3 DoF each, from the published covariance; 3 when consistent). The row reports
the worst over perturbations (and the median over them), and the tracker step time (``ObjectTracker.track``,
``Frame`` -> ``Estimate``) per frame: process CPU time and wall time, median and p95, first frame excluded.

Rows: ``filter``, ``refine`` (main table; refine as shipped, within its wall-clock budget per frame, so it does
fewer Adam steps on a loaded machine), the same without depth (``--no-depth``: colour only) and a Table I-style
ablation of the filter's observations and motion model (one row per observation alone, the default without
each of its observations, the default with each other observation, and the default with a constant-pose
prediction). Ablation rows run without loss-of-track re-initialisation. Observation names come from
``FilterObservation`` so new modalities get rows without editing this file.

Masks: none (as the node ships; ``--masks colour`` for the colour model), the built-in colour model for the
mask-based ablation rows (``centre``, ``silhouette``); never the oracle masks. The colour-only rows observe the
colour image through the region modality (``filter.colour_only``), without masks.

Checks: every goal of issue 13 is reported (met / not met), and each (sequence, row) is checked against the
regression bounds of ``REGRESSION_BOUNDS`` (about 1.5-2x what was measured when they were set): the exit status
is 1 when a bound fails (2 with ``--strict-goals`` when a goal is not met).

    .venv/bin/python bench/bench_tracking.py --quick      # development: 20 frames, 2 perturbations (1 for refine
                                                          # and ablation; ablation on the dev sequences only)
    .venv/bin/python bench/bench_tracking.py              # full: 60 frames, 10 perturbations (3 for refine)
    options: --frames N --perturbations N --refine-perturbations N --ablation-perturbations N
             --tables main,no_depth,ablation --sequences NAME... --masks none|colour --no-generated --no-dev

Writes ``bench/results/tracking.json`` (``tracking_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import load_average, percentile, quiet_warp, write_results  # after the sys.path line above
from handypriors_core.estimation.settings import FilterObservation, TrackerSettings, load_tracking_settings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.evaluation import is_symmetric, perturbed_pose
from handypriors_core.io.frame import Frame
from handypriors_core.metrics import add, add_s, pose_nees, rotation_error, summarize_errors
from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
from handypriors_core.physics.settings import load_physics_settings
from handypriors_core.render.settings import load_render_settings

#: Generated sequences: name -> generator overrides (on top of ``config/synthetic.yaml``, carry motion).
GENERATED = {
    "gen_box": {"object.kind": "box"},
    "gen_cylinder": {"object.kind": "cylinder"},
    "gen_mesh": {"object.kind": "mesh"},
}
#: "Hard" sensor effects: the generator's defaults (noise, blur, exposure, holes, edge dropout) + flying pixels.
HARD_EFFECTS = {"depth.flying_pixels": 0.1, "bag.enabled": False}
GENERATED_FRAMES = 60

#: Goals of issue 13 (per sequence, worst over perturbations): key -> (label, bound, "max" | "min").
GOALS = {
    "filter": {"add_s_median_cm": ("median ADD-S <= 0.2 cm", 0.2, "max"),
               "rotation_median_deg": ("median rotation <= 2 deg", 2.0, "max"),
               "add_s_auc": ("ADD-S AUC >= 97", 97.0, "min"),
               "add_s_max_cm": ("no frame over 5 cm", 5.0, "max"),
               "add_median_cm": ("median ADD <= 0.25 cm", 0.25, "max"),
               "nees_translation_mean": ("NEES translation in [1.5, 6]", (1.5, 6.0), "range"),
               "nees_rotation_mean": ("NEES rotation in [1.5, 6]", (1.5, 6.0), "range")},
    "filter --no-depth": {"add_s_median_cm": ("median ADD-S <= 0.5 cm", 0.5, "max"),
                          "rotation_median_deg": ("median rotation <= 5 deg", 5.0, "max")},
    "refine": {"step_wall_median_ms": ("<= 60 ms per frame", 60.0, "max")},
}
#: Goal of the step time on the dev bags (filter, median CPU ms per frame, one core).
STEP_GOAL_MS = 8.0

#: Regression bounds, (sequence, row) -> metric -> bound on the worst over perturbations. Set from the run
#: recorded in docs/benchmarks.md (about 1.5-2x the measured figure, at least +0.1 cm / +1 deg); tighten them
#: when the tracker improves.
REGRESSION_BOUNDS: dict[tuple[str, str], dict[str, float]] = {
    # baseline (957f016) bounds; the worst start of block_lift_wrist (a 90 deg turned box) and the cylinder's
    # rotation about its axis fail them at c081270 (docs/benchmarks.md)
    ("block_lift_wrist", "filter"): {"add_s_median_cm": 0.5, "rotation_median_deg": 13.0, "add_s_auc": 93.0},
    ("gen_cylinder", "filter"): {"add_s_median_cm": 0.25, "rotation_median_deg": 22.0, "add_s_auc": 97.5},
    # from the c081270 runs (worst of 3 at 60 frames, worst of 2 with --quick)
    ("mug_pivot_fixed", "filter"): {"add_s_median_cm": 0.15, "rotation_median_deg": 1.5, "add_s_auc": 97.0},
    ("gen_box", "filter"): {"add_s_median_cm": 0.05, "rotation_median_deg": 0.5, "add_s_auc": 98.5},
    ("gen_mesh", "filter"): {"add_s_median_cm": 0.2, "rotation_median_deg": 22.0, "add_s_auc": 97.5},
}
# covariance consistency (per-frame noise estimate, 9a5373d): mean NEES of every filter row within [1/12, 12]
# (measured 1.4-4.0 with --quick, the bottle's rotation 19.9; 1.6-9.2 over the right-pose starts of the 10-start
# run); the axis of the cylinder and the bottle no longer drifts with the facets (2.8-9.7 deg over 10 starts, was 27)
for _bounds in REGRESSION_BOUNDS.values():
    _bounds.update(nees_translation_mean=12.0, nees_rotation_mean=12.0)
REGRESSION_BOUNDS[("gen_cylinder", "filter")]["rotation_median_deg"] = 15.0
# wrong-basin starts (session 5): with the region observation while settling every one of 10 starts reaches the
# object on both dev sequences (worst median ADD 0.01 cm; before: box slid 1.0 / 1.6 cm, mug turned 110 deg)
REGRESSION_BOUNDS[("block_lift_wrist", "filter")]["add_median_cm"] = 0.05
REGRESSION_BOUNDS[("mug_pivot_fixed", "filter")]["add_median_cm"] = 0.05
# colour only through the region modality (session 5, 60 frames, worst of 3 starts: block 0.55 cm / 28 deg, mug
# 0.19 cm / 3.0 deg, gen_box 0.32 cm / 0.8 deg); gen_cylinder and gen_mesh lose some starts (docs/benchmarks.md)
REGRESSION_BOUNDS.update({
    ("block_lift_wrist", "filter --no-depth"): {"add_s_median_cm": 0.8, "rotation_median_deg": 40.0, "add_s_auc": 93.0},
    ("mug_pivot_fixed", "filter --no-depth"): {"add_s_median_cm": 0.3, "rotation_median_deg": 4.5, "add_s_auc": 97.0},
    ("gen_box", "filter --no-depth"): {"add_s_median_cm": 0.5, "rotation_median_deg": 1.5, "add_s_auc": 95.0},
})
REGRESSION_BOUNDS[("gen_mesh", "filter")].update(rotation_median_deg=15.0, nees_rotation_mean=40.0)  # --quick: 19.9
# region noise model (session 6, s6region): with the settling frames' region block weighed by its lines per
# independent one, every one of 10 dev starts has mean NEES in [2.1, 4.0] (was up to 11.6 on the mug; --quick 4.3)
for _name in ("block_lift_wrist", "mug_pivot_fixed"):
    REGRESSION_BOUNDS[(_name, "filter")].update(nees_translation_mean=6.5, nees_rotation_mean=6.5)
# colour only, session 6 (s6colour): a new track's first histograms where an image-plane search finds the object's
# colours (region_start.py) for thin silhouettes; 60 frames, worst of 3 starts: gen_cylinder 0.27 cm (was 4.4),
# gen_mesh 2.9 cm (was 12.3; drifts away from the camera later); block 0.48 cm / 23 deg, mug 0.20 cm / 3.1 deg,
# gen_box 0.30 cm / 0.9 deg (docs/benchmarks.md)
REGRESSION_BOUNDS.update({
    ("block_lift_wrist", "filter --no-depth"): {"add_s_median_cm": 0.7, "rotation_median_deg": 35.0, "add_s_auc": 93.0},
    ("gen_box", "filter --no-depth"): {"add_s_median_cm": 0.45, "rotation_median_deg": 1.5, "add_s_auc": 95.0},
    ("gen_cylinder", "filter --no-depth"): {"add_s_median_cm": 0.4, "add_s_max_cm": 1.0, "add_s_auc": 96.0},
    ("gen_mesh", "filter --no-depth"): {"add_s_median_cm": 4.5, "add_s_max_cm": 9.0, "add_s_auc": 55.0},
})
# colour only, session 7 (s7region): the settle rule only within the settle frames (a first convergence 17 frames in
# raised the covariance back to the start's); block_lift_wrist worst of 3 starts 0.39 cm / 18.0 deg (was 0.48 / 23.3)
REGRESSION_BOUNDS[("block_lift_wrist", "filter --no-depth")].update(add_s_median_cm=0.6, rotation_median_deg=27.0)

# texture modality (session 7, s7texture): keyframes of the mesh's rendered texture observe the cylinder's and the
# bottle's turn about their axis (was the start's 2.8-9.6 deg, which depth cannot see); 60 frames, worst of 10 starts:
# gen_cylinder ADD 0.01 cm / 0.4 deg / NEES 1.4 / 4.5, gen_mesh 0.04 cm / 1.3 deg / NEES 2.1 / 2.3 (docs/benchmarks.md)
REGRESSION_BOUNDS[("gen_cylinder", "filter")].update(add_median_cm=0.1, rotation_median_deg=1.5,
                                                     nees_translation_mean=6.5, nees_rotation_mean=6.5)
REGRESSION_BOUNDS[("gen_mesh", "filter")].update(add_median_cm=0.15, rotation_median_deg=2.5,
                                                 nees_translation_mean=6.5, nees_rotation_mean=6.5)

# colour only, session 8 (s8bottle): the texture modality on the cylinder and the bottle (model keyframes taken after
# any accepted colour-only update; texture.min_facing_without_depth 0.6) and the carrying fingertips' contacts at 2 mm
# (filter.colour_only.carried_fingertip_std), with s8colour's region; 60 frames, worst of 3 starts: gen_cylinder
# 0.08 cm / 1.0 deg / NEES 3.6 / 4.3 (was 0.28 cm / 14 deg), gen_mesh 0.21 cm / 3.9 deg / NEES 23 / 16 (was 2.9 cm /
# 13.5 deg; docs/benchmarks.md)
REGRESSION_BOUNDS.update({
    ("gen_cylinder", "filter --no-depth"): {"add_s_median_cm": 0.15, "add_s_max_cm": 0.3, "rotation_median_deg": 1.6,
                                           "add_s_auc": 98.5, "nees_translation_mean": 6.5, "nees_rotation_mean": 6.5},
    ("gen_mesh", "filter --no-depth"): {"add_s_median_cm": 0.35, "add_s_max_cm": 1.15, "rotation_median_deg": 6.0,
                                       "add_s_auc": 95.5, "nees_translation_mean": 34.0, "nees_rotation_mean": 25.0},
})

# colour only, session 8 (s8colour): the region leaves to the prior the directions its lines barely see
# (region.weak_gain) and the texture observes them on the next frame (region.texture_where_weak), its lines weighed by
# their correlation (noise_model: always), no colour-only settle rule; with s8bottle's carrying fingertips at 2 mm,
# 60 frames, worst of 3 starts: block_lift_wrist 0.07 cm / 0.3 deg / NEES 0.87 / 0.37 (was 0.39 cm / 18 deg / 69 /
# 156), mug_pivot_fixed 0.18 cm / 2.5 deg / NEES 4.5 / 4.7 (was 18 / 13.5), gen_box 0.08 cm / 0.5 deg / NEES 3.7 / 0.6
# (was 0.31 cm / 1.0 deg / 26 / 40); bounds ~1.5x (docs/benchmarks.md, "Session 8: colour only (s8colour)")
REGRESSION_BOUNDS.update({
    ("block_lift_wrist", "filter --no-depth"): {"add_s_median_cm": 0.12, "rotation_median_deg": 0.5, "add_s_auc": 98.5,
                                               "nees_translation_mean": 6.5, "nees_rotation_mean": 4.0},
    ("mug_pivot_fixed", "filter --no-depth"): {"add_s_median_cm": 0.27, "rotation_median_deg": 3.8, "add_s_auc": 97.5,
                                              "nees_translation_mean": 6.8, "nees_rotation_mean": 7.0},
    ("gen_box", "filter --no-depth"): {"add_s_median_cm": 0.15, "rotation_median_deg": 0.8, "add_s_auc": 98.5,
                                      "nees_translation_mean": 5.6, "nees_rotation_mean": 2.5},
})

# refine, session 8 end (quiet machine, main at 52e8859, 1 start): block 0.01 cm / 0.1 deg, 6.2 ms CPU median per
# frame; mug 0.01 cm / 0.1 deg, 4.5 ms (Adam only where the filter's update has not converged; docs/benchmarks.md,
# "Session 8"). The step bound (about 1.5x the block's) guards the README's refine figure far below the 60 ms goal.
for _name in ("block_lift_wrist", "mug_pivot_fixed"):
    REGRESSION_BOUNDS[(_name, "refine")] = {"add_s_median_cm": 0.11, "rotation_median_deg": 1.1, "add_s_auc": 98.5,
                                            "step_cpu_median_ms": 9.5}

# --------------------------------------------------------------------------------------------------- sequences
@dataclass
class Sequence:
    """Frames (inputs) and ground truth (scoring) of one sequence, in memory."""

    name: str
    source: str
    frames: list[Frame]
    truth: torch.Tensor  # (N, 4, 4) float64 object2camera
    mesh_path: Path
    symmetric: bool


def shared_dev_dir() -> Path:
    """``$HANDYPRIORS_SHARED_DIR/data/dev`` (default ``../shared/data/dev``)."""
    return Path(os.environ.get("HANDYPRIORS_SHARED_DIR", ROOT.parent / "shared")) / "data" / "dev"


def load_dev_sequence(path: Path, frames: int, hand: URDFHand) -> Sequence:
    """A shared dev sequence: frames from its bag (``BagReader``), ground truth from ``gt.json``."""
    from handypriors_core.io.bag_reader import BagReader
    from handypriors_core.io.dev_sequence import load_ground_truth
    from handypriors_core.io.json_file import read_json

    gt = load_ground_truth(path)
    out: list[Frame] = []
    with BagReader(path / "bag", hand.joint_names) as reader:
        for bf in reader.frames():
            if bf.index >= frames:
                break
            if bf.frame is None:
                raise RuntimeError(f"{path.name}: bag frame {bf.index} unusable: {bf.reason}")
            out.append(bf.frame)
    meta = read_json(path / "meta.json", "sequence file")
    return Sequence(path.name, "dev bag", out, gt.object2camera[:len(out)].double(),
                    path / meta["object"]["mesh"], is_symmetric(gt.symmetry))


def load_generated_sequence(name: str, frames: int) -> Sequence:
    """A generated sequence (created once into ``out/bench/<name>-<hash>``), read with ``DevSequence``."""
    from handypriors_core.io.dev_sequence import DevSequence, load_ground_truth
    from handypriors_core.synthetic import generate_sequence, load_scenario

    overrides = {"frames": GENERATED_FRAMES, "seed": 0, **GENERATED[name], **HARD_EFFECTS}
    key = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    target = ROOT / "out" / "bench" / f"{name}-{key}"
    if not (target / "gt.json").is_file():
        print(f"generating {name} into {target} ...", flush=True)
        generate_sequence(load_scenario(overrides={**overrides, "name": name}), target, overwrite=True)
    seq = DevSequence(target)
    gt = load_ground_truth(target)
    n = min(frames, len(seq))
    return Sequence(name, "generated (hard sensor effects)", [seq[i] for i in range(n)],
                    gt.object2camera[:n].double(), seq.object_mesh_path, is_symmetric(gt.symmetry))


# ------------------------------------------------------------------------------------------------------- rows
#: Observations that need an object mask (from the mask source).
MASK_OBSERVATIONS = {"centre", "silhouette"}


@dataclass
class Row:
    """One row: settings overrides (dotted keys), colour only or not, which table, whether it needs a mask
    source (mask-based observations use the built-in colour model; the colour-only rows observe the colour
    image through the region modality, without masks)."""

    name: str
    overrides: dict
    no_depth: bool = False
    table: str = "main"

    @property
    def needs_masks(self) -> bool:
        return bool(MASK_OBSERVATIONS & set(self.overrides.get("filter.observations", [])))


#: The refine rows run as shipped: Adam steps within the configured wall-clock budget per frame (0.2 s), so they
#: do fewer steps on a loaded machine (30 steps without the budget cost about 4 s of CPU per frame at 640x480).
_REFINE = {"mode": "refine"}


def make_rows(base: TrackerSettings, tables: set[str]) -> list[Row]:
    """The rows of the selected tables (``main``, ``no_depth``, ``ablation``)."""
    rows: list[Row] = []
    if "main" in tables:
        rows += [Row("filter", {"mode": "filter"}), Row("refine", dict(_REFINE))]
    if "no_depth" in tables:
        rows += [Row("filter --no-depth", {"mode": "filter"}, True, "no_depth"),
                 Row("refine --no-depth", dict(_REFINE), True, "no_depth")]
    if "ablation" in tables:
        known = list(typing.get_args(FilterObservation))
        default = list(base.filter.observations)
        ablation = {"mode": "filter", "recovery.lost_threshold": 0.0, "recovery.relative_threshold": 0.0}
        rows.append(Row(f"default [{'+'.join(default)}]", dict(ablation), table="ablation"))
        for obs in known:
            rows.append(Row(f"only {obs}", {**ablation, "filter.observations": [obs]}, table="ablation"))
        if len(default) > 1:
            for obs in default:
                rest = [o for o in default if o != obs]
                rows.append(Row(f"default - {obs}", {**ablation, "filter.observations": rest}, table="ablation"))
        for obs in known:
            if obs not in default:
                rows.append(Row(f"default + {obs}", {**ablation, "filter.observations": default + [obs]},
                                table="ablation"))
        other = "constant_pose" if base.filter.motion_model != "constant_pose" else "quasistatic"
        rows.append(Row(f"default, {other} prediction", {**ablation, "filter.motion_model": other},
                        table="ablation"))
    return rows


def configured(base: TrackerSettings, overrides: dict) -> TrackerSettings:
    """A copy of ``base`` with dotted-key overrides applied (validated again)."""
    s = copy.deepcopy(base)
    for key, value in overrides.items():
        target = s
        parts = key.split(".")
        for part in parts[:-1]:
            target = getattr(target, part)
        setattr(target, parts[-1], value)
        if dataclasses.is_dataclass(target) and hasattr(target, "__post_init__"):
            target.__post_init__()
    s.__post_init__()
    return s


# ---------------------------------------------------------------------------------------------------- running
def run_once(tracker: ObjectTracker, seq: Sequence, initial: torch.Tensor, no_depth: bool,
             points: torch.Tensor) -> dict:
    """Track ``seq`` from ``initial``; per-frame errors [m, rad] on the object's ``points (P, 3)``, NEES and step
    times [s]."""
    tracker.reset(initial)
    poses, covs, cpu, wall = [], [], [], []
    for frame in seq.frames:
        if no_depth:
            frame = dataclasses.replace(frame, depth=None)
        c0, w0 = time.process_time(), time.perf_counter()
        est = tracker.track(frame)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        poses.append(est.object2camera.double())
        covs.append(est.covariance.double())
    pred = torch.stack(poses)
    truth = seq.truth[:len(poses)]
    return {"add_s": add_s(points, pred, truth), "add": add(points, pred, truth),
            "rotation": rotation_error(pred, truth), "nees": pose_nees(pred, truth, torch.stack(covs)),
            "cpu": cpu[1:], "wall": wall[1:]}


def summarize_run(r: dict, symmetric: bool) -> dict:
    """Scalar figures of one tracked perturbation (cm, deg, percent)."""
    s = summarize_errors(r["add_s"])
    nees = r["nees"]
    finite = torch.isfinite(nees).all(-1)
    out = {
        "add_s_median_cm": 100 * s["median"],
        "add_s_max_cm": 100 * float(r["add_s"].max()),
        "add_s_auc": 100 * s["auc"],
        "frames_over_5cm": s["frames_over"],
        "rotation_median_deg": math.degrees(float(r["rotation"].median())),
        "nees_translation_mean": float(nees[finite, 0].mean()) if bool(finite.any()) else math.nan,
        "nees_rotation_mean": float(nees[finite, 1].mean()) if bool(finite.any()) else math.nan,
    }
    if not symmetric:
        out["add_median_cm"] = 100 * float(r["add"].median())
    return out


#: How the worst over perturbations is taken, per figure.
_WORST = {"add_s_auc": min}


def _worst(values: list[float], key: str) -> float:
    if key.startswith("nees"):  # farthest from the consistent value 3 (log scale)
        finite = [v for v in values if math.isfinite(v) and v > 0]
        return max(finite, key=lambda v: abs(math.log(v / 3.0))) if finite else math.nan
    return _WORST.get(key, max)(values)


def run_row(seq: Sequence, row: Row, base: TrackerSettings, perturbations: int, masks: str) -> dict:
    """All perturbations of one row on one sequence: per-perturbation figures, worst, median, step times.

    ``masks``: ``"none"`` or ``"colour"`` (the built-in colour model); rows that need masks get the colour model.
    """
    masks = "colour" if row.needs_masks else masks
    settings = configured(base, row.overrides)
    hand = URDFHand.from_urdf(allegro_urdf())
    obj = RigidObject.from_mesh(seq.mesh_path)
    tracker = ObjectTracker(hand, obj, settings, render_settings=load_render_settings(),
                            physics_settings=load_physics_settings())
    if masks == "colour":
        from handypriors_core.segmentation import load_segmentation_settings, make_mask_source

        tracker.mask_source = make_mask_source(load_segmentation_settings(), tracker.scene)
    per, cpu, wall, add_s_frames = [], [], [], []
    for seed in range(perturbations):
        r = run_once(tracker, seq, perturbed_pose(seq.truth[0], seed), row.no_depth, obj.samples.double())
        per.append(summarize_run(r, seq.symmetric))
        cpu += r["cpu"]
        wall += r["wall"]
        add_s_frames.append([round(100 * float(v), 3) for v in r["add_s"]])
    keys = per[0].keys()
    return {
        "frames": len(seq.frames),
        "perturbations": perturbations,
        "masks": "colour model" if masks == "colour" else "none",
        "worst": {k: _worst([p[k] for p in per], k) for k in keys},
        "median_over_perturbations": {k: float(torch.tensor([p[k] for p in per]).median()) for k in keys},
        "per_perturbation": per,
        "step_cpu_median_ms": 1e3 * percentile(cpu, 50),
        "step_cpu_p95_ms": 1e3 * percentile(cpu, 95),
        "step_wall_median_ms": 1e3 * percentile(wall, 50),
        "step_wall_p95_ms": 1e3 * percentile(wall, 95),
        "add_s_cm_per_frame_seed0": add_s_frames[0],
    }


# ----------------------------------------------------------------------------------------------------- checks
def check_goals(results: dict) -> list[dict]:
    """Each goal of issue 13 on each sequence: met or not (worst over perturbations)."""
    out = []
    for seq_name, rows in results["sequences"].items():
        for row_name, goals in GOALS.items():
            res = rows.get(row_name)
            if res is None:
                continue
            for key, (label, bound, kind) in goals.items():
                value = res["worst"].get(key, res.get(key))
                if value is None:
                    continue
                met = (value <= bound if kind == "max" else value >= bound if kind == "min"
                       else bound[0] <= value <= bound[1])
                out.append({"sequence": seq_name, "row": row_name, "goal": label, "value": value, "met": bool(met)})
        res = rows.get("filter")
        if res is not None and results["sequences_info"][seq_name]["source"] == "dev bag":
            value = res["step_cpu_median_ms"]
            out.append({"sequence": seq_name, "row": "filter", "goal": f"step <= {STEP_GOAL_MS} ms CPU (median)",
                        "value": value, "met": value <= STEP_GOAL_MS})
    return out


def check_regressions(results: dict) -> list[dict]:
    """``REGRESSION_BOUNDS`` against this run; each entry says whether it passed."""
    out = []
    for (seq_name, row_name), bounds in REGRESSION_BOUNDS.items():
        res = results["sequences"].get(seq_name, {}).get(row_name)
        if res is None:
            continue
        for key, bound in bounds.items():
            value = res["worst"].get(key, res.get(key))
            if key == "add_s_auc":
                ok = value >= bound
            elif key.startswith("nees"):
                ok = 1.0 / bound <= value <= bound
            else:
                ok = value <= bound
            out.append({"sequence": seq_name, "row": row_name, "metric": key, "value": value, "bound": bound,
                        "ok": bool(ok)})
    return out


# --------------------------------------------------------------------------------------------------- markdown
def markdown(results: dict) -> str:
    """The tables of docs/benchmarks.md from a results dict (one table per table kind, rows per sequence)."""
    def fmt(v, digits=2):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"

    lines = []
    titles = {"main": "Filter and refine", "no_depth": "Colour only (`--no-depth`)",
              "ablation": "Ablation of the filter (Table I style; no re-initialisation)"}
    for table, title in titles.items():
        entries = [(seq, row, res) for seq, rows in results["sequences"].items() for row, res in rows.items()
                   if res.get("table") == table]
        if not entries:
            continue
        header = ("| sequence | row | ADD-S median / max [cm] | ADD median [cm] | rotation median [deg] | "
                  "ADD-S AUC [%] | NEES t / r | step CPU median / p95 [ms] | step wall median [ms] | perturbations |")
        lines += [f"#### {title}", "", header, "|---|---|---|---|---|---|---|---|---|---|"]
        for seq, row, res in entries:
            w = res["worst"]
            lines.append(f"| {seq} | {row} | {fmt(w['add_s_median_cm'])} / {fmt(w['add_s_max_cm'])} | "
                         f"{fmt(w.get('add_median_cm'))} | {fmt(w['rotation_median_deg'], 1)} | "
                         f"{fmt(w['add_s_auc'], 1)} | {fmt(w['nees_translation_mean'], 1)} / "
                         f"{fmt(w['nees_rotation_mean'], 1)} | {fmt(res['step_cpu_median_ms'], 1)} / "
                         f"{fmt(res['step_cpu_p95_ms'], 1)} | {fmt(res['step_wall_median_ms'], 1)} | "
                         f"{res['perturbations']} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- main
def _print_row(seq: str, row: str, res: dict, seconds: float) -> None:
    w = res["worst"]
    add_txt = f"ADD {w['add_median_cm']:5.2f}" if "add_median_cm" in w else "ADD   -  "
    print(f"{seq:18s} {row:34s} ADD-S med {w['add_s_median_cm']:5.2f} max {w['add_s_max_cm']:5.2f} cm  {add_txt}  "
          f"rot {w['rotation_median_deg']:5.1f} deg  AUC {w['add_s_auc']:5.1f}  NEES {w['nees_translation_mean']:6.1f}"
          f" / {w['nees_rotation_mean']:6.1f}  step {res['step_cpu_median_ms']:5.1f} ms CPU "
          f"({res['step_wall_median_ms']:5.1f} wall)  [worst of {res['perturbations']}]  ({seconds:.0f} s)", flush=True)


def _parse_setting(item: str) -> tuple[str, object]:
    import yaml

    if "=" not in item:
        raise SystemExit(f"--set expects KEY=VALUE; got {item!r}")
    key, value = item.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="20 frames, 2 perturbations (1 for refine/ablation), ablation on dev sequences only")
    parser.add_argument("--frames", type=int, default=None, help="frames per sequence (default 60; quick 20)")
    parser.add_argument("--perturbations", type=int, default=None, help="filter rows (default 10; quick 2)")
    parser.add_argument("--refine-perturbations", type=int, default=None, help="refine rows (default 3; quick 1)")
    parser.add_argument("--ablation-perturbations", type=int, default=None, help="ablation rows (default 2; quick 1)")
    parser.add_argument("--tables", default="main,no_depth,ablation", help="comma-separated: main,no_depth,ablation")
    parser.add_argument("--rows", nargs="*", default=None, help="only these row names")
    parser.add_argument("--sequences", nargs="*", default=None, help="only these sequence names")
    parser.add_argument("--masks", choices=("none", "colour"), default="none",
                        help="mask source of the rows (default none, as the node; colour = the built-in colour "
                             "model, which the mask-based ablation rows always use)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="tracking setting for every row, dotted below `tracking`, YAML value (repeatable), "
                             "e.g. --set filter.process_std_rotation=0.01")
    parser.add_argument("--no-generated", action="store_true")
    parser.add_argument("--no-dev", action="store_true")
    parser.add_argument("--strict-goals", action="store_true", help="exit 2 when a goal of issue 13 is not met")
    parser.add_argument("--output", default=None, help="results topic (default tracking / tracking_quick)")
    parser.add_argument("--markdown", metavar="JSON", default=None,
                        help="print the docs tables of an existing results file and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    quick = args.quick
    frames = args.frames or (20 if quick else 60)
    n_filter = args.perturbations or (2 if quick else 10)
    n_refine = args.refine_perturbations or (1 if quick else 3)
    n_ablation = args.ablation_perturbations or (1 if quick else 2)
    torch.set_num_threads(1)
    quiet_warp()
    base = configured(load_tracking_settings(), dict(_parse_setting(item) for item in args.set))
    hand = URDFHand.from_urdf(allegro_urdf())
    names: list[tuple[str, Path | None]] = []
    if not args.no_dev and shared_dev_dir().is_dir():
        names += [(p.name, p) for p in sorted(shared_dev_dir().iterdir()) if (p / "bag").is_dir()]
    if not args.no_generated:
        names += [(n, None) for n in GENERATED]
    if args.sequences:
        names = [(n, p) for n, p in names if n in args.sequences]
    rows = make_rows(base, set(args.tables.split(",")))
    if args.rows:
        rows = [r for r in rows if r.name in args.rows]
    results: dict = {
        "description": "Tracking accuracy harness (bench/bench_tracking.py): initial pose = frame-0 GT + 2 cm / "
                       "10 deg (seeds 0..N-1); worst over perturbations; step = ObjectTracker.track per frame",
        "quick": quick, "frames": frames, "masks": args.masks, "settings_overrides": args.set, "device": base.device,
        "torch_threads": torch.get_num_threads(), "load_average_start": load_average(),
        "perturbations": {"filter": n_filter, "refine": n_refine, "ablation": n_ablation},
        "sequences_info": {}, "sequences": {},
    }
    t_all = time.perf_counter()
    for name, path in names:
        seq = load_dev_sequence(path, frames, hand) if path is not None else load_generated_sequence(name, frames)
        results["sequences_info"][name] = {"source": seq.source, "frames": len(seq.frames),
                                           "symmetric": seq.symmetric, "mesh": str(seq.mesh_path)}
        results["sequences"][name] = {}
        for row in rows:
            if quick and row.table == "ablation" and path is None:
                continue  # --quick: the ablation on the dev sequences only
            n = n_ablation if row.table == "ablation" else (n_refine if "refine" in row.name else n_filter)
            t = time.perf_counter()
            res = run_row(seq, row, base, n, args.masks)
            res["table"] = row.table
            results["sequences"][name][row.name] = res
            _print_row(name, row.name, res, time.perf_counter() - t)
    results["load_average_end"] = load_average()
    results["seconds"] = round(time.perf_counter() - t_all, 1)
    results["goals"] = check_goals(results)
    results["regressions"] = check_regressions(results)
    path = write_results(args.output or ("tracking_quick" if quick else "tracking"), results)
    met = sum(g["met"] for g in results["goals"])
    print(f"goals met: {met} of {len(results['goals'])}")
    failed = [r for r in results["regressions"] if not r["ok"]]
    for r in failed:
        print(f"REGRESSION {r['sequence']} / {r['row']}: {r['metric']} = {r['value']:.3f} (bound {r['bound']})")
    print(f"wrote {path} in {results['seconds']:.0f} s (load average {results['load_average_start']} -> "
          f"{results['load_average_end']})")
    if failed:
        return 1
    if args.strict_goals and met < len(results["goals"]):
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
