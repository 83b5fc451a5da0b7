"""The face-by-face z-buffer of :func:`.bridge.nearest_inverse_depth` on the CPU with its launches kept.

A per-frame hand z-buffer of a 96 x 96 region is two warp launches of a few thousand threads each; on the CPU
warp's packing of their two dozen arguments, the warp views of the torch buffers and the torch projection cost
more than the kernels. :class:`NearestDepthPlan` keeps, for one mesh topology, batch and image size, the buffers,
the warp views and the two launches recorded once (``wp.launch(..., record_cmd=True)``); a call projects the
vertices in numpy (the float32 / float64 arithmetic of :func:`.rasterizer.project_vertices`, element for element),
copies them into the buffers and replays the launches. Same kernels, same inputs: the same z-buffer bit for bit
(``test_filter_fast_paths``). CUDA keeps the torch path (:meth:`.rasterizer.HardRasterizer.nearest_depth`).
"""

from __future__ import annotations

import numpy as np
import torch
import warp as wp

from . import warp_kernels as wk
from .bridge import _wrap

__all__ = ["NearestDepthPlan", "project_vertices_array"]


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


class NearestDepthPlan:
    """:func:`.bridge.nearest_inverse_depth` for ``faces (F, 3)`` over ``batch`` meshes of ``n_verts`` vertices in a
    ``width x height`` image, ``cull_back`` and ``grow`` fixed, on the CPU in ``dtype`` (float32 / float64).

    ``__call__(verts (B, V, 3), xy (B, V, 2), inv_depth (B, V), ok (B, V))`` (numpy, the projection of
    :func:`project_vertices_array`) -> ``(B, H, W)`` inverse depth [1/m] (0: no face), a view of the plan's
    buffer, overwritten by the next call.
    """

    def __init__(self, faces: torch.Tensor, batch: int, n_verts: int, width: int, height: int, cull_back: bool,
                 grow: int, dtype: torch.dtype = torch.float32) -> None:
        k = wk.common_kernels(dtype)
        F = faces.shape[0]
        n = batch * F
        self.n_points = batch * n_verts
        self.shape = (batch, height, width)
        self._faces = faces.detach().to("cpu", torch.int32).contiguous()
        self._instance = torch.zeros(F, dtype=torch.int32)
        self._xy = torch.zeros((self.n_points, 2), dtype=dtype)
        self._inv_depth = torch.zeros(self.n_points, dtype=dtype)
        self._ok = torch.zeros(self.n_points, dtype=torch.int32)
        self._points = torch.zeros((self.n_points, 3), dtype=dtype)
        self._face_pixels = torch.empty((n, 4), dtype=torch.int32)
        self._out = torch.zeros(batch * height * width, dtype=dtype)
        self._face_data = wp.empty(n, dtype=k.FaceData, device="cpu")
        faces_w = _wrap(self._faces, wp.vec3i, (F,))
        pixels_w = _wrap(self._face_pixels, wp.vec4i, (n,))
        self._launches = [] if n == 0 else [
            wp.launch(k.face_setup, dim=n, inputs=[
                _wrap(self._xy, k.vec2, (self.n_points,)), _wrap(self._inv_depth, k.scalar), _wrap(self._ok, wp.int32),
                faces_w, _wrap(self._instance, wp.int32), n_verts, F, k.scalar(0.0), width, height, 1,
                self._face_data, pixels_w], device="cpu", record_cmd=True),
            wp.launch(k.splat_nearest, dim=n, inputs=[
                self._face_data, pixels_w, _wrap(self._points, k.vec3, (self.n_points,)), faces_w, n_verts, F,
                width, height, int(cull_back), int(grow), _wrap(self._out, k.scalar)], device="cpu",
                record_cmd=True)]
        self._views = (self._xy.numpy(), self._inv_depth.numpy(), self._ok.numpy(), self._points.numpy(),
                       self._out.numpy())

    def __call__(self, verts: np.ndarray, xy: np.ndarray, inv_depth: np.ndarray, ok: np.ndarray) -> np.ndarray:
        xy_b, iz_b, ok_b, points_b, out = self._views
        xy_b[:] = xy.reshape(-1, 2)
        iz_b[:] = inv_depth.reshape(-1)
        ok_b[:] = ok.reshape(-1)
        points_b[:] = verts.reshape(-1, 3)
        out[:] = 0
        for launch in self._launches:
            launch.launch()
        return out.reshape(self.shape)
