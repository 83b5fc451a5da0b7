"""The one place where the physics module hands torch tensors to warp and back.

* :class:`WarpMeshSet` keeps ``M`` warp meshes (BVH + winding-number data) that share one triangle list, on
  the device of the torch tensors they were built from; :meth:`WarpMeshSet.update` copies new vertex positions
  in and refits the BVHs (used for the posed hand, one mesh per batch element).
* :func:`closest_faces` launches :func:`.kernels.closest_face_kernel` on torch's current stream and returns
  the closest face, barycentrics and inside/outside sign as torch tensors.
* :class:`ClosestFacePlan` is the same query on the CPU for numpy points, a few hundred at a time (the filter's
  contact bookkeeping): buffers, their warp views and one recorded launch kept, so a call costs the kernel and a
  few copies instead of warp's argument packing (about 0.1-0.3 ms per launch here).

No outputs of this module carry gradients: the BVH search is a discrete, non-differentiable phase (face
choice, sign). Differentiable quantities are formed afterwards in plain torch from the face index and
barycentrics (:mod:`.sdf`), which by the envelope theorem gives exact first derivatives with respect to the
query points *and* the mesh vertices. That is why no ``torch.autograd.Function`` is needed here: a custom
backward would only reproduce what autograd already does for those few elementwise torch ops, and could not
reach the vertices of the hand mesh.

Warp meshes hold float32 positions, so the face choice is made in float32 (about 1e-7 m at the scale of a
hand); distances are then evaluated in the caller's dtype.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import warp as wp

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError, ShapeError
from . import kernels
from .settings import ContactSettings

__all__ = ["ONE_THREAD_POINTS", "ClosestFacePlan", "WarpMeshSet", "closest_faces", "warp_device"]

# Below this many points per thread a CPU query is not split across threads (handing a chunk to a pool thread
# costs more CPU than a few hundred points' query: the filter's 516-point contact query stays on one thread).
_MIN_POINTS_PER_THREAD = 1024
#: CPU queries of fewer points than this run on one thread (``_launch``; :class:`ClosestFacePlan`).
ONE_THREAD_POINTS = 2 * _MIN_POINTS_PER_THREAD

# Positions in the argument list of kernels.closest_face_kernel.
_OFFSET_ARG = 5
_NUM_INPUTS = 11

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_loaded_devices: set[str] = set()


def warp_device(device: torch.device | str) -> wp.context.Device:
    """The warp device of a torch device (``cpu`` or ``cuda:i``); initialises warp on first use."""
    wp.init()
    return wp.device_from_torch(torch.device(device))


def _thread_pool(size: int) -> ThreadPoolExecutor:
    """A shared pool with at least ``size`` workers (it only grows; a replaced pool finishes its work)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="handypriors-warp")
            _pool_size = size
        return _pool


class WarpMeshSet:
    """``M`` warp meshes sharing one triangle list, kept on the device of ``verts``.

    Args:
        verts: ``(M, V, 3)`` float [m] vertex positions (detached and stored as float32).
        faces: ``(F, 3)`` int vertex indices into ``V``, counter-clockwise seen from outside.
        support_winding_number: build the data that winding-number sign queries need.
    """

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor, support_winding_number: bool = True):
        check_shape(verts, (None, None, 3), "verts")
        check_shape(faces, (None, 3), "faces")
        check_finite(verts, "verts")
        if verts.shape[0] < 1 or verts.shape[1] < 3 or faces.shape[0] < 1:
            raise ShapeError(f"Expected at least one mesh, 3 vertices and 1 face; got verts {tuple(verts.shape)} "
                             f"and faces {tuple(faces.shape)}")
        if faces.dtype.is_floating_point or faces.dtype == torch.bool:
            raise InvalidValueError(f"faces must hold integer vertex indices; got dtype {faces.dtype}")
        if int(faces.min()) < 0 or int(faces.max()) >= verts.shape[1]:
            raise InvalidValueError(f"faces index vertices outside [0, {verts.shape[1]})")
        self.device = verts.device
        self.support_winding_number = support_winding_number
        self.wp_device = warp_device(self.device)
        self._points = verts.detach().to(torch.float32).contiguous().clone()
        self._indices = faces.detach().to(device=self.device, dtype=torch.int32).reshape(-1).contiguous()
        with torch.no_grad(), wp.ScopedStream(self._stream()):
            indices = wp.from_torch(self._indices, dtype=wp.int32)
            self._meshes = [
                wp.Mesh(points=wp.from_torch(self._points[m], dtype=wp.vec3), indices=indices,
                        support_winding_number=support_winding_number)
                for m in range(self._points.shape[0])
            ]
            self.ids = wp.array([mesh.id for mesh in self._meshes], dtype=wp.uint64, device=self.wp_device)
        self._lowers = torch.empty(self.num_meshes, 3, dtype=torch.float32, device=self.device)
        self._uppers = torch.empty_like(self._lowers)
        self._update_bounds()
        self.lowers = wp.from_torch(self._lowers, dtype=wp.vec3)
        self.uppers = wp.from_torch(self._uppers, dtype=wp.vec3)

    def _update_bounds(self) -> None:
        """Axis-aligned bounds of each mesh, padded so float32 rounding never excludes a surface point."""
        with torch.no_grad():
            lo = self._points.amin(dim=1)
            hi = self._points.amax(dim=1)
            pad = 1e-4 * (hi - lo).amax(dim=-1, keepdim=True) + 1e-6
            self._lowers.copy_(lo - pad)
            self._uppers.copy_(hi + pad)

    @property
    def num_meshes(self) -> int:
        return self._points.shape[0]

    @property
    def num_verts(self) -> int:
        return self._points.shape[1]

    @property
    def num_faces(self) -> int:
        return self._indices.shape[0] // 3

    def _stream(self):
        return wp.stream_from_torch(self.device) if self.device.type == "cuda" else None

    def update(self, verts: torch.Tensor) -> None:
        """Copy new positions ``verts (M, V, 3)`` [m] in and refit every BVH (topology unchanged)."""
        check_shape(verts, tuple(self._points.shape), "verts")
        check_finite(verts, "verts")
        with torch.no_grad():
            self._points.copy_(verts.detach())
            self._update_bounds()
        with wp.ScopedStream(self._stream()):
            for mesh in self._meshes:
                mesh.refit()


def _launch(meshes: WarpMeshSet, args: list, count: int, threads: int) -> None:
    device = meshes.wp_device
    key = str(device)
    stream = meshes._stream()
    # Args: ids, lowers, uppers, points, points_per_mesh, offset, max_dist, sign_method, accuracy, threshold,
    # known_outside, then the outputs.
    if device.is_cuda or threads <= 1 or count < ONE_THREAD_POINTS or key not in _loaded_devices:
        wp.launch(kernels.closest_face_kernel, dim=count, inputs=args[:_NUM_INPUTS], outputs=args[_NUM_INPUTS:],
                  device=device, stream=stream)
        _loaded_devices.add(key)
        return
    chunks = min(threads, count // _MIN_POINTS_PER_THREAD)
    bounds = [count * k // chunks for k in range(chunks + 1)]

    def run(k: int) -> None:
        inputs = list(args[:_NUM_INPUTS])
        inputs[_OFFSET_ARG] = bounds[k]
        wp.launch(kernels.closest_face_kernel, dim=bounds[k + 1] - bounds[k], inputs=inputs,
                  outputs=args[_NUM_INPUTS:], device=device)

    futures = [_thread_pool(threads).submit(run, k) for k in range(1, chunks)]
    run(0)
    for future in futures:
        future.result()


def closest_faces(
    meshes: WarpMeshSet, points: torch.Tensor, points_per_mesh: int, settings: ContactSettings,
    known_outside: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closest face of each point on its mesh (no gradients).

    Args:
        meshes: the meshes; point ``i`` is queried against mesh ``i // points_per_mesh``.
        points: ``(P, 3)`` float [m] on the meshes' device, in the meshes' frame.
        points_per_mesh: consecutive points per mesh (``P`` when all points use mesh 0).
        settings: sign method, winding-number parameters, ``max_query_distance`` and ``cpu_threads``.
        known_outside: ``(P,)`` bool, points the caller knows to lie outside their mesh (e.g. outside its convex
            hull): their sign is +1 without the (costly) sign test, as for points outside the mesh's box.
    Returns:
        ``face (P,) int64`` (-1: no face within ``max_query_distance``), ``bary (P, 2) float32`` = ``(u, v)`` with
        closest point ``u p0 + v p1 + (1 - u - v) p2``, and ``sign (P,) float32``: -1 inside, +1 outside.
    """
    check_shape(points, (None, 3), "points")
    if points.device != meshes.device:
        raise InvalidValueError(f"points are on {points.device} but the meshes on {meshes.device}")
    count = points.shape[0]
    if points_per_mesh < 1 or -(-count // points_per_mesh) > meshes.num_meshes:
        raise ShapeError(f"{count} points at {points_per_mesh} per mesh need more than {meshes.num_meshes} meshes")
    if settings.sign_method == "winding_number" and not meshes.support_winding_number:
        raise InvalidValueError("winding-number signs need a WarpMeshSet built with support_winding_number=True")
    face = torch.empty(count, dtype=torch.int32, device=points.device)
    bary = torch.empty(count, 2, dtype=torch.float32, device=points.device)
    sign = torch.empty(count, dtype=torch.float32, device=points.device)
    if count == 0:
        return face.long(), bary, sign
    pts = points.detach().to(torch.float32).contiguous()
    if known_outside is None:
        outside = torch.empty(0, dtype=torch.int32, device=points.device)
    else:
        check_shape(known_outside, (count,), "known_outside")
        outside = known_outside.to(device=points.device, dtype=torch.int32).contiguous()
    sign_method = kernels.SIGN_WINDING_NUMBER if settings.sign_method == "winding_number" else \
        kernels.SIGN_PSEUDO_NORMAL
    args = [
        meshes.ids,
        meshes.lowers,
        meshes.uppers,
        wp.from_torch(pts, dtype=wp.vec3),
        int(points_per_mesh),
        0,
        float(settings.max_query_distance),
        sign_method,
        float(settings.winding_accuracy),
        float(settings.winding_threshold),
        wp.from_torch(outside, dtype=wp.int32),
        wp.from_torch(face, dtype=wp.int32),
        wp.from_torch(bary, dtype=wp.vec2),
        wp.from_torch(sign, dtype=wp.float32),
    ]
    _launch(meshes, args, count, settings.resolved_cpu_threads if points.device.type == "cpu" else 1)
    return face.long(), bary, sign


class ClosestFacePlan:
    """:func:`closest_faces` on the CPU for up to ``capacity`` numpy points against mesh 0 of ``meshes`` (one thread):
    the inputs and outputs live in warp arrays read and written through numpy views, and the launch is recorded
    once and replayed with the call's point count. The same kernel and arguments, so the same results.

    Args:
        meshes: CPU meshes (mesh 0 is queried); capacity: the most points per call; settings: the query settings.
    """

    def __init__(self, meshes: WarpMeshSet, capacity: int, settings: ContactSettings) -> None:
        if meshes.device.type != "cpu":
            raise InvalidValueError(f"ClosestFacePlan runs on the CPU; the meshes are on {meshes.device}")
        if settings.sign_method == "winding_number" and not meshes.support_winding_number:
            raise InvalidValueError("winding-number signs need a WarpMeshSet built with support_winding_number=True")
        self.capacity = max(int(capacity), 1)
        self.meshes = meshes  # kept alive with the recorded launch that reads their ids
        n = self.capacity
        arrays = (wp.zeros(n, dtype=wp.vec3, device="cpu"), wp.zeros(n, dtype=wp.int32, device="cpu"),
                  wp.zeros(n, dtype=wp.int32, device="cpu"), wp.zeros(n, dtype=wp.vec2, device="cpu"),
                  wp.zeros(n, dtype=wp.float32, device="cpu"))
        self._arrays = arrays  # the views below share their memory
        self._points, self._outside, self._face, self._bary, self._sign = (a.numpy() for a in arrays)
        sign_method = kernels.SIGN_WINDING_NUMBER if settings.sign_method == "winding_number" else \
            kernels.SIGN_PSEUDO_NORMAL
        inputs = [meshes.ids, meshes.lowers, meshes.uppers, arrays[0], n, 0, float(settings.max_query_distance),
                  sign_method, float(settings.winding_accuracy), float(settings.winding_threshold), arrays[1]]
        self._launch = wp.launch(kernels.closest_face_kernel, dim=n, inputs=inputs, outputs=list(arrays[2:]),
                                 device="cpu", record_cmd=True)
        self._dim = n

    def __call__(self, points: np.ndarray, known_outside: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``points (N, 3)`` float32 [m, mesh frame], ``known_outside (N,)`` bool (as :func:`closest_faces`) ->
        ``face (N,)`` int32 (-1: none within ``max_query_distance``), ``bary (N, 2)`` float32, ``sign (N,)`` float32:
        views of the plan's buffers, overwritten by the next call."""
        n = len(points)
        if n > self.capacity:
            raise ShapeError(f"{n} points exceed the plan's capacity of {self.capacity}")
        self._points[:n] = points
        self._outside[:n] = known_outside
        if n:
            if n != self._dim:
                self._launch.set_dim(n)
                self._dim = n
            self._launch.launch()
        return self._face[:n], self._bary[:n], self._sign[:n]
