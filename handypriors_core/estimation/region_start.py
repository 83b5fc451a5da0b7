"""Where a new colour-only track's contour starts: an image-plane search for the object's colours.

A track starts from a pose that may be centimetres off (a 2 cm start is about the half width of a bottle 0.45 m
away). The region modality learns its first colour histograms from pixels inside / outside the projected contour
at that pose; for a thin object no pixel is surely inside, so the first histograms mix object and background and
the first update goes astray. Before they are learnt, this search shifts the projected contour over the image
(every ``step`` px within ``reach`` px, the pose's projected uncertainty) and keeps the shift whose inside and
outside pixels differ most in colour: the mutual information between a pixel's side and its colour cell
(``2^(3 bits)`` cells), the log-likelihood gain of two colour models over one. The samples lie along the
contour's correspondence lines, up to ``depth`` px on either side; an inner sample stays on its own side of the
silhouette (its nearest contour point is its own line's: thin parts are not crossed), and pixels of the rendered
hand take no part (the hand is known, and a finger's uniform colour would look like an object). A Gaussian prior
on the shift (standard deviation ``reach / 2``) breaks ties. The image-plane shift ``(du, dv)`` [px] moves the
pose's translation parallel to the image plane by ``(du z / fx, dv z / fy)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .hand_occlusion import HandOcclusion
from .observation import Observation

__all__ = ["ContourSearchResult", "contour_shift_search", "inscribed_radius", "shifted_pose", "start_for_learning"]

_F64 = torch.float64


@dataclass
class ContourSearchResult:
    """Attributes: shift ``(2,)`` [px] of the best candidate, its score (mutual information [nats per sample] plus
    the prior's log density per sample), the score at no shift, candidates tried."""

    shift: torch.Tensor
    score: float
    score_at_start: float
    candidates: int


def _inner_limits(centres: torch.Tensor, normals: torch.Tensor, offsets: torch.Tensor, tolerance: float
                  ) -> torch.Tensor:
    """``(L, S)`` bool: the sample ``c_i + o n_i`` of line ``i`` at offset ``o < 0`` keeps line ``i``'s contour
    point as its nearest (within ``tolerance`` px): it has not crossed the silhouette's middle."""
    pos = centres[:, None] + offsets[None, :, None] * normals[:, None]  # (L, S, 2)
    nearest = torch.cdist(pos.reshape(-1, 2), centres).min(-1).values.reshape(pos.shape[:2])
    return nearest >= offsets.abs()[None] - tolerance


def inscribed_radius(centres: torch.Tensor, normals: torch.Tensor, limit: float = 200.0, tolerance: float = 1.5
                     ) -> float:
    """Radius [px] of the largest disc inside the silhouette outlined by contour points ``centres (L, 2)`` [px] with
    outward ``normals (L, 2)``: the deepest a point on an inner normal gets while its own contour point stays the
    nearest (up to ``limit`` px, 1 px steps)."""
    depths = -torch.arange(1, int(limit) + 1, dtype=_F64)
    own = _inner_limits(centres.to(_F64), normals.to(_F64), depths, tolerance)  # (L, K)
    # the first depth where a line's sample leaves its own side ends that line
    reach = torch.where(own.all(-1), torch.full(own.shape[:1], float(limit), dtype=_F64),
                        (~own).to(torch.float64).argmax(-1).to(_F64))
    return float(reach.max()) if reach.numel() else 0.0


def _cell_image(rgb: torch.Tensor, bits: int) -> torch.Tensor:
    """``(H, W)`` long colour cell of every pixel of ``rgb (H, W, 3)`` uint8 (``bits`` per channel)."""
    c = rgb.long() >> (8 - bits)
    return (c[..., 0] << (2 * bits)) | (c[..., 1] << bits) | c[..., 2]


def _mutual_information(counts: torch.Tensor) -> torch.Tensor:
    """``(G,)`` mutual information [nats] between side and colour of per-candidate counts ``(G, 2, C)``."""
    n = counts.sum((-1, -2)).clamp_min(1.0)
    p = counts / n[:, None, None]
    side = p.sum(-1, keepdim=True)
    colour = p.sum(-2, keepdim=True)
    ratio = p / (side * colour).clamp_min(1e-300)
    return torch.where(p > 0, p * torch.log(ratio.clamp_min(1e-300)), torch.zeros_like(p)).sum((-1, -2))


def contour_shift_search(centres: torch.Tensor, normals: torch.Tensor, depths: torch.Tensor, obs: Observation,
                         occlusion: HandOcclusion | None, reach: float, step: float = 3.0, depth: int = 12,
                         bits: int = 3, hand_margin: float = 0.005) -> ContourSearchResult:
    """The image-plane shift [px] of the contour (lines ``centres``, ``normals (L, 2)`` [px], contour point depths
    ``depths (L,)`` [m]) whose inside and outside pixels differ most in colour (see the module docstring).

    Candidates: a grid of ``step`` px within ``reach`` px, then a 1 px grid within ``step`` px of the best.
    """
    rgb = obs.frame.rgb
    H, W = rgb.shape[:2]
    cells = _cell_image(rgb.cpu(), bits).reshape(-1)
    C = 1 << (3 * bits)
    c, n = centres.to(_F64), normals.to(_F64)
    offsets = torch.cat((-torch.arange(depth, 0, -1, dtype=_F64), torch.arange(1, depth + 1, dtype=_F64)))
    side = (offsets > 0).long()  # 0 inside, 1 outside
    usable = _inner_limits(c, n, offsets, 1.5) | (offsets > 0)[None]  # (L, S)
    base = c[:, None] + offsets[None, :, None] * n[:, None]  # (L, S, 2)
    prior_std = max(0.5 * reach, 1.0)

    def scores(shifts: torch.Tensor) -> torch.Tensor:
        pos = base[None] + shifts[:, None, None]  # (G, L, S, 2)
        px = pos.round().long()
        inside = (px[..., 0] >= 0) & (px[..., 0] < W) & (px[..., 1] >= 0) & (px[..., 1] < H)
        keep = usable[None] & inside
        if occlusion is not None:  # the known hand is neither object nor background
            hand = occlusion.depth_at_pixels(pos.reshape(-1, 2)).reshape(pos.shape[:3]).to(_F64)
            keep &= ~(hand < depths[None, :, None].to(_F64) + hand_margin)
        flat = px[..., 1].clamp(0, H - 1) * W + px[..., 0].clamp(0, W - 1)
        g = torch.arange(shifts.shape[0])[:, None, None].expand_as(flat)
        index = (g * 2 + side[None, None]) * C + cells[flat]
        counts = torch.bincount(index[keep], minlength=shifts.shape[0] * 2 * C).reshape(-1, 2, C).to(_F64)
        prior = -0.5 * (shifts.to(_F64) ** 2).sum(-1) / prior_std ** 2
        samples = counts.sum((-1, -2)).clamp_min(1.0)
        return _mutual_information(counts) + prior / samples

    k = max(1, int(reach // step))
    grid = torch.arange(-k, k + 1, dtype=_F64) * step
    shifts = torch.cartesian_prod(grid, grid)
    shifts = shifts[shifts.norm(dim=-1) <= reach + 1e-9]
    s0 = scores(shifts)
    best = shifts[int(s0.argmax())]
    fine = torch.arange(-int(step), int(step) + 1, dtype=_F64)
    local = best[None] + torch.cartesian_prod(fine, fine)
    s1 = scores(local)
    i = int(s1.argmax())
    at_start = float(scores(torch.zeros(1, 2, dtype=_F64))[0])
    return ContourSearchResult(local[i], float(s1[i]), at_start, shifts.shape[0] + local.shape[0])


def shifted_pose(object2camera: torch.Tensor, shift: torch.Tensor, fx: float, fy: float) -> torch.Tensor:
    """``object2camera (4, 4)`` moved parallel to the image plane so that its origin's projection moves by
    ``shift (2,)`` [px] (float64)."""
    out = object2camera.detach().to("cpu", _F64).clone()
    z = float(out[2, 3])
    out[0, 3] += float(shift[0]) * z / fx
    out[1, 3] += float(shift[1]) * z / fy
    if not math.isfinite(float(out[:3, 3].sum())):
        return object2camera.detach().to("cpu", _F64).clone()
    return out


def start_for_learning(region, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None,
                       uncertainty: float) -> tuple[torch.Tensor, float]:
    """Where a new track's first histograms are learnt and from how far inside / outside the contour [px].

    The region modality (:class:`~.region.RegionModality`) learns at ``object2camera (4, 4)`` from pixels beyond
    ``uncertainty`` [px], at most half the object's projected radius. Where the silhouette's inscribed radius
    leaves fewer than ``learn_length / 2`` px that deep, no pixel is surely inside: the contour is searched for
    (:func:`contour_shift_search`, within twice the uncertainty) and learnt at the shifted pose from
    ``learn_margin`` px.
    """
    s = region.settings
    if uncertainty <= s.learn_margin:
        return object2camera, uncertainty
    lines = region.lines(object2camera, obs, 0.0)
    gap = min(uncertainty, 0.5 * region._radius_px(object2camera, obs))
    if lines.centres.shape[0] < s.min_lines or \
            inscribed_radius(lines.centres, lines.normals) >= gap + 0.5 * s.learn_length:
        return object2camera, uncertainty
    found = contour_shift_search(lines.centres, lines.normals, lines.depth, obs, occlusion, reach=2.0 * uncertainty,
                                 hand_margin=s.hand_margin)
    return shifted_pose(object2camera, found.shift, float(obs.camera.fx), float(obs.camera.fy)), s.learn_margin
