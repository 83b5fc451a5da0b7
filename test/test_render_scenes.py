"""Test scenes of the renderer tests and benchmark: the Allegro hand grasping a ~2k-face ellipsoid.

Importable helpers (``allegro_scene``, ``object_mesh``, ``look_camera``) plus sanity tests of the scene itself.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from handypriors_core.geometry import PinholeCamera, axis_angle_to_matrix, make_transform, transform_points
from handypriors_core.models import URDFHand

REPO = Path(__file__).resolve().parents[1]
HAND = 0
OBJECT = 1

#: hand frame (palm faces +x, fingers along +z) -> camera frame looking at the palm side
_HAND_AXES_IN_CAMERA = [[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]


@functools.lru_cache(maxsize=2)
def allegro_hand(dtype: torch.dtype = torch.float64) -> URDFHand:
    return URDFHand.from_urdf(REPO / "urdf" / "allegro_hand_right.urdf", dtype=dtype)


@functools.lru_cache(maxsize=4)
def object_mesh(count: int = 23) -> tuple[np.ndarray, np.ndarray]:
    """Watertight ellipsoid (3.2 x 4.5 x 3.2 cm semi-axes); 2112 faces for ``count = 23``."""
    m = trimesh.creation.uv_sphere(radius=1.0, count=[count, count])
    v = np.asarray(m.vertices) * np.array([0.032, 0.045, 0.032])
    return v, np.asarray(m.faces, dtype=np.int64)


def camera_640(dtype=torch.float64) -> PinholeCamera:
    """RealSense-like 640x480 camera, 615 px focal length."""
    K = torch.tensor([[615.0, 0.0, 320.0], [0.0, 615.0, 240.0], [0.0, 0.0, 1.0]], dtype=dtype)
    return PinholeCamera(K=K, width=640, height=480)


@dataclass
class Scene:
    verts: torch.Tensor  # (1, V, 3) camera frame [m]
    faces: torch.Tensor  # (F, 3) long
    face_instance: torch.Tensor  # (F,) long, 0 hand, 1 object
    hand_verts: torch.Tensor
    hand_faces: torch.Tensor
    object_verts: torch.Tensor  # (1, Vo, 3) camera frame
    object_faces: torch.Tensor
    object2camera: torch.Tensor  # (4, 4)
    camera: PinholeCamera  # full 640x480
    q: torch.Tensor  # (J,) joint angles [rad]
    hand2camera: torch.Tensor  # (4, 4)


def allegro_scene(seed: int = 0, dtype: torch.dtype = torch.float64, count: int = 23) -> Scene:
    """Random pose of the Allegro hand ~0.45 m in front of the camera holding the ellipsoid."""
    g = torch.Generator().manual_seed(seed)
    hand = allegro_hand(dtype)
    lo, hi = hand.lower_limits, hand.upper_limits
    q = lo + (hi - lo) * (0.25 + 0.35 * torch.rand(lo.shape, generator=g, dtype=dtype))
    hv, hf, _ = hand.mesh(q[None])
    jitter = (torch.rand(3, generator=g, dtype=dtype) - 0.5) * 0.5
    R = axis_angle_to_matrix(jitter) @ torch.tensor(_HAND_AXES_IN_CAMERA, dtype=dtype)
    t = torch.tensor([0.0, 0.04, 0.45], dtype=dtype) + (torch.rand(3, generator=g, dtype=dtype) - 0.5) * 0.04
    hand2camera = make_transform(R, t)
    ov, of = object_mesh(count)
    obj_in_hand = make_transform(
        axis_angle_to_matrix((torch.rand(3, generator=g, dtype=dtype) - 0.5) * 2.0),
        torch.tensor([0.055, 0.03, 0.075], dtype=dtype),
    )
    object2camera = hand2camera @ obj_in_hand
    hand_cam = transform_points(hand2camera, hv)
    obj_cam = transform_points(object2camera, torch.as_tensor(ov, dtype=dtype)[None])
    faces_o = torch.as_tensor(of)
    verts = torch.cat((hand_cam, obj_cam), 1)
    faces = torch.cat((hf, faces_o + hv.shape[1]), 0)
    inst = torch.cat((torch.zeros(hf.shape[0], dtype=torch.long), torch.ones(faces_o.shape[0], dtype=torch.long)))
    return Scene(verts, faces, inst, hand_cam, hf, obj_cam, faces_o, object2camera, camera_640(dtype), q, hand2camera)


def object_crop(scene: Scene, size: int, margin: float = 0.35) -> PinholeCamera:
    """Square ROI camera around the object's projection (``margin`` of its size on each side), size x size."""
    cam = scene.camera
    uv = cam.project(scene.object_verts)[0]
    lo, hi = uv.min(0).values, uv.max(0).values
    c = (lo + hi) / 2
    half = float((hi - lo).max()) * (0.5 + margin)
    box = (float(c[0]) - half, float(c[1]) - half, float(c[0]) + half, float(c[1]) + half)
    return cam.crop_and_resize(box, size, size)


# ------------------------------------------------------------------------------------------------ tests
def test_scene_sizes_and_view():
    s = allegro_scene(0)
    assert 3000 <= int((s.face_instance == HAND).sum()) <= 4500
    assert 1900 <= int((s.face_instance == OBJECT).sum()) <= 2200
    z = s.verts[0, :, 2]
    assert 0.3 < float(z.min()) and float(z.max()) < 0.7
    uv = s.camera.project(s.verts)[0]
    assert (uv[:, 0] > 0).all() and (uv[:, 0] < 640).all() and (uv[:, 1] > 0).all() and (uv[:, 1] < 480).all()


def test_object_crop_centres_object():
    s = allegro_scene(1)
    cam = object_crop(s, 128)
    uv = cam.project(s.object_verts)[0]
    assert cam.width == 128 and cam.height == 128
    assert float(uv.min()) > 0 and float(uv.max()) < 128
    assert math.isclose(float((uv.min(0).values + uv.max(0).values).mean()) / 2, 63.5, abs_tol=2.0)
