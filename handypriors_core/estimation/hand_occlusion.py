"""Where the known hand hides the object: a hard z-buffer of the posed hand mesh over the region of interest.

The hand is known (joint states + hand2camera), so instead of guessing occlusions from the data, the sparse
modalities render it once per frame (:meth:`~handypriors_core.render.renderer.Renderer.hard`, ROI resolution
only) and drop the depth points and contour lines it covers. A closed hand surface is drawn with the faces
turned towards the camera only (the nearest face at every pixel is one of them; same z-buffer, half the faces),
and not at all when the hand projects outside the region.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..geometry.camera import MIN_DEPTH
from .observation import Observation
from .scene import HandObjectScene

__all__ = ["HandOcclusion"]


def _may_cover(verts: torch.Tensor, camera, margin: float) -> bool:
    """Whether hand vertices ``verts (V, 3)`` [m, camera frame] may cover a pixel of ``camera``'s image: False only
    when all lie in front of the camera and their projected bounding box (which holds every projected face) stays
    more than ``margin`` + 1 px outside the image."""
    if not bool((verts[:, 2] > MIN_DEPTH).all()):
        return True
    uv = camera.project(verts[None])[0]
    lo, hi = uv.min(0).values, uv.max(0).values
    pad = margin + 1.0
    return bool(hi[0] >= -pad and hi[1] >= -pad and lo[0] <= camera.width - 1 + pad
                and lo[1] <= camera.height - 1 + pad)


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
        verts, faces = obs.hand.verts.float(), scene.hand_faces
        S_w, S_h = int(self.camera.width), int(self.camera.height)
        if not _may_cover(verts[0], self.camera, dilation):  # the hand lies outside the region: nothing to draw
            self.depth = torch.full((S_h, S_w), float("inf"), device=verts.device)
            return
        with torch.no_grad():
            if scene.hand_surface_closed(verts):  # the faces turned away are never the nearest: half the work
                v = verts[0]
                a = v[faces[:, 0]]
                facing = (torch.linalg.cross(v[faces[:, 1]] - a, v[faces[:, 2]] - a, dim=-1) * a).sum(-1) < 0
                faces = faces[facing]
            out = scene.renderer.hard(verts, faces, self.camera)
        depth = torch.where(out.mask[0], out.zbuf[0], torch.full_like(out.zbuf[0], float("inf")))
        if dilation > 0:
            k = 2 * dilation + 1
            depth = -F.max_pool2d(-depth[None, None], k, stride=1, padding=dilation)[0, 0]
        self.depth = depth

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

    def covers(self, points_cam: torch.Tensor, margin: float) -> torch.Tensor:
        """``(N,)`` bool: the hand lies in front of (or within ``margin`` [m] behind) each point's pixel."""
        return self.hand_depth_at(points_cam) < points_cam[:, 2].to(self.depth) + margin
