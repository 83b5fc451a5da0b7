"""Sparse region modality (in the spirit of ICG/SRT3D): correspondence lines across the object's contour.

Per Gauss-Newton iteration ``i`` at pose ``(R, t)``: the contour points of the closest view of the
:class:`~.viewpoint_model.ViewpointModel` are projected (``c``, with the projected outward normal ``n``). Each
correspondence line ``c + s n`` is cut into ``function_length + distribution_length - 1`` segments of
``scales[i]`` pixels (coarse to fine: the capture range shrinks from tens of pixels to about ten). A segment's
foreground probability is ``prod h_f / (prod h_f + prod h_b)`` over its pixels (colour histograms ``h_f``,
``h_b``); a smoothed step (``0.5 - a tanh(x / 2 b)``) over the ``function_length`` segments around each of the
``distribution_length`` candidate contour positions gives a discrete posterior of where the contour lies, whose
mean ``mu`` and variance ``var`` [px] make one residual per line::

    r = n . (pi(R p_obj + t) - c) - mu,     dr/d delta = n^T dpi/dp [I, -[p - t]x]

(``c``, ``n``, ``mu`` fixed at the linearisation pose, so ``r = -mu`` there), weighted by
``min(1, std_i^2 / var)``. The rendered hand (:class:`~.hand_occlusion.HandOcclusion`) is a known occluder: a
line with a hand pixel in front of its contour point within the finest level's half length of it is dropped,
and hand pixels farther along a coarse line tell nothing (they count neither as foreground nor background).
Lines with too little foreground/background contrast are dropped too.

Histograms (``2^(3 bits)`` RGB cells) are learnt from the lines at the estimated pose after each update (pixels
inside the contour: foreground, outside: background; lines crossing the hand left out), with a learning rate.
A new track learns them at its initial pose from pixels beyond the pose's uncertainty (projected translation
standard deviation): the initial pose may be centimetres off. Colour only: no depth needed.
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
from .sparse_depth import without_unseen
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

    def __init__(self, scene: HandObjectScene, settings: RegionSettings,
                 unseen: tuple[torch.Tensor, float] | None = None) -> None:
        """``unseen``: the object-frame twists ``(6, k)`` its shape does not show and the shape's radius [m]
        (:func:`~.sparse_depth.unseen_motions`: the rotation about an axis of revolution, which moves no contour
        either); the lines give no information along them."""
        self.scene = scene
        self.settings = settings
        self.unseen = unseen if unseen is not None and unseen[0].shape[1] > 0 else None
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
        self._radius: float | None = None

    # ------------------------------------------------------------------------------------------- lines
    def lines(self, object2camera: torch.Tensor, obs: Observation, half_length: float | None = None
              ) -> CorrespondenceLines:
        """The correspondence lines of ``object2camera (4, 4)`` (closest view) whose ``half_length`` [px] (default:
        the finest level's) lies inside the image."""
        pose = object2camera.to("cpu", _F64)
        v = self.model.closest_view(pose)
        valid = self.model.valid[v]
        lines = CorrespondenceLines(self.model.points[v][valid].to(_F64), self.model.normals[v][valid].to(_F64),
                                    pose, obs.camera)
        L = self.half_length(len(self.settings.scales) - 1) if half_length is None else half_length
        W, H = obs.camera.width, obs.camera.height
        c = lines.centres
        inside = (c[:, 0] > L) & (c[:, 0] < W - 1 - L) & (c[:, 1] > L) & (c[:, 1] < H - 1 - L) & (lines.depth > 0)
        return lines.select(inside)

    def half_length(self, level: int) -> float:
        """Half length [px] of the lines of coarse-to-fine ``level``: ``(function + distribution) / 2`` segments of
        ``scales[level]`` px."""
        s = self.settings
        return 0.5 * (s.function_length + s.distribution_length) * s.scales[level]

    def _cells(self, pos: torch.Tensor, obs: Observation) -> torch.Tensor:
        """Colour cells ``(...)`` of the image pixels nearest to positions ``pos (..., 2)`` [px]."""
        H, W = obs.frame.rgb.shape[:2]
        px = pos.round().long()
        u, v = px[..., 0].clamp(0, W - 1), px[..., 1].clamp(0, H - 1)
        rgb = obs.frame.rgb[v, u].long()  # (..., 3) uint8 -> long
        b = self.settings.histogram_bits
        shift = 8 - b
        return ((rgb[..., 0] >> shift) << (2 * b)) | ((rgb[..., 1] >> shift) << b) | (rgb[..., 2] >> shift)

    def _hand_pixels(self, lines: CorrespondenceLines, pos: torch.Tensor, occlusion: HandOcclusion | None):
        """``(L, K)`` bool: the hand lies in front of (or ``hand_margin`` behind) the contour point at the pixels
        ``pos (L, K, 2)`` [px] of each line."""
        if occlusion is None:
            return torch.zeros(pos.shape[:2], dtype=torch.bool)
        hand = occlusion.depth_at_pixels(pos.reshape(-1, 2)).reshape(pos.shape[:2]).to(_F64)
        return hand < lines.depth[:, None] + self.settings.hand_margin

    def _hand_crossed(self, lines: CorrespondenceLines, pos: torch.Tensor, occlusion: HandOcclusion | None):
        """``(L,)`` bool: a hand pixel in front of the contour point lies on the line (pixels ``pos (L, K, 2)``)."""
        return self._hand_pixels(lines, pos, occlusion).any(-1)

    # -------------------------------------------------------------------------------------- histograms
    def learn(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None,
              rate: float | None = None, margin: float | None = None) -> None:
        """Update the histograms from the lines at the (estimated) pose ``object2camera (4, 4)``: pixels from
        ``margin`` (default ``learn_margin``) to ``margin + learn_length`` [px] inside the contour are foreground,
        outside background."""
        s = self.settings
        gap = s.learn_margin if margin is None else max(min(margin, 0.5 * self._radius_px(object2camera, obs)),
                                                        s.learn_margin)
        lines = self.lines(object2camera, obs, gap + s.learn_length)
        if lines.centres.shape[0] < s.min_lines:
            return
        outer = torch.arange(int(gap), int(gap + s.learn_length) + 1, dtype=_F64)
        offsets = torch.cat((-outer.flip(0), outer))
        pos = lines.centres[:, None] + offsets[None, :, None] * lines.normals[:, None]
        seen = ~self._hand_pixels(lines, pos, occlusion)  # hand pixels are neither object nor background
        if int(seen.sum()) < s.min_lines * offsets.numel() // 2:
            return
        cells = self._cells(pos, obs)
        inner = seen & (offsets < 0)[None]
        outside = seen & (offsets > 0)[None]
        nb = 1 << (3 * s.histogram_bits)
        hf = torch.bincount(cells[inner], minlength=nb).to(_F64)
        hb = torch.bincount(cells[outside], minlength=nb).to(_F64)
        hf, hb = hf / hf.sum().clamp_min(1), hb / hb.sum().clamp_min(1)
        if self.hist_f is None:
            self.hist_f, self.hist_b = hf, hb
        else:
            r = s.learning_rate if rate is None else rate
            self.hist_f = (1 - r) * self.hist_f + r * hf
            self.hist_b = (1 - r) * self.hist_b + r * hb

    def _radius_px(self, object2camera: torch.Tensor, obs: Observation) -> float:
        """The object's projected radius [px] at ``object2camera (4, 4)`` (its contour points' largest distance
        from the object origin)."""
        if self._radius is None:
            self._radius = float(self.model.points.norm(dim=-1).max())
        return float(obs.camera.fx) * self._radius / max(float(object2camera[2, 3]), 1e-3)

    # ------------------------------------------------------------------------------------------ update
    def begin(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None,
              uncertainty: float = 0.0) -> bool:
        """Prepare a frame; False without histograms. The first time (a new track) the histograms are learnt at
        this pose from pixels at least ``uncertainty`` [px] (how far the contour may lie from the projected one)
        inside / outside the contour."""
        if self.hist_f is None:
            self.learn(obs, object2camera, occlusion, rate=1.0, margin=uncertainty)
        self._frame = (obs, occlusion) if self.hist_f is not None else None
        return self._frame is not None

    def segment_offsets(self, level: int) -> torch.Tensor:
        """``(S, k)`` pixel offsets [px] along a line of ``level``: ``S = function_length + distribution_length - 1``
        segments of ``k = scales[level]`` pixels each, centred on the contour point."""
        s = self.settings
        scale = s.scales[level]
        k = max(1, round(scale))
        segments = s.function_length + s.distribution_length - 1
        centres = (torch.arange(segments, dtype=_F64) - 0.5 * (segments - 1)) * scale
        within = (torch.arange(k, dtype=_F64) - 0.5 * (k - 1)) * (scale / k)
        return centres[:, None] + within[None, :]

    def contour_posterior(self, lines: CorrespondenceLines, obs: Observation, level: int,
                          occlusion: HandOcclusion | None):
        """Mean ``(L,)`` and variance ``(L,)`` [px] of the contour position along each line at coarse-to-fine
        ``level``, and which lines are kept ``(L,)`` (not crossing the hand, enough colour contrast).

        Each segment's foreground probability is ``prod h_f / (prod h_f + prod h_b)`` over its pixels; each of the
        ``distribution_length`` candidate contour positions (segment boundaries) is scored with the smoothed step
        over the ``function_length`` segments around it.
        """
        s = self.settings
        scale = s.scales[level]
        offsets = self.segment_offsets(level)  # (S, k)
        pos = lines.centres[:, None, None] + offsets[None, :, :, None] * lines.normals[:, None, None]  # (L, S, k, 2)
        L_, S, k = pos.shape[:3]
        hand = self._hand_pixels(lines, pos.reshape(L_, -1, 2), occlusion).reshape(L_, S, k)
        # the hand hides the contour near the line's centre: dropped; farther hand pixels tell nothing
        near = offsets.abs() <= self.half_length(len(s.scales) - 1)
        keep = ~(hand & near[None]).any((-1, -2))
        cells = self._cells(pos, obs)
        hf, hb = self.hist_f[cells], self.hist_b[cells]  # (L, S, k)
        eps = 1e-6
        log_ratio = torch.where(hand, 0.0, torch.log(hf + eps) - torch.log(hb + eps)).sum(-1)  # (L, S)
        pf = torch.sigmoid(log_ratio).clamp(1e-4, 1 - 1e-4)  # segment foreground probability
        F_len, D = s.function_length, s.distribution_length
        seg = torch.arange(S, dtype=_F64) - 0.5 * (S - 1)  # segment centres [segments]
        cand = torch.arange(D, dtype=_F64) - 0.5 * (D - 1)  # candidate contour positions [segments]
        index = torch.arange(D)[:, None] + torch.arange(F_len)[None, :]  # (D, F) segments of each window
        x = seg[index] - cand[:, None]  # (D, F): segment centre relative to the candidate [segments]
        step = 0.5 - s.step_amplitude * torch.tanh(x / (2 * s.step_slope))  # foreground probability model
        p = pf[:, index]  # (L, D, F)
        like = step[None] * p + (1 - step[None]) * (1 - p)
        post = torch.softmax(torch.log(like).sum(-1), -1)  # (L, D)
        mu = (post * cand).sum(-1)
        var = (post * (cand - mu[:, None]) ** 2).sum(-1)
        contrast = (pf.max(-1).values - pf.min(-1).values) > s.min_contrast
        return mu * scale, (var + 1.0 / 12) * scale ** 2, keep & contrast

    def residual(self, object2camera: torch.Tensor, lines: CorrespondenceLines, mu: torch.Tensor,
                 fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
        """``(B, L)`` line residuals [px] at poses ``(B, 4, 4)``: ``n . (pi(p) - c) - mu``."""
        R, t = object2camera[:, :3, :3], object2camera[:, None, :3, 3]
        p = lines.points_obj.to(object2camera) @ R.transpose(-1, -2) + t
        uv = torch.stack((fx * p[..., 0] / p[..., 2] + cx, fy * p[..., 1] / p[..., 2] + cy), -1)
        return ((uv - lines.centres.to(uv)) * lines.normals.to(uv)).sum(-1) - mu.to(uv)

    @staticmethod
    def jacobian(object2camera: torch.Tensor, lines: CorrespondenceLines, fx: float, fy: float) -> torch.Tensor:
        """``(L, 6)`` closed-form ``d residual / d delta`` at ``object2camera (4, 4)``: ``n^T dpi/dp [I, -[p - t]x]``
        (``c``, ``n``, ``mu`` held fixed)."""
        p = lines.points_obj @ object2camera[:3, :3].T + object2camera[:3, 3]
        g = (lines.normals[:, None, :] @ projection_jacobian(p, fx, fy))[:, 0]  # (L, 3): n^T dpi/dp
        return torch.cat((g, torch.linalg.cross(p - object2camera[:3, 3], g, dim=-1)), -1)

    def linearize(self, object2camera: torch.Tensor, iteration: int) -> ResidualBlock | None:
        """``(r, J, w)`` at ``object2camera (4, 4)`` with the line scale of ``iteration`` (coarse to fine)."""
        if self._frame is None:
            return None
        obs, occlusion = self._frame
        s = self.settings
        level = min(iteration, len(s.scales) - 1)
        pose = object2camera.to("cpu", _F64)
        lines = self.lines(pose, obs, self.half_length(level))
        if lines.centres.shape[0] < s.min_lines:
            return None
        mu, var, keep = self.contour_posterior(lines, obs, level, occlusion)
        if int(keep.sum()) < s.min_lines:
            return None
        lines, mu, var = lines.select(keep), mu[keep], var[keep]
        cam = obs.camera
        fx, fy, cx, cy = float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy)
        r = self.residual(pose[None], lines, mu, fx, fy, cx, cy)[0]
        J = self.jacobian(pose, lines, fx, fy)
        if self.unseen is not None:
            J = without_unseen(J, self.unseen[0], pose[:3, :3], self.unseen[1])
        std = s.standard_deviations[min(level, len(s.standard_deviations) - 1)]
        w = (std * std / var).clamp(max=1.0)  # information 1 / max(var, std^2) per line
        return ResidualBlock(self.name, r, J, w, std)
