"""Triangle meshes of primitive shapes and deterministic, even surface sampling.

The one implementation of box / cylinder / sphere tessellation, shared by the URDF hand model
(``urdf_hand``) and the rigid object model (``rigid_object``). Everything here runs once at load time
on numpy arrays (float64 vertices [m], int64 faces); the models turn the results into torch buffers.

Every mesh is closed (watertight), centred at the origin and wound counter-clockwise seen from outside,
so face normals point outwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidValueError

__all__ = [
    "barycentric_coordinates",
    "box_mesh",
    "concatenate_meshes",
    "cylinder_mesh",
    "face_normals",
    "sample_surface_even",
    "sphere_mesh",
    "vertex_normals",
]


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise InvalidValueError(f"{name} must be a positive finite number; got {value}")
    return value


def _merge_duplicate_vertices(verts: np.ndarray, faces: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Weld vertices closer than ``tol`` (grid-quantised) and re-index faces."""
    keys = np.round(verts / tol).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    # keep the original order of first occurrence, so results are deterministic and tidy
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    new_verts = verts[first[order]]
    new_faces = rank[inverse.reshape(-1)][faces]
    return new_verts, new_faces


def _grid_faces(nu: int, nv: int, offset: int) -> np.ndarray:
    """Two triangles per cell of an (nu+1) x (nv+1) vertex grid indexed ``offset + i * (nv + 1) + j``."""
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    v00 = offset + i * (nv + 1) + j
    v10 = v00 + (nv + 1)
    v11 = v10 + 1
    v01 = v00 + 1
    tri_a = np.stack([v00, v10, v11], -1).reshape(-1, 3)
    tri_b = np.stack([v00, v11, v01], -1).reshape(-1, 3)
    return np.concatenate([tri_a, tri_b], 0)


def box_mesh(
    extents: Sequence[float],
    segments: int | Sequence[int] | None = None,
    max_edge: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Closed box centred at the origin with subdivided faces.

    Args:
        extents: full side lengths ``(sx, sy, sz)`` [m].
        segments: grid cells per side, one int for all axes or three ints; default from ``max_edge``
            (``ceil(extent / max_edge)``), or 1 when neither is given.
        max_edge: longest grid edge [m] used when ``segments`` is None.

    Returns:
        ``verts (V, 3)`` float64 [m] and ``faces (F, 3)`` int64, ``F = 4 * (nx*ny + ny*nz + nz*nx)``.
    """
    ext = np.array([_positive(e, "box extents") for e in extents], dtype=np.float64)
    if ext.shape != (3,):
        raise InvalidValueError(f"box extents must hold 3 values; got {len(ext)}")
    if segments is None:
        if max_edge is None:
            seg = np.ones(3, dtype=np.int64)
        else:
            seg = np.maximum(1, np.ceil(ext / _positive(max_edge, "max_edge") - 1e-9)).astype(np.int64)
    else:
        seg = np.broadcast_to(np.asarray(segments, dtype=np.int64), (3,)).copy()
        if (seg < 1).any():
            raise InvalidValueError(f"box segments must be >= 1; got {seg.tolist()}")
    half = ext / 2.0
    eye = np.eye(3)
    verts, faces, n = [], [], 0
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        for sign in (1.0, -1.0):
            # (u, v) span the face with u x v pointing outwards (+/- e_a)
            (ua, na), (va, nb) = ((b, seg[b]), (c, seg[c])) if sign > 0 else ((c, seg[c]), (b, seg[b]))
            corner = sign * half[a] * eye[a] - half[b] * eye[b] - half[c] * eye[c]
            s = np.linspace(0.0, 1.0, na + 1)[:, None, None] * (ext[ua] * eye[ua])
            t = np.linspace(0.0, 1.0, nb + 1)[None, :, None] * (ext[va] * eye[va])
            grid = (corner + s + t).reshape(-1, 3)
            verts.append(grid)
            faces.append(_grid_faces(int(na), int(nb), n))
            n += len(grid)
    return _merge_duplicate_vertices(np.concatenate(verts), np.concatenate(faces), tol=1e-9 * max(1.0, ext.max()))


def cylinder_mesh(
    radius: float, length: float, sections: int = 24, length_segments: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Closed cylinder along z, centred at the origin, with flat capped ends (triangle fans).

    Args:
        radius, length: [m] (the cylinder spans ``z in [-length/2, length/2]``, as in URDF).
        sections: segments around the circumference (>= 3).
        length_segments: rings along z (>= 1).

    Returns:
        ``verts (V, 3)`` float64 [m], ``faces (F, 3)`` int64 with ``F = 2*sections*(length_segments + 1)``.
    """
    r = _positive(radius, "cylinder radius")
    h = _positive(length, "cylinder length")
    if int(sections) < 3 or int(length_segments) < 1:
        raise InvalidValueError(
            f"cylinder needs sections >= 3 and length_segments >= 1; got {sections}, {length_segments}"
        )
    n, m = int(sections), int(length_segments)
    theta = 2.0 * np.pi * np.arange(n) / n
    ring = np.stack([r * np.cos(theta), r * np.sin(theta)], -1)  # (n, 2)
    z = np.linspace(-h / 2.0, h / 2.0, m + 1)
    side = np.concatenate([np.broadcast_to(ring, (m + 1, n, 2)), np.broadcast_to(z[:, None, None], (m + 1, n, 1))], -1)
    side = side.reshape(-1, 3)
    bottom_c, top_c = len(side), len(side) + 1
    verts = np.concatenate([side, [[0.0, 0.0, -h / 2.0], [0.0, 0.0, h / 2.0]]], 0)
    k = np.arange(n)
    kn = (k + 1) % n
    faces = []
    for level in range(m):
        lo, hi = level * n, (level + 1) * n
        faces.append(np.stack([lo + k, lo + kn, hi + kn], -1))
        faces.append(np.stack([lo + k, hi + kn, hi + k], -1))
    faces.append(np.stack([np.full(n, top_c), m * n + k, m * n + kn], -1))
    faces.append(np.stack([np.full(n, bottom_c), kn, k], -1))
    return verts, np.concatenate(faces, 0).astype(np.int64)


def sphere_mesh(radius: float, subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere centred at the origin: ``20 * 4**subdivisions`` faces (2 -> 320 faces, 162 vertices).

    Returns ``verts (V, 3)`` float64 [m] and ``faces (F, 3)`` int64.
    """
    import trimesh

    r = _positive(radius, "sphere radius")
    if int(subdivisions) < 0:
        raise InvalidValueError(f"sphere subdivisions must be >= 0; got {subdivisions}")
    ico = trimesh.creation.icosphere(subdivisions=int(subdivisions), radius=r)
    return np.asarray(ico.vertices, dtype=np.float64), np.asarray(ico.faces, dtype=np.int64)


def concatenate_meshes(meshes: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack several ``(verts, faces)`` into one mesh (faces re-indexed)."""
    verts, faces, n = [], [], 0
    for v, f in meshes:
        verts.append(np.asarray(v, dtype=np.float64).reshape(-1, 3))
        faces.append(np.asarray(f, dtype=np.int64).reshape(-1, 3) + n)
        n += len(verts[-1])
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(verts, 0), np.concatenate(faces, 0)


def face_normals(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals ``(F, 3)`` and face areas ``(F,)`` [m^2] (degenerate faces get a zero normal)."""
    tri = verts[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(cross, axis=1)
    normals = np.where(norm[:, None] > 0, cross / np.maximum(norm, 1e-300)[:, None], 0.0)
    return normals, 0.5 * norm


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` (outward for outward-wound faces; zero for unreferenced
    vertices)."""
    normals, area = face_normals(verts, faces)
    acc = np.zeros_like(verts)
    for k in range(3):  # the three corners, not a loop over vertices
        np.add.at(acc, faces[:, k], normals * area[:, None])
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    return np.where(norm > 0, acc / np.maximum(norm, 1e-300), 0.0)


def barycentric_coordinates(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``(N, 3)`` of ``points (N, 3)`` in the triangles ``tri (N, 3, 3)``."""
    e0, e1, p = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], points - tri[:, 0]
    d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
    d20, d21 = (p * e0).sum(1), (p * e1).sum(1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-30)
    b1 = (d11 * d20 - d01 * d21) / den
    b2 = (d00 * d21 - d01 * d20) / den
    return np.stack([1 - b1 - b2, b1, b2], 1)


def _farthest_point_indices(points: np.ndarray, count: int) -> np.ndarray:
    """Greedy farthest-point subset of ``count`` indices, starting from the point farthest from the mean."""
    x, y, z = (np.ascontiguousarray(points[:, i]) for i in range(3))
    idx = int(np.argmax(((points - points.mean(0)) ** 2).sum(1)))
    chosen = np.empty(count, dtype=np.int64)
    dist = np.full(len(points), np.inf)
    d, t = np.empty(len(points)), np.empty(len(points))
    for k in range(count):  # in-place per-coordinate arithmetic: ~10x faster than (N, 3) temporaries
        chosen[k] = idx
        np.subtract(x, x[idx], out=d)
        np.multiply(d, d, out=d)
        np.subtract(y, y[idx], out=t)
        np.multiply(t, t, out=t)
        d += t
        np.subtract(z, z[idx], out=t)
        np.multiply(t, t, out=t)
        d += t
        np.minimum(dist, d, out=dist)
        idx = int(dist.argmax())
    return chosen


def sample_surface_even(
    verts: np.ndarray, faces: np.ndarray, count: int, seed: int = 0, oversample: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic, evenly spread points on a triangle mesh surface.

    Draws ``oversample * count`` area-weighted random points with a fixed ``seed`` and keeps a greedy
    farthest-point subset of exactly ``count`` of them, so the points are spread evenly and the result is the
    same on every call.

    Returns:
        ``points (count, 3)`` float64 [m], ``normals (count, 3)`` (unit face normals of the sampled faces),
        ``face_index (count,)`` int64.
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    count = int(count)
    if count < 0:
        raise InvalidValueError(f"count must be >= 0; got {count}")
    normals, area = face_normals(verts, faces)
    if count == 0:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    total = area.sum()
    if len(faces) == 0 or not total > 0:
        raise InvalidValueError("cannot sample the surface of a mesh with zero area")
    rng = np.random.default_rng(seed)
    dense = max(count * int(oversample), count)
    face_idx = rng.choice(len(faces), size=dense, p=area / total)
    r1 = np.sqrt(rng.random(dense))
    r2 = rng.random(dense)
    tri = verts[faces[face_idx]]
    pts = (1 - r1)[:, None] * tri[:, 0] + (r1 * (1 - r2))[:, None] * tri[:, 1] + (r1 * r2)[:, None] * tri[:, 2]
    keep = _farthest_point_indices(pts, count)
    return pts[keep], normals[face_idx[keep]], face_idx[keep]
