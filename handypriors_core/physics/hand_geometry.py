"""Reverse contact query: points (object surface samples) against the posed hand mesh.

A hand point cloud tested against the object misses penetration where an object edge or corner pokes into a
finger or the palm between hand samples. Testing object samples against the hand's triangle mesh
(``URDFHand.mesh(q)``: the union of the links' closed meshes) catches it.

Sign: **negative inside the hand, positive outside, metres**, from the winding number of the whole hand mesh
(overlapping link meshes add up, so a point inside any link is inside). Inside the hand the magnitude is the
distance to the nearest link surface, which may belong to another overlapping link, so it can underestimate
the depth into the union; outside it is exact.

Gradients: ``distance`` carries gradients to the query points and to the hand vertices (hence to the joint
angles through forward kinematics); ``closest_point``, ``normal`` and ``face`` carry none (see :mod:`.sdf`).
One warp mesh per batch element is kept and refitted (``wp.Mesh.refit``) on every call. The mesh sets are
cached per (device, batch size, vertex count), the last ``_MAX_CACHED`` of them, so callers that alternate
batch sizes (an optimizer batch and single-pose checks) do not rebuild BVHs every call.
"""

from __future__ import annotations

import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError
from .sdf import SignedDistance, _check_points, check_same_batch, evaluate_closest_faces
from .settings import ContactSettings
from .warp_bridge import WarpMeshSet, closest_faces

__all__ = ["HandGeometry"]

_MAX_CACHED = 4


class HandGeometry:
    """Signed distance to a posed triangle mesh that changes every call (the hand).

    Args:
        faces: ``(F, 3)`` int triangle vertex indices of the hand mesh (``URDFHand.mesh(q)[1]``),
            counter-clockwise seen from outside.
        settings: query settings; defaults if ``None``.
    """

    def __init__(self, faces: torch.Tensor, settings: ContactSettings | None = None):
        check_shape(faces, (None, 3), "faces")
        if faces.dtype.is_floating_point or faces.dtype == torch.bool:
            raise InvalidValueError(f"faces must hold integer vertex indices; got dtype {faces.dtype}")
        if faces.shape[0] < 1 or int(faces.min()) < 0:
            raise InvalidValueError("faces must be non-empty with non-negative vertex indices")
        self.settings = settings if settings is not None else ContactSettings()
        self._faces = faces.detach().to(torch.int64).clone()
        self._meshes: dict[tuple[torch.device, int, int], WarpMeshSet] = {}
        self._faces_on: dict[torch.device, torch.Tensor] = {}

    @property
    def faces(self) -> torch.Tensor:
        """``(F, 3)`` int64 triangle vertex indices."""
        return self._faces

    def _prepare(self, verts: torch.Tensor) -> WarpMeshSet:
        check_shape(verts, (None, None, 3), "verts")
        check_finite(verts, "verts")
        if int(self._faces.max()) >= verts.shape[1]:
            raise InvalidValueError(f"faces index vertex {int(self._faces.max())} but verts has {verts.shape[1]}")
        key = (verts.device, verts.shape[0], verts.shape[1])
        meshes = self._meshes.pop(key, None)
        if meshes is None:
            meshes = WarpMeshSet(verts, self._faces.to(verts.device),
                                 support_winding_number=self.settings.sign_method == "winding_number")
            if len(self._meshes) >= _MAX_CACHED:
                self._meshes.pop(next(iter(self._meshes)))  # least recently used
        else:
            meshes.update(verts)
        self._meshes[key] = meshes  # (re)inserted last: most recently used
        return meshes

    def signed_distance(self, points: torch.Tensor, verts: torch.Tensor) -> SignedDistance:
        """Signed distance of ``points (B, N, 3)`` to the hand mesh ``verts (B, V, 3)`` (same frame, metres).

        Returns :class:`.sdf.SignedDistance` in that frame: ``distance (B, N)`` [m] negative inside the hand,
        differentiable with respect to ``points`` and ``verts``.
        """
        _check_points(points, "points")
        check_same_batch(points, verts, "points", "verts")
        B, N, _ = points.shape
        meshes = self._prepare(verts)
        face, bary, sign = closest_faces(meshes, points.reshape(-1, 3), max(N, 1), self.settings)
        if points.device not in self._faces_on:
            self._faces_on[points.device] = self._faces.to(points.device)
        mesh_index = torch.arange(B, device=points.device)
        return evaluate_closest_faces(points, verts, self._faces_on[points.device], mesh_index, face.view(B, N),
                                      bary.view(B, N, 2), sign.view(B, N), self.settings.max_query_distance)

    def contains(self, points: torch.Tensor, verts: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` bool: whether ``points (B, N, 3)`` lie inside the hand mesh ``verts (B, V, 3)``."""
        _check_points(points, "points")
        check_same_batch(points, verts, "points", "verts")
        B, N, _ = points.shape
        _, _, sign = closest_faces(self._prepare(verts), points.reshape(-1, 3), max(N, 1), self.settings)
        return (sign < 0).view(B, N)
