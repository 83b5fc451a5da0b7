"""Z-buffer renders (nearest surface per pixel) for the segmentation and initialisation code.

:meth:`Renderer.hard <handypriors_core.render.renderer.Renderer.hard>` keeps one face per pixel, but when
several faces cover a pixel its kernel keeps the face the pixel lies *deepest inside* (largest edge distance),
not the *nearest* one, so a farther face can win (the back of a box, a palm behind an object). Until that is
fixed, :func:`zbuffer` asks the soft rasterizer for the ``layers`` nearest faces with a vanishing blur margin
(sorted front to back by the kernel) and takes the front one, which is the z-buffer answer whenever at most
``layers`` faces overlap a pixel.
"""

from __future__ import annotations

import torch

from ..render.rasterizer import SoftRasterizer
from ..render.renderer import HardRenderOutput
from ..render.settings import RasterSettings

__all__ = ["zbuffer"]

_RASTERIZERS: dict[tuple, SoftRasterizer] = {}
#: Coverage sharpness [px^2] giving a blur margin of about 0.003 px (inside-only, like a hard rasterizer).
_TINY_SIGMA = 1e-6


def zbuffer(verts: torch.Tensor, faces: torch.Tensor, camera, face_instance: torch.Tensor | None = None,
            layers: int = 8, settings: RasterSettings | None = None) -> HardRenderOutput:
    """Nearest face per pixel of ``verts (B, V, 3)`` [m, camera frame] with ``faces (F, 3)``.

    ``layers``: faces kept per pixel before picking the front one; use more for meshes with many overlapping
    parts (the hand: 16).

    Returns a :class:`~handypriors_core.render.renderer.HardRenderOutput`: ``face``/``instance`` ``(B, H, W)``
    (-1 background), ``bary (B, H, W, 3)``, ``zbuf (B, H, W)`` [m] (0 background), ``mask (B, H, W)`` bool.
    """
    base = settings if settings is not None else RasterSettings()
    key = (layers, base.tile_size, base.near, base.cpu_threads, base.blur_threshold)
    if key not in _RASTERIZERS:
        _RASTERIZERS[key] = SoftRasterizer(RasterSettings(sigma=_TINY_SIGMA, blur_threshold=base.blur_threshold,
                                                          faces_per_pixel=layers, tile_size=base.tile_size,
                                                          near=base.near, cpu_threads=base.cpu_threads))
    with torch.no_grad():
        fr = _RASTERIZERS[key](verts, faces, camera, sigma=_TINY_SIGMA)
    face = fr.face[..., 0].long()
    mask = face >= 0
    zbuf = torch.where(mask, fr.zbuf[..., 0], torch.zeros_like(fr.zbuf[..., 0]))
    if face_instance is None:
        instance = torch.where(mask, torch.zeros_like(face), torch.full_like(face, -1))
    else:
        fi = face_instance.to(device=face.device, dtype=torch.long)
        instance = torch.where(mask, fi[face.clamp_min(0)], torch.full_like(face, -1))
    return HardRenderOutput(face, instance, fr.bary[..., 0, :], zbuf, mask)
