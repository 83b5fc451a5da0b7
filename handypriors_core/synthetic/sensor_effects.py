"""Sensor effects of the generator: what a RealSense-like RGB-D camera does to a clean render.

Colour (:func:`apply_rgb`): exposure gain -> Gaussian optical blur -> shot noise (std ``shot * sqrt(level)``)
plus read noise (std ``read``) in 8-bit levels -> rounding to uint8.

Depth (:func:`apply_depth`): no return outside ``[min_range, max_range]``; depth edges (relative jump above
``edge_threshold`` between 4-neighbours, dilated by one pixel) drop out with probability ``edge_dropout``;
optional flying pixels (surviving edge pixels take a depth between the two surfaces); axial noise with std
``noise_z2 * z^2``; random hole blobs (Poisson count, elliptical, radii in ``hole_radius`` px scaled with the
image width); quantisation to millimetres (uint16, 0 = no return).

Per-frame lighting / exposure (:class:`LightingSchedule`): smooth random walks of the key-light direction,
light gain and exposure, fixed for the whole sequence by the seed.

Randomness: every frame uses its own ``torch.Generator`` seeded from ``(seed, frame)`` (see
:func:`frame_generator`), so frame ``i`` is reproducible on its own, in any order, on a given device.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from .scenario import DepthEffects, LightingSettings, RgbEffects

__all__ = ["LightingSchedule", "apply_depth", "apply_rgb", "frame_generator", "gaussian_blur", "lighting_schedule",
           "stream_seed"]

_STREAMS = {"rgb": 1, "depth": 2, "background": 3, "lighting": 4}


def stream_seed(seed: int, frame: int, stream: str) -> int:
    """Deterministic 63-bit seed of one random stream (``rgb``, ``depth``, ...) of one frame."""
    return int(np.random.SeedSequence([int(seed), int(frame), _STREAMS[stream]]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def frame_generator(seed: int, frame: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` for ``stream`` of ``frame`` (see :func:`stream_seed`)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(stream_seed(seed, frame, stream))
    return gen


@dataclasses.dataclass(frozen=True)
class LightingSchedule:
    """Per-frame lighting: ``light_dir_world (N, 3)`` unit, ``light_gain (N,)`` and ``exposure (N,)``."""

    light_dir_world: np.ndarray
    light_gain: np.ndarray
    exposure: np.ndarray


def _smooth_walk(rng: np.random.Generator, n: int, dims: int, std: float) -> np.ndarray:
    """A smooth zero-start random walk ``(n, dims)`` with per-frame step ``std / sqrt(n)`` (so about ``std`` at the
    end of the sequence), box-smoothed over a tenth of the sequence."""
    steps = rng.normal(0.0, std / math.sqrt(max(n, 1)), size=(n, dims))
    walk = np.cumsum(steps, axis=0)
    k = max(1, n // 10)
    kernel = np.ones(k) / k
    padded = np.concatenate([np.repeat(walk[:1], k, 0), walk, np.repeat(walk[-1:], k, 0)])
    smooth = np.stack([np.convolve(padded[:, d], kernel, mode="same")[k:k + n] for d in range(dims)], 1)
    return smooth - smooth[:1]


def lighting_schedule(settings: LightingSettings, rgb: RgbEffects, frames: int, seed: int) -> LightingSchedule:
    """Smooth per-frame light direction, light gain and exposure (exposure constant when rgb effects are off)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAMS["lighting"]]))
    base = np.asarray(settings.direction, np.float64)
    base /= np.linalg.norm(base)
    jitter = _smooth_walk(rng, frames, 3, settings.direction_jitter)
    directions = base + jitter
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    gain = np.exp(_smooth_walk(rng, frames, 1, settings.intensity_jitter)[:, 0])
    exposure_std = rgb.exposure_jitter if rgb.enabled else 0.0
    exposure = np.exp(_smooth_walk(rng, frames, 1, exposure_std)[:, 0])
    return LightingSchedule(directions, gain, exposure)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``image (H, W, C)`` with ``sigma`` [px] (reflect padding)."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    C = image.shape[-1]
    img = image.permute(2, 0, 1)[None]
    img = F.pad(img, (radius, radius, radius, radius), mode="reflect")
    img = F.conv2d(img, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    img = F.conv2d(img, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
    return img[0].permute(1, 2, 0)


def apply_rgb(rgb: torch.Tensor, settings: RgbEffects, exposure: float, generator: torch.Generator,
              width_scale: float = 1.0) -> torch.Tensor:
    """Clean linear colour ``(H, W, 3)`` in [0, 1] -> sensor image ``(H, W, 3)`` uint8 (see module docstring)."""
    img = rgb * (float(exposure) if settings.enabled else 1.0)
    if settings.enabled:
        img = gaussian_blur(img, settings.blur_sigma * width_scale)
        level = img.clamp(0.0, 1.0) * 255.0
        std = torch.sqrt(settings.shot_noise**2 * level + settings.read_noise**2)
        noise = torch.randn(level.shape, generator=generator, device=level.device, dtype=level.dtype)
        level = level + std * noise
    else:
        level = img * 255.0
    return level.round().clamp(0, 255).to(torch.uint8)


def _depth_edges(z: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(H, W)`` bool: pixels with a relative depth jump above ``threshold`` to a 4-neighbour (or a valid /
    invalid boundary), dilated by one pixel."""
    valid = z > 0
    zp = F.pad(z[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    vp = F.pad(valid[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0] > 0.5
    H, W = z.shape
    edge = torch.zeros_like(valid)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        nz = zp[dy:dy + H, dx:dx + W]
        nv = vp[dy:dy + H, dx:dx + W]
        jump = (z - nz).abs() > threshold * torch.maximum(z, nz).clamp_min(1e-6)
        edge |= (valid & nv & jump) | (valid != nv)
    edge = F.max_pool2d(edge[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0.5
    return edge & valid


def apply_depth(depth: torch.Tensor, settings: DepthEffects, generator: torch.Generator,
                width_scale: float = 1.0) -> torch.Tensor:
    """Clean z-depth ``(H, W)`` [m] (0 = nothing) -> measured depth ``(H, W)`` int32 millimetres (0 = no return).

    The caller stores it as uint16 (values are clamped to 65535)."""
    z = depth.clone()
    H, W = z.shape
    dev = z.device
    z = torch.where((z >= settings.min_range) & (z <= settings.max_range), z, torch.zeros_like(z))
    if settings.enabled:
        edges = _depth_edges(z, settings.edge_threshold)
        u = torch.rand(z.shape, generator=generator, device=dev, dtype=z.dtype)
        drop = edges & (u < settings.edge_dropout)
        if settings.flying_pixels > 0:
            zmax = F.max_pool2d(z[None, None], 3, stride=1, padding=1)[0, 0]
            v = torch.rand(z.shape, generator=generator, device=dev, dtype=z.dtype)
            w = torch.rand(z.shape, generator=generator, device=dev, dtype=z.dtype)
            fly = edges & ~drop & (v < settings.flying_pixels)
            z = torch.where(fly, z + w * (zmax - z), z)
        z = torch.where(drop, torch.zeros_like(z), z)
        noise = torch.randn(z.shape, generator=generator, device=dev, dtype=z.dtype)
        z = torch.where(z > 0, z + settings.noise_z2 * z * z * noise, z)
        # random hole blobs
        rate = torch.tensor([float(settings.hole_rate)], device=dev)
        count = int(torch.poisson(rate, generator=generator)[0]) if settings.hole_rate > 0 else 0
        if count:
            params = torch.rand((count, 5), generator=generator, device=dev, dtype=z.dtype)
            lo, hi = settings.hole_radius
            cx, cy = params[:, 0] * W, params[:, 1] * H
            rx = (lo + (hi - lo) * params[:, 2]) * width_scale
            ry = rx * (0.5 + params[:, 3])
            ang = params[:, 4] * math.pi
            yy, xx = torch.meshgrid(torch.arange(H, device=dev, dtype=z.dtype),
                                    torch.arange(W, device=dev, dtype=z.dtype), indexing="ij")
            dx = xx[None] - cx[:, None, None]
            dy = yy[None] - cy[:, None, None]
            c, s = torch.cos(ang)[:, None, None], torch.sin(ang)[:, None, None]
            a = (c * dx + s * dy) / rx[:, None, None]
            b = (-s * dx + c * dy) / ry[:, None, None]
            holes = ((a * a + b * b) <= 1.0).any(0)
            z = torch.where(holes, torch.zeros_like(z), z)
    mm = torch.round(z / settings.quantisation)
    return mm.clamp(0, 65535).to(torch.int32)
