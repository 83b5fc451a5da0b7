"""RigidObject from mesh files written here (OBJ, PLY, STL in mm) and from primitives."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.distance import pdist

from handypriors_core.errors import InvalidValueError, ModelFileError
from handypriors_core.models import RigidObject
from handypriors_core.models.primitives import box_mesh, cylinder_mesh, sphere_mesh

EXT = np.array([0.04, 0.06, 0.10])
CORNERS = np.array(list(itertools.product([-1, 1], repeat=3)), dtype=float) * EXT / 2 + [0.01, 0.0, 0.02]


def box_faces():
    """Triangles of the 8 CORNERS, wound outwards (hull of the corners)."""
    return np.asarray(trimesh.convex.convex_hull(CORNERS).faces)


def write_obj(path, verts, faces, extra=""):
    lines = [f"v {float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in verts]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text(extra + "\n".join(lines) + "\n")


def test_box_obj(tmp_path):
    path = tmp_path / "box.obj"
    write_obj(path, CORNERS, box_faces())
    obj = RigidObject.from_mesh(path, n_samples=300)
    assert obj.verts.shape == (8, 3) and obj.faces.shape == (12, 3) and obj.faces.dtype == torch.long
    assert obj.is_watertight and not obj.symmetric and obj.vertex_colors is None and obj.texture is None
    assert obj.diameter == pytest.approx(float(np.linalg.norm(EXT)), rel=1e-9)
    np.testing.assert_allclose(obj.center.numpy(), [0.01, 0.0, 0.02], atol=1e-7)
    # samples: on the faces, outward normals, evenly spread, deterministic
    s = obj.samples.double().numpy() - [0.01, 0.0, 0.02]
    assert s.shape == (300, 3)
    assert (np.abs(np.abs(s) - EXT / 2) < 1e-6).any(1).all()
    assert ((obj.sample_normals.double().numpy() * s).sum(1) > 0).all()
    d = np.linalg.norm(s[:, None] - s[None], axis=-1) + np.eye(300)
    nn = d.min(1)
    assert nn.min() > 0.3 * nn.mean()
    again = RigidObject.from_mesh(path, n_samples=300)
    torch.testing.assert_close(again.samples, obj.samples)
    # vertex normals point away from the centre
    assert ((obj.vertex_normals * (obj.verts - obj.center)).sum(-1) > 0).all()


def test_ply_with_vertex_colors(tmp_path):
    colors = np.random.default_rng(0).integers(0, 256, (8, 3))
    mesh = trimesh.Trimesh(CORNERS, box_faces(), vertex_colors=np.c_[colors, np.full(8, 255)], process=False)
    path = tmp_path / "box.ply"
    mesh.export(path)
    obj = RigidObject.from_mesh(path, symmetric=True, n_samples=50)
    assert obj.symmetric and obj.vertex_colors is not None and obj.vertex_colors.shape == (8, 3)
    # match colours by vertex position (a loader may reorder vertices)
    order = [int(np.argmin(np.linalg.norm(CORNERS - v, axis=1))) for v in obj.verts.double().numpy()]
    np.testing.assert_allclose(obj.vertex_colors.double().numpy(), colors[order] / 255.0, atol=1e-6)


def test_stl_in_millimetres(tmp_path):
    path = tmp_path / "box_mm.stl"
    trimesh.Trimesh(CORNERS * 1000.0, box_faces(), process=False).export(path)
    with pytest.warns(UserWarning, match="millimetres"):
        raw = RigidObject.from_mesh(path, n_samples=20)
    assert raw.diameter == pytest.approx(1000 * np.linalg.norm(EXT), rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obj = RigidObject.from_mesh(path, scale=0.001, n_samples=20)
    assert obj.diameter == pytest.approx(float(np.linalg.norm(EXT)), rel=1e-6)
    assert obj.is_watertight


def test_open_mesh_and_diameter_against_brute_force(tmp_path):
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(200, 3)) * [0.03, 0.05, 0.02]
    hull = trimesh.convex.convex_hull(pts)
    path = tmp_path / "open.obj"
    write_obj(path, hull.vertices, hull.faces[1:])  # drop one face: not watertight
    obj = RigidObject.from_mesh(path, n_samples=50)
    assert not obj.is_watertight
    assert obj.diameter == pytest.approx(float(pdist(hull.vertices).max()), rel=1e-9)


def test_textured_obj(tmp_path):
    import cv2

    image = np.zeros((4, 8, 3), dtype=np.uint8)
    image[:, :4] = (0, 0, 255)  # BGR: left half red
    cv2.imwrite(str(tmp_path / "tex.png"), image)
    (tmp_path / "box.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd tex.png\n")
    faces = box_faces()
    lines = ["mtllib box.mtl", "usemtl skin"]
    lines += [f"v {float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in CORNERS]
    lines += [f"vt {u} {v}" for u, v in rng_uv(8)]
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in faces]
    (tmp_path / "box.obj").write_text("\n".join(lines) + "\n")
    obj = RigidObject.from_mesh(tmp_path / "box.obj", n_samples=20)
    assert obj.uv is not None and obj.uv.shape == (obj.verts.shape[0], 2)
    assert obj.texture is not None and obj.texture.shape == (4, 8, 3)
    np.testing.assert_allclose(obj.texture[0, 0].numpy(), [1.0, 0.0, 0.0])  # RGB
    assert float(obj.texture.max()) <= 1.0


def rng_uv(n):
    return np.random.default_rng(2).random((n, 2)).round(3)


def test_primitive_constructors_share_the_tessellation():
    box = RigidObject.box((0.05, 0.1, 0.2), n_samples=100)
    v, f = box_mesh((0.05, 0.1, 0.2), max_edge=0.02)
    torch.testing.assert_close(box.verts.double(), torch.from_numpy(v), atol=1e-7, rtol=0)
    assert box.is_watertight and box.diameter == pytest.approx(np.linalg.norm([0.05, 0.1, 0.2]), rel=1e-9)
    assert trimesh.Trimesh(v, f).volume == pytest.approx(0.05 * 0.1 * 0.2, rel=1e-9)
    cyl = RigidObject.cylinder(0.03, 0.1, sections=32, n_samples=100)
    assert cyl.diameter == pytest.approx(np.hypot(0.06, 0.1), rel=1e-9)
    v, f = cylinder_mesh(0.03, 0.1, 32)
    tm = trimesh.Trimesh(v, f)
    assert tm.is_watertight and tm.volume == pytest.approx(0.5 * 32 * np.sin(2 * np.pi / 32) * 0.03**2 * 0.1, rel=1e-9)
    sph = RigidObject.sphere(0.05, n_samples=100)
    assert sph.diameter == pytest.approx(0.1, rel=1e-9)
    r = torch.linalg.norm(sph.verts.double(), dim=-1)
    torch.testing.assert_close(r, torch.full_like(r, 0.05), atol=1e-7, rtol=0)
    assert trimesh.Trimesh(*sphere_mesh(0.05, 2)).is_watertight


def test_to_device_dtype():
    obj = RigidObject.box((0.05, 0.05, 0.05), n_samples=10)
    o64 = obj.to(dtype=torch.float64)
    assert o64.verts.dtype == torch.float64 and o64.faces.dtype == torch.long and obj.verts.dtype == torch.float32
    assert o64.device.type == "cpu"
    if torch.cuda.is_available():
        assert obj.to("cuda").samples.is_cuda


def test_bad_files(tmp_path):
    with pytest.raises(ModelFileError, match="missing.obj"):
        RigidObject.from_mesh(tmp_path / "missing.obj")
    garbage = tmp_path / "garbage.stl"
    garbage.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ModelFileError, match="garbage.stl"):
        RigidObject.from_mesh(garbage)
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing here\n")
    with pytest.raises(ModelFileError, match="empty.obj"):
        RigidObject.from_mesh(empty)
    write_obj(tmp_path / "ok.obj", CORNERS, box_faces())
    with pytest.raises(InvalidValueError, match="scale"):
        RigidObject.from_mesh(tmp_path / "ok.obj", scale=-1.0)
