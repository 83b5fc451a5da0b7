"""Renderer = camera + rasterizer + shaders, for scenes of several meshes with instance ids.

    renderer = Renderer(load_render_settings())
    verts, faces, face_instance = join_meshes([(hand_verts, hand_faces), (object_verts, object_faces)])
    out = renderer(verts, faces, camera.crop_and_resize(box, 128, 128), face_instance=face_instance)
    loss = ((out.visible[:, 1] - object_mask) ** 2).sum() + ((out.union - union_mask) ** 2).sum()

``verts`` are in the camera frame (callers apply ``object2camera`` / ``hand2camera`` in torch, so gradients
reach poses, joint angles and the camera pose). See :mod:`.shader` for what each output means.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..errors import InvalidValueError
from .fragments import Fragments
from .rasterizer import HardRasterizer, SoftRasterizer
from .settings import RenderSettings
from .shader import SoftBlendShader, SoftSilhouetteShader, _instances

__all__ = ["HardRenderOutput", "RenderOutput", "Renderer", "join_meshes"]


@dataclasses.dataclass(frozen=True)
class RenderOutput:
    """Soft render of a scene; images are ``(B, H, W)`` unless stated.

    Attributes:
        full: ``(B, NI, H, W)`` soft silhouette of each instance on its own.
        visible: ``(B, NI, H, W)`` soft silhouette of each instance where it is the first surface hit.
        union: soft silhouette of everything.
        depth: soft depth [m] (``None`` unless asked for).
        rgb: ``(B, H, W, 3)`` soft colour (``None`` unless colours were given).
        fragments: the rasterizer's output.
    """

    full: torch.Tensor
    visible: torch.Tensor
    union: torch.Tensor
    depth: torch.Tensor | None
    rgb: torch.Tensor | None
    fragments: Fragments


@dataclasses.dataclass(frozen=True)
class HardRenderOutput:
    """Z-buffer render: ``face``/``instance`` ``(B, H, W)`` long (-1 = background), ``bary (B, H, W, 3)``
    perspective-correct, ``zbuf (B, H, W)`` [m] (0 = background), ``mask (B, H, W)`` bool."""

    face: torch.Tensor
    instance: torch.Tensor
    bary: torch.Tensor
    zbuf: torch.Tensor
    mask: torch.Tensor


def join_meshes(
    meshes: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate ``[(verts (B, V_i, 3), faces (F_i, 3)), ...]`` into one scene.

    Returns ``verts (B, sum V, 3)``, ``faces (sum F, 3)`` long (re-indexed) and ``face_instance (sum F,)``
    long (mesh ``i`` -> instance ``i``). Batch sizes broadcast (1 -> B).
    """
    if not meshes:
        raise InvalidValueError("join_meshes needs at least one mesh")
    B = max(v.shape[0] for v, _ in meshes)
    verts, faces, inst = [], [], []
    offset = 0
    for i, (v, f) in enumerate(meshes):
        verts.append(v.expand(B, *v.shape[1:]))
        faces.append(f.long().to(v.device) + offset)
        inst.append(torch.full((f.shape[0],), i, dtype=torch.long, device=v.device))
        offset += v.shape[1]
    return torch.cat(verts, 1), torch.cat(faces, 0), torch.cat(inst, 0)


class Renderer:
    """Soft renderer: a rasterizer and shaders, each replaceable.

    ``__call__(verts (B, V, 3) [m, camera frame], faces (F, 3), camera, face_instance (F,) = None,
    num_instances=None, depth=False, vertex_colors=None, uv=None, texture=None, vertex_normals=None,
    sigma=None, gamma=None) -> RenderOutput``. ``sigma`` [px^2] / ``gamma`` override the settings per call.
    ``hard(verts, faces, camera, face_instance=None) -> HardRenderOutput`` (z-buffer).
    """

    def __init__(
        self,
        settings: RenderSettings | None = None,
        rasterizer: SoftRasterizer | None = None,
        silhouette_shader: SoftSilhouetteShader | None = None,
        blend_shader: SoftBlendShader | None = None,
    ):
        self.settings = settings if settings is not None else RenderSettings()
        self.rasterizer = rasterizer if rasterizer is not None else SoftRasterizer(self.settings.raster)
        if silhouette_shader is None:
            silhouette_shader = SoftSilhouetteShader(self.settings.raster.cpu_threads)
        self.silhouette_shader = silhouette_shader
        if blend_shader is None:
            blend_shader = SoftBlendShader(self.settings.shading, self.settings.raster.cpu_threads)
        self.blend_shader = blend_shader
        self.hard_rasterizer = HardRasterizer(self.settings.raster)

    def __call__(
        self,
        verts: torch.Tensor,
        faces: torch.Tensor,
        camera,
        face_instance: torch.Tensor | None = None,
        num_instances: int | None = None,
        depth: bool = False,
        vertex_colors: torch.Tensor | None = None,
        uv: torch.Tensor | None = None,
        texture: torch.Tensor | None = None,
        vertex_normals: torch.Tensor | None = None,
        sigma: float | None = None,
        gamma: float | None = None,
    ) -> RenderOutput:
        inst, ni = _instances(face_instance, faces.shape[0], num_instances, verts.device)
        fragments = self.rasterizer(verts, faces, camera, sigma=sigma, face_instance=inst)
        sil = self.silhouette_shader(fragments, inst, ni)
        soft_depth = self.blend_shader.depth(fragments, gamma) if depth else None
        rgb = None
        if vertex_colors is not None or texture is not None:
            rgb = self.blend_shader.rgb(fragments, verts, faces, vertex_colors, uv, texture, vertex_normals, gamma)
        return RenderOutput(sil.full, sil.visible, sil.union, soft_depth, rgb, fragments)

    def hard_depth(self, verts: torch.Tensor, faces: torch.Tensor, camera, cull_back: bool = False,
                   grow: int = 0) -> torch.Tensor:
        """``(B, H, W)`` nearest depth [m] per pixel, ``inf`` where no face: :meth:`hard`'s ``zbuf`` where its ``mask``
        (see :meth:`~.rasterizer.HardRasterizer.nearest_depth` for ``cull_back`` and ``grow``), much cheaper for a
        small image."""
        return self.hard_rasterizer.nearest_depth(verts, faces, camera, cull_back, grow)

    def hard(
        self, verts: torch.Tensor, faces: torch.Tensor, camera, face_instance: torch.Tensor | None = None
    ) -> HardRenderOutput:
        """Nearest face containing each pixel centre, its instance, barycentrics and depth."""
        fr = self.hard_rasterizer(verts, faces, camera)
        face = fr.face[..., 0].long()
        mask = face >= 0
        if face_instance is None:
            instance = torch.where(mask, torch.zeros_like(face), face)
        else:
            fi = face_instance.to(device=face.device, dtype=torch.long)
            instance = torch.where(mask, fi[face.clamp_min(0)] if fi.numel() else face, torch.full_like(face, -1))
        return HardRenderOutput(face, instance, fr.bary[..., 0, :], fr.zbuf[..., 0], mask)
