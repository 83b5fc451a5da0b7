"""Shaders: :class:`~.fragments.Fragments` -> images. Replaceable; none of them touches the rasterizer.

* :class:`SoftSilhouetteShader` - per-instance soft silhouettes, full and visible (occlusion-aware), and
  their union. Fragments are depth-sorted, so with coverage ``D_j`` and transmittance
  ``T_j = prod_{i<j} (1 - D_i)``:

  - ``full_k = 1 - prod_{j in k} (1 - D_j)``: SoftRas probabilistic union of instance ``k``'s faces, as if
    alone (e.g. the whole object, also where the hand hides it);
  - ``visible_k = sum_{j in k} D_j T_j``: probability that the first surface along the pixel's ray belongs
    to instance ``k`` (the object as seen, with a finger in front removing it, softly at the finger's
    blurred edge);
  - ``union = 1 - prod_j (1 - D_j) = sum_k visible_k``.

  Gradients flow through the coverages (the faces' screen geometry), not through the depth order (the
  visible silhouette jumps where two instances' surfaces swap depth, as a z-buffer does). As in SoftRas each
  face covers 0.5 on its own edges, so a tessellated surface's interior dips on internal edges (to
  ``1 - 0.5^4`` where a closed mesh's front and back edges overlap) unless sigma is small against the faces.
  Runs as a warp kernel with a hand-written backward (:class:`~.bridge.SilhouetteFunction`).
* :class:`SoftBlendShader` - SoftRas soft depth (warp kernel) and colour (torch): ``sum_j w_j a_j + w_bg a_bg``
  normalised, ``w_j = D_j exp((zn_j - zmax) / gamma)``, ``zn = (z_far - z) / (z_far - z_near)``; colours from
  per-vertex colours or a UV texture, Lambertian ``ambient + diffuse * max(0, n . l)`` per face (flat) or per
  vertex (with vertex normals).
"""

from __future__ import annotations

import dataclasses

import torch

from ..checks import check_shape
from ..errors import InvalidValueError, ShapeError
from . import bridge
from .fragments import Fragments
from .settings import ShadingSettings

__all__ = ["Silhouettes", "SoftBlendShader", "SoftSilhouetteShader", "face_corner_colors", "face_normals"]


@dataclasses.dataclass(frozen=True)
class Silhouettes:
    """Soft silhouettes in [0, 1]: ``full``/``visible`` ``(B, NI, H, W)`` per instance, ``union (B, H, W)``."""

    full: torch.Tensor
    visible: torch.Tensor
    union: torch.Tensor


def _instances(face_instance: torch.Tensor | None, n_faces: int, num_instances: int | None, device) -> tuple:
    if face_instance is None:
        face_instance = torch.zeros(n_faces, dtype=torch.int32, device=device)
    check_shape(face_instance, (n_faces,), "face_instance")
    if face_instance.dtype.is_floating_point:
        raise ShapeError(f"Expected face_instance to be an integer tensor; got {face_instance.dtype}")
    lo = int(face_instance.min()) if n_faces else 0
    hi = int(face_instance.max()) if n_faces else 0
    if num_instances is None:
        num_instances = hi + 1
    if lo < 0 or hi >= num_instances:
        raise InvalidValueError(f"face_instance must lie in [0, {num_instances}); got [{lo}, {hi}]")
    return face_instance.to(device=device, dtype=torch.int32).contiguous(), int(num_instances)


class SoftSilhouetteShader:
    """Per-instance soft silhouettes from depth-sorted fragments (see the module docstring).

    ``__call__(fragments, face_instance (F,) int | None, num_instances=None) -> Silhouettes``; ``F`` is the
    number of faces the fragments index (``face_instance`` None = one instance).
    """

    def __init__(self, cpu_threads: int = 0):
        self.cpu_threads = cpu_threads

    def __call__(
        self, fragments: Fragments, face_instance: torch.Tensor | None = None, num_instances: int | None = None
    ) -> Silhouettes:
        B, H, W, K = fragments.face.shape
        if face_instance is None:  # one instance: any table covering the face indices in the fragments
            n_faces = int(fragments.face.max().item()) + 1 if fragments.face.numel() else 0
            face_instance = torch.zeros(max(n_faces, 1), dtype=torch.int32, device=fragments.face.device)
        inst, ni = _instances(face_instance, face_instance.shape[0], num_instances, fragments.face.device)
        P = B * H * W
        full, visible, union = bridge.SilhouetteFunction.apply(
            fragments.face.reshape(P, K),
            fragments.dist.reshape(P, K),
            inst,
            ni,
            fragments.sigma,
            fragments.blur_threshold,
            bridge.resolve_threads(self.cpu_threads),
        )
        return Silhouettes(
            full=full.view(B, H, W, ni).permute(0, 3, 1, 2),
            visible=visible.view(B, H, W, ni).permute(0, 3, 1, 2),
            union=union.view(B, H, W),
        )


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit face normals ``(B, F, 3)`` of ``verts (B, V, 3)``; counter-clockwise faces seen from outside point out.

    Degenerate faces get a zero normal (and zero gradient).
    """
    v = verts[:, faces.long()]
    n = torch.cross(v[:, :, 1] - v[:, :, 0], v[:, :, 2] - v[:, :, 0], dim=-1)
    norm = n.norm(dim=-1, keepdim=True)
    ok = norm > 1e-20
    return torch.where(ok, n / torch.where(ok, norm, torch.ones_like(norm)), torch.zeros_like(n))


def _lambert(normals: torch.Tensor, settings: ShadingSettings) -> torch.Tensor:
    light = torch.tensor(settings.light_direction, dtype=normals.dtype, device=normals.device)
    light = light / light.norm()
    return settings.ambient + settings.diffuse * (normals * light).sum(-1).clamp_min(0.0)


def face_corner_colors(
    verts: torch.Tensor,
    faces: torch.Tensor,
    vertex_colors: torch.Tensor,
    settings: ShadingSettings,
    vertex_normals: torch.Tensor | None = None,
) -> torch.Tensor:
    """Lambertian-shaded colour at each face corner ``(B, F, 3, 3)`` (corner, RGB).

    ``vertex_colors (B | 1, V, 3)`` in [0, 1]; flat shading with the face normal, or Gouraud with
    ``vertex_normals (B | 1, V, 3)`` (camera frame).
    """
    f = faces.long()
    cols = vertex_colors[:, f]  # (B|1, F, 3, 3)
    if vertex_normals is None:
        shade = _lambert(face_normals(verts, faces), settings)[..., None, None]  # (B, F, 1, 1)
    else:
        shade = _lambert(vertex_normals[:, f], settings)[..., None]  # (B|1, F, 3, 1)
    return cols * shade


class SoftBlendShader:
    """SoftRas soft depth and colour from fragments (torch; see the module docstring).

    ``depth(fragments, gamma=None) -> (B, H, W)`` [m]; ``rgb(fragments, verts, faces, vertex_colors=...,
    uv=..., texture=..., vertex_normals=None, gamma=None) -> (B, H, W, 3)``.
    """

    def __init__(self, settings: ShadingSettings | None = None, cpu_threads: int = 0):
        self.settings = settings if settings is not None else ShadingSettings()
        self.cpu_threads = cpu_threads

    def weights(self, fragments: Fragments, gamma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Blend weights ``(B, H, W, K)`` and background weight ``(B, H, W)``, unnormalised."""
        s = self.settings
        gamma = float(s.gamma if gamma is None else gamma)
        d = fragments.coverage()
        live = d > 0
        zn = (s.z_far - fragments.zbuf) / (s.z_far - s.z_near)
        zmax = torch.where(live, zn, torch.full_like(zn, -float("inf"))).amax(-1).clamp_min(s.background_weight)
        zmax = zmax.detach()
        arg = torch.where(live, zn - zmax[..., None], torch.zeros_like(zn))  # no inf * 0 in backward
        w = torch.where(live, d * torch.exp(arg / gamma), torch.zeros_like(d))
        w_bg = torch.exp((s.background_weight - zmax) / gamma)
        return w, w_bg

    def depth(self, fragments: Fragments, gamma: float | None = None) -> torch.Tensor:
        """Soft depth ``(B, H, W)`` [m]; ``background_depth`` where nothing is drawn (warp kernel)."""
        s = self.settings
        gamma = float(s.gamma if gamma is None else gamma)
        B, H, W, K = fragments.face.shape
        P = B * H * W
        params = (fragments.sigma, fragments.blur_threshold, gamma, s.z_near, s.z_far, s.background_weight,
                  s.background_depth)
        depth = bridge.DepthBlendFunction.apply(
            fragments.face.reshape(P, K), fragments.zbuf.reshape(P, K), fragments.dist.reshape(P, K), params,
            bridge.resolve_threads(self.cpu_threads),
        )
        return depth.view(B, H, W)

    def rgb(
        self,
        fragments: Fragments,
        verts: torch.Tensor,
        faces: torch.Tensor,
        vertex_colors: torch.Tensor | None = None,
        uv: torch.Tensor | None = None,
        texture: torch.Tensor | None = None,
        vertex_normals: torch.Tensor | None = None,
        gamma: float | None = None,
    ) -> torch.Tensor:
        """Soft colour ``(B, H, W, 3)`` in [0, 1] (before clamping).

        Either ``vertex_colors (B | 1, V, 3)``, or ``uv`` (``(V, 2)`` per vertex or ``(F, 3, 2)`` per face
        corner; u right, v up as in OBJ files) with ``texture (Ht, Wt, 3)`` sampled bilinearly.
        """
        s = self.settings
        B, H, W, K = fragments.face.shape
        F = faces.shape[0]
        idx = fragments.face.long().clamp_min(0).reshape(B, -1)  # (B, HWK)
        bary = fragments.bary.reshape(B, -1, 3)
        if vertex_colors is not None:
            check_shape(vertex_colors, (None, verts.shape[1], 3), "vertex_colors")
            corner = face_corner_colors(verts, faces, vertex_colors.to(verts.dtype), s, vertex_normals)
            corner = corner.expand(B, F, 3, 3)
            col = torch.einsum("bnk,bnkc->bnc", bary, _gather_faces(corner, idx))
        elif uv is not None and texture is not None:
            check_shape(texture, (None, None, 3), "texture")
            if uv.dim() == 2:
                check_shape(uv, (verts.shape[1], 2), "uv")
                uv = uv[faces.long()]
            check_shape(uv, (F, 3, 2), "uv")
            uv_c = uv.to(verts.dtype)[None].expand(B, F, 3, 2)
            uv_p = torch.einsum("bnk,bnkc->bnc", bary, _gather_faces(uv_c, idx))  # (B, HWK, 2)
            grid = torch.stack((2 * uv_p[..., 0] - 1, 1 - 2 * uv_p[..., 1]), -1)[:, None]  # (B, 1, HWK, 2)
            tex = texture.to(verts.dtype).permute(2, 0, 1)[None].expand(B, 3, *texture.shape[:2])
            col = torch.nn.functional.grid_sample(tex, grid, mode="bilinear", align_corners=True,
                                                  padding_mode="border")[:, :, 0].permute(0, 2, 1)
            if vertex_normals is None:
                shade = _lambert(face_normals(verts, faces), s)  # (B, F)
                col = col * shade.gather(1, idx)[..., None]
            else:
                sh = _lambert(vertex_normals[:, faces.long()], s).expand(B, F, 3)[..., None]  # (B, F, 3, 1)
                col = col * torch.einsum("bnk,bnkc->bnc", bary, _gather_faces(sh, idx))
        else:
            raise InvalidValueError("rgb needs vertex_colors, or uv and texture")
        col = col.reshape(B, H, W, K, 3)
        w, w_bg = self.weights(fragments, gamma)
        bg = torch.tensor(s.background_color, dtype=col.dtype, device=col.device)
        return ((w[..., None] * col).sum(-2) + w_bg[..., None] * bg) / (w.sum(-1) + w_bg)[..., None]


def _gather_faces(per_face: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``per_face (B, F, 3, C)`` gathered at ``idx (B, N)`` -> ``(B, N, 3, C)``."""
    B, N = idx.shape
    C = per_face.shape[-1]
    return per_face.gather(1, idx[:, :, None, None].expand(B, N, 3, C))
