"""Sparse region modality (in the spirit of ICG/SRT3D): correspondence lines across the object's contour.

Per Gauss-Newton iteration at pose ``(R, t)``: the contour points of the closest view of the
:class:`~.viewpoint_model.ViewpointModel` are projected (``c``, with the projected outward normal ``n``); along
each correspondence line ``c + s n`` (``s`` in ``[-L, L]`` px, steps of the iteration's scale) the colour
histograms give the pixel-wise foreground posterior ``p_f = h_f / (h_f + h_b)``; a smoothed step function
(``0.5 - a tanh(x / 2 b)``) over candidate contour positions ``d`` gives a discrete posterior of where the contour
lies, whose mean ``mu`` and variance ``var`` make one residual per line [px]::

    r = n . (pi(R p_obj + t) - c) - mu,     dr/d delta = n^T dpi/dp [I, -[p - t]x]

(``c``, ``n``, ``mu`` fixed at the linearisation pose, so ``r = -mu`` there), weighted by
``min(1, var_min / var)``. Lines that cross the rendered hand (:class:`~.hand_occlusion.HandOcclusion`: a hand
pixel in front of the contour point anywhere on the line) are dropped: the hand is a known occluder. Lines
with too few foreground/background contrast are dropped too.

Histograms (``bins^3`` RGB cells) are learnt from the lines at the estimated pose after each update
(pixels inside the contour: foreground, outside: background, hand pixels excluded), with a learning rate.
Colour only: no depth needed.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .hand_occlusion import HandOcclusion
from .observation import Observation
from .residuals import ResidualBlock
from .scene import HandObjectScene
from .settings import RegionSettings
from .viewpoint_model import ViewpointModel, ViewpointModelSettings

__all__ = ["CorrespondenceLines", "RegionModality", "projection_jacobian"]

_F64 = torch.float64


def projection_jacobian(points_cam: torch.Tensor, fx: float, fy: float) -> torch.Tensor:
    """``(N, 2, 3)`` derivative of the pinhole projection at camera points ``(N, 3)`` [m] (px per m)."""
    x, y, z = points_cam.unbind(-1)
    zero = torch.zeros_like(z)
    return torch.stack((torch.stack((fx / z, zero, -fx * x / z ** 2), -1),
                        torch.stack((zero, fy / z, -fy * y / z ** 2), -1)), -2)


class CorrespondenceLines:
    """The lines of one pose: contour points and normals (object frame), centres ``(L, 2)`` [px], normals
    ``(L, 2)``, depths of the contour points ``(L,)`` [m]."""

    def __init__(self, points_obj: torch.Tensor, normals_obj: torch.Tensor, pose: torch.Tensor, camera) -> None:
        R, t = pose[:3, :3], pose[:3, 3]
        p = points_obj @ R.T + t
        n = normals_obj @ R.T
        cam = camera.to(dtype=_F64)
        self.points_obj, self.normals_obj = points_obj, normals_obj
        self.centres = cam.project(p[None])[0]
        ahead = cam.project((p + 1e-3 * n)[None])[0]
        self.normals = F.normalize(ahead - self.centres, dim=-1)
        self.depth = p[:, 2]

    def select(self, keep: torch.Tensor) -> CorrespondenceLines:
        out = object.__new__(CorrespondenceLines)
        for name in ("points_obj", "normals_obj", "centres", "normals", "depth"):
            setattr(out, name, getattr(self, name)[keep])
        return out


class RegionModality:
    """Contour (region) observation of the object pose from colour (see the module docstring)."""

    name = "region"
    relinearize = True

    def __init__(self, scene: HandObjectScene, settings: RegionSettings) -> None:
        self.scene = scene
        self.settings = settings
        s = settings
        self.model = ViewpointModel.load_or_build(
            scene.object.verts, scene.object.faces,
            ViewpointModelSettings(subdivisions=s.view_subdivisions, points_per_view=s.points_per_view),
            os.path.expanduser(s.cache_dir) if s.cache_dir else None)
        self.reset()

    def reset(self) -> None:
        """Forget the colour histograms (a new track)."""
        self.hist_f: torch.Tensor | None = None
        self.hist_b: torch.Tensor | None = None
        self._frame = None

    # ------------------------------------------------------------------------------------------- lines
    def lines(self, object2camera: torch.Tensor, obs: Observation) -> CorrespondenceLines:
        """The correspondence lines of ``object2camera (4, 4)`` (closest view, inside the image)."""
        pose = object2camera.to("cpu", _F64)
        v = self.model.closest_view(pose)
        valid = self.model.valid[v]
        lines = CorrespondenceLines(self.model.points[v][valid].to(_F64), self.model.normals[v][valid].to(_F64),
                                    pose, obs.camera)
        L = self.settings.line_length
        W, H = obs.camera.width, obs.camera.height
        c = lines.centres
        inside = (c[:, 0] > L) & (c[:, 0] < W - 1 - L) & (c[:, 1] > L) & (c[:, 1] < H - 1 - L) & (lines.depth > 0)
        return lines.select(inside)

    def _offsets(self, scale: float) -> torch.Tensor:
        K = int(self.settings.line_length // scale)
        return torch.arange(-K, K + 1, dtype=_F64) * scale

    def _sample(self, lines: CorrespondenceLines, obs: Observation, offsets: torch.Tensor):
        """Pixels along the lines: ``(L, K, 2)`` positions, ``(L, K)`` colour cells."""
        pos = lines.centres[:, None] + offsets[None, :, None] * lines.normals[:, None]
        px = pos.round().long()
        H, W = obs.frame.rgb.shape[:2]
        u, v = px[..., 0].clamp(0, W - 1), px[..., 1].clamp(0, H - 1)
        rgb = obs.frame.rgb[v, u].long()  # (L, K, 3) uint8 -> long
        shift = 8 - self.settings.histogram_bits
        b = self.settings.histogram_bits
        cells = ((rgb[..., 0] >> shift) << (2 * b)) | ((rgb[..., 1] >> shift) << b) | (rgb[..., 2] >> shift)
        return pos, cells

    def _hand_crossed(self, lines: CorrespondenceLines, pos: torch.Tensor, occlusion: HandOcclusion | None):
        """``(L,)`` bool: a hand pixel in front of the contour point lies on the line."""
        if occlusion is None:
            return torch.zeros(pos.shape[0], dtype=torch.bool)
        hand = occlusion.depth_at_pixels(pos.reshape(-1, 2)).reshape(pos.shape[:2]).to(_F64)
        return (hand < lines.depth[:, None] + self.settings.hand_margin).any(-1)

    # -------------------------------------------------------------------------------------- histograms
    def learn(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None,
              rate: float | None = None) -> None:
        """Update the histograms from the lines at the (estimated) pose ``object2camera (4, 4)``."""
        s = self.settings
        lines = self.lines(object2camera, obs)
        if lines.centres.shape[0] < s.min_lines:
            return
        offsets = self._offsets(1.0)
        pos, cells = self._sample(lines, obs, offsets)
        keep = ~self._hand_crossed(lines, pos, occlusion)
        if int(keep.sum()) < s.min_lines:
            return
        cells = cells[keep]
        nb = 1 << (3 * s.histogram_bits)
        inner = offsets < -s.learn_margin
        outer = offsets > s.learn_margin
        hf = torch.bincount(cells[:, inner].reshape(-1), minlength=nb).to(_F64)
        hb = torch.bincount(cells[:, outer].reshape(-1), minlength=nb).to(_F64)
        hf, hb = hf / hf.sum().clamp_min(1), hb / hb.sum().clamp_min(1)
        if self.hist_f is None:
            self.hist_f, self.hist_b = hf, hb
        else:
            r = s.learning_rate if rate is None else rate
            self.hist_f = (1 - r) * self.hist_f + r * hf
            self.hist_b = (1 - r) * self.hist_b + r * hb

    # ------------------------------------------------------------------------------------------ update
    def begin(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None) -> bool:
        """Prepare a frame (learning the histograms at this pose the first time); False without histograms."""
        if self.hist_f is None:
            self.learn(obs, object2camera, occlusion, rate=1.0)
        self._frame = (obs, occlusion) if self.hist_f is not None else None
        return self._frame is not None

    def contour_posterior(self, lines: CorrespondenceLines, obs: Observation, scale: float,
                          occlusion: HandOcclusion | None):
        """Mean ``(L,)`` and variance ``(L,)`` [px] of the contour position along each line, and the kept lines."""
        s = self.settings
        offsets = self._offsets(scale)
        pos, cells = self._sample(lines, obs, offsets)
        keep = ~self._hand_crossed(lines, pos, occlusion)
        pf = self.hist_f[cells] / (self.hist_f[cells] + self.hist_b[cells]).clamp_min(1e-12)
        pf = torch.where((self.hist_f[cells] + self.hist_b[cells]) > 0, pf, torch.full_like(pf, 0.5))
        # candidate contour positions: the inner part of the line, so the step function always fits
        K = offsets.numel()
        m = int(s.function_length // (2 * scale))
        cand = offsets[m:K - m]  # (D,)
        x = (offsets[None, :] - cand[:, None]) / scale  # (D, K) [scale units]
        step = 0.5 - s.step_amplitude * torch.tanh(x / (2 * s.step_slope))  # foreground probability model
        like = step[None] * pf[:, None, :] + (1 - step[None]) * (1 - pf[:, None, :])  # (L, D, K)
        logp = torch.log(like.clamp_min(1e-12)).sum(-1)  # (L, D)
        post = torch.softmax(logp, -1)
        mu = (post * cand).sum(-1)
        var = (post * (cand - mu[:, None]) ** 2).sum(-1) + scale ** 2 / 12
        contrast = (pf.max(-1).values - pf.min(-1).values) > s.min_contrast
        return mu, var, keep & contrast

    def residual(self, object2camera: torch.Tensor, lines: CorrespondenceLines, mu: torch.Tensor,
                 fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
        """``(B, L)`` line residuals [px] at poses ``(B, 4, 4)``: ``n . (pi(p) - c) - mu``."""
        R, t = object2camera[:, :3, :3], object2camera[:, None, :3, 3]
        p = lines.points_obj.to(object2camera) @ R.transpose(-1, -2) + t
        uv = torch.stack((fx * p[..., 0] / p[..., 2] + cx, fy * p[..., 1] / p[..., 2] + cy), -1)
        return ((uv - lines.centres.to(uv)) * lines.normals.to(uv)).sum(-1) - mu.to(uv)

    def linearize(self, object2camera: torch.Tensor, iteration: int) -> ResidualBlock | None:
        """``(r, J, w)`` at ``object2camera (4, 4)`` with the line scale of ``iteration``."""
        if self._frame is None:
            return None
        obs, occlusion = self._frame
        s = self.settings
        level = min(iteration, len(s.scales) - 1)
        pose = object2camera.to("cpu", _F64)
        lines = self.lines(pose, obs)
        if lines.centres.shape[0] < s.min_lines:
            return None
        mu, var, keep = self.contour_posterior(lines, obs, s.scales[level], occlusion)
        if int(keep.sum()) < s.min_lines:
            return None
        lines, mu, var = lines.select(keep), mu[keep], var[keep]
        cam = obs.camera
        fx, fy, cx, cy = float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy)
        r = self.residual(pose[None], lines, mu, fx, fy, cx, cy)[0]
        p = lines.points_obj @ pose[:3, :3].T + pose[:3, 3]
        dpi = projection_jacobian(p, fx, fy)  # (L, 2, 3)
        g = (lines.normals[:, None, :] @ dpi)[:, 0]  # (L, 3): n^T dpi/dp
        J = torch.cat((g, torch.linalg.cross(p - pose[:3, 3], g, dim=-1)), -1)
        w = (s.min_variance / var).clamp(max=1.0)
        return ResidualBlock(self.name, r, J, w, s.standard_deviations[level])
