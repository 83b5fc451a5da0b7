"""Where the known hand hides the object: a hard z-buffer of the posed hand mesh over the region of interest.

The hand is known (joint states + hand2camera), so instead of guessing occlusions from the data, the sparse
modalities draw its z-buffer once per frame at the resolution of the region of interest (face by face:
:meth:`~handypriors_core.render.renderer.Renderer.hard_depth`, the depth of ``Renderer.hard``) and drop the depth
points and contour lines it covers. A closed hand surface is drawn with the faces turned towards the camera only (the
nearest face at every pixel is one of them; same z-buffer, half the faces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..geometry.camera import MIN_DEPTH
from .observation import Observation
from .scene import HandObjectScene

__all__ = ["HandDepthLookup", "HandOcclusion"]


@dataclass(frozen=True)
class HandDepthLookup:
    """:meth:`HandOcclusion.depth_at_pixels` in numpy (the CPU path of the sparse modalities): the z-buffer
    ``depth (S_h, S_w)`` float32 [m] and the float32 constants mapping full-image pixels to its pixels."""

    depth: np.ndarray
    full: tuple[np.float32, np.float32, np.float32, np.float32]  # full camera cx, fx, cy, fy [px]
    roi: tuple[np.float32, np.float32, np.float32, np.float32]  # region camera cx, fx, cy, fy [px]

    def roi_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest z-buffer column and row ``(N,)`` int64 of full-image pixel coordinates ``u``, ``v (N,)``."""
        (fcx, ffx, fcy, ffy), (rcx, rfx, rcy, rfy) = self.full, self.roi
        iu = np.round((u.astype(np.float32) - fcx) / ffx * rfx + rcx).astype(np.int64)
        iv = np.round((v.astype(np.float32) - fcy) / ffy * rfy + rcy).astype(np.int64)
        return iu, iv

    def pixel_tables(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`at_pixels` tabulated for integer full-image pixel coordinates ``-1 .. size``: ``(columns (size + 2,),
        rows (size + 2,) int64, depth (F,) float32)`` with ``at_pixels([[u, v]]) == depth[rows[v] + columns[u]]``
        (entry ``-1``, the last, is coordinate -1; the z-buffer gets a row and a column of ``inf`` for the pixels
        outside it)."""
        S_h, S_w = self.depth.shape
        coordinates = np.arange(size + 2.0)
        coordinates[-1] = -1.0
        iu, iv = self.roi_pixels(coordinates, coordinates)
        columns = np.where((iu >= 0) & (iu < S_w), iu, S_w)
        rows = np.where((iv >= 0) & (iv < S_h), iv, S_h) * (S_w + 1)
        padded = np.full((S_h + 1, S_w + 1), np.inf, np.float32)
        padded[:S_h, :S_w] = self.depth
        return columns, rows, padded.reshape(-1)

    def at_pixels(self, uv: np.ndarray) -> np.ndarray:
        """``(N,)`` float32 hand depth [m] at full-image pixels ``uv (N, 2)`` (``inf``: no hand or outside)."""
        S_h, S_w = self.depth.shape
        iu, iv = self.roi_pixels(uv[:, 0], uv[:, 1])
        inside = (iu >= 0) & (iu < S_w) & (iv >= 0) & (iv < S_h)
        d = self.depth[np.minimum(np.maximum(iv, 0), S_h - 1), np.minimum(np.maximum(iu, 0), S_w - 1)]
        return np.where(inside, d, np.float32(np.inf))

    def on_grid(self, us: np.ndarray, vs: np.ndarray) -> np.ndarray:
        """``(len(vs), len(us))`` float32 :meth:`at_pixels` of every pixel ``(u, v)`` of the grid ``us x vs``
        (int arrays of full-image columns and rows; the mapping is separable, so each is mapped once)."""
        (fcx, ffx, fcy, ffy), (rcx, rfx, rcy, rfy) = self.full, self.roi
        iu = np.round((us.astype(np.float32) - fcx) / ffx * rfx + rcx).astype(np.int64)
        iv = np.round((vs.astype(np.float32) - fcy) / ffy * rfy + rcy).astype(np.int64)
        S_h, S_w = self.depth.shape
        d = self.depth.take(np.minimum(np.maximum(iv, 0), S_h - 1), 0).take(np.minimum(np.maximum(iu, 0), S_w - 1), 1)
        d[(iv < 0) | (iv >= S_h)] = np.inf
        d[:, (iu < 0) | (iu >= S_w)] = np.inf
        return d

    def covers(self, points_cam: np.ndarray, margin: float) -> np.ndarray:
        """:meth:`HandOcclusion.covers` of float64 ``points_cam (N, 3)`` [m] (projected in float32 as there)."""
        p = points_cam.astype(np.float32)
        z = np.maximum(p[:, 2], np.float32(MIN_DEPTH))
        cx, fx, cy, fy = self.roi
        iu = np.round(p[:, 0] / z * fx + cx).astype(np.int64)
        iv = np.round(p[:, 1] / z * fy + cy).astype(np.int64)
        S_h, S_w = self.depth.shape
        inside = (iu >= 0) & (iu < S_w) & (iv >= 0) & (iv < S_h)
        d = self.depth[np.minimum(np.maximum(iv, 0), S_h - 1), np.minimum(np.maximum(iu, 0), S_w - 1)]
        return np.where(inside, d, np.float32(np.inf)) < p[:, 2] + np.float32(margin)


class HandOcclusion:
    """Nearest hand depth per ROI pixel, grown by ``dilation`` px (the hand model's outline is approximate).

    Args:
        scene: the scene (renderer, hand faces); obs: the frame's observation (posed hand, ROI camera).
        dilation: pixels [ROI px] by which the hand's footprint is grown (min-filter of its depth).
    Attributes:
        depth: ``(S, S)`` float32 [m], ``inf`` where no hand.
    """

    def __init__(self, scene: HandObjectScene, obs: Observation, dilation: int = 1) -> None:
        self.camera = obs.roi_camera
        self.full_camera = obs.camera
        self._lookup: HandDepthLookup | None = None
        verts = obs.hand.verts.float()
        # the faces turned away are never the nearest of a closed outward surface: half the work
        self.depth = scene.renderer.hard_depth(verts, scene.hand_faces, self.camera,
                                               cull_back=scene.hand_surface_closed(verts), grow=dilation)[0]

    def hand_depth_at(self, points_cam: torch.Tensor) -> torch.Tensor:
        """``(N,)`` hand depth [m] at the ROI pixels of ``points_cam (N, 3)`` (``inf``: no hand or outside the ROI)."""
        S_h, S_w = self.depth.shape
        uv = self.camera.project(points_cam.to(self.depth)[None])[0].round().long()
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < S_w) & (uv[:, 1] >= 0) & (uv[:, 1] < S_h)
        d = self.depth[uv[:, 1].clamp(0, S_h - 1), uv[:, 0].clamp(0, S_w - 1)]
        return torch.where(inside, d, torch.full_like(d, float("inf")))

    def depth_at_pixels(self, uv: torch.Tensor) -> torch.Tensor:
        """``(N,)`` hand depth [m] at full-image pixels ``uv (N, 2)`` (``inf``: no hand or outside the ROI)."""
        full, roi = self.full_camera, self.camera
        u = (uv[:, 0].to(self.depth) - full.cx) / full.fx * roi.fx + roi.cx
        v = (uv[:, 1].to(self.depth) - full.cy) / full.fy * roi.fy + roi.cy
        S_h, S_w = self.depth.shape
        iu, iv = u.round().long(), v.round().long()
        inside = (iu >= 0) & (iu < S_w) & (iv >= 0) & (iv < S_h)
        d = self.depth[iv.clamp(0, S_h - 1), iu.clamp(0, S_w - 1)]
        return torch.where(inside, d, torch.full_like(d, float("inf")))

    def lookup(self) -> HandDepthLookup:
        """The numpy form of :meth:`depth_at_pixels` and :meth:`covers` (CPU only; made once)."""
        if self._lookup is None:
            def consts(cam):
                (fx, _, cx), (_, fy, cy), _ = cam.K.tolist()  # the float32 entries, read once
                return tuple(np.float32(c) for c in (cx, fx, cy, fy))

            self._lookup = HandDepthLookup(self.depth.detach().cpu().numpy(), consts(self.full_camera),
                                           consts(self.camera))
        return self._lookup

    def covers(self, points_cam: torch.Tensor, margin: float) -> torch.Tensor:
        """``(N,)`` bool: the hand lies in front of (or within ``margin`` [m] behind) each point's pixel."""
        return self.hand_depth_at(points_cam) < points_cam[:, 2].to(self.depth) + margin
