"""Benchmark of the differentiable renderer (issue #3): warp soft rasterizer vs the dense torch reference.

Scene: the Allegro hand (URDF collision mesh, 3784 faces) at random joint angles ~0.45 m in front of a 615 px
camera, grasping a 2112-face ellipsoid; instance ids hand = 0, object = 1. Resolutions: 128x128 and 256x256
crops around the object (``PinholeCamera.crop_and_resize``) and the full 640x480 image.

Per resolution and device: median (and minimum) wall time [ms] over ``--repeats`` runs of

- ``forward``: silhouettes (full, visible, union) of hand + object;
- ``forward_backward``: that plus the backward pass of the mask loss of the paper (Eq. 2) as the tracker uses
  it, ``|visible_object - M_obj|^2 + |union - M_union|^2``, down to the camera-frame vertices;
- ``*_depth``: the same with soft depth (and a depth term in the loss).

Side by side in the same run, the dense reference (``render.dense_reference``: every pixel against every
face, same formulas, torch autograd with per-chunk recomputation). Its cost is exactly linear in the pixels,
so at the larger sizes it is timed on the first ``--dense-pixels`` pixels and scaled (``dense_extrapolated``).
The machine is shared: ``cpu_time_ms`` (process CPU time, medians) and the load average are recorded too.

``python bench/bench_render.py [--repeats N] [--dense-pixels N] [--quick]`` -> ``bench/results/render.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from handypriors_core.geometry import (  # after the sys.path line above
    PinholeCamera,
    axis_angle_to_matrix,
    make_transform,
    transform_points,
)
from handypriors_core.models import URDFHand
from handypriors_core.render import Renderer, RenderSettings, bridge
from handypriors_core.render.dense_reference import dense_render

RESULTS = ROOT / "bench" / "results" / "render.json"
_HAND_AXES_IN_CAMERA = [[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]


def make_scene(seed: int = 0, device: str = "cpu"):
    """verts (1, V, 3) camera frame, faces, face_instance, object verts, full 640x480 camera."""
    g = torch.Generator().manual_seed(seed)
    hand = URDFHand.from_urdf(ROOT / "urdf" / "allegro_hand_right.urdf")
    lo, hi = hand.lower_limits, hand.upper_limits
    q = lo + (hi - lo) * (0.25 + 0.35 * torch.rand(lo.shape, generator=g))
    hv, hf, _ = hand.mesh(q[None])
    R = axis_angle_to_matrix((torch.rand(3, generator=g) - 0.5) * 0.5) @ torch.tensor(_HAND_AXES_IN_CAMERA)
    hand2camera = make_transform(R, torch.tensor([0.0, 0.04, 0.45]))
    m = trimesh.creation.uv_sphere(radius=1.0, count=[23, 23])
    ov = torch.tensor(np.asarray(m.vertices) * np.array([0.032, 0.045, 0.032]), dtype=torch.float32)
    obj_in_hand = make_transform(axis_angle_to_matrix((torch.rand(3, generator=g) - 0.5) * 2.0),
                                 torch.tensor([0.055, 0.03, 0.075]))
    obj_cam = transform_points(hand2camera @ obj_in_hand, ov[None])
    hand_cam = transform_points(hand2camera, hv)
    of = torch.tensor(np.asarray(m.faces), dtype=torch.long)
    verts = torch.cat((hand_cam, obj_cam), 1).to(device)
    faces = torch.cat((hf, of + hv.shape[1]), 0).to(device)
    inst = torch.cat((torch.zeros(hf.shape[0], dtype=torch.long), torch.ones(of.shape[0], dtype=torch.long))).to(device)
    K = torch.tensor([[615.0, 0.0, 320.0], [0.0, 615.0, 240.0], [0.0, 0.0, 1.0]], device=device)
    return verts, faces, inst, obj_cam.to(device), PinholeCamera(K=K, width=640, height=480)


def crop_camera(cam: PinholeCamera, obj_verts: torch.Tensor, size: int) -> PinholeCamera:
    uv = cam.project(obj_verts)[0]
    lo, hi = uv.min(0).values, uv.max(0).values
    c = (lo + hi) / 2
    half = float((hi - lo).max()) * 0.85
    box = (float(c[0]) - half, float(c[1]) - half, float(c[0]) + half, float(c[1]) + half)
    return cam.crop_and_resize(box, size, size)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, repeats: int, device: str, warmup: int = 2) -> tuple[float, float, float]:
    """Median wall, median CPU and minimum wall time [ms]."""
    for _ in range(warmup):
        fn()
    _sync(device)
    walls, cpus = [], []
    for _ in range(repeats):
        c = time.process_time()
        t = time.perf_counter()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)) * 1e3, float(np.median(cpus)) * 1e3, float(np.min(walls)) * 1e3


def _targets(renderer: Renderer, verts, faces, inst, cam):
    shifted = verts + torch.tensor([0.002, -0.001, 0.003], device=verts.device)
    hard = renderer.hard(shifted, faces, cam, face_instance=inst)
    return (hard.instance == 1).float(), hard.mask.float(), torch.where(hard.mask, hard.zbuf, 0.0)


def _loss(out, obj, union, depth):
    loss = ((out.visible[:, 1] - obj) ** 2).sum() + ((out.union - union) ** 2).sum()
    if out.depth is not None:
        loss = loss + (union * (out.depth - depth) ** 2).sum()
    return loss


def bench_fast(renderer, verts, faces, inst, cam, targets, repeats, device, depth: bool) -> dict:
    v = verts.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            renderer(v, faces, cam, face_instance=inst, num_instances=2, depth=depth)

    def fwd_bwd():
        v.grad = None
        out = renderer(v, faces, cam, face_instance=inst, num_instances=2, depth=depth)
        _loss(out, *targets).backward()

    f_wall, f_cpu, f_min = _time(fwd, repeats, device)
    fb_wall, fb_cpu, fb_min = _time(fwd_bwd, repeats, device)
    return {"forward_ms": round(f_wall, 2), "forward_backward_ms": round(fb_wall, 2),
            "forward_min_ms": round(f_min, 2), "forward_backward_min_ms": round(fb_min, 2),
            "forward_cpu_time_ms": round(f_cpu, 2), "forward_backward_cpu_time_ms": round(fb_cpu, 2)}


def bench_dense(settings, verts, faces, inst, cam, targets, device, max_pixels: int, depth: bool) -> dict:
    """Dense reference on the first ``max_pixels`` pixels (whole rows), scaled to the full image."""
    rows = max(1, min(cam.height, max_pixels // cam.width))
    sub = PinholeCamera(K=cam.K, width=cam.width, height=rows)  # the top rows of the same image
    scale = cam.height / rows
    obj, union, dep = (t[:, :rows] for t in targets)
    v = verts.clone().requires_grad_(True)

    def run(backward: bool):
        with torch.set_grad_enabled(backward):
            out = dense_render(v, faces, sub, inst, 2, settings=settings, soft_depth=depth, chunk_pixels=1024,
                               checkpoint=backward)
            if backward:
                loss = ((out["visible"][:, 1] - obj) ** 2).sum() + ((out["union"] - union) ** 2).sum()
                if depth:
                    loss = loss + (union * (out["depth"] - dep) ** 2).sum()
                loss.backward()

    f_wall, f_cpu, _ = _time(lambda: run(False), 1, device, warmup=0)
    fb_wall, fb_cpu, _ = _time(lambda: run(True), 1, device, warmup=0)
    return {"forward_ms": round(f_wall * scale, 1), "forward_backward_ms": round(fb_wall * scale, 1),
            "forward_cpu_time_ms": round(f_cpu * scale, 1), "forward_backward_cpu_time_ms": round(fb_cpu * scale, 1),
            "dense_pixels_timed": rows * cam.width, "dense_extrapolated": rows < cam.height}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--dense-pixels", type=int, default=2048)
    ap.add_argument("--quick", action="store_true", help="3 repeats, dense on 1024 pixels")
    args = ap.parse_args(argv if argv is not None else [])
    if args.quick:
        args.repeats, args.dense_pixels = 3, 1024
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    settings = RenderSettings()
    result: dict = {
        "scene": "Allegro hand (3784 faces) + ellipsoid object (2112 faces), 615 px focal length, hand at 0.45 m",
        "settings": {"sigma_px2": settings.raster.sigma, "blur_threshold": settings.raster.blur_threshold,
                     "blur_margin_px": round(settings.raster.margin, 3),
                     "faces_per_pixel": settings.raster.faces_per_pixel, "tile_size": settings.raster.tile_size,
                     "gamma": settings.shading.gamma},
        "cpu_threads": bridge.resolve_threads(settings.raster.cpu_threads),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "command": "python bench/bench_render.py" + ("" if argv is None else " " + " ".join(argv)),
        "runs": [],
    }
    for device in devices:
        verts, faces, inst, obj_verts, full_cam = make_scene(0, device)
        renderer = Renderer(settings)
        for name, cam in (("128x128", crop_camera(full_cam, obj_verts, 128)),
                          ("256x256", crop_camera(full_cam, obj_verts, 256)), ("640x480", full_cam)):
            targets = _targets(renderer, verts, faces, inst, cam)
            with torch.no_grad():
                fr = renderer(verts, faces, cam, face_instance=inst).fragments
            run = {"device": device, "resolution": name, "pixels": cam.width * cam.height,
                   "faces": int(faces.shape[0]),
                   "mean_faces_within_margin_per_pixel": round(float(fr.count.float().mean()), 2),
                   "overflow_pixel_fraction": round(float(fr.overflow.float().mean()), 4)}
            for depth in (False, True):
                tag = "_depth" if depth else ""
                fast = bench_fast(renderer, verts, faces, inst, cam, targets, args.repeats, device, depth)
                dense = bench_dense(settings, verts, faces, inst, cam, targets, device, args.dense_pixels, depth)
                run[f"warp{tag}"] = fast
                run[f"dense{tag}"] = dense
                run[f"speedup{tag}"] = {
                    "forward": round(dense["forward_ms"] / fast["forward_ms"], 1),
                    "forward_backward": round(dense["forward_backward_ms"] / fast["forward_backward_ms"], 1),
                }
                print(f"{device} {name}{tag}: warp fwd {fast['forward_ms']:.1f} ms, fwd+bwd "
                      f"{fast['forward_backward_ms']:.1f} ms | dense fwd {dense['forward_ms']:.0f} ms, fwd+bwd "
                      f"{dense['forward_backward_ms']:.0f} ms | x{run[f'speedup{tag}']['forward_backward']}",
                      flush=True)
            result["runs"].append(run)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
