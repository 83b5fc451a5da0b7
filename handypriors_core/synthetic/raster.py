"""Z-buffer rasterisation for the generator: the project renderer's hard mode, or a plain torch z-buffer.

:func:`rasterize` returns, per pixel centre (OpenCV convention: pixel ``(u, v)`` is centred at ``(u, v)``),
the nearest face containing it, its perspective-correct barycentrics and its z-depth, as
:meth:`handypriors_core.render.renderer.Renderer.hard` does. Backends:

- ``"renderer"``: :meth:`Renderer.hard` (warp kernels).
- ``"torch"``: :func:`torch_zbuffer`, a vectorised torch z-buffer (every (face, pixel) pair inside the
  face's screen bounding box is tested, ``scatter_reduce`` keeps the nearest), on any device.
- ``"auto"``: ``renderer`` when :func:`renderer_hard_is_correct` confirms that it keeps the nearest of
  overlapping faces (checked once per process on a two-quad scene), else ``torch`` with a warning.

Faces with a vertex closer than ``near`` (or behind the camera) are not drawn, as in the renderer.
"""

from __future__ import annotations

import functools
import warnings

import torch

from ..errors import InvalidValueError

__all__ = ["RASTERIZERS", "rasterize", "renderer_hard_is_correct", "torch_zbuffer"]

RASTERIZERS = ("auto", "renderer", "torch")


def torch_zbuffer(verts: torch.Tensor, faces: torch.Tensor, camera, near: float = 0.01,
                  max_pairs: int = 2_000_000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest face per pixel centre of the camera-frame mesh ``verts (V, 3)`` [m], ``faces (F, 3)``.

    Returns ``face (H, W)`` long (-1 = nothing), ``bary (H, W, 3)`` perspective-correct barycentrics and
    ``zbuf (H, W)`` z-depth [m] (0 = nothing). Work is chunked over faces so that at most ``max_pairs``
    (face, pixel) pairs are tested at once (a loop over chunks, not over pixels).
    """
    dev, dt = verts.device, verts.dtype
    H, W = int(camera.height), int(camera.width)
    fx, fy, cx, cy = (float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy))
    z = verts[:, 2]
    ok_v = torch.isfinite(verts).all(-1) & (z > near)
    zs = torch.where(ok_v, z, torch.ones_like(z))
    xy = torch.stack([verts[:, 0] / zs * fx + cx, verts[:, 1] / zs * fy + cy], -1)
    tri = xy[faces]  # (F, 3, 2)
    inv_z = (1.0 / zs)[faces]  # (F, 3)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    lo = tri.amin(1)
    hi = tri.amax(1)
    x0 = torch.ceil(lo[:, 0]).clamp(0, W - 1).long()
    x1 = torch.floor(hi[:, 0]).clamp(-1, W - 1).long()
    y0 = torch.ceil(lo[:, 1]).clamp(0, H - 1).long()
    y1 = torch.floor(hi[:, 1]).clamp(-1, H - 1).long()
    ok_f = ok_v[faces].all(1) & (area.abs() > 1e-12) & (hi[:, 0] >= 0) & (lo[:, 0] <= W - 1) \
        & (hi[:, 1] >= 0) & (lo[:, 1] <= H - 1) & (lo.abs() < 1e6).all(1) & (hi.abs() < 1e6).all(1)
    bw = (x1 - x0 + 1).clamp_min(0)
    bh = (y1 - y0 + 1).clamp_min(0)
    counts = torch.where(ok_f, bw * bh, torch.zeros_like(bw))

    def barycentric(fid: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
        pa, pb, pc = a[fid], b[fid], c[fid]
        ar = area[fid]
        l0 = ((pb[:, 0] - px) * (pc[:, 1] - py) - (pb[:, 1] - py) * (pc[:, 0] - px)) / ar
        l1 = ((pc[:, 0] - px) * (pa[:, 1] - py) - (pc[:, 1] - py) * (pa[:, 0] - px)) / ar
        return torch.stack([l0, l1, 1.0 - l0 - l1], -1)

    best_z = torch.full((H * W,), float("inf"), dtype=dt, device=dev)
    best_f = torch.full((H * W,), -1, dtype=torch.long, device=dev)
    F = faces.shape[0]
    cum = torch.cumsum(counts, 0)
    start = 0
    while start < F:  # chunks of faces with at most max_pairs pairs (at least one face)
        base = int(cum[start - 1]) if start else 0
        stop = int(torch.searchsorted(cum, torch.tensor(base + max_pairs, device=dev), right=True))
        stop = min(max(stop, start + 1), F)
        cnt = counts[start:stop]
        n = int(cnt.sum())
        if n:
            fid = torch.repeat_interleave(torch.arange(start, stop, device=dev), cnt)
            offs = torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
            local = torch.arange(n, device=dev) - offs
            px = x0[fid] + local % bw[fid]
            py = y0[fid] + local // bw[fid]
            lam = barycentric(fid, px.to(dt), py.to(dt))
            inside = (lam >= -1e-6).all(-1)
            fid, px, py, lam = fid[inside], px[inside], py[inside], lam[inside]
            depth = 1.0 / (lam * inv_z[fid]).sum(-1)
            pix = py * W + px
            chunk_z = torch.full_like(best_z, float("inf")).scatter_reduce_(0, pix, depth, "amin")
            winner = depth <= chunk_z[pix]
            chunk_f = torch.full_like(best_f, F).scatter_reduce_(0, pix[winner], fid[winner], "amin")
            better = chunk_z < best_z
            best_z = torch.where(better, chunk_z, best_z)
            best_f = torch.where(better, chunk_f, best_f)
        start = stop
    hit = best_f >= 0
    face = best_f.view(H, W)
    bary = torch.zeros(H * W, 3, dtype=dt, device=dev)
    zbuf = torch.zeros(H * W, dtype=dt, device=dev)
    if bool(hit.any()):
        pix = torch.nonzero(hit).flatten()
        fid = best_f[pix]
        lam = barycentric(fid, (pix % W).to(dt), (pix // W).to(dt))
        wl = lam * inv_z[fid]
        iz = wl.sum(-1, keepdim=True)
        bary[pix] = wl / iz
        zbuf[pix] = 1.0 / iz[:, 0]
    return face, bary.view(H, W, 3), zbuf.view(H, W)


@functools.cache
def renderer_hard_is_correct(device: str = "cpu") -> bool:
    """Whether ``Renderer.hard`` keeps the NEAREST of overlapping faces: a small quad in front of a large one
    must win at its centre (a regression once kept the face whose edges were farthest instead)."""
    from ..geometry.camera import PinholeCamera
    from ..render.renderer import Renderer

    cam = PinholeCamera.from_camera_info([100.0, 0, 31.5, 0, 100.0, 31.5, 0, 0, 1], [0.0] * 5, 64, 64, device=device)

    def quad(half: float, z: float) -> torch.Tensor:
        return torch.tensor([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])

    verts = torch.cat([quad(1.0, 2.0), quad(0.01, 1.0)]).to(device)[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], device=device)
    try:
        out = Renderer().hard(verts, faces, cam)
    except Exception:  # noqa: BLE001 - any failure means: do not use it
        return False
    centre = out.face[0, 32, 32].item()
    return centre in (2, 3) and abs(out.zbuf[0, 32, 32].item() - 1.0) < 1e-4


def rasterize(verts: torch.Tensor, faces: torch.Tensor, camera, backend: str = "auto", renderer=None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``face (H, W)``, ``bary (H, W, 3)``, ``zbuf (H, W)`` of the camera-frame mesh ``verts (V, 3)`` (see the
    module docstring for ``backend``; ``renderer`` is a :class:`Renderer` to reuse)."""
    if backend not in RASTERIZERS:
        raise InvalidValueError(f"rasterizer must be one of {list(RASTERIZERS)}; got {backend!r}")
    if backend == "auto":
        backend = "renderer" if renderer_hard_is_correct(str(verts.device)) else "torch"
        if backend == "torch":
            _warn_once()
    if backend == "torch":
        return torch_zbuffer(verts, faces, camera)
    from ..render.renderer import Renderer

    out = (renderer or Renderer()).hard(verts[None], faces, camera)
    return out.face[0], out.bary[0], out.zbuf[0]


@functools.lru_cache(maxsize=1)
def _warn_once() -> None:
    warnings.warn("Renderer.hard does not keep the nearest face (render/ regression); the synthetic generator "
                  "uses its torch z-buffer instead", RuntimeWarning, stacklevel=3)
