"""Interpenetration metrics between hand and object, as reported in the hand-object literature.

* :func:`interpenetration_volume`: volume inside both the hand mesh and the object mesh [cm^3], voxelised:
  voxel centres over the overlap of the two bounding boxes are tested against both meshes (winding-number
  inside test). A coarse grid of ``coarse_factor`` voxels per cell first classifies whole cells: signed
  distances are 1-Lipschitz, so a cell whose centre is more than the cell's half-diagonal outside either shape
  holds no point of the intersection, and one whose centre is more than that inside both lies wholly inside.
  Only the cells between (the boundary band) are sampled at ``voxel_size``. (On a mesh with holes the
  winding number can cross 1/2 away from the surface; a wholly-inside cell there may be miscounted.)
* :func:`overlap_volume`: the same for any two signed-distance functions (used for primitives in tests).
* :func:`max_penetration_depth`: ``max(0, max_i -sdf_i)`` in millimetres.

These are metrics: nothing here carries gradients (the losses are in :mod:`handypriors_core.priors.losses`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..checks import check_finite, check_shape
from ..geometry.transforms import invert_transform, transform_points
from .hand_geometry import HandGeometry
from .sdf import ObjectSDF
from .settings import InterpenetrationSettings

__all__ = ["interpenetration_volume", "max_penetration_depth", "overlap_volume"]

_CM3_PER_M3 = 1e6

#: ``(P, 3)`` points [m] -> ``(P,)`` signed distance [m], negative inside.
SignedDistanceFn = Callable[[torch.Tensor], torch.Tensor]


def _both_below(sdf_a: SignedDistanceFn, sdf_b: SignedDistanceFn, points: torch.Tensor, margin: float):
    """``(P,)`` bool ``sdf_a < margin and sdf_b < margin`` and ``(P,)`` the larger of the two signed distances
    (``+inf`` where ``sdf_a >= margin``: ``sdf_b`` is only evaluated where needed)."""
    sd_a = sdf_a(points)
    worst = torch.full_like(sd_a, float("inf"))
    idx = (sd_a < margin).nonzero()[:, 0]
    if idx.numel() > 0:
        worst[idx] = torch.maximum(sd_a[idx], sdf_b(points[idx]))
    return worst < margin, worst


def overlap_volume(
    sdf_a: SignedDistanceFn,
    sdf_b: SignedDistanceFn,
    lower: torch.Tensor,
    upper: torch.Tensor,
    settings: InterpenetrationSettings | None = None,
) -> torch.Tensor:
    """Volume [cm^3] of the intersection of two shapes inside the box ``[lower, upper]`` (0-dim tensor).

    Args:
        sdf_a, sdf_b: ``(P, 3) -> (P,)`` signed distances [m], negative inside (need not be exact inside).
        lower, upper: ``(3,)`` [m] a box containing the intersection (e.g. the overlap of both bounding boxes).
        settings: voxel size [m], coarse factor and chunk size; defaults if ``None``.
    """
    settings = settings if settings is not None else InterpenetrationSettings()
    check_shape(lower, (3,), "lower")
    check_shape(upper, (3,), "upper")
    dtype, device = lower.dtype, lower.device
    zero = torch.zeros((), dtype=dtype, device=device)
    extent = upper - lower
    if (extent <= 0).any():
        return zero
    voxel = settings.voxel_size
    k = settings.coarse_factor
    cell = voxel * k
    with torch.no_grad():
        counts = torch.ceil(extent / cell).long().clamp_min(1)
        axes = [lower[d] + (torch.arange(int(counts[d]), dtype=dtype, device=device) + 0.5) * cell for d in range(3)]
        centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        half_diagonal = 0.5 * math.sqrt(3.0) * cell * (1 + 1e-6)
        near, worst = _both_below(sdf_a, sdf_b, centres, half_diagonal)
        full = worst < -half_diagonal  # the whole cell is inside both shapes
        inside = int(full.sum()) * k ** 3
        boundary = centres[near & ~full]
        if k > 1 and boundary.shape[0] > 0:
            sub = (torch.arange(k, dtype=dtype, device=device) + 0.5) * voxel - 0.5 * cell
            offsets = torch.stack(torch.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)  # (k^3, 3)
            cells_per_chunk = max(1, settings.max_points_per_chunk // offsets.shape[0])
            for start in range(0, boundary.shape[0], cells_per_chunk):
                points = (boundary[start:start + cells_per_chunk, None, :] + offsets).reshape(-1, 3)
                inside += int(_both_below(sdf_a, sdf_b, points, 0.0)[0].sum())
        elif boundary.shape[0] > 0:  # k == 1: the cells are the voxels, their centres decide
            inside += int((worst[near & ~full] < 0).sum())
    return torch.tensor(inside * voxel ** 3 * _CM3_PER_M3, dtype=dtype, device=device)


def interpenetration_volume(
    object_sdf: ObjectSDF,
    object2camera: torch.Tensor,
    hand_verts_cam: torch.Tensor,
    hand_faces: torch.Tensor,
    settings: InterpenetrationSettings | None = None,
) -> torch.Tensor:
    """Volume inside both the hand and the object, ``(B,)`` [cm^3] (no gradient).

    Args:
        object_sdf: the object mesh (object frame).
        object2camera: ``(B, 4, 4)`` object pose.
        hand_verts_cam: ``(B, V, 3)`` [m] posed hand mesh vertices in the camera frame (``URDFHand.mesh(q)``
            mapped by ``hand2camera``).
        hand_faces: ``(F, 3)`` int hand mesh triangles (closed link meshes; their union is the hand).
        settings: voxel size etc.; defaults (1 mm voxels) if ``None``.
    """
    check_shape(hand_verts_cam, (None, None, 3), "hand_verts_cam")
    check_finite(hand_verts_cam, "hand_verts_cam")
    B = hand_verts_cam.shape[0]
    check_shape(object2camera, (B, 4, 4), "object2camera")
    check_finite(object2camera, "object2camera")
    dtype = hand_verts_cam.dtype
    hand = HandGeometry(hand_faces.to(hand_verts_cam.device), object_sdf.settings)
    volumes = []
    with torch.no_grad():
        object2camera = object2camera.to(dtype)
        camera2object = invert_transform(object2camera)
        object_verts_cam = transform_points(object2camera, object_sdf.verts.to(hand_verts_cam.device, dtype)[None])
        for b in range(B):  # one grid per element: the overlap boxes differ in size
            verts_b = hand_verts_cam[b:b + 1].detach()
            lower = torch.maximum(object_verts_cam[b].amin(0), verts_b[0].amin(0))
            upper = torch.minimum(object_verts_cam[b].amax(0), verts_b[0].amax(0))

            def object_sd(points, b=b):
                return object_sdf.query(transform_points(camera2object[b], points)[None]).distance[0]

            def hand_sd(points, verts_b=verts_b):
                return hand.signed_distance(points[None], verts_b).distance[0]

            volumes.append(overlap_volume(object_sd, hand_sd, lower, upper, settings))
    return torch.stack(volumes) if volumes else torch.zeros(0, dtype=dtype, device=hand_verts_cam.device)


def max_penetration_depth(signed_distances: torch.Tensor) -> torch.Tensor:
    """Deepest penetration ``max(0, max_i -s_i)`` per batch element, ``(B,)`` [mm] (no gradient).

    Args:
        signed_distances: ``(B, N)`` [m], negative inside, e.g. hand points against the object, optionally
            concatenated with object samples against the hand.
    """
    check_shape(signed_distances, (None, None), "signed_distances")
    with torch.no_grad():
        if signed_distances.shape[1] == 0:
            return torch.zeros(signed_distances.shape[0], dtype=signed_distances.dtype,
                               device=signed_distances.device)
        return (-signed_distances).amax(dim=1).clamp_min(0) * 1000.0
