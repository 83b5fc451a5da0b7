"""The region modality's CPU path in numpy: per-frame lookup images and all lines x segments at once.

:class:`~.region.RegionModality` computes its lines, contour posteriors, residuals and Jacobians in torch (the
reference, and the path of frames on a CUDA device). On the CPU, a few hundred lines of a few dozen pixels each
cost more in torch's per-call overhead than in arithmetic, and every Gauss-Newton iteration read the same image
pixels again. This module does the same computation in float64 numpy, step for step (same values up to rounding;
``test/test_region_modality.py``), with what does not change within a frame made once per frame
(:class:`RegionFrame`):

- the colour cell of every pixel of a box around the object (the lines of the coarsest level at the frame's first
  pose, plus a margin) and, per histogram state, each cell's log likelihood ratio ``log h_f - log h_b``; a pixel
  outside the box is read from the image itself (same value);
- the hand's z-buffer lookup (:class:`~.hand_occlusion.HandDepthLookup`);
- per coarse-to-fine level, the segment offsets and the smoothed step over the candidate windows
  (:class:`LevelConstants`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.camera import MIN_DEPTH
from .hand_occlusion import HandDepthLookup

__all__ = ["LevelConstants", "LineArrays", "LineSamples", "RegionFrame", "contour_posterior_arrays", "line_correlation",
           "line_jacobian_array", "line_residual_array", "log_ratio_table", "without_unseen_array"]

_EPS = 1e-6  # histogram floor inside the log ratio (as the torch path)


@dataclass(frozen=True)
class LineArrays:
    """Correspondence lines of one pose (float64): contour points ``points_obj (L, 3)`` and normals
    ``normals_obj (L, 3)`` [object frame], centres ``(L, 2)`` [px], unit image normals ``(L, 2)``, depths of the
    contour points ``(L,)`` [m]."""

    points_obj: np.ndarray
    normals_obj: np.ndarray
    centres: np.ndarray
    normals: np.ndarray
    depth: np.ndarray

    @classmethod
    def at_pose(cls, points_obj: np.ndarray, normals_obj: np.ndarray, pose: np.ndarray,
                intrinsics: tuple[float, float, float, float]) -> LineArrays:
        """Lines of contour points ``(L, 3)`` / normals ``(L, 3)`` at ``pose (4, 4)`` with ``(fx, fy, cx, cy)``
        (the pinhole projection of :meth:`~handypriors_core.geometry.camera.PinholeCamera.project`)."""
        fx, fy, cx, cy = intrinsics
        R, t = pose[:3, :3], pose[:3, 3]
        p = points_obj @ R.T + t
        ahead = p + 1e-3 * (normals_obj @ R.T)
        focal, centre = np.array([fx, fy]), np.array([cx, cy])
        c = p[:, :2] / np.maximum(p[:, 2:], MIN_DEPTH) * focal + centre
        d = ahead[:, :2] / np.maximum(ahead[:, 2:], MIN_DEPTH) * focal + centre - c
        n = d / np.maximum(np.sqrt((d * d).sum(-1, keepdims=True)), 1e-12)
        return cls(points_obj, normals_obj, c, n, p[:, 2])

    def select(self, keep: np.ndarray) -> LineArrays:
        return LineArrays(self.points_obj[keep], self.normals_obj[keep], self.centres[keep], self.normals[keep],
                          self.depth[keep])

    def inside(self, half_length: float, width: int, height: int) -> np.ndarray:
        """``(L,)`` bool: the line's ``half_length`` [px] lies inside the image and its point in front."""
        u, v = self.centres[:, 0], self.centres[:, 1]
        L = half_length
        return (u > L) & (u < width - 1 - L) & (v > L) & (v < height - 1 - L) & (self.depth > 0)


@dataclass(frozen=True)
class LevelConstants:
    """What a coarse-to-fine level's lines share: segment pixel offsets ``offsets (S, k)`` [px] along the normal,
    the finest level's offsets ``drop_offsets (K,)`` [px] (a hand pixel there drops the line), the segments of
    each candidate's window ``index (D, F)``, the smoothed step's foreground probability ``step (D, F)`` over a
    window, the candidate positions ``candidates (D,)`` [segments] and the segment size ``scale`` [px]."""

    offsets: np.ndarray
    drop_offsets: np.ndarray
    index: np.ndarray
    step: np.ndarray
    candidates: np.ndarray
    scale: float
    drops_own_pixels: bool = False  # ``drop_offsets`` are this level's own offsets (the finest level)


@dataclass(frozen=True)
class LineSamples:
    """Pixels read along lines: the nearest pixel ``u, v (L, K)`` [px, float64 integers, not clamped], its flat
    index into the frame's box ``index (L, K)`` int64 and which lie outside the box ``outside (L, K)`` bool (None:
    none)."""

    u: np.ndarray
    v: np.ndarray
    index: np.ndarray
    outside: np.ndarray | None

    def outside_pixels(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer pixels ``(u, v)`` of the samples outside the box, clamped to the image."""
        u = np.minimum(np.maximum(self.u[self.outside], 0), width - 1).astype(np.int64)
        v = np.minimum(np.maximum(self.v[self.outside], 0), height - 1).astype(np.int64)
        return u, v


class RegionFrame:
    """One frame's colour and hand lookups (see the module docstring).

    Args:
        rgb: ``(H, W, 3)`` uint8 image; hand: the hand's z-buffer lookup or None; box: ``(x0, y0, x1, y1)``
        inclusive pixel box whose colour cells and hand depths are made at once (clipped to the image); bits:
        histogram bits; intrinsics: the full camera's ``(fx, fy, cx, cy)`` [px].
    """

    def __init__(self, rgb: np.ndarray, hand: HandDepthLookup | None, box: tuple[int, int, int, int],
                 bits: int, intrinsics: tuple[float, float, float, float]) -> None:
        self.intrinsics = intrinsics
        self.rgb = rgb
        self.hand = hand
        self.height, self.width = rgb.shape[:2]
        self.bits = bits
        x0, y0, x1, y1 = box
        self.x0, self.y0 = min(max(0, x0), self.width - 1), min(max(0, y0), self.height - 1)
        self.x1, self.y1 = max(min(self.width - 1, x1), self.x0), max(min(self.height - 1, y1), self.y0)
        self.box_width = self.x1 - self.x0 + 1
        self.box_cells = self._cells(rgb[self.y0:self.y1 + 1, self.x0:self.x1 + 1]).ravel()
        self.box_hand = None if hand is None else hand.on_grid(np.arange(self.x0, self.x1 + 1),
                                                               np.arange(self.y0, self.y1 + 1)).ravel()
        self._box_log_ratio: np.ndarray | None = None
        self._table: np.ndarray | None = None

    def _cells(self, rgb: np.ndarray) -> np.ndarray:
        """Colour cells ``(...)`` uint16 of ``rgb (..., 3)`` uint8 (``bits`` per channel, r major)."""
        b = self.bits
        c = rgb >> (8 - b)
        return (c[..., 0].astype(np.uint16) << (2 * b)) | (c[..., 1].astype(np.uint16) << b) | c[..., 2]

    def sample(self, centres: np.ndarray, normals: np.ndarray, offsets: np.ndarray) -> LineSamples:
        """The pixels nearest to ``centres (L, 2) + offsets (K,) x normals (L, 2)`` [px]."""
        u = np.rint(centres[:, 0:1] + offsets[None] * normals[:, 0:1])
        v = np.rint(centres[:, 1:2] + offsets[None] * normals[:, 1:2])
        inside = (u >= self.x0) & (u <= self.x1) & (v >= self.y0) & (v <= self.y1)
        index = ((v - self.y0) * self.box_width + (u - self.x0)).astype(np.int64)
        if bool(inside.all()):
            return LineSamples(u, v, index, None)
        return LineSamples(u, v, np.where(inside, index, 0), ~inside)

    def cells(self, s: LineSamples) -> np.ndarray:
        """Colour cells of the samples' pixels."""
        out = self.box_cells.take(s.index)
        if s.outside is not None:
            u, v = s.outside_pixels(self.width, self.height)
            out[s.outside] = self._cells(self.rgb[v, u])
        return out

    def log_ratio(self, s: LineSamples, table: np.ndarray) -> np.ndarray:
        """The histograms' log likelihood ratio ``table (C,)`` (:func:`log_ratio_table`) at the samples' pixels
        (the box's values are looked up once per table)."""
        if self._table is not table:
            self._table, self._box_log_ratio = table, table.take(self.box_cells)
        out = self._box_log_ratio.take(s.index)
        if s.outside is not None:
            u, v = s.outside_pixels(self.width, self.height)
            out[s.outside] = table[self._cells(self.rgb[v, u])]
        return out

    def hand_pixels(self, s: LineSamples, depth: np.ndarray, margin: float) -> np.ndarray:
        """``(L, K)`` bool: the hand lies in front of (or ``margin`` [m] behind) the line's contour point (depth
        ``(L,)`` [m]) at the samples' pixels."""
        if self.hand is None:
            return np.zeros(s.u.shape, bool)
        d = self.box_hand.take(s.index)
        if s.outside is not None:
            d[s.outside] = self.hand.at_pixels(np.stack(s.outside_pixels(self.width, self.height), -1))
        return d < (depth + margin)[:, None]


def log_ratio_table(hist_f: np.ndarray, hist_b: np.ndarray) -> np.ndarray:
    """``(C,)`` log likelihood ratio of foreground to background per colour cell (histograms ``(C,)``)."""
    return np.log(hist_f + _EPS) - np.log(hist_b + _EPS)


def contour_posterior_arrays(frame: RegionFrame, lines: LineArrays, level: LevelConstants, table: np.ndarray,
                             hand_margin: float, min_contrast: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`~.region.RegionModality.contour_posterior` in numpy (log ratio ``table`` of :func:`log_ratio_table`):
    mean ``(L,)`` and variance ``(L,)`` [px] of the contour position along each line, and which lines are kept
    ``(L,)`` bool."""
    L, (S, k) = lines.centres.shape[0], level.offsets.shape
    samples = frame.sample(lines.centres, lines.normals, level.offsets.reshape(-1))
    hand = frame.hand_pixels(samples, lines.depth, hand_margin)  # (L, S k)
    ratio = frame.log_ratio(samples, table)
    if hand.any():
        ratio = np.where(hand, 0.0, ratio)
    # the hand hides the contour near the line's centre (on the finest level's pixels): the line is dropped
    if level.drops_own_pixels:  # the finest level reads those pixels itself
        keep = ~hand.any(-1)
    else:
        keep = ~frame.hand_pixels(frame.sample(lines.centres, lines.normals, level.drop_offsets), lines.depth,
                                  hand_margin).any(-1)
    ratio = (ratio.reshape(L * S, k) @ np.ones(k)).reshape(L, S) if k > 1 else ratio
    pf = 1.0 / (1.0 + np.exp(-ratio))  # (L, S) segment foreground probability
    pf = np.minimum(np.maximum(pf, 1e-4), 1 - 1e-4)
    p = pf[:, level.index]  # (L, D, F)
    step = level.step
    like = (1 - step) + p * (2 * step - 1)  # step p + (1 - step)(1 - p), each in [1e-4, 1]
    score = np.log(like.prod(-1))  # (L, D) log likelihood of each candidate
    post = np.exp(score - score.max(-1, keepdims=True))  # unnormalised posterior (L, D)
    cand = level.candidates
    mu = (post @ cand) / post.sum(-1)
    var = (post * (cand[None] - mu[:, None]) ** 2).sum(-1) / post.sum(-1)
    contrast = (pf.max(-1) - pf.min(-1)) > min_contrast
    scale = level.scale
    return mu * scale, (var + 1.0 / 12) * scale ** 2, keep & contrast


def line_residual_array(pose: np.ndarray, lines: LineArrays, mu: np.ndarray,
                        intrinsics: tuple[float, float, float, float]) -> np.ndarray:
    """``(L,)`` line residuals [px] at ``pose (4, 4)``: ``n . (pi(p) - c) - mu``."""
    fx, fy, cx, cy = intrinsics
    p = lines.points_obj @ pose[:3, :3].T + pose[:3, 3]
    du = fx * p[:, 0] / p[:, 2] + cx - lines.centres[:, 0]
    dv = fy * p[:, 1] / p[:, 2] + cy - lines.centres[:, 1]
    return du * lines.normals[:, 0] + dv * lines.normals[:, 1] - mu


def line_jacobian_array(pose: np.ndarray, lines: LineArrays, fx: float, fy: float) -> np.ndarray:
    """``(L, 6)`` closed-form ``d residual / d delta``: ``n^T dpi/dp [I, -[p - t]x]`` (as the torch path)."""
    a = lines.points_obj @ pose[:3, :3].T  # p - t
    p = a + pose[:3, 3]
    z = p[:, 2]
    n = lines.normals
    J = np.empty((p.shape[0], 6))
    J[:, 0] = n[:, 0] * fx / z
    J[:, 1] = n[:, 1] * fy / z
    J[:, 2] = -(n[:, 0] * fx * p[:, 0] + n[:, 1] * fy * p[:, 1]) / (z * z)
    g = J[:, :3]
    J[:, 3] = a[:, 1] * g[:, 2] - a[:, 2] * g[:, 1]  # (p - t) x g
    J[:, 4] = a[:, 2] * g[:, 0] - a[:, 0] * g[:, 2]
    J[:, 5] = a[:, 0] * g[:, 1] - a[:, 1] * g[:, 0]
    return J


def line_correlation(residual: np.ndarray, jacobian: np.ndarray, weight: np.ndarray, centres: np.ndarray,
                     max_correlation: float) -> float:
    """Lines per independent one, from the lines' own residuals: ``(1 + rho) / (1 - rho)`` (the variance of a mean
    of an AR(1) sequence over that of independent values), in ``[1, max_correlation]``.

    ``rho`` is the lag-1 autocorrelation, around the contour (lines ordered by their angle about the centres'
    mean), of the whitened residuals ``sqrt(w) (r - J delta)`` left after the best pose step ``delta`` (weighted
    least squares): neighbouring lines that see one edge, one colour-model error or one model-to-silhouette
    mismatch share their errors, which a pose change does not explain. ``residual (L,)`` [px], ``jacobian (L, 6)``,
    ``weight (L,)``, ``centres (L, 2)`` [px]."""
    L = residual.shape[0]
    if L < 8:
        return 1.0
    sw = np.sqrt(weight)
    A, b = jacobian * sw[:, None], residual * sw
    N = A.T @ A
    N[np.diag_indices(6)] += 1e-9 * np.trace(N) + 1e-30  # directions the lines do not see (an axis) stay put
    delta = np.linalg.solve(N, A.T @ b)
    e = b - A @ delta
    d = centres - centres.mean(0)
    e = e[np.argsort(np.arctan2(d[:, 1], d[:, 0]), kind="stable")]
    energy = float(e @ e)
    if energy <= 0:
        return 1.0
    rho = float(e @ np.roll(e, 1)) / energy  # around the closed contour
    rho = min(max(rho, 0.0), (max_correlation - 1) / (max_correlation + 1))
    return (1 + rho) / (1 - rho)


def without_weak_directions(jacobian: np.ndarray, weight: np.ndarray, std: float, prior: np.ndarray,
                            min_gain: float) -> np.ndarray:
    """``jacobian (L, 6)`` without the pose directions along which the lines (weights ``weight (L,)``, noise ``std``
    [px]) add less than ``min_gain`` times the information of the ``prior (6, 6)`` tangent covariance.

    With ``P = C C^T`` the generalised eigenvectors ``x_i = C u_i`` of the lines' information ``Lambda`` against
    ``P^-1`` (``C^T Lambda C = U diag(g) U^T``) split the tangent; ``J (I - X_w X_w^T P^-1)`` removes the weak ones
    (``g_i < min_gain``) exactly: its information is ``Lambda`` less their part, its steps have none along them."""
    C = np.linalg.cholesky(prior)
    JC = jacobian @ C
    gain, U = np.linalg.eigh((JC * weight[:, None]).T @ JC / (std * std))
    weak = U[:, gain < min_gain]
    if weak.shape[1] == 0:
        return jacobian
    return jacobian - (JC @ weak) @ (weak.T @ np.linalg.inv(C))


def without_unseen_array(jacobian: np.ndarray, unseen: np.ndarray, rotation: np.ndarray, radius: float
                         ) -> np.ndarray:
    """:func:`~.sparse_depth.without_unseen` of ``jacobian (M, 6)`` in numpy (``unseen (6, k)``)."""
    Y = np.concatenate((rotation @ unseen[:3], rotation @ unseen[3:]), 0)
    scale = np.array([1.0, 1.0, 1.0, radius, radius, radius])
    Js = jacobian / scale
    return (Js - (Js @ Y) @ Y.T) * scale
