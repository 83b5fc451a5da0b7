"""Settings of the renderer components, one dataclass each, loadable from ``config/render.yaml``.

    settings = load_render_settings()                      # shipped config/render.yaml
    settings = settings_from_dict(RenderSettings, {"raster": {"sigma": 0.5}})
"""

from __future__ import annotations

import dataclasses
import math
import os

from ..config import find_config, load_settings
from ..errors import InvalidValueError

__all__ = ["RasterSettings", "RenderSettings", "ShadingSettings", "blur_margin", "load_render_settings"]


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidValueError(message)


def blur_margin(sigma: float, blur_threshold: float) -> float:
    """Distance [px] beyond which a face's coverage is exactly 0: ``sqrt(sigma * ln((1 - t) / t))``."""
    return math.sqrt(sigma * math.log((1.0 - blur_threshold) / blur_threshold))


@dataclasses.dataclass
class RasterSettings:
    """Soft rasterizer settings.

    Attributes:
        sigma: coverage sharpness [px^2] of ``sigmoid(+-d^2 / sigma)`` (``d`` = distance to the triangle
            [px] in the rendered image). 0.5 is SoftRas's default (1e-4 in NDC units) at 128 px; larger
            values blur more (schedule it down, coarse-to-fine).
        blur_threshold: coverage ``(sigmoid - t) / (1 - t)`` is clamped to exactly 0 below this, which
            bounds each face's influence to the blur margin ``sqrt(sigma * ln((1 - t) / t))`` (2.1 px for
            the defaults) used for tile binning.
        faces_per_pixel: fragments kept per pixel, front to back. When more faces lie within the blur
            margin, the one contributing least to the composite (``D_j prod_{i in front} (1 - D_i)``) is
            dropped, greedily; ``Fragments.count`` tells where that happened.
        tile_size: screen tile edge [px] of the face binning.
        near: faces with a vertex closer than this [m] (or behind the camera, or non-finite) are not drawn.
        cpu_threads: on CPU, pixels are split into this many concurrent kernel launches (warp runs one
            thread per launch); 0 = number of CPU cores, at most 8.
    """

    sigma: float = 0.5
    blur_threshold: float = 1e-4
    faces_per_pixel: int = 16
    tile_size: int = 4
    near: float = 0.01
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        _require(math.isfinite(self.sigma) and self.sigma > 0, f"raster.sigma must be > 0; got {self.sigma}")
        _require(0 < self.blur_threshold < 0.5, f"raster.blur_threshold must be in (0, 0.5); got {self.blur_threshold}")
        _require(1 <= self.faces_per_pixel <= 64,
                 f"raster.faces_per_pixel must be in [1, 64]; got {self.faces_per_pixel}")
        _require(1 <= self.tile_size <= 256, f"raster.tile_size must be in [1, 256]; got {self.tile_size}")
        _require(math.isfinite(self.near) and self.near > 0, f"raster.near must be > 0; got {self.near}")
        _require(0 <= self.cpu_threads <= 64, f"raster.cpu_threads must be in [0, 64]; got {self.cpu_threads}")

    @property
    def margin(self) -> float:
        """Blur margin [px] implied by ``sigma`` and ``blur_threshold``."""
        return blur_margin(self.sigma, self.blur_threshold)


@dataclasses.dataclass
class ShadingSettings:
    """Soft depth / colour blending (SoftRas softmax over normalised inverse depth) and Lambertian light.

    Attributes:
        gamma: softmax temperature of the blend weights ``D_j exp(zn_j / gamma)``, with
            ``zn = (z_far - z) / (z_far - z_near)`` (1 at ``z_near``, 0 at ``z_far``). Smaller = harder z-test.
        z_near, z_far: depth range [m] of that normalisation.
        background_weight: ``zn`` of the background term ``exp(background_weight / gamma)`` (SoftRas eps).
        background_depth: soft depth [m] where nothing is drawn (0 = no measurement, as RealSense).
        background_color: RGB in [0, 1] where nothing is drawn.
        ambient, diffuse: Lambertian shading ``colour * (ambient + diffuse * max(0, n . l))``.
        light_direction: direction towards the light in the camera frame (normalised on use); the default
            points back at the camera (head light).
    """

    gamma: float = 1e-4
    z_near: float = 0.05
    z_far: float = 3.0
    background_weight: float = 1e-3
    background_depth: float = 0.0
    background_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ambient: float = 0.5
    diffuse: float = 0.5
    light_direction: tuple[float, float, float] = (0.0, 0.0, -1.0)

    def __post_init__(self) -> None:
        _require(math.isfinite(self.gamma) and self.gamma > 0, f"shading.gamma must be > 0; got {self.gamma}")
        _require(0 < self.z_near < self.z_far, f"shading needs 0 < z_near < z_far; got {self.z_near}, {self.z_far}")
        _require(math.isfinite(self.background_weight), "shading.background_weight must be finite")
        _require(self.ambient >= 0 and self.diffuse >= 0, "shading.ambient and shading.diffuse must be >= 0")
        _require(len(self.background_color) == 3, "shading.background_color must have 3 entries")
        _require(len(self.light_direction) == 3, "shading.light_direction must have 3 entries")
        _require(any(v != 0 for v in self.light_direction), "shading.light_direction must be non-zero")


@dataclasses.dataclass
class RenderSettings:
    """Settings of :class:`~handypriors_core.render.renderer.Renderer` (section ``render`` of render.yaml)."""

    raster: RasterSettings = dataclasses.field(default_factory=RasterSettings)
    shading: ShadingSettings = dataclasses.field(default_factory=ShadingSettings)


def load_render_settings(path: str | os.PathLike | None = None) -> RenderSettings:
    """RenderSettings from ``path`` (default: the shipped ``render.yaml``), section ``render``."""
    return load_settings(RenderSettings, path if path is not None else find_config("render.yaml"), section="render")
