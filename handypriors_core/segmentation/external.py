"""External object masks: from the frame, pushed by stamp (a ROS ``mono8`` topic) or image files offline.

    source = ExternalMask(ExternalMaskSettings(directory="masks/", pattern="{index:06d}.png"))
    mask = source(frame, object2camera_pred, hand)        # (H, W) float in [0, 1] or None; source.status says why

Order of preference for a frame: a pushed mask whose stamp is within ``max_age`` of the frame's, then the file
of the frame's index in ``directory``, then the frame's own ``object_mask``. A mask of the wrong size, with
NaN, or with fewer than ``min_pixels`` object pixels gives None and a clear :attr:`status` (or, with
``strict``, the typed error).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import torch

from ..errors import HandyPriorsError, InvalidValueError, ModelFileError
from ..io.frame import Frame
from .base import ExternalMaskSettings, MaskSourceBase, as_mask

__all__ = ["ExternalMask", "read_mask_file"]


def read_mask_file(path: str | Path) -> torch.Tensor:
    """Read a mask image (``mono8`` / 16-bit / colour PNG, any format OpenCV reads) as a raw tensor.

    Colour images use their first channel. Raises :class:`ModelFileError` naming the file when it is missing or
    unreadable.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"mask file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ModelFileError(f"cannot read mask file {path}")
    if image.ndim == 3:
        image = image[..., 0]
    return torch.from_numpy(image.copy())


class ExternalMask(MaskSourceBase):
    """Object masks computed outside the tracker (see the module docstring)."""

    name = "external mask"
    needs_pose = False

    def __init__(self, settings: ExternalMaskSettings | None = None, buffer: int = 16) -> None:
        super().__init__()
        self.settings = settings if settings is not None else ExternalMaskSettings()
        self._pushed: deque[tuple[float, object]] = deque(maxlen=buffer)

    def push(self, mask, stamp: float) -> None:
        """Offer a mask (``(H, W)`` array/tensor, e.g. a decoded ``mono8`` message) for the frame at ``stamp`` [s]."""
        self._pushed.append((float(stamp), mask))

    def reset(self) -> None:
        self._pushed.clear()

    def _pick_pushed(self, stamp: float):
        if not self._pushed:
            return None
        best = min(self._pushed, key=lambda item: abs(item[0] - stamp))
        return best[1] if abs(best[0] - stamp) <= self.settings.max_age else None

    def _raw_mask(self, frame: Frame):
        """The raw mask for ``frame`` and where it came from, or (None, reason)."""
        pushed = self._pick_pushed(frame.stamp)
        if pushed is not None:
            return pushed, "pushed"
        s = self.settings
        if s.directory:
            path = Path(s.directory) / s.pattern.format(index=frame.index, stamp=frame.stamp)
            if path.is_file():
                return read_mask_file(path), str(path)
            if frame.object_mask is None:
                return None, f"no mask file {path}"
        if frame.object_mask is not None:
            return frame.object_mask, "frame"
        if self._pushed:
            return None, f"no mask within {s.max_age} s of stamp {frame.stamp:.3f}"
        return None, "no mask given"

    def __call__(self, frame: Frame, object2camera_pred: torch.Tensor | None = None, hand=None) -> torch.Tensor | None:
        s = self.settings
        try:
            raw, origin = self._raw_mask(frame)
            if raw is None:
                self._report(False, origin)
                return None
            mask = as_mask(raw, frame.height, frame.width, name=f"object mask ({origin})", resize=s.resize,
                           threshold=s.threshold)
        except HandyPriorsError as exc:
            if s.strict:
                raise
            self._report(False, str(exc))
            return None
        count = int((mask > 0.5).sum())
        if count < max(s.min_pixels, 1):
            message = f"empty mask ({count} object pixels, fewer than {max(s.min_pixels, 1)})"
            if s.strict:
                raise InvalidValueError(message)
            self._report(False, message)
            return None
        self._report(True, "ok")
        return mask
