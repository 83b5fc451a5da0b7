"""Benchmark of the physics module: signed distance with gradients, reverse query, metrics, quasistatic step.

Writes ``bench/results/physics.json``. Times are medians over ``REPEATS`` runs after one warm-up, in ms, on
the CPU (warp kernels compiled beforehand). Meshes are tori with exactly 2,000 and 20,000 faces (non-convex,
hand-object scale: 5 cm major, 2 cm minor radius); query points are uniform in the torus' bounding box grown
by 2 cm, so a mix of inside, near and far points. "fwd_bwd" = signed distance + backward of its sum to the
points, float32; "threads" = ``ContactSettings.cpu_threads`` (warp launches split over CPU threads).

torch runs with one intra-op thread here (``TORCH_THREADS``): on a shared 2-core machine, OpenMP barriers in
the small elementwise torch ops stall on descheduled threads and inflate timings several-fold. The load
average at the start and end is recorded; compare runs only at similar load.

    .venv/bin/python bench/bench_physics.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import trimesh

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import median_ms, write_results  # after the sys.path line above
from handypriors_core.physics import (
    ContactSettings,
    HandGeometry,
    ObjectSDF,
    interpenetration_volume,
    quasistatic_step,
)

REPEATS = 7
TORCH_THREADS = 1


def _median_ms(fn) -> float:
    return median_ms(fn, REPEATS)


def _torus(faces: int) -> trimesh.Trimesh:
    minor = {2000: 20, 20000: 50}[faces]
    mesh = trimesh.creation.torus(major_radius=0.05, minor_radius=0.02, major_sections=faces // (2 * minor),
                                  minor_sections=minor)
    assert len(mesh.faces) == faces
    return mesh


def _points(mesh: trimesh.Trimesh, n: int, seed: int) -> torch.Tensor:
    lo, hi = mesh.bounds[0] - 0.02, mesh.bounds[1] + 0.02
    rng = np.random.default_rng(seed)
    return torch.as_tensor(lo + (hi - lo) * rng.random((1, n, 3)), dtype=torch.float32)


def bench_signed_distance() -> dict:
    out = {}
    for faces in (2000, 20000):
        mesh = _torus(faces)
        for threads in (1, 0):
            sdf = ObjectSDF.from_trimesh(mesh, settings=ContactSettings(cpu_threads=threads), dtype=torch.float32)
            for n in (1000, 10000):
                points = _points(mesh, n, seed=n)

                def fwd(sdf=sdf, points=points):
                    return sdf.query(points).distance

                def fwd_bwd(sdf=sdf, points=points):
                    p = points.clone().requires_grad_(True)
                    sdf.query(p).distance.sum().backward()
                    return p.grad

                key = f"faces{faces}_points{n}_threads{threads or 'all'}"
                out[key] = {"fwd_ms": _median_ms(fwd), "fwd_bwd_ms": _median_ms(fwd_bwd)}
                inside = (fwd() < 0).float().mean().item()
                out[key]["inside_fraction"] = round(inside, 3)
    return out


def bench_hand() -> dict:
    """Reverse query (object samples against the refitted Allegro mesh) and interpenetration volume."""
    from handypriors_core.models import RigidObject, URDFHand, allegro_urdf

    hand = URDFHand.from_urdf(allegro_urdf())
    q = hand.default_joint_angles().reshape(1, -1)
    verts, faces, _ = hand.mesh(q)
    ball = RigidObject.sphere(0.03, subdivisions=4)
    tip = hand.fingertips(q)[0, 1]
    object2camera = torch.eye(4)[None].clone()
    object2camera[0, :3, 3] = tip + torch.tensor([0.02, 0.0, 0.0])
    samples = ball.samples[None] + object2camera[0, :3, 3]
    geometry = HandGeometry(faces)
    sdf = ObjectSDF.from_rigid_object(ball)
    hand_points = hand.surface_points(q)

    def reverse():
        v = verts.detach().clone().requires_grad_(True)
        geometry.signed_distance(samples, v).distance.sum().backward()

    def forward_hand_points():
        p = hand_points.clone().requires_grad_(True)
        sdf.signed_distance(p, object2camera).distance.sum().backward()

    volume = interpenetration_volume(sdf, object2camera, verts, faces)
    return {
        "hand_mesh_faces": int(faces.shape[0]),
        "object_faces": int(ball.faces.shape[0]),
        "reverse_query_samples": int(samples.shape[1]),
        "reverse_query_refit_fwd_bwd_ms": _median_ms(reverse),
        "hand_surface_points": int(hand_points.shape[1]),
        "hand_points_vs_object_fwd_bwd_ms": _median_ms(forward_hand_points),
        "interpenetration_volume_cm3": round(volume.item(), 4),
        "interpenetration_volume_1mm_ms": _median_ms(
            lambda: interpenetration_volume(sdf, object2camera, verts, faces), repeats=3),
    }


def bench_quasistatic() -> dict:
    gen = torch.Generator().manual_seed(0)
    out = {}
    for batch in (1, 64):
        prev = torch.randn(batch, 32, 3, generator=gen) * 0.03
        cur = prev + 0.001
        weights = torch.ones(batch, 32)
        pose = torch.eye(4).expand(batch, 4, 4).clone()
        args = (prev, cur, weights, pose)
        out[f"quasistatic_step_B{batch}_N32_ms"] = _median_ms(lambda args=args: quasistatic_step(*args))
    return out


def main() -> dict:
    torch.set_num_threads(TORCH_THREADS)
    results = {
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "load_average_start": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "repeats": REPEATS,
        "signed_distance": bench_signed_distance(),
    }
    try:
        results["hand"] = bench_hand()
    except Exception as exc:  # noqa: BLE001 - the hand model is another module; report, do not fail the bench
        results["hand"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    results.update(bench_quasistatic())
    results["load_average_end"] = round(os.getloadavg()[0], 2)
    write_results("physics", results)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
