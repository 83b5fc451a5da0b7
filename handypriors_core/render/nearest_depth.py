"""The face-by-face z-buffer of :func:`.bridge.nearest_inverse_depth`: its kernel, and on the CPU a kept launch.

:func:`make_zbuffer_kernel`'s ``splat_faces`` is one thread per face: the binning kernel ``face_setup``'s edge
equations and pixel box (no blur margin, the same expressions), then every pixel centre of the box inside the face
takes the largest inverse depth there (faces turned away, with ``cull_back``, or degenerate stop before any
setup); bit for bit the depth of the hard rasterizer's nearest face (``test_filter_fast_paths``).

A per-frame hand z-buffer of a 96 x 96 region is one launch of a few thousand threads; on the CPU warp's packing of
its arguments, the warp views of the torch buffers and the torch projection cost more than the kernel.
:class:`NearestDepthPlan` keeps, for one mesh topology, batch and image size, the buffers, their warp views and the
launch recorded once (``wp.launch(..., record_cmd=True)``); a call projects the vertices in numpy (the arithmetic
of :func:`.rasterizer.project_vertices`, element for element), copies them into the buffers and replays the
launch: the same z-buffer as :meth:`.rasterizer.HardRasterizer.nearest_depth_torch` (fresh launch, torch
projection; the path of other devices), bit for bit (``test_step_kernels``).
"""


import numpy as np  # no `from __future__ import annotations`: warp reads the kernel annotations as objects
import torch
import warp as wp

from .kernel_geometry import DEGENERATE_EPS, make_geometry, wp_scalar
from .warp_views import KeptLaunch, as_warp

__all__ = ["NearestDepthPlan", "make_zbuffer_kernel", "max_filter_array", "project_vertices_array"]

_KERNELS: dict = {}


def make_zbuffer_kernel(dtype: torch.dtype):
    """The warp kernel ``splat_faces`` for float ``dtype`` (built once, in its own warp module)."""
    if dtype in _KERNELS:
        return _KERNELS[dtype]
    scalar = wp_scalar(dtype)
    vec2 = wp.types.vector(2, scalar)
    vec3 = wp.types.vector(3, scalar)
    mat33 = wp.types.matrix((3, 3), scalar)
    cross2 = make_geometry(scalar).cross2
    zero = scalar(0.0)
    one = scalar(1.0)
    tiny = scalar(DEGENERATE_EPS)

    @wp.kernel(enable_backward=False, module=f"handypriors_render_zbuffer_{scalar.__name__}")
    def splat_faces(
        verts2d: wp.array(dtype=vec2),  # (B*V,) screen positions [px]
        inv_depth: wp.array(dtype=scalar),  # (B*V,) 1/z [1/m]
        vert_ok: wp.array(dtype=wp.int32),  # (B*V,) 1 = drawable vertex
        verts: wp.array(dtype=vec3),  # (B*V,) camera-frame vertices [m] (read when cull_back)
        faces: wp.array(dtype=wp.vec3i),  # (F,)
        n_verts: int,
        n_faces: int,
        width: int,
        height: int,
        cull_back: int,  # 1: skip the faces turned away from the camera
        grow: int,  # each covered pixel also writes its neighbours within this many px (a min-filter of depth)
        # output, zeroed by the caller
        inv_depth_out: wp.array(dtype=scalar),  # (B*H*W,) largest 1/z [1/m] of a face over the pixel, 0 = none
    ):
        # face_setup's expressions (margin 0, tile 1) in the same order, then the pixels of the box
        bf = wp.tid()
        b = bf / n_faces
        f = bf - b * n_faces
        ids = faces[f]
        g0 = b * n_verts + ids[0]
        g1 = b * n_verts + ids[1]
        g2 = b * n_verts + ids[2]
        if vert_ok[g0] == 0 or vert_ok[g1] == 0 or vert_ok[g2] == 0:
            return
        if cull_back != 0:
            a = verts[g0]
            n = wp.cross(verts[g1] - a, verts[g2] - a)
            if wp.dot(n, a) >= zero:
                return
        v0 = verts2d[g0]
        v1 = verts2d[g1]
        v2 = verts2d[g2]
        xmin = wp.min(wp.min(v0[0], v1[0]), v2[0]) - zero
        xmax = wp.max(wp.max(v0[0], v1[0]), v2[0]) + zero
        ymin = wp.min(wp.min(v0[1], v1[1]), v2[1]) - zero
        ymax = wp.max(wp.max(v0[1], v1[1]), v2[1]) + zero
        fw = scalar(width)
        fh = scalar(height)
        x0 = wp.max(int(wp.ceil(wp.clamp(xmin, -one, fw))), 0)
        x1 = wp.min(int(wp.floor(wp.clamp(xmax, -one, fw))), width - 1)
        y0 = wp.max(int(wp.ceil(wp.clamp(ymin, -one, fh))), 0)
        y1 = wp.min(int(wp.floor(wp.clamp(ymax, -one, fh))), height - 1)
        if x1 < x0 or y1 < y0:
            return  # no pixel centre in its box (most faces of a hand around a small region of interest)
        area2 = cross2(v1 - v0, v2 - v0)
        e0 = v2 - v1
        e1 = v0 - v2
        e2 = v1 - v0
        l0 = wp.length(e0)
        l1 = wp.length(e1)
        l2 = wp.length(e2)
        if not (wp.abs(area2) > tiny and l0 > tiny and l1 > tiny and l2 > tiny):
            return  # degenerate: face_setup's edges reject every pixel
        sg = one
        if area2 < zero:
            sg = -one
        edge = mat33(
            -sg * e0[1] / l0, sg * e0[0] / l0, sg * (e0[1] * v1[0] - e0[0] * v1[1]) / l0,
            -sg * e1[1] / l1, sg * e1[0] / l1, sg * (e1[1] * v2[0] - e1[0] * v2[1]) / l1,
            -sg * e2[1] / l2, sg * e2[0] / l2, sg * (e2[1] * v0[0] - e2[0] * v0[1]) / l2,
        )
        aa = wp.abs(area2)
        sc = vec3(l0 / aa, l1 / aa, l2 / aa)
        w = vec3(inv_depth[g0], inv_depth[g1], inv_depth[g2])
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                ed = edge * vec3(scalar(x), scalar(y), one)
                emin = wp.min(wp.min(ed[0], ed[1]), ed[2])
                if emin < zero:
                    continue
                la = ed[0] * sc[0]
                lb = ed[1] * sc[1]
                iz = la * w[0] + lb * w[1] + (one - la - lb) * w[2]
                for yy in range(wp.max(y - grow, 0), wp.min(y + grow, height - 1) + 1):
                    for xx in range(wp.max(x - grow, 0), wp.min(x + grow, width - 1) + 1):
                        wp.atomic_max(inv_depth_out, (b * height + yy) * width + xx, iz)

    _KERNELS[dtype] = (splat_faces, vec2, vec3, scalar)
    return _KERNELS[dtype]


def project_vertices_array(verts: np.ndarray, K: np.ndarray, near: float, max_screen: float
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`.rasterizer.project_vertices` in numpy: camera-frame ``verts (N, 3)`` [m] and intrinsics ``K (3, 3)``
    of the same float dtype -> ``xy (N, 2)`` [px], ``inv_depth (N,)`` [1/m], ``ok (N,)`` bool, the same values
    (each operation in the same order and precision; per column: numpy is slow along a short last axis)."""
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    finite = np.isfinite(verts)
    ok = finite[:, 0] & finite[:, 1] & finite[:, 2] & (z > near)
    if not ok.all():  # undrawable vertices take the placeholder (0, 0, 1)
        zero, one = np.zeros((), dtype=verts.dtype), np.ones((), dtype=verts.dtype)
        x, y, z = np.where(ok, x, zero), np.where(ok, y, zero), np.where(ok, z, one)
    inv_depth = np.reciprocal(z)
    u = x * inv_depth
    u *= K[0, 0]
    u += K[0, 2]
    v = y * inv_depth
    v *= K[1, 1]
    v += K[1, 2]
    ok &= (np.abs(u) < max_screen) & (np.abs(v) < max_screen)
    return np.stack((u, v), -1), inv_depth, ok


def max_filter_array(image: np.ndarray, grow: int) -> np.ndarray:
    """Maximum over each pixel's ``(2 grow + 1)^2`` neighbourhood (clipped at the border) of ``image (B, H, W)``:
    what ``splat_faces``' ``grow`` writes, as a separable filter (rows, then columns; max is associative, so the
    same values). ``grow == 0`` returns ``image`` itself."""
    if grow <= 0:
        return image
    out = image
    for axis in (-1, -2):
        src, out = out, out.copy()
        n = src.shape[axis]
        for k in range(1, min(grow, n - 1) + 1):
            lo = [slice(None)] * src.ndim
            hi = [slice(None)] * src.ndim
            lo[axis], hi[axis] = slice(0, n - k), slice(k, n)
            lo, hi = tuple(lo), tuple(hi)
            np.maximum(out[hi], src[lo], out=out[hi])  # from the k-th neighbour before
            np.maximum(out[lo], src[hi], out=out[lo])  # and after
    return out


class NearestDepthPlan:
    """:func:`.bridge.nearest_inverse_depth` for ``faces (F, 3)`` over ``batch`` meshes of ``n_verts`` vertices in a
    ``width x height`` image, ``cull_back`` and ``grow`` fixed, on the CPU in ``dtype`` (float32 / float64).

    ``__call__(verts (B, V, 3), xy (B, V, 2), inv_depth (B, V), ok (B, V))`` (numpy, the projection of
    :func:`project_vertices_array`) -> ``(B, H, W)`` inverse depth [1/m] (0: no face), a view of the plan's
    buffer, overwritten by the next call.
    """

    def __init__(self, faces: torch.Tensor, batch: int, n_verts: int, width: int, height: int, cull_back: bool,
                 grow: int, dtype: torch.dtype = torch.float32) -> None:
        kernel, vec2, vec3, scalar = make_zbuffer_kernel(dtype)
        F = faces.shape[0]
        n = batch * F
        self.n_points = batch * n_verts
        self.shape = (batch, height, width)
        self._faces = faces.detach().to("cpu", torch.int32).contiguous()
        self._xy = torch.zeros((self.n_points, 2), dtype=dtype)
        self._inv_depth = torch.zeros(self.n_points, dtype=dtype)
        self._ok = torch.zeros(self.n_points, dtype=torch.int32)
        self._points = torch.zeros((self.n_points, 3), dtype=dtype)
        self._out = torch.zeros(batch * height * width, dtype=dtype)
        self._launch = None if n == 0 else KeptLaunch(wp.launch(kernel, dim=n, inputs=[
            as_warp(self._xy, vec2, (self.n_points,)), as_warp(self._inv_depth, scalar), as_warp(self._ok, wp.int32),
            as_warp(self._points, vec3, (self.n_points,)), as_warp(self._faces, wp.vec3i, (F,)), n_verts, F, width,
            height, int(cull_back), int(grow), as_warp(self._out, scalar)], device="cpu", record_cmd=True))
        self._views = (self._xy.numpy(), self._inv_depth.numpy(), self._ok.numpy(), self._points.numpy(),
                       self._out.numpy())

    def __call__(self, verts: np.ndarray, xy: np.ndarray, inv_depth: np.ndarray, ok: np.ndarray) -> np.ndarray:
        xy_b, iz_b, ok_b, points_b, out = self._views
        xy_b[:] = xy.reshape(-1, 2)
        iz_b[:] = inv_depth.reshape(-1)
        ok_b[:] = ok.reshape(-1)
        points_b[:] = verts.reshape(-1, 3)
        out[:] = 0
        if self._launch is not None:
            self._launch.launch()
        return out.reshape(self.shape)
