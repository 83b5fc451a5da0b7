"""Differentiable soft rasterizer (SoftRas formulation) for scenes of meshes with instance ids.

Camera (``geometry.camera.PinholeCamera``) -> :class:`SoftRasterizer` (warp kernels, tile binning) ->
:class:`Fragments` -> shaders (:class:`SoftSilhouetteShader`, :class:`SoftBlendShader`), composed by
:class:`Renderer`. :mod:`.dense_reference` is the slow every-pixel-every-face reference used by tests and the
benchmark. Settings: :class:`RenderSettings` (``config/render.yaml``). May import only errors/checks/config (the
camera is duck-typed: ``K``, ``width``, ``height``).
"""

from .fragments import Fragments
from .rasterizer import HardRasterizer, SoftRasterizer, project_vertices
from .renderer import HardRenderOutput, Renderer, RenderOutput, join_meshes
from .settings import RasterSettings, RenderSettings, ShadingSettings, load_render_settings
from .shader import Silhouettes, SoftBlendShader, SoftSilhouetteShader

__all__ = [
    "Fragments",
    "HardRasterizer",
    "HardRenderOutput",
    "RasterSettings",
    "RenderOutput",
    "RenderSettings",
    "Renderer",
    "ShadingSettings",
    "Silhouettes",
    "SoftBlendShader",
    "SoftRasterizer",
    "SoftSilhouetteShader",
    "join_meshes",
    "load_render_settings",
    "project_vertices",
]
