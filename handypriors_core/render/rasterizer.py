"""Rasterizers: camera-frame meshes -> per-pixel :class:`~.fragments.Fragments`.

Projection is plain torch (differentiable in the vertices and the intrinsics); binning and the per-pixel
work are warp kernels reached through :mod:`.bridge`. Work grows with pixels times the faces whose blur
margin reaches each pixel's screen tile, not with pixels times all faces.

Bad input, documented behaviour (no exception, no NaN gradient): faces with a vertex closer than
``RasterSettings.near`` (or behind the camera), with a non-finite vertex, or projecting farther than
:data:`MAX_SCREEN` px from the principal point are not drawn and get zero gradient; degenerate (zero-area)
faces have no interior but still blur like their edges; an empty mesh renders background.
"""

from __future__ import annotations

import numpy as np
import torch

from ..checks import check_shape
from ..errors import InvalidValueError, ShapeError
from . import bridge
from .fragments import Fragments
from .nearest_depth import NearestDepthPlan, max_filter_array, project_vertices_array
from .settings import RasterSettings, blur_margin

__all__ = ["MAX_SCREEN", "HardRasterizer", "SoftRasterizer", "check_mesh", "project_vertices"]

#: Vertices projecting farther than this [px] from the image origin make their faces undrawn.
MAX_SCREEN = 1e5


def check_mesh(verts: torch.Tensor, faces: torch.Tensor) -> None:
    """Shapes and index range of ``verts (B, V, 3)`` and ``faces (F, 3)`` (raises ShapeError)."""
    check_shape(verts, (None, None, 3), "verts")
    check_shape(faces, (None, 3), "faces")
    if verts.dtype not in (torch.float32, torch.float64):
        raise ShapeError(f"Expected verts to be float32 or float64; got {verts.dtype}")
    if faces.dtype.is_floating_point or faces.dtype == torch.bool:
        raise ShapeError(f"Expected faces to be an integer tensor; got {faces.dtype}")
    if faces.numel() > 0:
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= verts.shape[1]:
            raise ShapeError(f"faces index vertices in [{lo}, {hi}] but verts has {verts.shape[1]} vertices")


def _intrinsics(camera, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(focal (2,), centre (2,), width, height) of a PinholeCamera-like object on ``like``'s device/dtype."""
    try:
        fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
        width, height = int(camera.width), int(camera.height)
    except AttributeError as exc:
        raise InvalidValueError(f"camera must provide fx, fy, cx, cy, width, height; {exc}") from None
    vals = [torch.as_tensor(v).to(device=like.device, dtype=like.dtype) for v in (fx, fy, cx, cy)]
    return torch.stack(vals[:2]), torch.stack(vals[2:]), width, height


def project_vertices(
    verts: torch.Tensor, camera, near: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pinhole projection of camera-frame ``verts (B, V, 3)`` [m].

    Returns ``xy (B, V, 2)`` [px], ``inv_depth (B, V)`` [1/m] and ``ok (B, V)`` bool (drawable: finite, depth
    > ``near``, within :data:`MAX_SCREEN`). Undrawable vertices get placeholder values with zero gradient.
    """
    focal, centre, _, _ = _intrinsics(camera, verts)
    ok = torch.isfinite(verts).all(-1) & (verts[..., 2] > near)
    placeholder = torch.tensor([0.0, 0.0, 1.0], dtype=verts.dtype, device=verts.device)
    safe = torch.where(ok[..., None], verts, placeholder)
    inv_depth = 1.0 / safe[..., 2]
    xy = safe[..., :2] * inv_depth[..., None] * focal + centre
    ok = ok & (xy.detach().abs() < MAX_SCREEN).all(-1)
    return xy, inv_depth, ok


class SoftRasterizer:
    """Soft rasterizer: up to ``faces_per_pixel`` faces within the blur margin of every pixel, front to back.

    ``__call__(verts (B, V, 3) [m, camera frame], faces (F, 3) int, camera, sigma=None, face_instance=None)
    -> Fragments``. Where more faces reach a pixel than it keeps, the fragment contributing least to its own
    instance's silhouette (``D_j prod (1 - D_i)`` over the same instance's faces in front) is dropped, so each
    instance's full silhouette survives occlusion; ``face_instance (F,)`` (default: one instance) says which
    faces belong together.
    ``camera`` is a :class:`~handypriors_core.geometry.camera.PinholeCamera` (or anything with ``fx fy cx cy
    width height``), possibly cropped with ``crop_and_resize``. ``sigma`` [px^2] overrides the setting for
    this call (coarse-to-fine schedules). Lens distortion is ignored (ideal pinhole image).
    """

    def __init__(self, settings: RasterSettings | None = None):
        self.settings = settings if settings is not None else RasterSettings()

    def _margin(self, sigma: float) -> float:
        return blur_margin(sigma, self.settings.blur_threshold)

    def __call__(
        self, verts: torch.Tensor, faces: torch.Tensor, camera, sigma: float | None = None,
        face_instance: torch.Tensor | None = None,
    ) -> Fragments:
        sigma = float(self.settings.sigma if sigma is None else sigma)
        if not sigma > 0:
            raise InvalidValueError(f"sigma must be > 0; got {sigma}")
        return self._rasterize(verts, faces, camera, sigma, self._margin(sigma), self.settings.faces_per_pixel, False,
                               face_instance)

    def _rasterize(
        self, verts, faces, camera, sigma: float, margin: float, K: int, hard: bool, face_instance=None
    ) -> Fragments:
        check_mesh(verts, faces)
        s = self.settings
        xy, inv_depth, ok = project_vertices(verts, camera, s.near)
        _, _, width, height = _intrinsics(camera, verts)
        faces32 = faces.to(device=verts.device, dtype=torch.int32).contiguous()
        if face_instance is None:
            inst32 = torch.zeros(faces.shape[0], dtype=torch.int32, device=verts.device)
        else:
            check_shape(face_instance, (faces.shape[0],), "face_instance")
            inst32 = face_instance.to(device=verts.device, dtype=torch.int32).contiguous()
        bins = bridge.build_bins(xy, inv_depth, ok, faces32, inst32, width, height, s.tile_size, margin)
        threads = bridge.resolve_threads(s.cpu_threads)
        face, zbuf, dist, bary, count = bridge.RasterizeFunction.apply(
            xy.contiguous(), inv_depth.contiguous(), faces32, bins, width, height, K, threads, sigma,
            s.blur_threshold, hard
        )
        return Fragments(face, zbuf, dist, bary, count, sigma, s.blur_threshold)


class HardRasterizer(SoftRasterizer):
    """Z-buffer rasterizer: per pixel the nearest face containing the pixel centre (``K = 1``, no blur).

    Same kernels with a zero blur margin: ``face (B, H, W, 1)`` (-1 = background), perspective-correct
    ``bary``, ``zbuf`` [m] (0 = background), ``dist >= 0``. ``zbuf`` and ``bary`` stay differentiable in the
    vertices (not in the face choice).
    """

    def __call__(self, verts: torch.Tensor, faces: torch.Tensor, camera, sigma: float | None = None) -> Fragments:
        return self._rasterize(verts, faces, camera, self.settings.sigma, 0.0, 1, True)

    def nearest_depth(self, verts: torch.Tensor, faces: torch.Tensor, camera, cull_back: bool = False,
                      grow: int = 0) -> torch.Tensor:
        """``(B, H, W)`` depth [m] of the nearest face containing each pixel centre, ``inf`` where none: the
        ``zbuf`` of :meth:`__call__` where its ``face >= 0`` (not differentiable), drawn face by face
        (:func:`.bridge.nearest_inverse_depth`). ``cull_back``: skip the faces turned away from the camera (for a
        closed outward mesh the nearest face is never one of them); ``grow`` [px]: the minimum over each pixel's
        ``(2 grow + 1)^2`` neighbourhood instead (a min-filter). On the CPU the projection runs in numpy and the
        launches are replayed from a :class:`.nearest_depth.NearestDepthPlan` kept per ``faces`` tensor (read once:
        do not modify it in place), batch, vertex count and image size, without ``grow``: the neighbourhood maximum
        of the inverse depth that the kernel's ``grow`` writes pixel by pixel is taken afterwards by a separable
        maximum filter in numpy (:func:`.nearest_depth.max_filter_array`; a max over a square is the max of row maxima,
        so the same values at a fraction of the kernel's atomic writes); the same values as
        :meth:`nearest_depth_torch`, the general path."""
        if grow < 0:
            raise InvalidValueError(f"grow must be >= 0; got {grow}")
        if verts.device.type != "cpu" or verts.dim() != 3 or faces.dim() != 2 or 0 in (verts.shape[1], faces.shape[0]):
            return self.nearest_depth_torch(verts, faces, camera, cull_back, grow)
        try:
            width, height, K = int(camera.width), int(camera.height), camera.K
        except AttributeError as exc:
            raise InvalidValueError(f"camera must provide K, width, height; {exc}") from None
        dtype = verts.dtype
        B, V, _ = verts.shape
        plans = self.__dict__.setdefault("_plans", {})
        key = (id(faces), B, V, width, height, bool(cull_back), dtype)
        source, plan = plans.get(key, (None, None))
        if source is not faces:  # the plan holds its faces tensor, so its id names no other tensor while it lives
            check_mesh(verts, faces)  # the faces once per plan (index range: V is in the key)
            if len(plans) >= 8:
                plans.clear()
            plan = NearestDepthPlan(faces, B, V, width, height, cull_back, 0, dtype)
            plans[key] = (faces, plan)
        elif verts.shape[2] != 3 or dtype not in (torch.float32, torch.float64):
            check_mesh(verts, faces)  # raises
        v = verts.detach().numpy()
        K = K.detach().to("cpu", dtype).numpy()
        xy, inv_depth, ok = project_vertices_array(v.reshape(-1, 3), K, self.settings.near, MAX_SCREEN)
        iz = max_filter_array(plan(v, xy, inv_depth, ok), grow)  # the kernel's grow, as a separable filter
        with np.errstate(divide="ignore"):
            depth = np.where(iz > 0, np.reciprocal(iz), np.asarray(np.inf, dtype=iz.dtype))
        return torch.from_numpy(depth)

    def nearest_depth_torch(self, verts: torch.Tensor, faces: torch.Tensor, camera, cull_back: bool = False,
                            grow: int = 0) -> torch.Tensor:
        """:meth:`nearest_depth` with the torch projection and fresh launches (any device; the CUDA path)."""
        check_mesh(verts, faces)
        if grow < 0:
            raise InvalidValueError(f"grow must be >= 0; got {grow}")
        with torch.no_grad():
            xy, inv_depth, ok = project_vertices(verts, camera, self.settings.near)
            _, _, width, height = _intrinsics(camera, verts)
            faces32 = faces.to(device=verts.device, dtype=torch.int32).contiguous()
            iz = bridge.nearest_inverse_depth(verts, xy, inv_depth, ok, faces32, width, height, cull_back, grow)
            return torch.where(iz > 0, 1.0 / iz, torch.full_like(iz, float("inf")))
