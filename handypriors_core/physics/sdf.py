"""Signed distance from points to triangle meshes (object mesh; the posed hand mesh in :mod:`.hand_geometry`).

Sign convention: **negative inside, positive outside, metres**. The sign comes from warp's fast winding
number by default (robust on non-watertight, YCB-style meshes whose faces are consistently oriented; see
:class:`.settings.ContactSettings.sign_method`).

How it is computed: a warp BVH query (float32, no gradients) picks each point's closest face and barycentrics
``(u, v)`` and the sign; torch then evaluates the closest point ``c = u a + v b + (1 - u - v) c2`` from the
vertices in the points' dtype, the value ``d = sign |p - c|`` and its gradient along the detached outward unit
direction ``g``: the face normal where ``c`` lies inside a face, else ``sign (p - c) / |p - c|``. ``g`` is the
gradient of the signed distance on both sides of the surface, so it stays the outward normal even for points
on the surface, where the float32 sign is ambiguous.

Gradients: ``distance`` carries gradients to the query points (``dd/dp = g``), to the object pose in
:meth:`ObjectSDF.signed_distance`, and to mesh vertices that require grad (``dd/da = -u g`` ...), which are the
exact first derivatives of the signed distance by the envelope theorem (the barycentrics are held fixed).
Second derivatives are not provided (``g`` is detached). ``closest_point``, ``normal`` and ``face`` carry no
gradient.

Precision: warp meshes are float32, so the face choice and sign are float32 decisions (about 1e-7 m on
hand-sized objects); the distance itself is then exact in the query dtype (float64 stays float64 except
where two faces are equidistant to within float32 rounding). Points within about 1e-7 m of the surface may
get either sign.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError, ShapeError
from ..geometry.transforms import invert_transform, transform_points
from .settings import ContactSettings
from .warp_bridge import ONE_THREAD_POINTS, ClosestFacePlan, WarpMeshSet, closest_faces

__all__ = ["ObjectSDF", "SignedDistance", "evaluate_closest_faces"]

# Points closer than this to their closest edge or vertex [m] use the face normal as gradient direction.
_SURFACE_TOL = 1e-9
# Barycentric coordinates above this mark a closest point inside a face (not on an edge or vertex).
_INTERIOR_BARY = 1e-6


@dataclass(frozen=True)
class SignedDistance:
    """Per-point result of a signed-distance query (all in the frame of the query points).

    Attributes:
        distance: ``(B, N)`` signed distance [m], negative inside. Differentiable (see module docstring).
            ``+max_query_distance`` where no face is within that distance.
        closest_point: ``(B, N, 3)`` closest surface point [m]; no gradient. The query point where ``face == -1``.
        normal: ``(B, N, 3)`` unit outward direction of increasing distance at the point (the face normal in
            face interiors, the direction from the closest edge/vertex otherwise); no gradient; 0 where
            ``face == -1``.
        face: ``(B, N)`` int64 index of the closest face, -1 if none within ``max_query_distance``.
    """

    distance: torch.Tensor
    closest_point: torch.Tensor
    normal: torch.Tensor
    face: torch.Tensor


def _check_points(points: torch.Tensor, name: str) -> None:
    check_shape(points, (None, None, 3), name)
    if points.dtype not in (torch.float32, torch.float64):
        raise InvalidValueError(f"{name} must be float32 or float64; got {points.dtype}")
    check_finite(points, name)


def evaluate_closest_faces(
    points: torch.Tensor,
    verts: torch.Tensor,
    faces: torch.Tensor,
    mesh_index: torch.Tensor,
    face: torch.Tensor,
    bary: torch.Tensor,
    sign: torch.Tensor,
    far_distance: float,
) -> SignedDistance:
    """Differentiable signed distance from a BVH query result (torch only).

    Args:
        points: ``(B, N, 3)`` float [m] query points in the meshes' frame.
        verts: ``(M, V, 3)`` [m] mesh vertices (may require grad), any float dtype (cast to ``points``').
        faces: ``(F, 3)`` int64 triangle vertex indices.
        mesh_index: ``(B,)`` int64, the mesh each batch element was queried against.
        face: ``(B, N)`` int64 closest face (-1: none). bary: ``(B, N, 2)`` float32 ``(u, v)``.
        sign: ``(B, N)`` float32, -1 inside, +1 outside.
        far_distance: distance reported where ``face == -1`` [m].
    Returns:
        :class:`SignedDistance` with gradients as described in the module docstring.
    """
    dtype = points.dtype
    found = face >= 0
    tri = faces[face.clamp_min(0)]  # (B, N, 3) vertex indices
    corners = verts.to(dtype)[mesh_index[:, None, None], tri]  # (B, N, 3 corners, 3 xyz)
    u = bary[..., 0:1].to(dtype)
    v = bary[..., 1:2].to(dtype)
    w = 1 - u - v
    closest = u * corners[..., 0, :] + v * corners[..., 1, :] + w * corners[..., 2, :]
    diff = points - closest
    with torch.no_grad():
        radius = diff.norm(dim=-1, keepdim=True)
        s = sign.to(dtype)[..., None]
        a, b, c = corners.detach().unbind(-2)
        face_normal = torch.linalg.cross(b - a, c - a)
        face_normal = face_normal / face_normal.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        # Outward direction of increasing distance (the gradient of the signed distance on both sides):
        # the face normal where the closest point lies inside the face, else along p - c.
        interior = (u > _INTERIOR_BARY) & (v > _INTERIOR_BARY) & (w > _INTERIOR_BARY)
        along = torch.where(radius > _SURFACE_TOL, s * diff / radius.clamp_min(_SURFACE_TOL), face_normal)
        direction = torch.where(interior, face_normal, along)
        direction = torch.where(found[..., None], direction, torch.zeros_like(direction))
        value = torch.where(found, (s * radius)[..., 0], torch.full_like(radius[..., 0], far_distance))
    # Value sign * |p - c| (sign from the winding number); gradient direction . d(p - c).
    distance = value + (direction * (diff - diff.detach())).sum(-1)
    with torch.no_grad():
        closest_out = torch.where(found[..., None], closest, points).detach()
    return SignedDistance(distance=distance, closest_point=closest_out, normal=direction, face=face)


class ObjectSDF:
    """Signed distance to a rigid object's triangle mesh; the warp BVH is built once per device.

    Args:
        verts: ``(V, 3)`` float [m] vertices in the object frame.
        faces: ``(F, 3)`` int triangle vertex indices, counter-clockwise seen from outside.
        settings: query settings (sign method, winding number accuracy, threads); defaults if ``None``.
    """

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor, settings: ContactSettings | None = None):
        check_shape(verts, (None, 3), "verts")
        check_shape(faces, (None, 3), "faces")
        check_finite(verts, "verts")
        if not verts.dtype.is_floating_point:
            raise InvalidValueError(f"verts must be floating point; got {verts.dtype}")
        if faces.dtype.is_floating_point or faces.dtype == torch.bool:
            raise InvalidValueError(f"faces must hold integer vertex indices; got dtype {faces.dtype}")
        if faces.shape[0] < 1 or int(faces.min()) < 0 or int(faces.max()) >= verts.shape[0]:
            raise InvalidValueError(f"faces must be non-empty and index vertices in [0, {verts.shape[0]})")
        self.settings = settings if settings is not None else ContactSettings()
        self._verts = verts.detach().clone()
        self._faces = faces.detach().to(torch.int64).clone()
        self._warp: dict[torch.device, WarpMeshSet] = {}
        self._torch: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None  # float32 face corners, normals (query_array)
        self._hull_planes_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # box, hull planes
        self._plan: ClosestFacePlan | None = None  # the kept CPU launch of query_array
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None  # float64 box corners (query_array)
        self._slabs: tuple[np.ndarray, np.ndarray] | None = None  # 26 directions and the mesh's extent along them

    @classmethod
    def from_trimesh(cls, mesh, settings: ContactSettings | None = None, dtype: torch.dtype = torch.float64,
                     device: torch.device | str = "cpu") -> ObjectSDF:
        """Build from a ``trimesh.Trimesh`` (vertices in metres, object frame)."""
        verts = torch.as_tensor(mesh.vertices, dtype=dtype, device=device)
        faces = torch.as_tensor(mesh.faces, dtype=torch.int64, device=device)
        return cls(verts, faces, settings)

    @classmethod
    def from_rigid_object(cls, obj, settings: ContactSettings | None = None) -> ObjectSDF:
        """Build from a :class:`handypriors_core.models.RigidObject` (its ``verts``, ``faces``, dtype, device)."""
        return cls(obj.verts, obj.faces, settings)

    @property
    def verts(self) -> torch.Tensor:
        """``(V, 3)`` vertices [m], object frame."""
        return self._verts

    @property
    def faces(self) -> torch.Tensor:
        """``(F, 3)`` int64 triangle vertex indices."""
        return self._faces

    def _mesh_on(self, device: torch.device) -> WarpMeshSet:
        if device not in self._warp:
            self._warp[device] = WarpMeshSet(self._verts.to(device)[None], self._faces.to(device),
                                             support_winding_number=self.settings.sign_method == "winding_number")
        return self._warp[device]

    def _tensors_on(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, dtype)
        if key not in self._torch:
            self._torch[key] = (self._verts.to(device=device, dtype=dtype)[None], self._faces.to(device))
        return self._torch[key]

    def query(self, points_obj: torch.Tensor) -> SignedDistance:
        """Signed distance of ``points_obj (B, N, 3)`` [m, object frame] to the object surface.

        Returns :class:`SignedDistance` in the object frame; ``distance (B, N)`` [m] is negative inside and
        differentiable with respect to ``points_obj``.
        """
        _check_points(points_obj, "points_obj")
        B, N, _ = points_obj.shape
        meshes = self._mesh_on(points_obj.device)
        face, bary, sign = closest_faces(meshes, points_obj.reshape(-1, 3), max(B * N, 1), self.settings)
        verts, faces = self._tensors_on(points_obj.device, points_obj.dtype)
        mesh_index = torch.zeros(B, dtype=torch.int64, device=points_obj.device)
        return evaluate_closest_faces(points_obj, verts, faces, mesh_index, face.view(B, N), bary.view(B, N, 2),
                                      sign.view(B, N), self.settings.max_query_distance)

    def query_array(self, points_obj: np.ndarray, exact_within: float | np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`query`'s values for CPU points without gradient, evaluated in numpy (a few hundred points cost
        less there than in torch calls): ``points_obj (N, 3)`` float32 [m, object frame] -> ``distance (N,)`` [m,
        negative inside] and ``normal (N, 3)`` float32 (the same values up to float32 rounding).

        ``exact_within`` [m]: points that lie farther than this (plus 10 um) from the mesh's bounding box or from one
        of 26 planes bounding it (a k-DOP: axes, face and corner diagonals) are not queried; they get a lower bound
        of their distance to the surface (the larger of the two, above ``exact_within``) and a zero normal; a
        ``(N,)`` array gives each point its own limit (contact candidates and fingertip spheres at once). For
        callers that only compare distances with thresholds up to ``exact_within`` (contact bookkeeping), the same
        decisions for a fraction of the query. The warp query's buffers are kept per ``ObjectSDF``: one thread at a
        time per instance (as the renderer's kept z-buffer plans)."""
        if points_obj.ndim != 2 or points_obj.shape[1] != 3:
            raise ShapeError(f"Expected points_obj to have shape (N, 3); got {tuple(points_obj.shape)}")
        if not np.isfinite(points_obj).all():
            raise InvalidValueError("points_obj contains NaN/inf")
        p = np.ascontiguousarray(points_obj, dtype=np.float32)
        if exact_within is None:
            return self._query_points(p, self._outside_hull(p))
        limit = np.asarray(exact_within, dtype=np.float64) + 1e-5  # a clear margin over the float32 rounding
        if limit.ndim and limit.shape != (len(p),):
            raise ShapeError(f"Expected exact_within to be a number or of shape ({len(p)},); got {limit.shape}")
        bound = self._box_distance(p)
        candidates = np.flatnonzero(bound <= limit)
        if len(candidates):
            bound[candidates] = np.maximum(bound[candidates], self._slab_distance(p[candidates]))
        near = candidates[bound[candidates] <= (limit[candidates] if limit.ndim else limit)]
        if len(near) == len(p):
            return self._query_points(p, self._outside_hull(p))
        value = bound.astype(np.float32)
        direction = np.zeros((len(p), 3), dtype=np.float32)
        if len(near):
            q = p[near]
            value[near], direction[near] = self._query_points(q, self._outside_hull(q))
        return value, direction

    def _query_points(self, p: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`query_array` of every point ``p (N, 3)`` float32 (C order), with the points known to lie outside
        the mesh ``outside (N,)`` bool (no sign test): the closest faces from the warp query (a kept launch for up to
        a few hundred points), then the closest point, sign and normal in numpy."""
        n = len(p)
        threads = self.settings.resolved_cpu_threads
        if n < ONE_THREAD_POINTS or threads <= 1:  # one thread: the kept launch (bigger queries split over threads)
            if self._plan is None or self._plan.capacity < n:
                self._plan = ClosestFacePlan(self._mesh_on(torch.device("cpu")), max(n, ONE_THREAD_POINTS),
                                             self.settings)
            face, bary, sign = self._plan(p, outside)
        else:
            face, bary, sign = (t.numpy() for t in closest_faces(
                self._mesh_on(torch.device("cpu")), torch.from_numpy(p), max(n, 1), self.settings,
                known_outside=torch.from_numpy(outside)))
        if self._arrays is None:  # float32 corners and unit normals per face (fixed: the mesh is rigid), as rows
            corners = self._verts.detach().to("cpu", torch.float32).numpy()[self._faces.cpu().numpy()]
            normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
            length = np.sqrt((normal * normal).sum(-1))[:, None]
            unit = normal / np.maximum(length, np.finfo(np.float32).tiny)
            self._arrays = (np.ascontiguousarray(corners.transpose(1, 2, 0)), np.ascontiguousarray(unit.T))
        # on coordinate rows (3, N) (numpy is slow along a short last axis): torch's operations, elementwise in the
        # same order (sums over the 3 rows are sequential), so the same values
        found = face >= 0
        nearest = np.maximum(face, 0)
        corners = self._arrays[0].take(nearest, 2)  # (3 corners, 3, N)
        u, v = bary[:, 0], bary[:, 1]
        w = 1 - u - v
        diff = p.T - (u * corners[0] + v * corners[1] + w * corners[2])  # (3, N)
        radius = np.sqrt((diff * diff).sum(0))
        interior = (u > _INTERIOR_BARY) & (v > _INTERIOR_BARY) & (w > _INTERIOR_BARY)
        keep_normal = interior | ~(radius > _SURFACE_TOL)  # the face normal inside a face or on the surface
        scale = np.maximum(radius, np.float32(_SURFACE_TOL))
        direction = np.where(found, np.where(keep_normal, self._arrays[1].take(nearest, 1), sign * diff / scale), 0)
        value = np.where(found, sign * radius, np.float32(self.settings.max_query_distance))
        return value.astype(np.float32), np.ascontiguousarray(direction.T, dtype=np.float32)

    def _box_distance(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` float64 distance [m] of ``points (N, 3)`` [object frame] to the mesh's exact bounding box (0 inside
        it), rounded down by a relative 1e-6 so it never exceeds the distance to the surface."""
        if self._bounds is None:
            verts = self._verts.detach().to("cpu", torch.float64).numpy()
            self._bounds = (verts.min(0)[:, None], verts.max(0)[:, None])
        lo, hi = self._bounds
        c = points.T.astype(np.float64)  # (3, N)
        gap = np.maximum(np.maximum(lo - c, c - hi), 0.0)
        return np.sqrt((gap * gap).sum(0)) * (1 - 1e-6)

    def _slab_distance(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` float64 lower bound [m] of the distance of ``points (N, 3)`` [object frame] to the mesh: the largest
        of ``n . p - max_v n . v`` over 26 unit directions ``n`` (axes, face and corner diagonals; the mesh lies
        within these slabs, so no surface point is nearer), lowered by 1e-9 m for rounding; 0 or below inside them."""
        if self._slabs is None:
            directions = np.array([d for d in itertools.product((-1.0, 0.0, 1.0), repeat=3) if any(d)])
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            verts = self._verts.detach().to("cpu", torch.float64).numpy()
            self._slabs = (directions, (verts @ directions.T).max(0) + 1e-9)
        directions, support = self._slabs
        return (points.astype(np.float64) @ directions.T - support).max(1)

    def _hull(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The padded float32 box ``(2, 3)`` and the convex hull's distinct planes: unit outward normals ``(3, H)``
        and offsets ``(H,)`` lowered by the box's padding (``n . p + offset <= 0`` inside; none for a flat or
        degenerate mesh), made once."""
        if self._hull_planes_cache is None:
            verts = self._verts.detach().to("cpu", torch.float64).numpy()
            lo, hi = verts.min(0), verts.max(0)
            pad = 1e-4 * float((hi - lo).max()) + 1e-6  # as the warp query's box (WarpMeshSet._update_bounds)
            try:
                from scipy.spatial import ConvexHull, QhullError

                planes = ConvexHull(verts).equations  # (H, 4): unit outward normal, offset; <= 0 inside
                # qhull repeats a facet's plane for each of its triangles: one of each (rounded to 1e-12)
                _, first = np.unique(np.round(planes, 12), axis=0, return_index=True)
                planes = planes[np.sort(first)]
            except (ImportError, QhullError, ValueError):  # flat or degenerate mesh: no pre-test
                planes = np.zeros((0, 4))
            self._hull_planes_cache = (np.stack((lo - pad, hi + pad)).astype(np.float32),  # a pre-filter
                                       planes[:, :3].T.copy(), planes[:, 3] - pad)
        return self._hull_planes_cache

    def _hull_planes(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` float64 largest value ``n . p + offset`` of the padded hull planes at ``points (N, 3)``: above 0
        outside the hull (by more than the padding), and never above the distance to the surface (a closed or
        consistently oriented mesh lies within its hull); ``-inf`` without planes."""
        _, normals, offsets = self._hull()
        if len(offsets) == 0 or len(points) == 0:
            return np.full(len(points), -np.inf)
        return (points.astype(np.float64) @ normals + offsets).max(1)

    def _outside_hull(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which of ``points (N, 3)`` [m, object frame] lie in the mesh's bounding box but outside its
        convex hull by more than the box's float32 padding. They are outside the mesh (a closed surface lies within
        its hull; an open, consistently oriented one has a winding number below one half there), so the closest-face
        query skips their sign test as it does for points outside the box: the winding-number test of the points
        in the box but between a concave mesh's parts (a mug's handle, the air beside a finger) costs most of a
        contact query."""
        box, _, offsets = self._hull()
        outside = np.zeros(len(points), dtype=bool)
        if len(offsets) == 0:
            return outside
        x, y, z = points[:, 0], points[:, 1], points[:, 2]
        (x0, y0, z0), (x1, y1, z1) = box
        in_box = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1))
        if len(in_box):
            outside[in_box] = self._hull_planes(points[in_box]) > 0
        return outside

    def signed_distance(self, points_cam: torch.Tensor, object2camera: torch.Tensor) -> SignedDistance:
        """Signed distance of ``points_cam (B, N, 3)`` [m, camera frame] to the object posed by ``object2camera``.

        Args:
            points_cam: ``(B, N, 3)`` float [m] e.g. hand surface points in the camera frame.
            object2camera: ``(B, 4, 4)`` rigid transforms (rotation block orthonormal), same dtype as the points.
        Returns:
            :class:`SignedDistance` in the camera frame; ``distance (B, N)`` [m, negative inside] carries gradients
            to ``points_cam`` and ``object2camera``; ``closest_point`` and ``normal`` are rotated into the
            camera frame without gradient.
        """
        _check_points(points_cam, "points_cam")
        check_shape(object2camera, (points_cam.shape[0], 4, 4), "object2camera")
        check_finite(object2camera, "object2camera")
        if object2camera.dtype != points_cam.dtype:
            raise InvalidValueError(f"object2camera dtype {object2camera.dtype} differs from points_cam's "
                                    f"{points_cam.dtype}")
        points_obj = transform_points(invert_transform(object2camera), points_cam)
        result = self.query(points_obj)
        with torch.no_grad():
            closest = transform_points(object2camera, result.closest_point)
            normal = result.normal @ object2camera[:, :3, :3].transpose(-1, -2)
        return SignedDistance(distance=result.distance, closest_point=closest.detach(), normal=normal.detach(),
                              face=result.face)

    def contains(self, points_obj: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` bool: whether ``points_obj (B, N, 3)`` [m, object frame] lie inside the object."""
        _check_points(points_obj, "points_obj")
        B, N, _ = points_obj.shape
        _, _, sign = closest_faces(self._mesh_on(points_obj.device), points_obj.reshape(-1, 3), max(B * N, 1),
                                   self.settings)
        return (sign < 0).view(B, N)


def check_same_batch(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise ShapeError unless ``a`` and ``b`` have the same leading (batch) size."""
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"{name_a} has batch size {a.shape[0]} but {name_b} has {b.shape[0]}")
