"""The warp renderer against the dense pure-torch reference and torch.autograd.gradcheck (float64)."""

from __future__ import annotations

import pytest
import torch
import trimesh

from handypriors_core.geometry import PinholeCamera, axis_angle_to_matrix
from handypriors_core.render import RasterSettings, Renderer, RenderSettings, join_meshes
from handypriors_core.render.bridge import SilhouetteFunction
from handypriors_core.render.dense_reference import dense_render
from handypriors_core.render.shader import face_corner_colors

DT = torch.float64


def small_scene(seed: int = 0):
    """A rotated box ('finger', instance 0) in front of an icosphere (instance 1), 48x40 px."""
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[60.0, 0, 24.3], [0, 60.0, 19.6], [0, 0, 1]], dtype=DT)
    cam = PinholeCamera(K=K, width=48, height=40)
    s = trimesh.creation.icosphere(subdivisions=1, radius=0.1)
    b = trimesh.creation.box(extents=(0.05, 0.3, 0.05))
    R = axis_angle_to_matrix(torch.rand(3, generator=g, dtype=DT) - 0.5)
    sv = (torch.tensor(s.vertices, dtype=DT) @ R.T)[None] + torch.tensor([0.0123, -0.0077, 0.6], dtype=DT)
    bv = (torch.tensor(b.vertices, dtype=DT) @ R)[None] + torch.tensor([0.0311, 0.0017, 0.45], dtype=DT)
    verts, faces, inst = join_meshes([(bv, torch.tensor(b.faces)), (sv, torch.tensor(s.faces))])
    colors = torch.rand((1, verts.shape[1], 3), generator=g, dtype=DT)
    return verts, faces, inst, cam, colors


SETTINGS = RenderSettings(raster=RasterSettings(sigma=2.0, faces_per_pixel=48, cpu_threads=1))


def test_outputs_and_gradients_match_dense_reference():
    verts, faces, inst, cam, colors = small_scene(0)
    verts = verts.requires_grad_(True)
    out = Renderer(SETTINGS)(verts, faces, cam, face_instance=inst, depth=True, vertex_colors=colors)
    assert not bool(out.fragments.overflow.any()), "test scene must fit in faces_per_pixel"
    ref = dense_render(verts, faces, cam, inst, settings=SETTINGS, soft_depth=True,
                       face_colors=face_corner_colors(verts, faces, colors, SETTINGS.shading))
    # both instances, their overlap, and background are all present
    assert float(out.visible[0, 0].detach().max()) > 0.99 and float(out.visible[0, 1].detach().max()) > 0.99
    assert float(out.union.detach().min()) < 1e-6
    g = torch.Generator().manual_seed(1)
    for name in ("full", "visible", "union", "depth", "rgb"):
        fast, dense = getattr(out, name), ref[name]
        torch.testing.assert_close(fast, dense, atol=1e-10, rtol=1e-9, msg=name)
        w = torch.rand(dense.shape, generator=g, dtype=DT)
        g_fast, = torch.autograd.grad((fast * w).sum(), verts, retain_graph=True)
        g_dense, = torch.autograd.grad((dense * w).sum(), verts, retain_graph=True)
        assert float(g_dense.abs().max()) > 1.0, name
        torch.testing.assert_close(g_fast, g_dense, atol=1e-8 * float(g_dense.abs().max()), rtol=1e-7, msg=name)


def test_faces_per_pixel_overflow_is_counted_and_small():
    """With fewer slots than faces, the least-contributing fragments are dropped; error shrinks with K."""
    verts, faces, inst, cam, _ = small_scene(2)
    ref = Renderer(SETTINGS)(verts, faces, cam, face_instance=inst)
    errors = []
    for k in (4, 8):
        out = Renderer(RenderSettings(raster=RasterSettings(sigma=2.0, faces_per_pixel=k, cpu_threads=1)))(
            verts, faces, cam, face_instance=inst)
        assert bool(out.fragments.overflow.any())
        assert torch.equal(out.fragments.count, ref.fragments.count)
        kept = out.fragments.face >= 0
        assert torch.equal(kept.sum(-1), out.fragments.count.clamp(max=k))
        # fragments stay sorted front to back
        z = torch.where(kept, out.fragments.zbuf, torch.full_like(out.fragments.zbuf, float("inf")))
        assert bool((z[..., 1:] >= z[..., :-1]).all())
        errors.append(max(float((getattr(out, n) - getattr(ref, n)).abs().mean())
                          for n in ("full", "visible", "union")))
    assert errors[1] < 0.5 * errors[0]
    assert errors[1] < 1e-2


def test_gradcheck_rasterizer_fragments():
    """float64 gradcheck of zbuf, dist and bary with respect to camera-frame vertices (warp bridge)."""
    K = torch.tensor([[20.0, 0, 5.1], [0, 20.0, 4.3], [0, 0, 1]], dtype=DT)
    cam = PinholeCamera(K=K, width=10, height=9)
    verts = torch.tensor([[[-0.21, -0.17, 1.0], [0.23, -0.05, 1.2], [-0.02, 0.19, 0.9], [0.2, 0.22, 1.1]]], dtype=DT)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    r = Renderer(RenderSettings(raster=RasterSettings(sigma=1.5, faces_per_pixel=8, cpu_threads=1)))

    def fn(v):
        fr = r.rasterizer(v, faces, cam)
        mask = fr.face >= 0
        return fr.zbuf * mask, fr.dist * mask, fr.bary * mask[..., None]

    v = verts.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (v,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_silhouette_compositing():
    g = torch.Generator().manual_seed(3)
    P, K = 7, 5
    face = torch.tensor([[0, 1, 2, 3, 4]] * 3 + [[2, 0, 4, -1, -1]] * 2 + [[-1] * 5] + [[3, 1, -1, -1, -1]],
                        dtype=torch.int32)
    inst = torch.tensor([0, 1, 1, 0, 2], dtype=torch.int32)
    dist = (torch.rand((P, K), generator=g, dtype=DT) - 0.6) * 6.0
    dist.requires_grad_(True)

    def fn(d):
        return SilhouetteFunction.apply(face, d, inst, 3, 1.3, 1e-4, 1)

    assert torch.autograd.gradcheck(fn, (dist,), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_gradcheck_full_render(seed):
    """Silhouettes (full, visible, union) and soft depth of a two-instance scene, gradcheck in float64."""
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[18.0, 0, 6.2], [0, 18.0, 5.1], [0, 0, 1]], dtype=DT)
    cam = PinholeCamera(K=K, width=12, height=10)
    tri = torch.tensor([[-0.3, -0.2, 0.0], [0.3, -0.25, 0.05], [0.0, 0.3, -0.05], [0.25, 0.2, 0.0]], dtype=DT)
    a = tri + torch.tensor([0.0, 0.0, 1.0], dtype=DT) + 0.02 * torch.rand(tri.shape, generator=g, dtype=DT)
    b = 0.6 * tri + torch.tensor([0.12, 0.05, 0.8], dtype=DT) + 0.02 * torch.rand(tri.shape, generator=g, dtype=DT)
    faces1 = torch.tensor([[0, 1, 2], [1, 3, 2]])
    verts, faces, inst = join_meshes([(a[None], faces1), (b[None], faces1)])
    r = Renderer(RenderSettings(raster=RasterSettings(sigma=1.0, faces_per_pixel=8, cpu_threads=1)))
    r.settings.shading.gamma = 0.05

    def fn(v):
        out = r(v, faces, cam, face_instance=inst, depth=True, gamma=0.05)
        return out.full, out.visible, out.union, out.depth

    v = verts.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (v,), eps=1e-6, atol=1e-6, rtol=1e-5)
