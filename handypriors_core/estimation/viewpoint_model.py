"""Sparse viewpoint model of an object's silhouette (in the spirit of ICG/SRT3D): contour points per view.

Views lie on a geodesic sphere around the object (an icosahedron subdivided ``subdivisions`` times: 42, 162,
642, 2562 views); each view renders the object's silhouette (z-buffer, :meth:`Renderer.hard`) with a pinhole
camera looking at the object's centre from ``sphere_radius``, and keeps ``points_per_view`` contour pixels with
their outward 2D normals, lifted to the object frame: the surface point under the pixel and the normal as a
direction perpendicular to the view. At run time the view closest to the current direction towards the camera
gives the contour points of the pose (:meth:`ViewpointModel.closest_view`).

Built once per mesh and cached on disk (``.npz``), keyed by a hash of the mesh's vertices and faces and of the
model settings, so a mesh edited in place gets a new model.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry.camera import PinholeCamera
from ..render.renderer import Renderer

__all__ = ["ViewpointModel", "ViewpointModelSettings", "geodesic_directions"]

_F32 = torch.float32
_MODEL_VERSION = 2  # part of the cache key: models built by earlier code are not read


@dataclass(frozen=True)
class ViewpointModelSettings:
    """Attributes: subdivisions of the icosahedron (views), sphere_radius [m], points_per_view, image_size [px]
    of the silhouette renders, batch (views rendered together)."""

    subdivisions: int = 3
    sphere_radius: float = 0.8
    points_per_view: int = 200
    image_size: int = 200
    batch: int = 32


def geodesic_directions(subdivisions: int) -> torch.Tensor:
    """``(V, 3)`` unit vectors: vertices of an icosahedron subdivided ``subdivisions`` times (float64)."""
    t = (1 + 5 ** 0.5) / 2
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
             (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
             (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in verts]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def middle(a: int, b: int, cache: dict = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                cache[key] = len(v) - 1
            return cache[key]

        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    return torch.tensor(np.stack(v), dtype=torch.float64)


def _look_at(direction: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    """``(V, 4, 4)`` object2camera of cameras at ``centre + radius * direction`` looking at ``centre``."""
    z = -direction  # camera z axis points at the object
    up = torch.where((z[:, 1].abs() > 0.9)[:, None], torch.tensor([1.0, 0, 0], dtype=z.dtype),
                     torch.tensor([0, 1.0, 0], dtype=z.dtype))
    x = F.normalize(torch.linalg.cross(up, z, dim=-1), dim=-1)
    y = torch.linalg.cross(z, x, dim=-1)
    R_c2o = torch.stack((x, y, z), -1)  # columns: camera axes in the object frame
    cam_pos = centre + radius * direction
    T = torch.zeros(direction.shape[0], 4, 4, dtype=z.dtype)
    T[:, :3, :3] = R_c2o.transpose(1, 2)
    T[:, :3, 3] = -(R_c2o.transpose(1, 2) @ cam_pos[:, :, None])[..., 0]
    T[:, 3, 3] = 1
    return T


@dataclass
class ViewpointModel:
    """Contour points of every view.

    Attributes:
        directions: ``(V, 3)`` unit directions from the object's centre towards each view's camera [object frame].
        points: ``(V, N, 3)`` contour points [m, object frame]; normals: ``(V, N, 3)`` outward contour normals
            (unit, perpendicular to the view direction); valid: ``(V, N)`` bool (views with fewer contour pixels).
    """

    directions: torch.Tensor
    points: torch.Tensor
    normals: torch.Tensor
    valid: torch.Tensor

    @staticmethod
    def key(verts: torch.Tensor, faces: torch.Tensor, settings: ViewpointModelSettings) -> str:
        """Content hash of the mesh and the settings."""
        h = hashlib.sha256()
        h.update(verts.detach().cpu().to(torch.float32).numpy().tobytes())
        h.update(faces.detach().cpu().to(torch.int64).numpy().tobytes())
        h.update(repr(settings).encode())
        h.update(f"model version {_MODEL_VERSION}".encode())
        return h.hexdigest()[:24]

    @classmethod
    def load_or_build(cls, verts: torch.Tensor, faces: torch.Tensor, settings: ViewpointModelSettings,
                      cache_dir: str | os.PathLike | None) -> ViewpointModel:
        """The cached model of this mesh (``cache_dir/viewpoint_<hash>.npz``), built and written when missing."""
        path = Path(cache_dir) / f"viewpoint_{cls.key(verts, faces, settings)}.npz" if cache_dir else None
        if path is not None and path.is_file():
            data = np.load(path)
            return cls(*(torch.from_numpy(data[k]) for k in ("directions", "points", "normals", "valid")))
        model = cls.build(verts, faces, settings)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, directions=model.directions.numpy(), points=model.points.numpy(),
                     normals=model.normals.numpy(), valid=model.valid.numpy())
            os.replace(tmp, path)
        return model

    @classmethod
    def build(cls, verts: torch.Tensor, faces: torch.Tensor, settings: ViewpointModelSettings) -> ViewpointModel:
        """Render every view's silhouette and extract its contour points (CPU, no gradients)."""
        verts = verts.detach().to("cpu", torch.float64)
        faces = faces.detach().cpu()
        centre = 0.5 * (verts.min(0).values + verts.max(0).values)
        extent = float((verts - centre).norm(dim=-1).max())
        S = settings.image_size
        f = 0.5 * S * settings.sphere_radius / (1.3 * extent)  # the object fills ~75 % of the image
        camera = PinholeCamera.from_camera_info([f, 0, (S - 1) / 2, 0, f, (S - 1) / 2, 0, 0, 1], [], S, S)
        directions = geodesic_directions(settings.subdivisions)
        V, N = directions.shape[0], settings.points_per_view
        points = torch.zeros(V, N, 3, dtype=_F32)
        normals = torch.zeros(V, N, 3, dtype=_F32)
        valid = torch.zeros(V, N, dtype=torch.bool)
        renderer = Renderer()
        sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
        for start in range(0, V, settings.batch):
            T = _look_at(directions[start:start + settings.batch], centre, settings.sphere_radius)
            posed = (verts @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]).to(_F32)
            with torch.no_grad():
                out = renderer.hard(posed, faces, camera)
            mask = out.mask.float()[:, None]  # (B, 1, S, S)
            inner = -F.max_pool2d(-mask, 3, stride=1, padding=1)
            contour = (mask > 0) & (inner < 1)
            blurred = F.avg_pool2d(mask, 5, stride=1, padding=2)
            gx = F.conv2d(blurred, sobel[None, None], padding=1)
            gy = F.conv2d(blurred, sobel.T.contiguous()[None, None], padding=1)
            for b in range(T.shape[0]):
                ys, xs = torch.nonzero(contour[b, 0], as_tuple=True)
                if ys.numel() < 8:
                    continue
                # a random subset (fixed seed per view) spreads the points along the whole contour
                pick = torch.randperm(ys.numel(), generator=torch.Generator().manual_seed(start + b))[:N]
                ys, xs = ys[pick], xs[pick]
                z = out.zbuf[b, ys, xs].double()
                n2 = -torch.stack((gx[b, 0, ys, xs], gy[b, 0, ys, xs]), -1).double()
                n2 = F.normalize(n2, dim=-1)
                # the silhouette's edge lies half a pixel outside the centre of its last pixel
                uv = torch.stack((xs, ys), -1).double() + 0.5 * n2
                p_cam = camera.to(dtype=torch.float64).unproject(uv[None], z[None])[0]
                n_cam = torch.cat((n2, torch.zeros_like(n2[:, :1])), -1)
                R, t = T[b, :3, :3], T[b, :3, 3]
                k = ys.numel()
                points[start + b, :k] = ((p_cam - t) @ R).to(_F32)
                normals[start + b, :k] = (n_cam @ R).to(_F32)
                valid[start + b, :k] = True
        return cls(directions.to(_F32), points, normals, valid)

    def closest_view(self, object2camera: torch.Tensor) -> int:
        """Index of the view whose direction is closest to the camera's, seen from the object at ``(4, 4)``."""
        R, t = object2camera[:3, :3].double(), object2camera[:3, 3].double()
        towards_camera = F.normalize(-(R.T @ t), dim=0).to(self.directions)
        return int(torch.argmax(self.directions @ towards_camera))

