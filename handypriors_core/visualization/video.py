"""Overlay videos: mp4 through OpenCV, or a PNG strip of a few frames where OpenCV has no mp4 encoder."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

__all__ = ["OverlayVideo"]


class OverlayVideo:
    """mp4 via ``cv2.VideoWriter``; without an mp4 codec, a PNG strip of evenly spaced frames (said clearly)."""

    def __init__(self, path: Path, fps: float, expected_frames: int, report: Callable[[str], None],
                 strip_frames: int = 8) -> None:
        self.path = Path(path)
        self.fps = fps if math.isfinite(fps) and fps > 0 else 30.0
        self.report = report
        self.writer = None
        self.fallback = False
        self.strip: list = []
        self.count = 0
        n = max(1, expected_frames)
        k = min(strip_frames, n)
        self.strip_indices = {round(i * (n - 1) / max(k - 1, 1)) for i in range(k)}
        self.written_path: Path | None = None

    def add(self, rgb) -> None:
        import cv2
        import numpy as np

        frame = np.ascontiguousarray(rgb[..., ::-1])
        if self.writer is None and not self.fallback:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                     (frame.shape[1], frame.shape[0]))
            if writer.isOpened():
                self.writer = writer
            else:
                writer.release()
                self.fallback = True
        if self.writer is not None:
            self.writer.write(frame)
        elif self.count in self.strip_indices:
            self.strip.append(frame)
        self.count += 1

    def close(self) -> Path | None:
        import cv2
        import numpy as np

        if self.writer is not None:
            self.writer.release()
            self.written_path = self.path
        elif self.strip:
            h = min(f.shape[0] for f in self.strip)
            strip = np.concatenate([f[:h] for f in self.strip], axis=1)
            png = self.path.with_suffix(".png")
            cv2.imwrite(str(png), strip)
            self.report(f"OpenCV has no mp4 (mp4v) encoder here: wrote a PNG strip of {len(self.strip)} overlay "
                        f"frames to {png} instead of {self.path}")
            self.written_path = png
        return self.written_path
