"""Benchmark of observations without trained weights: automatic initial pose, colour-model masks, re-initialisation.

Writes ``bench/results/initialization.json``. Frames are generated (``handypriors_core.segmentation.testing``):
the Allegro hand (shipped URDF) holding a textured box (6 x 4 x 10 cm) or cylinder (r 3 cm, h 9 cm) in front of
a cluttered background, 160 x 120 px, camera 0.30-0.38 m from the palm, uniformly random object rotations.
Ground truth is used for scoring only.

- ``automatic_depth``: no pose, no mask: mask from aligned depth near the hand (``bootstrap_mask``), then the global
  search with the shipped ``initialization`` settings. Success = ADD-S < 10% of the object diameter.
- ``rgb_external_mask``: RGB only; the external mask is the true visible mask (a perfect external segmenter).
- ``reinit_near``: search around a pose 0.5 rad / 2.2 cm off the truth (re-initialisation after loss of track).
- ``colour_model``: mask IoU of the colour model over 5-frame sequences (object moving ~4 deg / 3 mm per frame,
  prediction = previous true pose + noise), with and without depth; per-frame runtime.

Times are wall-clock on the CPU with one torch thread (small torch ops stall on a shared 2-core machine with
more); the load average at start and end is recorded: compare runs only at similar load.

    .venv/bin/python bench/bench_initialization.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import write_results  # after the sys.path line above
from handypriors_core.estimation.initialization import (
    GlobalPoseSearch,
    bootstrap_mask,
    load_initialization_settings,
)
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform
from handypriors_core.metrics.pose_errors import add_s
from handypriors_core.segmentation import ColourModelMask, load_segmentation_settings
from handypriors_core.segmentation.testing import make_scene, move_object, random_view

TRIALS = 10
SEQUENCES = 6
F64 = torch.float64


def _adds(scene, pose, truth) -> float:
    return float(add_s(scene.object.samples.double().cpu(), pose[None].double(), truth[None].double())[0])


def _iou(a, b) -> float:
    a, b = a.cpu() > 0.5, b.cpu() > 0.5
    return float((a & b).sum()) / max(1.0, float((a | b).sum()))


def _summary(errors, times, diameter, extra=None) -> dict:
    errors = np.asarray(errors, dtype=float)
    out = {
        "trials": len(errors),
        "success_rate": round(float(np.mean(errors < 0.1 * diameter)), 3),
        "adds_median_mm": round(float(np.median(errors)) * 1e3, 2),
        "adds_max_mm": round(float(np.max(errors)) * 1e3, 2),
        "threshold_mm": round(0.1 * diameter * 1e3, 2),
        "time_median_s": round(float(np.median(times)), 3),
        "time_max_s": round(float(np.max(times)), 3),
    }
    out.update(extra or {})
    return out


def bench_automatic(kind: str, seed: int) -> dict:
    scene = make_scene(kind)
    search = GlobalPoseSearch(scene, load_initialization_settings())
    g = torch.Generator().manual_seed(seed)
    random_view(scene, g)  # warm-up: kernels compiled
    errors, times, mask_ious, stage = [], [], [], {}
    for _ in range(TRIALS):
        view = random_view(scene, g)
        hand = scene.pose_hand(view.frame.joint_angles, view.frame.hand2camera)
        start = time.perf_counter()
        mask = bootstrap_mask(scene, view.frame, hand)
        result = search.search(view.frame, mask, hand)
        times.append(time.perf_counter() - start)
        mask_ious.append(_iou(mask, view.object_mask) if mask is not None else 0.0)
        errors.append(_adds(scene, result.object2camera, view.object2camera) if result.ok else float("inf"))
        for k, v in result.timings.items():
            stage.setdefault(k, []).append(v)
    return _summary(errors, times, scene.object.diameter, {
        "bootstrap_mask_iou_mean": round(float(np.mean(mask_ious)), 3),
        "stage_median_s": {k: round(float(np.median(v)), 3) for k, v in stage.items()},
    })


def bench_rgb_external(seed: int) -> dict:
    scene = make_scene("box")
    search = GlobalPoseSearch(scene, load_initialization_settings())
    g = torch.Generator().manual_seed(seed)
    errors, times = [], []
    for _ in range(TRIALS):
        view = random_view(scene, g, with_depth=False)
        start = time.perf_counter()
        result = search.search(view.frame, view.object_mask, None)
        times.append(time.perf_counter() - start)
        errors.append(_adds(scene, result.object2camera, view.object2camera) if result.ok else float("inf"))
    return _summary(errors, times, scene.object.diameter)


def bench_reinit_near(seed: int) -> dict:
    scene = make_scene("box")
    search = GlobalPoseSearch(scene, load_initialization_settings())
    g = torch.Generator().manual_seed(seed)
    errors, times = [], []
    for _ in range(TRIALS):
        view = random_view(scene, g)
        truth = view.object2camera
        axis = torch.randn(3, generator=g, dtype=F64)
        wrong = make_transform(axis_angle_to_matrix(0.5 * axis / axis.norm()) @ truth[:3, :3],
                               truth[:3, 3] + torch.tensor([0.02, -0.01, 0.0], dtype=F64))
        hand = scene.pose_hand(view.frame.joint_angles, view.frame.hand2camera)
        start = time.perf_counter()
        mask = bootstrap_mask(scene, view.frame, hand)
        result = search.search(view.frame, mask, hand, near=wrong)
        times.append(time.perf_counter() - start)
        errors.append(_adds(scene, result.object2camera, truth) if result.ok else float("inf"))
    return _summary(errors, times, scene.object.diameter)


def bench_colour_model(with_depth: bool, seed: int) -> dict:
    scene = make_scene("box")
    settings = load_segmentation_settings().colour
    g = torch.Generator().manual_seed(seed)
    per_frame, times = [], []
    for _ in range(SEQUENCES):
        view = random_view(scene, g, with_depth=with_depth)
        model = ColourModelMask(scene, settings)
        pose = view.object2camera
        ious = []
        for k in range(5):
            true = pose
            predicted = pose
            frame_view = view
            if k:
                true = make_transform(axis_angle_to_matrix(0.07 * torch.randn(3, generator=g, dtype=F64))
                                      @ pose[:3, :3], pose[:3, 3] + 0.003 * torch.randn(3, generator=g, dtype=F64))
                frame_view = move_object(scene, view, true, g, index=k)
                predicted = make_transform(axis_angle_to_matrix(0.03 * torch.randn(3, generator=g, dtype=F64))
                                           @ pose[:3, :3],
                                           pose[:3, 3] + 0.002 * torch.randn(3, generator=g, dtype=F64))
            hand = scene.pose_hand(frame_view.frame.joint_angles, frame_view.frame.hand2camera)
            start = time.perf_counter()
            mask = model(frame_view.frame, predicted.float(), hand)
            times.append(time.perf_counter() - start)
            ious.append(_iou(mask, frame_view.object_mask) if mask is not None else 0.0)
            pose = true
        per_frame.append(ious)
    per_frame = np.asarray(per_frame)
    return {
        "sequences": SEQUENCES,
        "iou_mean_per_frame": [round(float(x), 3) for x in per_frame.mean(0)],
        "iou_last_frame_min": round(float(per_frame[:, -1].min()), 3),
        "iou_last_frame_mean": round(float(per_frame[:, -1].mean()), 3),
        "time_median_ms": round(float(np.median(times)) * 1e3, 1),
    }


def main() -> int:
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    start = time.perf_counter()
    results = {
        "automatic_depth_box": bench_automatic("box", 1),
        "automatic_depth_cylinder": bench_automatic("cylinder", 2),
        "rgb_external_mask_box": bench_rgb_external(3),
        "reinit_near_box": bench_reinit_near(4),
        "colour_model_depth": bench_colour_model(True, 5),
        "colour_model_rgb": bench_colour_model(False, 6),
    }
    report = {
        "benchmark": "initialization",
        "settings": "config/segmentation.yaml (initialization, segmentation.colour)",
        "image": "160x120, Allegro hand + textured box/cylinder, cluttered background",
        "results": results,
        "total_s": round(time.perf_counter() - start, 1),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(), "load_start": [round(x, 2) for x in load_start],
                    "load_end": [round(x, 2) for x in os.getloadavg()], "device": "cpu"},
    }
    write_results("initialization", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
