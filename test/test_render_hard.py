"""Hard mode and sigma -> 0 against independent rasterizations (OpenCV fillPoly, ray casting); occlusion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import trimesh
from test_render_scenes import HAND, OBJECT, allegro_scene, object_crop

from handypriors_core.geometry import PinholeCamera
from handypriors_core.render import RasterSettings, Renderer, RenderSettings, join_meshes


def fillpoly_mask(verts: torch.Tensor, faces: torch.Tensor, cam: PinholeCamera, ss: int = 4) -> np.ndarray:
    """Union of the projected triangles, each drawn with cv2.fillPoly (8 bits of sub-pixel precision).

    fillPoly also fills every pixel its outline touches (a half-pixel-fat silhouette), so it draws at ``ss``
    times the resolution and a pixel counts when most of its ``ss x ss`` sub-pixels are filled.
    """
    uv = cam.project(verts)[0].detach().double().numpy()
    # sub-pixel centres of pixel u sit at u - (ss-1)/(2 ss) ... : sub-pixel coordinate U = ss * u + (ss - 1) / 2
    pts = np.round((uv * ss + (ss - 1) / 2.0) * 256.0).astype(np.int32)
    mask = np.zeros((cam.height * ss, cam.width * ss), np.uint8)
    for tri in pts[faces.numpy()]:
        cv2.fillPoly(mask, [tri.reshape(3, 1, 2)], 1, lineType=cv2.LINE_8, shift=8)
    return mask.reshape(cam.height, ss, cam.width, ss).mean((1, 3)) > 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def ray_depth(verts: np.ndarray, faces: np.ndarray, cam: PinholeCamera, pix: np.ndarray) -> np.ndarray:
    """Nearest ray-triangle hit depth [m] (Moller-Trumbore) for pixel centres ``pix (N, 2)``; inf on a miss."""
    K = cam.K.double().numpy()
    d = np.stack(((pix[:, 0] - K[0, 2]) / K[0, 0], (pix[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(pix))), -1)
    tri = verts[faces]  # (F, 3, 3)
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    out = np.full(len(pix), np.inf)
    for s in range(0, len(pix), 256):
        dd = d[s:s + 256, None, :]  # (n, 1, 3)
        h = np.cross(dd, e2[None])
        a = (e1[None] * h).sum(-1)
        ok = np.abs(a) > 1e-14
        f = np.where(ok, 1.0 / np.where(ok, a, 1.0), 0.0)
        svec = -tri[None, :, 0]  # ray origin (0, 0, 0) - v0
        u = f * (svec * h).sum(-1)
        q = np.cross(svec, e1[None])
        v = f * (dd * q).sum(-1)
        t = f * (e2[None] * q).sum(-1)
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        out[s:s + 256] = np.where(hit, t, np.inf).min(1)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_and_sharp_silhouettes_match_fillpoly(seed):
    s = allegro_scene(seed, dtype=torch.float32)
    cam = s.camera.to(dtype=torch.float32)
    r = Renderer(RenderSettings(raster=RasterSettings(sigma=1e-3)))
    hard = r.hard(s.verts, s.faces, cam, face_instance=s.face_instance)
    soft = r(s.verts, s.faces, cam, face_instance=s.face_instance)
    union_ref = fillpoly_mask(s.verts, s.faces, cam)
    assert union_ref.sum() > 20000
    assert iou(hard.mask[0].numpy(), union_ref) >= 0.995
    assert iou(soft.union[0].numpy() > 0.5, union_ref) >= 0.995
    for k, (v, f) in {HAND: (s.hand_verts, s.hand_faces), OBJECT: (s.object_verts, s.object_faces)}.items():
        ref = fillpoly_mask(v.float(), f, cam)
        assert iou(soft.full[0, k].numpy() > 0.5, ref) >= 0.995
        assert iou(r.hard(v.float(), f, cam).mask[0].numpy(), ref) >= 0.995


def test_hard_depth_matches_ray_casting():
    s = allegro_scene(4, dtype=torch.float32)
    cam = object_crop(s, 160)
    hard = Renderer().hard(s.verts, s.faces, cam, face_instance=s.face_instance)
    ys, xs = torch.nonzero(hard.mask[0], as_tuple=True)
    assert len(ys) > 5000
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(ys), generator=g)[:3000]
    pix = torch.stack((xs[pick], ys[pick]), -1).double().numpy()
    ref = ray_depth(s.verts[0].double().numpy(), s.faces.numpy(), cam.to(dtype=torch.float64), pix)
    z = hard.zbuf[0][ys[pick], xs[pick]].double().numpy()
    err = np.abs(z - ref)
    assert np.isfinite(ref).mean() > 0.995
    assert (err < 1e-4).mean() >= 0.995  # misses are pixel centres on an occluding edge
    assert np.median(err) < 1e-6
    # the ray hits the reported face at the reported depth (perspective-correct barycentrics)
    face = hard.face[0][ys[pick], xs[pick]].numpy()
    tri = s.verts[0].double().numpy()[s.faces.numpy()[face]]
    bary = hard.bary[0][ys[pick], xs[pick]].double().numpy()
    p = (bary[:, :, None] * tri).sum(1)
    assert np.abs(p[:, 2] - z).max() < 1e-5
    uv = cam.to(dtype=torch.float64).project(torch.from_numpy(p)[None])[0].numpy()
    assert np.abs(uv - pix).max() < 1e-2


def _finger_scene(finger_z: float):
    K = torch.tensor([[200.0, 0.0, 40.0], [0.0, 200.0, 30.0], [0.0, 0.0, 1.0]])
    cam = PinholeCamera(K=K, width=80, height=60)
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    finger = trimesh.creation.box(extents=(0.02, 0.2, 0.02))
    bv = torch.tensor(ball.vertices, dtype=torch.float32)[None] + torch.tensor([0.0, 0.0, 0.5])
    fv = torch.tensor(finger.vertices, dtype=torch.float32)[None] + torch.tensor([0.01, 0.0, finger_z])
    verts, faces, inst = join_meshes([(fv, torch.tensor(finger.faces)), (bv, torch.tensor(ball.faces))])
    return verts, faces, inst, cam


def test_finger_in_front_removes_object_from_visible_silhouette():
    verts, faces, inst, cam = _finger_scene(0.4)
    r = Renderer()
    out = r(verts, faces, cam, face_instance=inst, num_instances=2)
    hard = r.hard(verts, faces, cam, face_instance=inst)
    obj_alone = r.hard(verts[:, 8:], faces[12:] - 8, cam).mask[0]
    finger = hard.instance[0] == HAND
    over = finger & obj_alone  # finger pixels over the ball
    free = obj_alone & ~r.hard(verts[:, :8], faces[:12], cam).mask[0]
    assert int(over.sum()) > 100 and int(free.sum()) > 500
    core = torch.nn.functional.max_pool2d((~over).float()[None, None], 5, 1, 2)[0, 0] < 0.5  # 2 px inside
    # the full silhouette ignores the occluder (SoftRas coverage dips to 1 - 0.5^4 on the ball's internal edges)
    assert float(out.full[0, OBJECT][core].min()) > 0.9 and float(out.full[0, OBJECT][core].mean()) > 0.97
    # the finger hides the ball there (up to SoftRas' 0.5 coverage of each face on the finger's internal edges)
    hidden = out.visible[0, OBJECT][core]
    assert float(hidden.median()) < 1e-3 and float(hidden.mean()) < 0.02 and float(hidden.max()) < 0.1
    assert float(out.visible[0, HAND][core].median()) > 0.99 and float(out.visible[0, HAND][core].min()) > 0.9
    assert float(out.visible[0, OBJECT][free].mean()) > 0.9
    torch.testing.assert_close(out.visible.sum(1), out.union, atol=1e-5, rtol=0)
    # hard mode agrees: the ball is missing from the instance map where the finger is in front
    assert not bool((hard.instance[0][over] == OBJECT).any())


def test_finger_behind_object_does_not_occlude():
    verts, faces, inst, cam = _finger_scene(0.6)
    r = Renderer()
    out = r(verts, faces, cam, face_instance=inst, num_instances=2)
    obj = r.hard(verts[:, 8:], faces[12:] - 8, cam).mask[0]
    core = torch.nn.functional.max_pool2d((~obj).float()[None, None], 5, 1, 2)[0, 0] < 0.5
    assert float(out.visible[0, OBJECT][core].min()) > 0.9 and float(out.visible[0, OBJECT][core].mean()) > 0.97
    assert float(out.visible[0, HAND][core].median()) < 1e-3 and float(out.visible[0, HAND][core].max()) < 0.1
    assert float(out.full[0, HAND].max()) > 0.99


def test_allegro_hand_occludes_object():
    """In the grasp scenes the fingers hide part of the object: full > visible exactly where the hand is in front."""
    s = allegro_scene(0, dtype=torch.float32)
    cam = object_crop(s, 128)
    r = Renderer()
    out = r(s.verts, s.faces, cam, face_instance=s.face_instance)
    hard = r.hard(s.verts, s.faces, cam, face_instance=s.face_instance)
    alone = r.hard(s.object_verts.float(), s.object_faces, cam).mask[0]
    hidden = alone & (hard.instance[0] == HAND)
    hidden = torch.nn.functional.max_pool2d((~hidden).float()[None, None], 5, 1, 2)[0, 0] < 0.5  # 2 px inside
    assert int(hidden.sum()) > 50
    assert float(out.visible[0, OBJECT][hidden].mean()) < 0.05
    assert float(out.full[0, OBJECT][hidden].mean()) > 0.8
    seen = hard.instance[0] == OBJECT
    assert float(out.visible[0, OBJECT][seen].mean()) > 0.9
