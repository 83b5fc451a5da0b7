"""Object mask sources: settings, the shared base class and mask validation (the factory is in the package).

A mask source is a callable ``(frame, object2camera_pred (4, 4), hand: PosedHand) -> (H, W) float in [0, 1]
or None`` (:class:`~handypriors_core.estimation.tracker.MaskSource`). ``None`` means "no usable mask this
frame": the tracker then skips the silhouette terms and depth and physics carry the estimate. Every source here
also keeps a human-readable :attr:`MaskSourceBase.status` (``"ok"``, ``"empty mask"``, ...) for logs and
diagnostics, and never returns NaN.

Sources (``segmentation.source`` in ``config/segmentation.yaml``):

- ``"external"`` (:class:`~.external.ExternalMask`): masks made elsewhere: the frame's own ``object_mask``
  (filled by the ROS node from a ``mono8`` image topic), masks pushed by stamp, or image files offline.
- ``"colour"`` (:class:`~.colour_model.ColourModelMask`): built in, no weights: region-based colour
  histograms learned from the projected silhouette of the current estimate (PWP3D / RBOT style).
- ``"detectron2"`` (:class:`~.detectron2_backend.Detectron2Mask`): PointRend / Mask R-CNN through detectron2,
  imported only when selected.
- ``"none"``: no mask source (the tracker uses ``frame.object_mask`` when a frame carries one).

The robot hand is never segmented: its silhouette is rendered from forward kinematics and hand2camera.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from .. import defaults
from ..config import find_config, load_settings, require
from ..errors import InvalidValueError, ShapeError

__all__ = [
    "MASK_SOURCES",
    "ColourModelSettings",
    "Detectron2Settings",
    "ExternalMaskSettings",
    "MaskSourceBase",
    "SegmentationSettings",
    "as_mask",
    "finite_or_none",
    "load_segmentation_settings",
]

log = logging.getLogger("handypriors.segmentation")

#: Names accepted by ``segmentation.source``.
MASK_SOURCES = defaults.MASK_SOURCES


@dataclass
class ColourModelSettings:
    """Region-based colour model (:class:`~.colour_model.ColourModelMask`).

    Attributes:
        colour_space: ``"rgb"``, ``"ycrcb"`` (luma separated from chroma) or ``"hsv"``.
        bins: histogram bins per channel (``bins^3`` colours).
        histogram_blur: side of the box filter smoothing the 3D histograms [bins] (1 = none; odd).
        resolution: edge [px] of the square region of interest the model works on (resampled).
        margin: ROI margin, fraction of the predicted object's projected bounding-box size on each side.
        learning_rate: weight of the current frame in the online histogram update (1 = forget the past).
        erosion: the foreground histogram learns from the predicted visible silhouette eroded by this many
            ROI pixels, the background from outside it dilated by as many (the uncertain contour is skipped).
        hand_dilation: rendered hand pixels dilated by this many ROI pixels are excluded from learning.
        hand_as_background: let the (eroded) rendered hand's colours teach the background histogram.
        min_pixels: fewest foreground (and background) pixels needed to learn from a frame.
        spatial_margin: pixels within this fraction of the object's projected size from the predicted silhouette
            get an uninformative spatial prior (motion between frames).
        spatial_falloff: beyond it the prior falls towards ``spatial_floor`` over this fraction of the size.
        spatial_floor: object prior far away from the prediction (0 < floor <= 0.5).
        depth_tolerance: with aligned depth, pixels whose depth lies farther than this [m] outside the predicted
            object's depth range count as background.
        depth_strength: log-odds subtracted for such depth-inconsistent pixels.
        max_log_odds: log-odds are clipped to +-this (soft output).
        smoothing: side of the box filter on the posterior [ROI px] (1 = none; odd).
        learn_from: ``"auto"`` learns at the pose given to :meth:`~.colour_model.ColourModelMask.update` when the
            tracker calls it after a frame, else at the predicted pose of the next call; ``"prediction"`` always at
            the prediction; ``"update"`` only in ``update``.
    """

    colour_space: Literal["rgb", "ycrcb", "hsv"] = "rgb"
    bins: int = 16
    histogram_blur: int = 3
    resolution: int = 96
    margin: float = 0.5
    learning_rate: float = 0.2
    erosion: int = 2
    hand_dilation: int = 2
    hand_as_background: bool = False
    min_pixels: int = 20
    spatial_margin: float = 0.15
    spatial_falloff: float = 0.15
    spatial_floor: float = 0.02
    depth_tolerance: float = 0.03
    depth_strength: float = 4.0
    max_log_odds: float = 6.0
    smoothing: int = 3
    learn_from: Literal["auto", "prediction", "update"] = "auto"

    def __post_init__(self) -> None:
        require(self.colour_space in ("rgb", "ycrcb", "hsv"),
                f"colour.colour_space must be rgb, ycrcb or hsv; got {self.colour_space!r}")
        require(2 <= self.bins <= 64, f"colour.bins must be in [2, 64]; got {self.bins}")
        require(self.histogram_blur >= 1 and self.histogram_blur % 2 == 1, "colour.histogram_blur must be odd >= 1")
        require(16 <= self.resolution <= 1024, f"colour.resolution must be in [16, 1024] px; got {self.resolution}")
        require(0 <= self.margin <= 3, f"colour.margin must be in [0, 3]; got {self.margin}")
        require(0 < self.learning_rate <= 1, f"colour.learning_rate must be in (0, 1]; got {self.learning_rate}")
        require(self.erosion >= 0 and self.hand_dilation >= 0, "colour.erosion and hand_dilation must be >= 0")
        require(self.min_pixels >= 1, "colour.min_pixels must be >= 1")
        require(self.spatial_margin >= 0 and self.spatial_falloff > 0, "colour.spatial_margin >= 0, falloff > 0")
        require(0 < self.spatial_floor <= 0.5, "colour.spatial_floor must be in (0, 0.5]")
        require(self.depth_tolerance > 0 and self.depth_strength >= 0, "colour.depth_tolerance > 0 m, strength >= 0")
        require(self.max_log_odds > 0, "colour.max_log_odds must be > 0")
        require(self.smoothing >= 1 and self.smoothing % 2 == 1, "colour.smoothing must be odd >= 1")
        require(self.learn_from in ("auto", "prediction", "update"),
                f"colour.learn_from must be auto, prediction or update; got {self.learn_from!r}")


@dataclass
class ExternalMaskSettings:
    """Masks made elsewhere (:class:`~.external.ExternalMask`).

    Attributes:
        directory: offline: folder of mask images (``mono8`` PNG, 0 = background); empty = none (the frame's
            ``object_mask`` or masks pushed with ``push``).
        pattern: file name of frame ``index`` in ``directory`` (``str.format`` with ``index`` and ``stamp``).
        threshold: binarise masks at this value in [0, 1]; negative = keep soft values.
        resize: accept masks of another size with the image's aspect ratio (e.g. a half-resolution segmenter)
            and resample them; a mask of another aspect ratio is always rejected.
        max_age: a pushed mask whose stamp differs from the frame's by more than this [s] is stale (ignored).
        min_pixels: masks with fewer object pixels (> 0.5) count as empty (None is returned).
        strict: raise the typed error on a bad mask instead of reporting it in ``status`` and returning None.
    """

    directory: str = ""
    pattern: str = "{index:06d}.png"
    threshold: float = -1.0
    resize: bool = True
    max_age: float = 0.05
    min_pixels: int = 10
    strict: bool = False

    def __post_init__(self) -> None:
        require(self.threshold <= 1, f"external.threshold must be <= 1; got {self.threshold}")
        require(self.max_age >= 0, "external.max_age must be >= 0 s")
        require(self.min_pixels >= 0, "external.min_pixels must be >= 0")


@dataclass
class Detectron2Settings:
    """detectron2 instance segmentation (PointRend in the paper) (:class:`~.detectron2_backend.Detectron2Mask`).

    Attributes:
        config_file: detectron2 config (``.yaml``) of the model, e.g. a PointRend instance-segmentation config.
        weights: path (or URL known to detectron2) of the trained weights (``.pkl`` / ``.pth``).
        class_id: class index of the object in the model's label space; ``-1`` = any class.
        score_threshold: instances scoring below this are ignored.
        pointrend: add the PointRend config keys before reading ``config_file``.
        device: ``"cpu"`` or ``"cuda"`` for the network.
        min_overlap: the chosen instance must overlap the predicted object's box by at least this IoU once a pose
            is known (0 = always take the best-scoring instance).
    """

    config_file: str = ""
    weights: str = ""
    class_id: int = -1
    score_threshold: float = 0.5
    pointrend: bool = True
    device: str = "cpu"
    min_overlap: float = 0.05

    def __post_init__(self) -> None:
        require(0 <= self.score_threshold <= 1, "detectron2.score_threshold must be in [0, 1]")
        require(0 <= self.min_overlap <= 1, "detectron2.min_overlap must be in [0, 1]")
        require(self.class_id >= -1, "detectron2.class_id must be >= -1")


@dataclass
class SegmentationSettings:
    """Which object mask source the tracker uses (``segmentation`` section of ``config/segmentation.yaml``).

    Attributes:
        source: ``"none"``, ``"external"``, ``"colour"`` or ``"detectron2"`` (see the module docstring).
        colour, external, detectron2: each source's settings.
    """

    source: Literal["none", "external", "colour", "detectron2"] = "colour"
    colour: ColourModelSettings = field(default_factory=ColourModelSettings)
    external: ExternalMaskSettings = field(default_factory=ExternalMaskSettings)
    detectron2: Detectron2Settings = field(default_factory=Detectron2Settings)

    def __post_init__(self) -> None:
        require(self.source in MASK_SOURCES, f"segmentation.source must be one of {list(MASK_SOURCES)}; "
                                              f"got {self.source!r}")


def load_segmentation_settings(path: str | os.PathLike | None = None,
                               section: str = "segmentation") -> SegmentationSettings:
    """Read :class:`SegmentationSettings` from ``path`` (default: the shipped ``config/segmentation.yaml``)."""
    return load_settings(SegmentationSettings, path if path is not None else find_config("segmentation.yaml"),
                         section=section)


class MaskSourceBase:
    """Shared bookkeeping of the mask sources: a status string, logged when it changes.

    Attributes:
        status: ``"ok"`` after a usable mask, otherwise why there is none (``"empty mask"``, ...).
        ok: whether the last call returned a mask.
    """

    name = "mask source"
    #: whether calls need a predicted pose (the colour model does; external masks and detectron2 do not)
    needs_pose = True

    def __init__(self) -> None:
        self.status = "no frame yet"
        self.ok = False

    def _report(self, ok: bool, status: str) -> None:
        if status != self.status:
            (log.info if ok else log.warning)("%s: %s", self.name, status)
        self.ok, self.status = ok, status

    def update(self, frame, object2camera: torch.Tensor, hand) -> None:
        """Hook called by the tracker with its final estimate of a frame (learning sources use it)."""

    def reset(self) -> None:
        """Forget what was learned (a new track)."""


def as_mask(mask, height: int, width: int, name: str = "object mask", resize: bool = False,
            threshold: float = -1.0) -> torch.Tensor:
    """Validate and convert a mask to ``(height, width)`` float32 in [0, 1] (CPU or its device).

    Accepts torch tensors or numpy arrays: ``uint8`` (``mono8``: 0..255, or label images with values {0, 1}),
    ``bool``, ``uint16`` labels, or floats in [0, 1]; a trailing channel axis of size 1 is dropped. Masks of
    another size raise :class:`ShapeError` unless ``resize`` and the aspect ratio matches (then they are resampled
    bilinearly). NaN/inf or floats outside [0, 1] raise :class:`InvalidValueError`. ``threshold >= 0`` binarises.
    """
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor or numpy array; got {type(mask).__name__}")
    if mask.dim() == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.dim() != 2:
        raise ShapeError(f"{name} must be a (H, W) image; got shape {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        m = mask.float()
    elif mask.dtype == torch.uint8:
        m = mask.float() / (1.0 if int(mask.max()) <= 1 else 255.0)
    elif not mask.is_floating_point():
        m = (mask > 0).float()
    else:
        m = mask.float()
        if not bool(torch.isfinite(m).all()):
            raise InvalidValueError(f"{name} contains NaN or inf")
        if bool(((m < -1e-6) | (m > 1 + 1e-6)).any()):
            raise InvalidValueError(f"{name} must lie in [0, 1]; got values in [{float(m.min()):.3g}, "
                                    f"{float(m.max()):.3g}]")
        m = m.clamp(0, 1)
    h, w = m.shape
    if (h, w) != (height, width):
        same_aspect = abs(w * height - h * width) <= 0.01 * width * height
        if not (resize and same_aspect):
            raise ShapeError(f"{name} has size {h}x{w} (HxW) but the image is {height}x{width}"
                             + ("" if same_aspect else " (different aspect ratio)"))
        m = torch.nn.functional.interpolate(m[None, None], size=(height, width), mode="bilinear",
                                            align_corners=False)[0, 0].clamp(0, 1)
    if threshold >= 0:
        m = (m > threshold).float()
    return m


def finite_or_none(mask: torch.Tensor | None) -> torch.Tensor | None:
    """``mask`` with NaN replaced by 0 (never returns NaN); None stays None."""
    if mask is None:
        return None
    return torch.nan_to_num(mask, nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1)
