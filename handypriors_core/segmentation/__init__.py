"""Object mask sources for the tracker: external masks, a built-in colour model, optional detectron2.

``make_mask_source(load_segmentation_settings(), tracker.scene)`` (the factory, here) builds the source selected
in ``config/segmentation.yaml``; every source is a callable ``(frame, object2camera_pred, hand) -> (H, W) mask in
[0, 1] or None`` with a ``status`` string. :mod:`.base` holds settings and the base class, and imports no
backend; the backends import :mod:`.base`; detectron2 is imported only when selected. The sources import
``geometry``, ``io``, ``config``, not ``estimation`` (the colour model gets its renders from the scene it is
given); only :mod:`.testing` (test scenes) builds an ``estimation`` scene.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import (
    MASK_SOURCES,
    ColourModelSettings,
    Detectron2Settings,
    ExternalMaskSettings,
    MaskSourceBase,
    SegmentationSettings,
    as_mask,
    load_segmentation_settings,
)
from .colour_model import ColourModelMask
from .external import ExternalMask

__all__ = [
    "MASK_SOURCES",
    "ColourModelMask",
    "ColourModelSettings",
    "Detectron2Settings",
    "ExternalMask",
    "ExternalMaskSettings",
    "MaskSourceBase",
    "SegmentationSettings",
    "as_mask",
    "load_segmentation_settings",
    "make_mask_source",
]


def make_mask_source(settings: SegmentationSettings | None, scene=None):
    """The mask source selected by ``settings.source`` (None for ``"none"``).

    Args:
        settings: segmentation settings (defaults if None).
        scene: the tracker's :class:`~handypriors_core.estimation.scene.HandObjectScene`; required by the colour
            model (renders the predicted silhouettes) and used by detectron2 to pick the instance.
    """
    settings = settings if settings is not None else SegmentationSettings()
    if settings.source == "none":
        return None
    if settings.source == "external":
        return ExternalMask(settings.external)
    if settings.source == "colour":
        if scene is None:
            raise ConfigError("segmentation.source 'colour' needs the tracker's scene: make_mask_source(settings, "
                              "tracker.scene)")
        return ColourModelMask(scene, settings.colour)
    from .detectron2_backend import Detectron2Mask

    return Detectron2Mask(settings.detectron2, scene)
