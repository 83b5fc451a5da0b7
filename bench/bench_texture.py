"""Cost of the texture modality per frame (issue 13): CPU time of its work inside the filter's update.

Tracks the generated cylinder and bottle of ``bench/bench_tracking.py`` (60 frames, start = frame-0 ground truth
perturbed by 2 cm / 10 deg, seed 0; shipped ``config/*.yaml``, no mask, one torch thread) and times, per frame, as
process CPU (``bench_filter_step.StageClock``): the frame's preparation (``begin``: luminance of the image around the
keyframe's points and its summed-area table), every linearisation (``normal_equations``: box means, sampling, hand
test, residuals, Jacobian rows, photometric model, weights; on the CPU both are compiled passes,
``estimation/texture_kernel.py``) and keyframes (``take_keyframe``: a model keyframe
renders the object's texture). Also the whole tracker step (process CPU) with and without the modality (``texture``
added to / removed from ``filter.observations``), which includes the Gauss-Newton iterations it adds.

    .venv/bin/python bench/bench_texture.py            # -> bench/results/texture_cost.json (exit 1 on a bound)

``REGRESSION_BOUNDS``: about 1.5x the figures of docs/benchmarks.md ("Session 8: texture cost (s8tex)").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import load_average, percentile, quiet_warp, write_results  # after the sys.path line above
from bench.bench_filter_step import StageClock
from bench.bench_tracking import _parse_setting, configured, load_generated_sequence
from handypriors_core.estimation.settings import load_tracking_settings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.evaluation import perturbed_pose
from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
from handypriors_core.physics.settings import load_physics_settings
from handypriors_core.render.settings import load_render_settings

#: sequence -> metric -> bound [ms] (median / p90 over the frames, keyframe frames included), about 1.5x the
#: slowest of three runs of the compiled passes (session 8) at load 4.6-6.2 (cylinder 1.14 / 1.79, bottle 0.89 /
#: 1.27 ms; docs/benchmarks.md, "Session 8: texture cost (s8tex)")
REGRESSION_BOUNDS = {
    "gen_cylinder": {"texture_median_ms": 1.7, "texture_p90_ms": 2.7},
    "gen_mesh": {"texture_median_ms": 1.35, "texture_p90_ms": 1.9},
}
SEQUENCES = ("gen_cylinder", "gen_mesh")


def run(name: str, frames: int, texture: bool, overrides: dict) -> dict:
    """Track ``name`` once with or without the texture observation; per-frame texture CPU [ms] and step CPU [ms]."""
    seq = load_generated_sequence(name, frames)
    settings = configured(load_tracking_settings(), {"mode": "filter", **overrides})
    observations = [o for o in settings.filter.observations if o != "texture"] + (["texture"] if texture else [])
    settings = configured(settings, {"filter.observations": observations})
    tracker = ObjectTracker(URDFHand.from_urdf(allegro_urdf()), RigidObject.from_mesh(seq.mesh_path), settings,
                            render_settings=load_render_settings(), physics_settings=load_physics_settings())
    tracker.reset(perturbed_pose(seq.truth[0], 0))
    timer = StageClock()  # the filter-step bench's per-frame stage clock (process CPU of the wrapped calls)
    texture_modality = tracker.filter.texture
    for method in ("begin", "normal_equations", "take_keyframe"):
        setattr(texture_modality, method, timer.wrap(method, getattr(texture_modality, method)))
    texture, steps, parts = [], [], {"begin": [], "normal_equations": [], "take_keyframe": []}
    for i, frame in enumerate(seq.frames):
        timer.frame = {}
        c0 = time.process_time()
        tracker.track(frame)
        if i == 0:
            continue  # first frame: caches
        steps.append(1e3 * (time.process_time() - c0))
        texture.append(1e3 * sum(timer.frame.values()))
        for key, values in parts.items():
            values.append(1e3 * timer.frame.get(key, 0.0))
    return {"step_cpu_median_ms": percentile(steps, 50), "step_cpu_p90_ms": percentile(steps, 90),
            "texture_median_ms": percentile(texture, 50), "texture_p90_ms": percentile(texture, 90),
            "texture_max_ms": max(texture), **{f"{k}_median_ms": percentile(v, 50) for k, v in parts.items()},
            "keyframes": sum(v > 0 for v in parts["take_keyframe"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--sequences", nargs="*", default=list(SEQUENCES))
    parser.add_argument("--output", default="texture_cost")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="tracking setting, dotted below `tracking`, YAML value (repeatable)")
    args = parser.parse_args(argv)
    overrides = dict(_parse_setting(item) for item in args.set)
    torch.set_num_threads(1)
    quiet_warp()
    results = {"description": __doc__.splitlines()[0], "frames": args.frames, "settings_overrides": args.set,
               "load_average_start": load_average(), "sequences": {}}
    failed = []
    for name in args.sequences:
        on = run(name, args.frames, True, overrides)
        off = run(name, args.frames, False, overrides)
        results["sequences"][name] = {"with_texture": on, "without": {k: off[k] for k in
                                                                     ("step_cpu_median_ms", "step_cpu_p90_ms")}}
        print(f"{name:14s} texture {on['texture_median_ms']:.2f} / p90 {on['texture_p90_ms']:.2f} / max "
              f"{on['texture_max_ms']:.2f} ms (begin {on['begin_median_ms']:.2f}, linearisations "
              f"{on['normal_equations_median_ms']:.2f}, {on['keyframes']} keyframes); step "
              f"{on['step_cpu_median_ms']:.1f} ms with, {off['step_cpu_median_ms']:.1f} without", flush=True)
        for key, bound in REGRESSION_BOUNDS.get(name, {}).items():
            if on[key] > bound:
                failed.append(f"{name}: {key} = {on[key]:.2f} ms (bound {bound})")
    results["load_average_end"] = load_average()
    results["regressions_failed"] = failed
    path = write_results(args.output, results)
    for line in failed:
        print("REGRESSION", line)
    print(f"wrote {path} (load average {results['load_average_start']} -> {results['load_average_end']})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
