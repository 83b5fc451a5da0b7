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

import numpy as np
import torch
import torch.nn.functional as F

from .hand_occlusion import HandOcclusion
from .observation import Observation
from .region_arrays import (
    LevelConstants,
    LineArrays,
    RegionFrame,
    contour_posterior_arrays,
    line_correlation,
    line_jacobian_array,
    line_residual_array,
    log_ratio_table,
    without_unseen_array,
    without_weak_directions,
)
from .region_start import start_for_learning
from .residuals import ResidualBlock
from .scene import HandObjectScene
from .settings import RegionSettings
from .sparse_depth import without_unseen
from .viewpoint_model import ViewpointModel, ViewpointModelSettings

__all__ = ["CorrespondenceLines", "RegionModality", "projection_jacobian"]

_F64 = torch.float64
_BOX_MARGIN = 8.0  # [px] the numpy path's colour box reaches this far beyond the first lines (motion in a frame)


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
        #: numpy CPU path (:mod:`.region_arrays`) for frames on the CPU; False: the torch path always (reference)
        self.use_arrays = True
        self._directions = self.model.directions.numpy().astype(np.float32)
        self._views: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._levels: dict[int, LevelConstants] = {}
        self._unseen_array = None if self.unseen is None else self.unseen[0].detach().to("cpu", _F64).numpy()
        self.reset()

    def reset(self) -> None:
        """Forget the colour histograms (a new track)."""
        self.hist_f: torch.Tensor | None = None
        self.hist_b: torch.Tensor | None = None
        self._frame = None
        self._arrays: RegionFrame | None = None  # the numpy path's lookups of the frame ...
        self._arrays_for: tuple | None = None  # ... that begin() prepared (its ``_frame``)
        self._table: np.ndarray | None = None  # log ratio per colour cell of the current histograms
        self._frame_levels = list(range(len(self.settings.scales)))  # coarse-to-fine levels of the frame's iterations
        self._hold = False  # the frame holds its last search's correspondences after its levels (hold_with_depth)
        self._held: tuple | None = None  # (lines, mu, weight, std, correlation) of the frame's last search
        self._prior: np.ndarray | None = None  # (6, 6) prior covariance of a frame whose weak directions are dropped
        #: the last frame's finest level left some pose directions to the prior (``weak_gain``)
        self.left_to_prior = False
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
        # read at the nearest pixel, as the colour (the numpy path reads both from one per-frame box)
        hand = occlusion.depth_at_pixels(pos.reshape(-1, 2).round()).reshape(pos.shape[:2]).to(_F64)
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
        fa = self._frame_arrays(obs, occlusion, object2camera)
        if fa is not None:
            found = self._learning_cells_arrays(fa, object2camera, gap)
        else:
            found = self._learning_cells(obs, object2camera, occlusion, gap)
        if found is None:
            return
        cells_f, cells_b = found
        nb = 1 << (3 * s.histogram_bits)
        hf = torch.from_numpy(np.bincount(cells_f, minlength=nb).astype(np.float64))
        hb = torch.from_numpy(np.bincount(cells_b, minlength=nb).astype(np.float64))
        hf, hb = hf / max(float(hf.sum()), 1.0), hb / max(float(hb.sum()), 1.0)
        if self.hist_f is None:
            self.hist_f, self.hist_b = hf, hb
        else:
            r = s.learning_rate if rate is None else rate
            self.hist_f = (1 - r) * self.hist_f + r * hf
            self.hist_b = (1 - r) * self.hist_b + r * hb
        self._table = None

    def _learning_cells(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None,
                        gap: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Colour cells of the foreground / background pixels :meth:`learn` reads (torch path; None: too few)."""
        s = self.settings
        lines = self.lines(object2camera, obs, gap + s.learn_length)
        if lines.centres.shape[0] < s.min_lines:
            return None
        outer = torch.arange(int(gap), int(gap + s.learn_length) + 1, dtype=_F64)
        offsets = torch.cat((-outer.flip(0), outer))
        pos = lines.centres[:, None] + offsets[None, :, None] * lines.normals[:, None]
        seen = ~self._hand_pixels(lines, pos, occlusion)  # hand pixels are neither object nor background
        if int(seen.sum()) < s.min_lines * offsets.numel() // 2:
            return None
        cells = self._cells(pos, obs)
        inner = seen & (offsets < 0)[None]
        outside = seen & (offsets > 0)[None]
        return cells[inner].cpu().numpy(), cells[outside].cpu().numpy()

    def _learning_cells_arrays(self, fa: RegionFrame, object2camera: torch.Tensor, gap: float
                               ) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`_learning_cells` in numpy."""
        s = self.settings
        lines = self._lines_array(fa, object2camera.detach().to("cpu", _F64).numpy(), gap + s.learn_length)
        if lines.centres.shape[0] < s.min_lines:
            return None
        outer = np.arange(int(gap), int(gap + s.learn_length) + 1, dtype=np.float64)
        offsets = np.concatenate((-outer[::-1], outer))
        samples = fa.sample(lines.centres, lines.normals, offsets)
        seen = ~fa.hand_pixels(samples, lines.depth, s.hand_margin)
        if int(seen.sum()) < s.min_lines * offsets.size // 2:
            return None
        cells = fa.cells(samples)
        return cells[seen & (offsets < 0)[None]], cells[seen & (offsets > 0)[None]]

    def _radius_px(self, object2camera: torch.Tensor, obs: Observation) -> float:
        """The object's projected radius [px] at ``object2camera (4, 4)`` (its contour points' largest distance
        from the object origin)."""
        if self._radius is None:
            self._radius = float(self.model.points.norm(dim=-1).max())
        return float(obs.camera.fx) * self._radius / max(float(object2camera[2, 3]), 1e-3)

    # ------------------------------------------------------------------------------------------ update
    def begin(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None,
              uncertainty: float = 0.0, search: bool = False, prior_covariance: torch.Tensor | None = None) -> bool:
        """Prepare a frame; False without histograms. The first time (a new track) the histograms are learnt at
        this pose from pixels at least ``uncertainty`` [px] (how far the contour may lie from the projected one)
        inside / outside the contour; with ``search``, a silhouette too thin for that is first looked for
        (:func:`.region_start.start_for_learning`). ``prior_covariance (6, 6)``: the update's prior, against which a
        frame without depth (not a track's first) drops the directions the lines barely see (``weak_gain``)."""
        self._frame = (obs, occlusion)
        s = self.settings
        drop_weak = s.weak_gain > 0 and prior_covariance is not None and obs.frame.depth is None \
            and self.hist_f is not None
        self._prior = prior_covariance.detach().to("cpu", _F64).numpy() if drop_weak else None
        self.left_to_prior = False
        every = list(range(len(s.scales)))
        # a new track's first frame (no histograms yet) resolves the start's offset: every level, fresh searches
        later = obs.frame.depth is not None and self.hist_f is not None
        self._frame_levels = list(s.levels_with_depth or every) if later else every
        self._hold = later and s.hold_with_depth
        self._held = None
        if self.hist_f is None:
            start, margin = start_for_learning(self, obs, object2camera, occlusion, uncertainty) if search \
                else (object2camera, uncertainty)
            self.learn(obs, start, occlusion, rate=1.0, margin=margin)
        if self.hist_f is None:
            self._frame = None
        return self._frame is not None

    # ------------------------------------------------------------------------------------ numpy (CPU) path
    def _frame_arrays(self, obs: Observation, occlusion: HandOcclusion | None, object2camera: torch.Tensor
                      ) -> RegionFrame | None:
        """The numpy lookups of the frame (made once per frame, with its colour box around the lines of the
        frame's coarsest level at ``object2camera``); None where the torch path runs (``use_arrays`` off, not the frame
        :meth:`begin` prepared, or an image off the CPU)."""
        if not self.use_arrays or self._frame is None or self._frame[0] is not obs or self._frame[1] is not occlusion \
                or obs.frame.rgb.device.type != "cpu":
            return None
        if self._arrays is not None and self._arrays_for is self._frame:
            return self._arrays
        cam = obs.camera
        intrinsics = (float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy))
        pose = object2camera.detach().to("cpu", _F64).numpy()
        points, normals = self._view_arrays(pose)
        centres = LineArrays.at_pose(points, normals, pose, intrinsics).centres
        s = self.settings
        reach = max(self.half_length(min(self._frame_levels)), s.learn_margin + s.learn_length) + _BOX_MARGIN
        lo, hi = np.floor(centres.min(0) - reach), np.ceil(centres.max(0) + reach)
        self._arrays = RegionFrame(obs.frame.rgb.numpy(), occlusion.lookup() if occlusion is not None else None,
                                   (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])), self.settings.histogram_bits,
                                   intrinsics)
        self._arrays_for = self._frame
        return self._arrays

    def _view_arrays(self, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contour points and normals ``(N, 3)`` float64 [object frame] of the view closest to ``pose (4, 4)``
        (:meth:`.viewpoint_model.ViewpointModel.closest_view`, in numpy)."""
        towards = -(pose[:3, :3].T @ pose[:3, 3])
        towards = (towards / max(float(np.linalg.norm(towards)), 1e-12)).astype(np.float32)
        v = int(np.argmax(self._directions @ towards))
        if v not in self._views:
            valid = self.model.valid[v]
            self._views[v] = (self.model.points[v][valid].numpy().astype(np.float64),
                              self.model.normals[v][valid].numpy().astype(np.float64))
        return self._views[v]

    def _lines_array(self, fa: RegionFrame, pose: np.ndarray, half_length: float) -> LineArrays:
        """:meth:`lines` in numpy."""
        lines = LineArrays.at_pose(*self._view_arrays(pose), pose, fa.intrinsics)
        return lines.select(lines.inside(half_length, fa.width, fa.height))

    def _log_ratio_table(self) -> np.ndarray:
        """``(C,)`` log likelihood ratio per colour cell of the current histograms (made once per update)."""
        if self._table is None:
            self._table = log_ratio_table(self.hist_f.cpu().numpy(), self.hist_b.cpu().numpy())
        return self._table

    def level_constants(self, level: int) -> LevelConstants:
        """What every line of coarse-to-fine ``level`` shares (segment offsets, candidate windows, step model)."""
        if level not in self._levels:
            s = self.settings
            offsets = self.segment_offsets(level).numpy()
            segments, F_len, D = offsets.shape[0], s.function_length, s.distribution_length
            seg = np.arange(segments) - 0.5 * (segments - 1)  # segment centres [segments]
            cand = np.arange(D) - 0.5 * (D - 1)  # candidate contour positions [segments]
            index = np.arange(D)[:, None] + np.arange(F_len)[None, :]  # (D, F) segments of each window
            x = seg[index] - cand[:, None]  # (D, F): segment centre relative to the candidate [segments]
            step = 0.5 - s.step_amplitude * np.tanh(x / (2 * s.step_slope))  # foreground probability model
            finest = self.segment_offsets(len(s.scales) - 1).numpy().reshape(-1)
            own = offsets.size == finest.size and bool(np.array_equal(offsets.reshape(-1), finest))
            self._levels[level] = LevelConstants(offsets, finest, index, step, cand, float(s.scales[level]), own)
        return self._levels[level]

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
        c = self.level_constants(level)
        offsets = torch.from_numpy(c.offsets)  # (S, k)
        pos = lines.centres[:, None, None] + offsets[None, :, :, None] * lines.normals[:, None, None]  # (L, S, k, 2)
        L_, S, k = pos.shape[:3]
        hand = self._hand_pixels(lines, pos.reshape(L_, -1, 2), occlusion).reshape(L_, S, k)
        # the hand hides the contour near the line's centre (on the finest level's pixels): dropped; farther hand
        # pixels tell nothing
        finest = torch.from_numpy(c.drop_offsets)
        keep = ~self._hand_crossed(lines, lines.centres[:, None] + finest[None, :, None] * lines.normals[:, None],
                                   occlusion)
        cells = self._cells(pos, obs)
        hf, hb = self.hist_f[cells], self.hist_b[cells]  # (L, S, k)
        eps = 1e-6
        log_ratio = torch.where(hand, 0.0, torch.log(hf + eps) - torch.log(hb + eps)).sum(-1)  # (L, S)
        pf = torch.sigmoid(log_ratio).clamp(1e-4, 1 - 1e-4)  # segment foreground probability
        step, cand = torch.from_numpy(c.step), torch.from_numpy(c.candidates)
        p = pf[:, torch.from_numpy(c.index)]  # (L, D, F)
        like = step[None] * p + (1 - step[None]) * (1 - p)
        post = torch.softmax(torch.log(like).sum(-1), -1)  # (L, D)
        mu = (post * cand).sum(-1)
        var = (post * (cand - mu[:, None]) ** 2).sum(-1)
        contrast = (pf.max(-1).values - pf.min(-1).values) > s.min_contrast
        return mu * c.scale, (var + 1.0 / 12) * c.scale ** 2, keep & contrast

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

    def frame_level(self, iteration: int) -> int:
        """The coarse-to-fine level (index into ``scales``) of Gauss-Newton ``iteration`` in the current frame:
        every level in turn (``levels_with_depth`` on frames with depth), then the last one repeats."""
        levels = self._frame_levels
        return levels[min(iteration, len(levels) - 1)]

    def linearize(self, object2camera: torch.Tensor, iteration: int) -> ResidualBlock | None:
        """``(r, J, w)`` at ``object2camera (4, 4)`` with the line scale of ``iteration`` (coarse to fine).

        The correspondences (lines' centres, normals, contour posteriors) are found afresh at every iterate: a
        contour posterior is biased towards its line's centre (the step model's window), and each new search moves
        the pose further towards the contour (holding the finest level's correspondences for a repeated iteration
        let the colour-only mug drift by 25 deg in 40 frames). On frames with depth (``hold_with_depth``) the
        iterations after one search per level of ``levels_with_depth`` hold the last search's correspondences,
        weights and correlation (only the residuals and Jacobians are evaluated at the iterate) until a contour
        point has moved more than ``hold_shift`` [px] along its line since the search: the depth carries the fine
        alignment, and a search per iteration cost ~1.5 ms each."""
        if self._frame is None:
            return None
        if self._hold and self._held is not None and iteration >= len(self._frame_levels):
            block = self._held_block(object2camera)
            # the held contour points moved along their lines by r + mu since the search: searched again when stale
            shift = np.asarray(block.residual) + np.asarray(self._held[1])
            if float(np.abs(shift).max()) <= self.settings.hold_shift:
                return block
        obs, occlusion = self._frame
        s = self.settings
        level = self.frame_level(iteration)
        std = s.standard_deviations[min(level, len(s.standard_deviations) - 1)]
        fa = self._frame_arrays(obs, occlusion, object2camera)
        found = self._correspondences_arrays(fa, object2camera.detach().to("cpu", _F64).numpy(), level) \
            if fa is not None else self._correspondences(obs, occlusion, object2camera.to("cpu", _F64), level)
        if found is None:
            self._held = None
            return None
        lines, mu, var = found
        r, J = self._evaluate(object2camera, lines, mu)
        w = np.minimum(std * std / var, 1.0) if fa is not None else (std * std / var).clamp(max=1.0)
        correlation = self._correlation(r, J, w, lines.centres)  # information 1 / max(var, std^2) per line
        if self._prior is not None and level == len(s.scales) - 1:  # the finest level's iterations decide
            kept = self._without_weak(J, w if correlation is None else w / correlation, std)
            self.left_to_prior, J = kept is not J, kept
        self._held = (lines, mu, w, std, correlation)
        return self._block(r, J, w, std, correlation)

    def _evaluate(self, object2camera: torch.Tensor, lines, mu):
        """Residuals ``(L,)`` [px] and Jacobian ``(L, 6)`` of ``lines`` (numpy :class:`~.region_arrays.LineArrays` or
        torch :class:`CorrespondenceLines`) with contour offsets ``mu (L,)`` [px] at ``object2camera (4, 4)``."""
        cam = self._frame[0].camera
        fx, fy, cx, cy = float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy)
        if isinstance(lines, LineArrays):
            pose = object2camera.detach().to("cpu", _F64).numpy()
            r = line_residual_array(pose, lines, mu, (fx, fy, cx, cy))
            J = line_jacobian_array(pose, lines, fx, fy)
            if self.unseen is not None:
                J = without_unseen_array(J, self._unseen_array, pose[:3, :3], self.unseen[1])
            return r, J
        pose = object2camera.to("cpu", _F64)
        r = self.residual(pose[None], lines, mu, fx, fy, cx, cy)[0]
        J = self.jacobian(pose, lines, fx, fy)
        if self.unseen is not None:
            J = without_unseen(J, self.unseen[0], pose[:3, :3], self.unseen[1])
        return r, J

    def _without_weak(self, J, w, std: float):
        """``J (L, 6)`` (numpy or torch) without the directions its lines (weights ``w (L,)``, noise ``std`` [px])
        see less than ``weak_gain`` times the frame's prior (:func:`~.region_arrays.without_weak_directions`)."""
        if isinstance(J, torch.Tensor):
            rows = J.detach().cpu().numpy()
            out = without_weak_directions(rows, w.detach().cpu().numpy(), std, self._prior, self.settings.weak_gain)
            return J if out is rows else torch.from_numpy(out).to(J)
        return without_weak_directions(J, w, std, self._prior, self.settings.weak_gain)

    def _held_block(self, object2camera: torch.Tensor) -> ResidualBlock:
        """The block of the frame's last search (correspondences, weights, correlation held) at ``object2camera``."""
        lines, mu, w, std, correlation = self._held
        r, J = self._evaluate(object2camera, lines, mu)
        return self._block(r, J, w, std, correlation)

    def _correlation(self, r, J, w, centres) -> float | None:
        """Lines per independent one of the block ``r (L,)``, ``J (L, 6)``, ``w (L,)`` (numpy or torch) at line
        centres ``(L, 2)`` [px] (:func:`~.region_arrays.line_correlation`); None where the frame has no noise
        model (``noise_model``)."""
        s = self.settings
        if s.noise_model == "off" or (s.noise_model == "with_depth" and self._frame[0].frame.depth is None):
            return None
        arrays = [np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a, np.float64)
                  for a in (r, J, w, centres)]
        return line_correlation(*arrays, s.max_correlation)

    def _block(self, r, J, w, std: float, correlation: float | None) -> ResidualBlock:
        """The block of residuals ``r (L,)``, Jacobian ``J (L, 6)``, weights ``w (L,)`` (numpy or torch) at line
        noise ``std`` [px], with its noise model (``correlation`` not None): the weights divided by the lines per
        independent one, and the lines' own scatter where it exceeds ``std`` (``noise_floor = std``) inflating the
        covariance (``filter.noise_estimation``)."""
        if correlation is None:
            return ResidualBlock(self.name, r, J, w, std)
        return ResidualBlock(self.name, r, J, w / correlation, std, std)

    def _correspondences(self, obs: Observation, occlusion: HandOcclusion | None, pose: torch.Tensor, level: int):
        """The kept lines of ``pose (4, 4)`` at ``level`` with their contour posteriors' means and variances
        ``(L,)`` [px] (torch path); None with fewer than ``min_lines``."""
        s = self.settings
        lines = self.lines(pose, obs, self.half_length(level))
        if lines.centres.shape[0] < s.min_lines:
            return None
        mu, var, keep = self.contour_posterior(lines, obs, level, occlusion)
        if int(keep.sum()) < s.min_lines:
            return None
        return lines.select(keep), mu[keep], var[keep]

    def _correspondences_arrays(self, fa: RegionFrame, pose: np.ndarray, level: int):
        """:meth:`_correspondences` in numpy (the CPU path; same values as the torch path)."""
        s = self.settings
        lines = self._lines_array(fa, pose, self.half_length(level))
        if lines.centres.shape[0] < s.min_lines:
            return None
        mu, var, keep = contour_posterior_arrays(fa, lines, self.level_constants(level), self._log_ratio_table(),
                                                 s.hand_margin, s.min_contrast)
        if int(keep.sum()) < s.min_lines:
            return None
        return lines.select(keep), mu[keep], var[keep]
