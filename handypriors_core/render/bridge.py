"""The one module that runs warp kernels for torch: binning, rasterization, silhouettes and soft depth.

Torch tensors are wrapped as warp arrays without copies and kernels run on the tensors' device ("cpu" or
"cuda:N", on torch's current stream). On CPU, where warp runs one thread per launch, per-pixel kernels are
cut into a few pixel ranges per thread, launched concurrently by a pool of ``threads`` workers (warp releases
the GIL during a launch); each range accumulates vertex gradients into its own buffer, summed afterwards.

Gradients: :class:`RasterizeFunction` carries them from ``zbuf``, ``dist`` and ``bary`` to the screen
positions ``(B, V, 2)`` [px] and inverse depths ``(B, V)`` [1/m] of the vertices (not through the choice of
fragments, nor through the binning). :class:`SilhouetteFunction` carries them from the silhouettes to
``dist``; :class:`DepthBlendFunction` from the soft depth to ``zbuf`` and ``dist``. Every backward pass is a
hand-written kernel (``warp_kernels.raster_backward``, ``silhouette_backward``, ``depth_backward``).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import warp as wp

from . import warp_kernels as wk
from .warp_views import as_warp, warp_device_name

__all__ = ["Bins", "DepthBlendFunction", "RasterizeFunction", "SilhouetteFunction", "build_bins",
           "nearest_inverse_depth", "resolve_threads"]

_MIN_PIXELS_PER_LAUNCH = 1024
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_warm: set = set()


def resolve_threads(threads: int) -> int:
    """Concurrent CPU launches for a ``threads`` setting (0 = number of cores, at most 8)."""
    return threads if threads > 0 else max(1, min(8, os.cpu_count() or 1))


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="hp-render")
        return _pool


def _launch(kernel, dim: int, inputs: list, device: str) -> None:
    if dim <= 0:
        return
    if device == "cpu":
        wp.launch(kernel, dim=dim, inputs=inputs, device=device)
    else:
        stream = wp.stream_from_torch(torch.cuda.current_stream(torch.device(device)))
        wp.launch(kernel, dim=dim, inputs=inputs, device=device, stream=stream)


def _launch_pixels(kernel, n_pixels: int, make_inputs, device: str, threads: int) -> int:
    """Launch ``kernel`` over ``n_pixels`` in chunks; ``make_inputs(chunk, offset)`` builds each input list.

    On CPU the pixels are cut into :func:`planned_chunks` contiguous chunks run by ``threads`` workers
    (several chunks per worker balance the load: the work per pixel varies across the image). The first
    launch of a kernel runs alone (warp compiles or loads its module then). Returns the number of chunks.
    """
    n = planned_chunks(n_pixels, torch.device(device), threads) if id(kernel) in _warm else 1
    if n == 1:
        _launch(kernel, n_pixels, make_inputs(0, 0), device)
        _warm.add(id(kernel))
        return 1
    size = math.ceil(n_pixels / n)
    pool = _executor(threads)
    jobs = [pool.submit(_launch, kernel, min(size, n_pixels - c * size), make_inputs(c, c * size), device)
            for c in range(n)]
    for job in jobs:
        job.result()
    return n


def planned_chunks(n_pixels: int, device: torch.device, threads: int) -> int:
    """Number of chunks :func:`_launch_pixels` uses (sizes the per-chunk gradient buffers)."""
    if device.type != "cpu" or threads <= 1:
        return 1
    return max(1, min(3 * threads, -(-n_pixels // _MIN_PIXELS_PER_LAUNCH)))


# ----------------------------------------------------------------------------------------------- binning
@dataclass
class Bins:
    """Per-face screen data (warp array of ``FaceData``) and per-tile face lists (not differentiable).

    ``tile_start (B * NT + 1,)`` int32 offsets into ``tile_faces (total,)`` int32; tile ``t`` of image ``b``
    is ``b * NT + ty * tiles_x + tx``.
    """

    face_data: wp.array
    tile_start: torch.Tensor
    tile_faces: torch.Tensor
    tile: int
    tiles_x: int
    n_tiles: int
    margin: float


def build_bins(
    verts2d: torch.Tensor,
    inv_depth: torch.Tensor,
    vert_ok: torch.Tensor,
    faces: torch.Tensor,
    face_instance: torch.Tensor,
    width: int,
    height: int,
    tile: int,
    margin: float,
) -> Bins:
    """Bin faces into ``tile x tile`` px screen tiles by their bounding box grown by ``margin`` [px].

    ``verts2d (B, V, 2)`` [px], ``inv_depth (B, V)`` [1/m], ``vert_ok (B, V)`` bool, ``faces (F, 3)`` int32,
    ``face_instance (F,)`` int32 (kept per face: it decides which fragments survive an overflow).
    Counting sort (count, exclusive scan, fill); lists are sized exactly, nothing is dropped.
    """
    B, V = vert_ok.shape
    F = faces.shape[0]
    dev = verts2d.device
    dtype = verts2d.dtype
    k = wk.common_kernels(dtype)
    device = warp_device_name(verts2d)
    tiles_x = (width + tile - 1) // tile
    tiles_y = (height + tile - 1) // tile
    n_tiles = tiles_x * tiles_y
    xy = verts2d.detach().contiguous()
    w = inv_depth.detach().contiguous()
    ok = vert_ok.to(torch.int32).contiguous()
    n = B * F
    face_data = wp.empty(max(n, 1), dtype=k.FaceData, device=device)
    face_tiles = torch.empty((n, 4), dtype=torch.int32, device=dev)
    tile_count = torch.zeros(B * n_tiles, dtype=torch.int32, device=dev)
    w_face_tiles = as_warp(face_tiles, wp.vec4i, (n,))
    _launch(
        k.face_setup,
        n,
        [
            as_warp(xy, k.vec2, (B * V,)),
            as_warp(w, k.scalar, (B * V,)),
            as_warp(ok, wp.int32, (B * V,)),
            as_warp(faces, wp.vec3i, (F,)),
            as_warp(face_instance, wp.int32, (F,)),
            V,
            F,
            k.scalar(margin),
            width,
            height,
            tile,
            face_data,
            w_face_tiles,
        ],
        device,
    )
    _launch(k.bin_count, n, [w_face_tiles, F, tiles_x, n_tiles, as_warp(tile_count, wp.int32)], device)
    tile_start = torch.zeros(B * n_tiles + 1, dtype=torch.int32, device=dev)
    torch.cumsum(tile_count, 0, out=tile_start[1:])
    total = int(tile_start[-1].item())
    tile_faces = torch.empty(max(total, 1), dtype=torch.int32, device=dev)
    if total > 0:
        cursor = torch.zeros(B * n_tiles, dtype=torch.int32, device=dev)
        _launch(
            k.bin_fill,
            n,
            [w_face_tiles, as_warp(tile_start, wp.int32), F, tiles_x, n_tiles, as_warp(cursor, wp.int32),
             as_warp(tile_faces, wp.int32)],
            device,
        )
    return Bins(face_data, tile_start, tile_faces, tile, tiles_x, n_tiles, margin)


def nearest_inverse_depth(
    verts: torch.Tensor,
    verts2d: torch.Tensor,
    inv_depth: torch.Tensor,
    vert_ok: torch.Tensor,
    faces: torch.Tensor,
    width: int,
    height: int,
    cull_back: bool,
    grow: int,
) -> torch.Tensor:
    """``(B, H, W)`` largest inverse depth [1/m] of the faces containing each pixel centre (0: none), not
    differentiable: the depth of :class:`RasterizeFunction`'s nearest face (``hard``, ``K = 1``) as ``1 / value``.

    Work per face over the pixels of its screen box (no tiles, no per-pixel face lists: for a z-buffer of a
    region, where pixels times faces per tile outweighs the faces' own pixels). ``verts (B, V, 3)`` [m, camera
    frame] (read with ``cull_back``: faces turned away from the camera are skipped), ``verts2d (B, V, 2)`` [px],
    ``inv_depth (B, V)`` [1/m], ``vert_ok (B, V)`` bool as :func:`build_bins` takes them, ``faces (F, 3)`` int32.
    ``grow`` > 0 spreads each covered pixel's value over its neighbours within ``grow`` px (a min-filter of depth).
    """
    from .nearest_depth import make_zbuffer_kernel  # (that module builds on this one)

    B, V = vert_ok.shape
    F = faces.shape[0]
    dev = verts2d.device
    kernel, vec2, vec3, scalar = make_zbuffer_kernel(verts2d.dtype)
    out = torch.zeros(B * height * width, dtype=verts2d.dtype, device=dev)
    if B * F == 0:
        return out.view(B, height, width)
    # the tensors the warp views read stay referenced here until the launch is done
    xy, w = verts2d.detach().contiguous(), inv_depth.detach().contiguous()
    ok = vert_ok.to(torch.int32).contiguous()
    points = verts.detach().to(verts2d.dtype).contiguous()
    _launch(kernel, B * F, [as_warp(xy, vec2, (B * V,)), as_warp(w, scalar, (B * V,)), as_warp(ok, wp.int32, (B * V,)),
                            as_warp(points, vec3, (B * V,)), as_warp(faces, wp.vec3i, (F,)), V, F, width, height,
                            int(cull_back), int(grow), as_warp(out, scalar)], warp_device_name(verts2d))
    return out.view(B, height, width)


# ------------------------------------------------------------------------------------------ rasterization
class RasterizeFunction(torch.autograd.Function):
    """Fragments ``(face, zbuf, dist, bary, count)`` of ``(B, H, W, K)`` from screen vertices and bins.

    Inputs ``verts2d (B, V, 2)`` [px] and ``inv_depth (B, V)`` [1/m] carry gradients; ``faces (F, 3)`` int32
    and ``bins`` (from :func:`build_bins` on the same vertices) do not. ``sigma`` [px^2] and ``eps`` define the
    coverage used to pick the ``K`` fragments kept; ``hard`` keeps the ``K`` nearest instead.
    """

    @staticmethod
    def forward(ctx, verts2d, inv_depth, faces, bins: Bins, width: int, height: int, K: int, threads: int,
                sigma: float, eps: float, hard: bool):
        B = inv_depth.shape[0]
        F = faces.shape[0]
        dtype = verts2d.dtype
        dev = verts2d.device
        device = warp_device_name(verts2d)
        P = B * height * width
        rk = wk.raster_kernels(dtype, K)
        k = wk.common_kernels(dtype)
        face = torch.empty((P, K), dtype=torch.int32, device=dev)
        zbuf = torch.empty((P, K), dtype=dtype, device=dev)
        dist = torch.empty((P, K), dtype=dtype, device=dev)
        bary = torch.empty((P, K, 3), dtype=dtype, device=dev)
        count = torch.empty((P,), dtype=torch.int32, device=dev)
        n = B * F
        shared = [
            bins.face_data,
            as_warp(bins.tile_start, wp.int32),
            as_warp(bins.tile_faces, wp.int32),
            F,
            width,
            height,
            bins.tile,
            bins.tiles_x,
            bins.n_tiles,
            k.scalar(bins.margin),
            k.scalar(1.0 / sigma),
            k.scalar(eps),
            int(hard),
        ]
        outs = [
            as_warp(face, wp.int32),
            as_warp(zbuf, k.scalar),
            as_warp(dist, k.scalar),
            as_warp(bary, k.vec3, (P, K)),
            as_warp(count, wp.int32),
        ]
        if n > 0 and hard and K == 1 and bins.margin == 0:  # plain z-buffer: the nearest face only
            nearest = shared[:9]
            _launch_pixels(rk.raster_nearest, P, lambda c, off: nearest + [off] + outs, device, threads)
        elif n > 0:
            _launch_pixels(rk.raster_forward, P, lambda c, off: shared + [off] + outs, device, threads)
        else:
            face.fill_(-1)
            zbuf.zero_()
            dist.zero_()
            bary.zero_()
            count.zero_()
        ctx.mark_non_differentiable(face, count)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(verts2d, inv_depth, faces, face)
        ctx.meta = (width, height, K, threads)
        shape = (B, height, width, K)
        return face.view(shape), zbuf.view(shape), dist.view(shape), bary.view(shape + (3,)), count.view(shape[:3])

    @staticmethod
    def backward(ctx, g_face, g_zbuf, g_dist, g_bary, g_count):
        verts2d, inv_depth, faces, face = ctx.saved_tensors
        width, height, K, threads = ctx.meta
        B, V = inv_depth.shape
        dtype = verts2d.dtype
        dev = verts2d.device
        device = warp_device_name(verts2d)
        P = B * height * width
        nones = (None,) * 9
        if faces.shape[0] == 0 or (g_zbuf is None and g_dist is None and g_bary is None):
            return (None, None) + nones
        rk = wk.raster_kernels(dtype, K)
        k = wk.common_kernels(dtype)

        # grad_z / grad_bary are read only when with_attr (1-row dummies otherwise: no zero-filling)
        with_attr = int(g_zbuf is not None or g_bary is not None)
        rows = P if with_attr else 1
        gz = (g_zbuf.reshape(P, K).contiguous() if g_zbuf is not None
              else torch.zeros((rows, K), dtype=dtype, device=dev))
        gb = (g_bary.reshape(P, K, 3).contiguous() if g_bary is not None
              else torch.zeros((rows, K, 3), dtype=dtype, device=dev))
        gd = torch.zeros((P, K), dtype=dtype, device=dev) if g_dist is None else g_dist.reshape(P, K).contiguous()
        n_chunks = planned_chunks(P, dev, threads)
        grad_xy = torch.zeros((n_chunks, B * V, 2), dtype=dtype, device=dev)
        grad_w = torch.zeros((n_chunks, B * V), dtype=dtype, device=dev)
        shared = [
            as_warp(verts2d.detach().contiguous(), k.vec2, (B * V,)),
            as_warp(inv_depth.detach().contiguous(), k.scalar, (B * V,)),
            as_warp(faces, wp.vec3i, (faces.shape[0],)),
            as_warp(face, wp.int32),
            as_warp(gz, k.scalar),
            as_warp(gd, k.scalar),
            as_warp(gb, k.vec3, gb.shape[:2]),
            V,
            width,
            height,
            with_attr,
        ]

        def make_inputs(c, off):
            return shared + [off, as_warp(grad_xy[c], k.vec2, (B * V,)), as_warp(grad_w[c], k.scalar, (B * V,))]

        _launch_pixels(rk.raster_backward, P, make_inputs, device, threads)
        return (grad_xy.sum(0).view(B, V, 2), grad_w.sum(0).view(B, V)) + nones


# ------------------------------------------------------------------------------------------- silhouettes
class SilhouetteFunction(torch.autograd.Function):
    """Soft silhouettes from fragments: ``full (P, NI)``, ``visible (P, NI)``, ``union (P,)``.

    ``frag_face (P, K)`` int32 (front to back), ``frag_dist (P, K)`` [px^2] (carries gradients),
    ``face_instance (F,)`` int32 in ``[0, NI)``.
    """

    @staticmethod
    def forward(ctx, frag_face, frag_dist, face_instance, n_inst: int, sigma: float, eps: float, threads: int):
        P, K = frag_face.shape
        dtype = frag_dist.dtype
        dev = frag_dist.device
        device = warp_device_name(frag_dist)
        k = wk.common_kernels(dtype)
        full = torch.empty((P, n_inst), dtype=dtype, device=dev)
        visible = torch.empty((P, n_inst), dtype=dtype, device=dev)
        union = torch.empty((P,), dtype=dtype, device=dev)
        trans = torch.empty((P, K), dtype=dtype, device=dev)
        frag_face = frag_face.contiguous()
        dist = frag_dist.detach().contiguous()
        shared = [as_warp(frag_face, wp.int32), as_warp(dist, k.scalar), as_warp(face_instance, wp.int32), n_inst,
                  k.scalar(1.0 / sigma), k.scalar(eps)]
        outs = [as_warp(full, k.scalar), as_warp(visible, k.scalar), as_warp(union, k.scalar), as_warp(trans, k.scalar)]
        _launch_pixels(k.silhouette_forward, P, lambda c, off: shared + [off] + outs, device, threads)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(frag_face, dist, face_instance, full, trans)
        ctx.meta = (sigma, eps, threads)
        return full, visible, union

    @staticmethod
    def backward(ctx, g_full, g_visible, g_union):
        frag_face, dist, face_instance, full, trans = ctx.saved_tensors
        sigma, eps, threads = ctx.meta
        P, K = frag_face.shape
        n_inst = full.shape[1]
        dtype = dist.dtype
        dev = dist.device
        device = warp_device_name(dist)
        k = wk.common_kernels(dtype)

        def grad_or_zeros(g, shape):
            return torch.zeros(shape, dtype=dtype, device=dev) if g is None else g.contiguous()

        gf = grad_or_zeros(g_full, (P, n_inst))
        gv = grad_or_zeros(g_visible, (P, n_inst))
        gu = grad_or_zeros(g_union, (P,))
        grad_dist = torch.empty((P, K), dtype=dtype, device=dev)
        shared = [as_warp(frag_face, wp.int32), as_warp(dist, k.scalar), as_warp(face_instance, wp.int32),
                  as_warp(full, k.scalar), as_warp(trans, k.scalar), as_warp(gf, k.scalar), as_warp(gv, k.scalar),
                  as_warp(gu, k.scalar), k.scalar(1.0 / sigma), k.scalar(eps)]
        out = [as_warp(grad_dist, k.scalar)]
        _launch_pixels(k.silhouette_backward, P, lambda c, off: shared + [off] + out, device, threads)
        return None, grad_dist, None, None, None, None, None


# ------------------------------------------------------------------------------------------- soft depth
class DepthBlendFunction(torch.autograd.Function):
    """SoftRas soft depth ``(P,)`` [m] from fragments ``face (P, K)``, ``zbuf (P, K)`` and ``dist (P, K)``.

    ``params = (sigma, eps, gamma, z_near, z_far, background_weight, background_depth)``; gradients flow to
    ``zbuf`` and ``dist`` (the softmax shift ``zmax`` is held constant, as it cancels).
    """

    @staticmethod
    def forward(ctx, frag_face, frag_z, frag_dist, params: tuple, threads: int):
        P = frag_face.shape[0]
        dtype = frag_z.dtype
        dev = frag_z.device
        device = warp_device_name(frag_z)
        k = wk.common_kernels(dtype)
        sigma, eps, gamma, z_near, z_far, bg_weight, bg_depth = params
        frag_face = frag_face.contiguous()
        z = frag_z.detach().contiguous()
        dist = frag_dist.detach().contiguous()
        depth = torch.empty((P,), dtype=dtype, device=dev)
        consts = [k.scalar(1.0 / sigma), k.scalar(eps), k.scalar(1.0 / gamma), k.scalar(z_far),
                  k.scalar(1.0 / (z_far - z_near)), k.scalar(bg_weight)]
        shared = [as_warp(frag_face, wp.int32), as_warp(z, k.scalar), as_warp(dist, k.scalar)] + consts
        out = [as_warp(depth, k.scalar)]
        _launch_pixels(k.depth_forward, P, lambda c, off: shared + [k.scalar(bg_depth), off] + out, device, threads)
        ctx.save_for_backward(frag_face, z, dist, depth)
        ctx.meta = (consts, threads)
        return depth

    @staticmethod
    def backward(ctx, g_depth):
        frag_face, z, dist, depth = ctx.saved_tensors
        consts, threads = ctx.meta
        P, K = frag_face.shape
        k = wk.common_kernels(z.dtype)
        grad_z = torch.empty((P, K), dtype=z.dtype, device=z.device)
        grad_dist = torch.empty((P, K), dtype=z.dtype, device=z.device)
        shared = [as_warp(frag_face, wp.int32), as_warp(z, k.scalar), as_warp(dist, k.scalar), as_warp(depth, k.scalar),
                  as_warp(g_depth.contiguous(), k.scalar)] + consts
        out = [as_warp(grad_z, k.scalar), as_warp(grad_dist, k.scalar)]
        _launch_pixels(k.depth_backward, P, lambda c, off: shared + [off] + out, warp_device_name(z), threads)
        return None, grad_z, grad_dist, None, None
