"""Dense pure-torch reference renderer: every pixel against every face, same formulas, torch autograd.

Slow (memory and time grow with pixels x faces) and obviously structured; it exists to test the warp
renderer (outputs and gradients) and to give the benchmark its baseline. Unlike the fast path it keeps all
faces within the blur margin of a pixel (no ``faces_per_pixel`` cap). Pixels are processed in chunks; with
``checkpoint=True`` each chunk is recomputed in backward so memory stays bounded.

Formulas (see :mod:`.warp_kernels` for the geometry): coverage ``D = max(0, (sigmoid(dist / sigma) - t) /
(1 - t))``; with faces sorted front to back at a pixel and ``T_j = prod_{i<j} (1 - D_i)``:
``full_k = 1 - prod_{j in k} (1 - D_j)``, ``visible_k = sum_{j in k} D_j T_j``, ``union = 1 - prod_j (1 - D_j)``;
soft depth / colour ``sum_j w_j a_j + w_bg a_bg`` normalised, ``w_j = D_j exp((zn_j - zmax) / gamma)``.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from .rasterizer import _intrinsics, check_mesh, project_vertices
from .settings import RenderSettings, blur_margin
from .warp_kernels import DEGENERATE_EPS

__all__ = ["dense_geometry", "dense_render"]


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def dense_geometry(pix: torch.Tensor, v: torch.Tensor, w: torch.Tensor):
    """Signed squared distance, depth and barycentrics of every pixel against every face.

    ``pix (P, 2)`` [px]; ``v (B, F, 3, 2)`` face screen vertices [px]; ``w (B, F, 3)`` inverse depths.
    Returns ``dist (B, P, F)`` [px^2, + inside], ``z (B, P, F)`` [m], ``bary (B, P, F, 3)`` (perspective).
    """
    p = pix[None, :, None, :]  # (1, P, 1, 2)
    v0, v1, v2 = (v[:, None, :, k, :] for k in range(3))  # (B, 1, F, 2)
    r0, r1, r2 = v0 - p, v1 - p, v2 - p
    a = torch.stack((_cross(r1, r2), _cross(r2, r0), _cross(r0, r1)), -1)  # (B, P, F, 3)
    area2 = _cross(v1 - v0, v2 - v0)  # (B, 1, F)
    edges = (v2 - v1, v0 - v2, v1 - v0)
    starts = (v1, v2, v0)
    lens = torch.stack([e.norm(dim=-1) for e in edges], -1)  # (B, 1, F, 3)
    nondeg = (area2.abs() > DEGENERATE_EPS) & (lens > DEGENERATE_EPS).all(-1)
    inside = nondeg & ((a * area2[..., None]) >= 0).all(-1)
    area_safe = torch.where(nondeg, area2, torch.ones_like(area2))
    lens_safe = torch.where(lens > DEGENERATE_EPS, lens, torch.ones_like(lens))
    sign = torch.where(area2 < 0, -torch.ones_like(area2), torch.ones_like(area2))
    e_line = sign[..., None] * a / lens_safe
    d_in = e_line.min(-1).values
    l_in = a / area_safe[..., None]
    # closest point on each edge segment (edge k from v[k+1] to v[k+2])
    ts, d2s = [], []
    for e, s in zip(edges, starts):
        ee = (e * e).sum(-1)
        ee_safe = torch.where(ee > DEGENERATE_EPS, ee, torch.ones_like(ee))
        t = torch.where(ee > DEGENERATE_EPS, (((p - s) * e).sum(-1) / ee_safe).clamp(0.0, 1.0), torch.zeros_like(ee))
        q = s + t[..., None] * e
        ts.append(t)
        d2s.append(((p - q) ** 2).sum(-1))
    t = torch.stack(ts, -1)  # (B, P, F, 3)
    d2 = torch.stack(d2s, -1)
    # first minimum, as the kernels (strict comparisons in edge order)
    m = torch.zeros_like(d2[..., 0], dtype=torch.long)
    best = d2[..., 0]
    for k in (1, 2):
        better = d2[..., k] < best
        m = torch.where(better, torch.full_like(m, k), m)
        best = torch.where(better, d2[..., k], best)
    tm = t.gather(-1, m[..., None])[..., 0]
    one = torch.ones_like(tm)
    zero = torch.zeros_like(tm)
    # barycentrics of the closest point: edge 0 -> (0, 1-t, t), edge 1 -> (t, 0, 1-t), edge 2 -> (1-t, t, 0)
    l_out = torch.where(
        (m == 0)[..., None],
        torch.stack((zero, one - tm, tm), -1),
        torch.where((m == 1)[..., None], torch.stack((tm, zero, one - tm), -1), torch.stack((one - tm, tm, zero), -1)),
    )
    dist = torch.where(inside, d_in * d_in, -best)
    lam = torch.where(inside[..., None], l_in, l_out)
    wb = w[:, None, :, :]  # (B, 1, F, 3)
    iz = (lam * wb).sum(-1)
    z = 1.0 / iz
    bary = lam * wb * z[..., None]
    return dist, z, bary


def _render_chunk(
    pix, v, w, valid, face_attr, inst_onehot, sigma, eps, margin2, gamma, z_near, z_far, bg_weight, bg_depth, bg_color
):
    dist, z, bary = dense_geometry(pix, v, w)
    live = valid[:, None, :] & (dist > -margin2)
    s = torch.sigmoid(dist / sigma)
    d = torch.where(live, ((s - eps) / (1.0 - eps)).clamp_min(0.0), torch.zeros_like(s))
    z_sort = torch.where(live, z, torch.full_like(z, float("inf")))
    order = torch.argsort(z_sort.detach(), dim=-1, stable=True)
    d_s = d.gather(-1, order)
    one_m = 1.0 - d_s
    trans = torch.cumprod(torch.cat((torch.ones_like(one_m[..., :1]), one_m[..., :-1]), -1), -1)
    inst_s = inst_onehot[order]  # (B, P, F, NI)
    visible = ((d_s * trans)[..., None] * inst_s).sum(-2)  # (B, P, NI)
    full = 1.0 - torch.prod(torch.where(inst_s > 0, one_m[..., None], torch.ones_like(inst_s)), -2)
    union = 1.0 - torch.prod(one_m, -1)
    outs = [full, visible, union]
    if face_attr is not None:
        zn = (z_far - z) / (z_far - z_near)
        zmax = torch.where(live, zn, torch.full_like(zn, -float("inf"))).amax(-1).clamp_min(bg_weight).detach()
        arg = torch.where(live, zn - zmax[..., None], torch.zeros_like(zn))
        wts = torch.where(live, d * torch.exp(arg / gamma), torch.zeros_like(d))
        w_bg = torch.exp((bg_weight - zmax) / gamma)
        norm = wts.sum(-1) + w_bg
        depth = ((wts * z).sum(-1) + w_bg * bg_depth) / norm
        outs.append(depth)
        if face_attr.shape[-1] > 0:
            # face_attr (B, F, 3, C) per-corner colours (already shaded); perspective-correct interpolation
            col = torch.einsum("bpfk,bfkc->bpfc", bary, face_attr)
            rgb = ((wts[..., None] * col).sum(-2) + w_bg[..., None] * bg_color) / norm[..., None]
            outs.append(rgb)
    return tuple(outs)


def dense_render(
    verts: torch.Tensor,
    faces: torch.Tensor,
    camera,
    face_instance: torch.Tensor | None = None,
    num_instances: int | None = None,
    settings: RenderSettings | None = None,
    face_colors: torch.Tensor | None = None,
    soft_depth: bool = False,
    sigma: float | None = None,
    gamma: float | None = None,
    chunk_pixels: int = 4096,
    checkpoint: bool = False,
) -> dict:
    """Dense reference of :class:`~.renderer.Renderer` (silhouettes, soft depth, soft colour).

    ``verts (B, V, 3)`` [m, camera frame], ``faces (F, 3)``, ``face_instance (F,)``; ``face_colors
    (B, F, 3, 3)`` per-corner shaded colours (enables ``rgb``). Returns a dict of ``full (B, NI, H, W)``,
    ``visible (B, NI, H, W)``, ``union (B, H, W)`` and, when asked, ``depth (B, H, W)``, ``rgb (B, H, W, 3)``.
    """
    check_mesh(verts, faces)
    settings = settings if settings is not None else RenderSettings()
    rs, ss = settings.raster, settings.shading
    sigma = float(rs.sigma if sigma is None else sigma)
    gamma = float(ss.gamma if gamma is None else gamma)
    eps = rs.blur_threshold
    margin = blur_margin(sigma, eps)
    B = verts.shape[0]
    F = faces.shape[0]
    faces = faces.long().to(verts.device)
    if face_instance is None:
        face_instance = torch.zeros(F, dtype=torch.long, device=verts.device)
    face_instance = face_instance.long().to(verts.device)
    if num_instances is None:
        num_instances = int(face_instance.max()) + 1 if F > 0 else 1
    _, _, width, height = _intrinsics(camera, verts)
    xy, inv_depth, ok = project_vertices(verts, camera, rs.near)
    v = xy[:, faces]  # (B, F, 3, 2)
    w = inv_depth[:, faces]  # (B, F, 3)
    valid = ok[:, faces].all(-1)  # (B, F)
    inst_onehot = torch.nn.functional.one_hot(face_instance, num_instances).to(verts.dtype)  # (F, NI)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=verts.device, dtype=verts.dtype),
        torch.arange(width, device=verts.device, dtype=verts.dtype),
        indexing="ij",
    )
    pix = torch.stack((xs.reshape(-1), ys.reshape(-1)), -1)
    want_depth = soft_depth or face_colors is not None
    face_attr = None
    if want_depth:
        face_attr = face_colors if face_colors is not None else verts.new_zeros(B, F, 3, 0)
    bg_color = torch.tensor(ss.background_color, dtype=verts.dtype, device=verts.device)
    if F == 0:
        P = height * width
        out = {
            "full": verts.new_zeros(B, num_instances, height, width),
            "visible": verts.new_zeros(B, num_instances, height, width),
            "union": verts.new_zeros(B, height, width),
        }
        if want_depth:
            out["depth"] = verts.new_full((B, height, width), ss.background_depth)
        if face_colors is not None:
            out["rgb"] = bg_color.expand(B, P, 3).reshape(B, height, width, 3).clone()
        return out
    pieces = []
    for start in range(0, pix.shape[0], chunk_pixels):
        args = (pix[start:start + chunk_pixels], v, w, valid, face_attr, inst_onehot, sigma, eps, margin * margin,
                gamma, ss.z_near, ss.z_far, ss.background_weight, ss.background_depth, bg_color)
        if checkpoint and torch.is_grad_enabled():
            pieces.append(_checkpoint(_render_chunk, *args, use_reentrant=False))
        else:
            pieces.append(_render_chunk(*args))
    cat = [torch.cat([pc[i] for pc in pieces], 1) for i in range(len(pieces[0]))]
    out = {
        "full": cat[0].permute(0, 2, 1).reshape(B, num_instances, height, width),
        "visible": cat[1].permute(0, 2, 1).reshape(B, num_instances, height, width),
        "union": cat[2].reshape(B, height, width),
    }
    if want_depth:
        out["depth"] = cat[3].reshape(B, height, width)
    if face_colors is not None:
        out["rgb"] = cat[4].reshape(B, height, width, 3)
    return out
