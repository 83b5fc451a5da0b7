"""Per-pixel fragments: what a rasterizer hands to a shader."""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["Fragments"]


@dataclasses.dataclass(frozen=True)
class Fragments:
    """Up to ``K`` faces within the blur margin of each pixel, sorted front to back.

    When more faces reach a pixel, the rasterizer keeps the ``K`` contributing most to their own instance's
    silhouette (``D_j prod (1 - D_i)`` over that instance's faces in front), so outputs there are approximate
    (and jump where the choice changes); ``count`` says where.

    Attributes:
        face: ``(B, H, W, K)`` int32 face index into ``faces``; ``-1`` = empty (empties trail).
        zbuf: ``(B, H, W, K)`` depth [m] at the pixel (inside) or at the triangle's closest point (outside);
            0 where empty. Differentiable.
        dist: ``(B, H, W, K)`` signed squared screen distance [px^2] from the pixel to the triangle,
            positive inside. Differentiable.
        bary: ``(B, H, W, K, 3)`` perspective-correct barycentrics of the pixel (inside) or of the closest
            point (outside). Differentiable.
        count: ``(B, H, W)`` int32 number of faces within the blur margin; ``count > K`` means the farthest
            ``count - K`` were dropped.
        sigma: coverage sharpness [px^2] the fragments were gathered for.
        blur_threshold: coverage clamp of :class:`~.settings.RasterSettings`.
    """

    face: torch.Tensor
    zbuf: torch.Tensor
    dist: torch.Tensor
    bary: torch.Tensor
    count: torch.Tensor
    sigma: float
    blur_threshold: float

    @property
    def faces_per_pixel(self) -> int:
        """K."""
        return int(self.face.shape[-1])

    @property
    def overflow(self) -> torch.Tensor:
        """``(B, H, W)`` bool: pixels where faces within the blur margin were dropped."""
        return self.count > self.face.shape[-1]

    def coverage(self) -> torch.Tensor:
        """``(B, H, W, K)`` soft coverage ``D = max(0, (sigmoid(dist / sigma) - t) / (1 - t))``, 0 where empty."""
        t = self.blur_threshold
        d = ((torch.sigmoid(self.dist / self.sigma) - t) / (1.0 - t)).clamp_min(0.0)
        return torch.where(self.face >= 0, d, torch.zeros_like(d))
