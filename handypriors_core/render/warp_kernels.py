"""warp-lang kernels of the soft rasterizer (CPU and CUDA), built per scalar type (float32 / float64) and
fragment count by factories, one warp module per factory; this module builds and caches them.

Only :mod:`.bridge` launches these. Nothing here is differentiated by warp's autodiff: every kernel is
compiled with ``enable_backward=False`` and each differentiable stage has a hand-written backward kernel
(``raster_backward``, ``silhouette_backward``, ``depth_backward``), tested against float64 finite differences
(gradcheck) and the dense reference.

Pipeline: ``face_setup`` (per face: screen box grown by the blur margin, edge-line equations, tile range) ->
``bin_count`` / scan / ``bin_fill`` (per-tile face lists, exact sizes) -> ``raster_forward`` (one thread per
pixel walks its tile's list and keeps up to K fragments front to back) -> ``silhouette_*`` and ``depth_*``
(one thread per pixel over its K fragments).

Modules: :mod:`.kernel_geometry` (face geometry, ``FaceData``), :mod:`.binning_kernels`, :mod:`.raster_kernels`,
:mod:`.shading_kernels` (the split of pytorch3d's rasterizer / shader).
"""

from types import SimpleNamespace

import torch
import warp as wp

from .binning_kernels import make_binning
from .kernel_geometry import DEGENERATE_EPS, face_struct, wp_scalar
from .raster_kernels import make_raster
from .shading_kernels import make_shading

__all__ = ["DEGENERATE_EPS", "common_kernels", "raster_kernels"]

_CACHE: dict = {}


def common_kernels(dtype: torch.dtype) -> SimpleNamespace:
    """Kernels that depend on the scalar type only: face setup, binning, silhouette and depth shading."""
    key = ("common", dtype)
    if key not in _CACHE:
        _CACHE[key] = _make_common(wp_scalar(dtype))
    return _CACHE[key]


def raster_kernels(dtype: torch.dtype, faces_per_pixel: int) -> SimpleNamespace:
    """Per-pixel rasterizer keeping ``faces_per_pixel`` fragments, and its backward kernel."""
    key = ("raster", dtype, int(faces_per_pixel))
    if key not in _CACHE:
        _CACHE[key] = make_raster(wp_scalar(dtype), int(faces_per_pixel))
    return _CACHE[key]


def _make_common(scalar) -> SimpleNamespace:
    """Binning and shading kernels of one scalar type, in one warp module (one compile)."""
    module = f"handypriors_render_common_{scalar.__name__}"
    binning = make_binning(scalar, module)
    shading = make_shading(scalar, module)
    return SimpleNamespace(
        scalar=scalar,
        vec2=wp.types.vector(2, scalar),
        vec3=wp.types.vector(3, scalar),
        vec4=wp.types.vector(4, scalar),
        mat33=wp.types.matrix((3, 3), scalar),
        mat32=wp.types.matrix((3, 2), scalar),
        FaceData=face_struct(scalar),
        **vars(binning),
        **vars(shading),
    )
