"""Object mask sources for the tracker: external masks, a built-in colour model, optional detectron2.

``make_mask_source(load_segmentation_settings(), tracker.scene)`` builds the source selected in
``config/segmentation.yaml``; every source is a callable ``(frame, object2camera_pred, hand) -> (H, W) mask in
[0, 1] or None`` with a ``status`` string. detectron2 is imported only when selected. See :mod:`.base`.
"""

from .base import (
    MASK_SOURCES,
    ColourModelSettings,
    Detectron2Settings,
    ExternalMaskSettings,
    MaskSourceBase,
    SegmentationSettings,
    as_mask,
    load_segmentation_settings,
    make_mask_source,
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
