"""Bad input, settings, binning, batching, cropping, threading and texturing of the renderer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_render_scenes import allegro_scene, object_crop

from handypriors_core.config import settings_from_dict
from handypriors_core.errors import ConfigError, InvalidValueError, ShapeError
from handypriors_core.geometry import PinholeCamera
from handypriors_core.render import (
    RasterSettings,
    Renderer,
    RenderSettings,
    bridge,
    load_render_settings,
    project_vertices,
)
from handypriors_core.render.settings import ShadingSettings


def _camera(w=32, h=24, f=40.0, dtype=torch.float32):
    K = torch.tensor([[f, 0.0, w / 2 - 0.3], [0.0, f, h / 2 + 0.2], [0.0, 0.0, 1.0]], dtype=dtype)
    return PinholeCamera(K=K, width=w, height=h)


def _render_and_grad(verts, faces, cam, **kw):
    verts = verts.clone().requires_grad_(True)
    out = Renderer(RenderSettings(raster=RasterSettings(sigma=1.0)))(verts, faces, cam, depth=True, **kw)
    loss = out.union.sum() + out.visible.sum() + out.full.sum() + out.depth.sum()
    if loss.requires_grad:
        loss.backward()
    return out, verts.grad


def _assert_finite(out):
    for name in ("full", "visible", "union", "depth"):
        assert bool(torch.isfinite(getattr(out, name)).all()), name


def test_empty_meshes_render_background():
    cam = _camera()
    for V in (0, 4):
        verts = torch.rand(1, V, 3) + torch.tensor([0.0, 0.0, 1.0])
        out, grad = _render_and_grad(verts, torch.zeros(0, 3, dtype=torch.long), cam)
        _assert_finite(out)
        assert out.union.shape == (1, 24, 32) and out.full.shape == (1, 1, 24, 32)
        assert float(out.union.detach().abs().max()) == 0.0
        assert float(out.depth.detach().abs().max()) == 0.0  # background_depth
        assert grad is None or float(grad.abs().max()) == 0.0
    hard = Renderer().hard(torch.zeros(1, 0, 3), torch.zeros(0, 3, dtype=torch.long), cam)
    assert not bool(hard.mask.any()) and bool((hard.face == -1).all())


def test_degenerate_faces_blur_like_segments():
    cam = _camera()
    # collinear (zero area), repeated vertex, and a point (all three equal)
    verts = torch.tensor([[[-0.2, 0.0, 1.0], [0.0, 0.0, 1.0], [0.2, 0.0, 1.0], [0.1, 0.1, 1.0], [-0.1, -0.1, 1.0]]])
    faces = torch.tensor([[0, 1, 2], [3, 3, 4], [1, 1, 1]])
    out, grad = _render_and_grad(verts, faces, cam)
    _assert_finite(out)
    assert bool(torch.isfinite(grad).all())
    # no interior: at most the blur of the segment itself (coverage 0.5 on it)
    peak = float(out.union.detach().max())
    assert 0.4 < peak < 0.9
    assert not bool(Renderer().hard(verts, faces, cam).mask.any())


def test_vertices_behind_camera_and_nan_are_not_drawn():
    cam = _camera()
    good = [[-0.3, -0.2, 1.0], [0.3, -0.2, 1.0], [0.0, 0.3, 1.0]]
    behind = [[-0.3, 0.2, -0.5], [0.3, 0.2, 1.0], [0.0, -0.3, 1.0]]
    nan = [[float("nan"), 0.2, 1.0], [0.3, 0.2, 1.0], [0.0, -0.3, 1.0]]
    near = [[-0.3, 0.2, 0.001], [0.3, 0.2, 1.0], [0.0, -0.3, 1.0]]
    verts = torch.tensor([good + behind + nan + near])
    faces = torch.arange(12).reshape(4, 3)
    out, grad = _render_and_grad(verts, faces, cam)
    _assert_finite(out)
    assert bool(torch.isfinite(grad).all())
    alone, _ = _render_and_grad(verts[:, :3], faces[:1], cam)
    torch.testing.assert_close(out.union, alone.union)  # only the good triangle is drawn
    for i in (3, 6, 9):  # the offending vertices get exactly zero gradient
        assert float(grad[0, i].abs().max()) == 0.0
    assert float(grad[0, :3].abs().max()) > 0.0
    _, _, ok = project_vertices(verts, cam, near=0.01)
    assert ok[0].tolist() == [True] * 3 + [False, True, True] * 3


def test_bad_arguments_raise_typed_errors():
    cam = _camera()
    r = Renderer()
    verts = torch.rand(1, 4, 3) + torch.tensor([0.0, 0.0, 1.0])
    faces = torch.tensor([[0, 1, 2]])
    with pytest.raises(ShapeError, match="verts"):
        r(verts[0], faces, cam)
    with pytest.raises(ShapeError, match="faces"):
        r(verts, torch.tensor([[0, 1, 4]]), cam)
    with pytest.raises(ShapeError, match="faces"):
        r(verts, faces.float(), cam)
    with pytest.raises(InvalidValueError, match="face_instance"):
        r(verts, faces, cam, face_instance=torch.tensor([2]), num_instances=2)
    with pytest.raises(ShapeError, match="face_instance"):
        r(verts, faces, cam, face_instance=torch.tensor([0, 1]))
    with pytest.raises(InvalidValueError, match="sigma"):
        r(verts, faces, cam, sigma=0.0)


def test_settings_yaml_matches_defaults_and_rejects_bad_values(tmp_path):
    assert load_render_settings() == RenderSettings()
    s = settings_from_dict(RenderSettings, {"raster": {"sigma": 0.25, "tile_size": 8}, "shading": {"gamma": 1e-3}})
    assert s.raster.sigma == 0.25 and s.raster.tile_size == 8 and s.shading.gamma == 1e-3
    assert s.raster.margin == pytest.approx(np.sqrt(0.25 * np.log((1 - 1e-4) / 1e-4)))
    with pytest.raises(ConfigError, match="sigmaa"):
        settings_from_dict(RenderSettings, {"raster": {"sigmaa": 1.0}})
    with pytest.raises(ConfigError, match="sigma"):
        settings_from_dict(RenderSettings, {"raster": {"sigma": -1.0}})
    with pytest.raises(ConfigError, match="z_near"):
        settings_from_dict(RenderSettings, {"shading": {"z_near": 5.0}})
    bad = tmp_path / "render.yaml"
    bad.write_text("render:\n  raster:\n    faces_per_pixel: 0\n")
    with pytest.raises(ConfigError, match="faces_per_pixel"):
        load_render_settings(bad)
    assert dataclasses.asdict(ShadingSettings())["light_direction"] == (0.0, 0.0, -1.0)


def test_binning_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    B, V, F, W, H, T, margin = 2, 60, 40, 37, 29, 4, 1.7
    xy = torch.rand(B, V, 2, generator=g) * torch.tensor([W + 20.0, H + 20.0]) - 10.0
    w = torch.rand(B, V, generator=g) + 0.5
    ok = torch.rand(B, V, generator=g) > 0.1
    faces = torch.randint(0, V, (F, 3), generator=g, dtype=torch.int32)
    bins = bridge.build_bins(xy, w, ok, faces, torch.zeros(F, dtype=torch.int32), W, H, T, margin)
    tiles_x, tiles_y = -(-W // T), -(-H // T)
    start = bins.tile_start.numpy()
    lists = bins.tile_faces.numpy()
    xyn, okn, fn = xy.numpy(), ok.numpy(), faces.numpy().astype(int)
    for b in range(B):
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                t = b * tiles_x * tiles_y + ty * tiles_x + tx
                got = sorted(lists[start[t]:start[t + 1]].tolist())
                px0, px1 = tx * T, min(W - 1, tx * T + T - 1)
                py0, py1 = ty * T, min(H - 1, ty * T + T - 1)
                want = []
                for f in range(F):
                    if not okn[b, fn[f]].all():
                        continue
                    p = xyn[b, fn[f]]
                    lo, hi = p.min(0) - margin, p.max(0) + margin
                    # some pixel centre of the tile lies in the grown box
                    if (np.ceil(lo[0]) <= px1 and np.floor(hi[0]) >= px0
                            and np.ceil(lo[1]) <= py1 and np.floor(hi[1]) >= py0):
                        want.append(f)
                assert got == want, (b, tx, ty)


def test_batch_and_crop_are_consistent():
    # float64: in float32 the two projections round differently, which can flip near-tied fragment drops
    s = allegro_scene(3, dtype=torch.float64)
    cam = object_crop(s, 64)
    r = Renderer()
    moved = s.verts + torch.tensor([0.004, -0.003, 0.01], dtype=torch.float64)
    both = r(torch.cat((s.verts, moved)), s.faces, cam, face_instance=s.face_instance, depth=True)
    for i, v in enumerate((s.verts, moved)):
        one = r(v, s.faces, cam, face_instance=s.face_instance, depth=True)
        for name in ("full", "visible", "union", "depth"):
            torch.testing.assert_close(getattr(both, name)[i], getattr(one, name)[0], atol=1e-12, rtol=0)
    # a pixel-aligned crop at scale 1 renders exactly the corresponding window of the full image
    full_cam = s.camera
    box = (260, 150, 260 + 96, 150 + 80)
    crop_cam = full_cam.crop_and_resize(box, 96, 80)
    full = r(s.verts, s.faces, full_cam, face_instance=s.face_instance)
    crop = r(s.verts, s.faces, crop_cam, face_instance=s.face_instance)
    torch.testing.assert_close(crop.visible[0], full.visible[0, :, 150:230, 260:356], atol=1e-10, rtol=0)
    torch.testing.assert_close(crop.full[0], full.full[0, :, 150:230, 260:356], atol=1e-10, rtol=0)


def test_threads_give_the_same_result():
    s = allegro_scene(5, dtype=torch.float32)
    cam = object_crop(s, 96)
    outs = []
    for threads in (1, 2):
        r = Renderer(RenderSettings(raster=RasterSettings(cpu_threads=threads)))
        v = s.verts.clone().requires_grad_(True)
        for _ in range(2):  # the first call of a kernel runs in one launch
            out = r(v, s.faces, cam, face_instance=s.face_instance)
        (out.visible[0, 1].sum() + out.union.sum()).backward()
        outs.append((out, v.grad))
    (a, ga), (b, gb) = outs
    assert torch.equal(a.union, b.union) and torch.equal(a.visible, b.visible)
    torch.testing.assert_close(ga, gb, atol=1e-3 * float(ga.abs().max()), rtol=1e-4)


def test_sigma_override_widens_the_blur():
    cam = _camera()
    verts = torch.tensor([[[-0.2, -0.2, 1.0], [0.2, -0.2, 1.0], [0.0, 0.2, 1.0]]])
    faces = torch.tensor([[0, 1, 2]])
    r = Renderer()
    sharp = r(verts, faces, cam, sigma=0.05)
    soft = r(verts, faces, cam, sigma=4.0)
    assert int((sharp.union > 0).sum()) < int((soft.union > 0).sum())
    assert soft.fragments.sigma == 4.0


def test_texture_matches_vertex_colours_for_linear_texture():
    """A texture linear in (u, v) sampled at perspective-correct uv equals interpolated vertex colours."""
    dt = torch.float64
    cam = _camera(dtype=dt)
    verts = torch.tensor([[[-0.3, -0.2, 1.0], [0.3, -0.25, 1.3], [0.0, 0.3, 0.8], [0.35, 0.25, 1.1]]], dtype=dt)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    uv = torch.tensor([[0.1, 0.2], [0.9, 0.3], [0.3, 0.8], [0.7, 0.9]], dtype=dt)
    n = 65
    u = torch.linspace(0, 1, n, dtype=dt)
    vv, uu = torch.meshgrid(1 - u, u, indexing="ij")  # row 0 is v = 1 (OBJ: v up)

    def colour(uq, vq):
        return torch.stack((0.2 + 0.6 * uq, 0.1 + 0.8 * vq, 0.5 + 0.3 * uq - 0.2 * vq), -1)

    texture = colour(uu, vv)
    r = Renderer(RenderSettings(raster=RasterSettings(sigma=0.7)))
    a = r(verts, faces, cam, uv=uv, texture=texture, gamma=1e-3).rgb
    b = r(verts, faces, cam, vertex_colors=colour(uv[:, 0], uv[:, 1])[None], gamma=1e-3).rgb
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    assert float(a.max()) > 0.3
