"""Triangle-mesh quantities in torch (batched, differentiable): area-weighted vertex normals."""

from __future__ import annotations

import torch

from ..checks import check_shape

__all__ = ["vertex_normals"]


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit area-weighted vertex normals ``(B, V, 3)`` of ``verts (B, V, 3)`` with triangles ``faces (F, 3)``
    (outward for outward-wound faces; zero for unreferenced vertices)."""
    check_shape(verts, (None, None, 3), "verts")
    tri = verts[:, faces]  # (B, F, 3, 3)
    fn = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    acc = torch.zeros_like(verts)
    for c in range(3):  # three corners, not a loop over vertices
        acc = acc.index_add(1, faces[:, c], fn)
    return torch.nn.functional.normalize(acc, dim=-1)
