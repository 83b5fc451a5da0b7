"""Benchmark of the hand model: FK / mesh timing, mesh size, and silhouette agreement with the real hand.

Writes ``bench/results/models.json``. The silhouette part needs the public ``allegro_hand_description``
(``$HANDYPRIORS_SHARED_DIR`` or ``../shared``) and is skipped without it: it projects both posed meshes
orthographically along the hand's x, y and z axes (0.5 mm pixels) and reports the mask IoU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import median_ms, shared_dir, write_results  # after the sys.path line above
from handypriors_core.models import URDFHand, allegro_urdf


def _mask(verts: np.ndarray, faces: np.ndarray, axis: int, lo: np.ndarray, px: float, size: tuple[int, int]):
    import cv2

    keep = [a for a in range(3) if a != axis]
    uv = np.round((verts[:, keep] - lo[keep]) / px).astype(np.int32)
    img = np.zeros(size, dtype=np.uint8)
    for tri in uv[faces]:  # one call per triangle: fillPoly over many polygons would XOR their overlaps
        cv2.fillConvexPoly(img, tri, 1)
    return img.astype(bool)


def silhouette_iou(ours: URDFHand, public: URDFHand, n_configs: int = 5, px: float = 5e-4) -> dict:
    rng = np.random.default_rng(0)
    lo, hi = ours.lower_limits.numpy(), ours.upper_limits.numpy()
    q = torch.from_numpy(lo + (hi - lo) * rng.random((n_configs, ours.num_joints)))
    va, fa, _ = ours.mesh(q.to(ours.dtype))
    vb, fb, _ = public.mesh(q.to(public.dtype))
    out = {}
    for axis, name in enumerate(("x (palm normal)", "y (across the palm)", "z (along the fingers)")):
        ious = []
        for b in range(n_configs):
            a, c = va[b].double().numpy(), vb[b].double().numpy()
            low = np.minimum(a.min(0), c.min(0)) - 0.01
            span = np.maximum(a.max(0), c.max(0)) + 0.01 - low
            keep = [k for k in range(3) if k != axis]
            size = (int(span[keep[1]] / px) + 1, int(span[keep[0]] / px) + 1)
            ma = _mask(a, fa.numpy(), axis, low, px, size)
            mb = _mask(c, fb.numpy(), axis, low, px, size)
            ious.append((ma & mb).sum() / max((ma | mb).sum(), 1))
        out[name] = round(float(np.mean(ious)), 4)
    return out


def main() -> dict:
    torch.set_num_threads(1)
    hand = URDFHand.from_urdf(allegro_urdf())
    result: dict = {
        "mesh_vertices": int(hand.vertex_link.shape[0]),
        "mesh_faces": int(hand.faces.shape[0]),
        "surface_points": int(hand.point_link.shape[0]),
        "contact_candidates": int(hand.contact_candidate_link.shape[0]),
        "threads": 1,
        "device": "cpu",
    }
    for B in (1, 64):
        q = hand.clamp(torch.rand(B, hand.num_joints) * 2.0 - 0.5)
        qg = q.clone().requires_grad_(True)
        result[f"fk_ms_B{B}"] = median_ms(lambda q=q: hand.forward_kinematics(q), 100)
        result[f"mesh_ms_B{B}"] = median_ms(lambda q=q: hand.mesh(q), 50)
        result[f"mesh_fwd_bwd_ms_B{B}"] = median_ms(lambda qg=qg: hand.mesh(qg)[0].sum().backward(), 20)
    shared = shared_dir() / "data" / "allegro_hand_description"
    if shared.is_dir():
        public = URDFHand.from_urdf(shared / "allegro_hand_description_right.urdf", package_paths=[shared.parent],
                                    geometry="visual", points_per_link=0, contact_points_per_link=0)
        result["public_visual_mesh_faces"] = int(public.faces.shape[0])
        result["silhouette_iou_vs_public_visual_meshes"] = silhouette_iou(hand, public)
    write_results("models", result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
