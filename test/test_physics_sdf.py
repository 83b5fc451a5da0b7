"""Object signed distance (warp BVH + torch): analytic shapes, a brute-force reference, signs, gradients."""

import numpy as np
import pytest
import torch
import trimesh

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry.transforms import se3_exp, transform_points
from handypriors_core.physics import ContactSettings, ObjectSDF

F64 = torch.float64
TOL = 1e-4  # 0.1 mm, the accuracy requirement


def _box_sd(p: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    q = p.abs() - half
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


def _cylinder_sd(p: torch.Tensor, radius: float, half_height: float) -> torch.Tensor:
    d = torch.stack((p[..., :2].norm(dim=-1) - radius, p[..., 2].abs() - half_height), -1)
    return d.clamp_min(0).norm(dim=-1) + d.amax(-1).clamp_max(0)


def _shell_points(n: int, seed: int, scale: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Random points in a box of half-size ``scale * high`` (float64)."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(1, n, 3, generator=gen, dtype=F64) * 2 - 1) * scale * high


@pytest.fixture(scope="module")
def box():
    half = torch.tensor([0.02, 0.03, 0.04], dtype=F64)
    return ObjectSDF.from_trimesh(trimesh.creation.box(extents=(0.04, 0.06, 0.08))), half


def test_sphere_matches_analytic_distance():
    radius = 0.05
    sdf = ObjectSDF.from_trimesh(trimesh.creation.icosphere(subdivisions=5, radius=radius))
    gen = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(1, 2000, 3, generator=gen, dtype=F64), dim=-1)
    points = direction * (radius + (torch.rand(1, 2000, 1, generator=gen, dtype=F64) * 2 - 1) * 0.03)
    result = sdf.query(points)
    expected = points.norm(dim=-1) - radius
    assert (result.distance - expected).abs().max() < TOL
    far = expected.abs() > 2 * TOL
    assert torch.equal((result.distance < 0)[far], (expected < 0)[far])
    # Closest point lies on the sphere, on the ray through the query point; normal is radial (to a facet).
    cp = result.closest_point[0]
    assert (cp.norm(dim=-1) - radius).abs().max() < TOL
    assert (result.normal[0] - direction[0]).norm(dim=-1).max() < 0.05  # facet normals: within a facet angle


def test_box_matches_analytic_distance_everywhere(box):
    sdf, half = box
    points = _shell_points(5000, 1, half, 0, 2.0)
    result = sdf.query(points)
    expected = _box_sd(points[0], half)
    assert (result.distance[0] - expected).abs().max() < 1e-7  # the mesh is the box: float32 face choice only
    assert torch.equal(result.distance[0] < 0, expected < 0)


@pytest.mark.parametrize("offset", [1e-4, 5e-4, -1e-4, -5e-4])
def test_box_sign_near_edges_and_vertices(box, offset):
    """Points 0.1-0.5 mm from every vertex and edge of the box, on both sides, in float32."""
    sdf, half = box
    signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=F64)
    corners = signs * half
    # Vertex regions: outward along the corner diagonal; inside along the inward diagonal.
    vertex_pts = corners + signs * offset / 3 ** 0.5
    # Edge regions: midpoints of the 12 edges moved along the edge's outward bisector (and along the edge).
    edge_pts = []
    for axis in range(3):
        for s in signs:
            mid = s * half
            mid[axis] = 0.3 * half[axis]
            n = s.clone()
            n[axis] = 0
            edge_pts.append(mid + n / n.norm() * offset)
    points = torch.cat((vertex_pts, torch.stack(edge_pts)))[None]
    for dtype in (torch.float32, F64):
        result = sdf.query(points.to(dtype))
        expected = _box_sd(points[0], half)
        assert expected.abs().min() > 0.5 * abs(offset) and torch.all((expected < 0) == (offset < 0))
        assert torch.all((result.distance[0] < 0) == (expected < 0)), dtype
        assert (result.distance[0].double() - expected).abs().max() < 1e-6


def test_cylinder_matches_analytic_distance():
    radius, height = 0.03, 0.08
    sdf = ObjectSDF.from_trimesh(trimesh.creation.cylinder(radius=radius, height=height, sections=256))
    points = _shell_points(4000, 2, torch.tensor([radius, radius, height / 2], dtype=F64), 0, 1.6)
    result = sdf.query(points)
    expected = _cylinder_sd(points[0], radius, height / 2)
    assert (result.distance[0] - expected).abs().max() < TOL
    far = expected.abs() > 2 * TOL
    assert torch.equal((result.distance[0] < 0)[far], (expected < 0)[far])


def _brute_force_unsigned(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Reference distance: closest point on every triangle (trimesh's independent routine), minimum."""
    from trimesh.triangles import closest_point

    out = np.empty(len(points))
    for i, p in enumerate(points):
        cps = closest_point(tris, np.repeat(p[None], len(tris), 0))
        out[i] = np.linalg.norm(cps - p, axis=1).min()
    return out


def _winding_number(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Exact generalised winding number (sum of signed solid angles, Van Oosterom & Strackee)."""
    a = tris[None, :, 0] - points[:, None]
    b = tris[None, :, 1] - points[:, None]
    c = tris[None, :, 2] - points[:, None]
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("ijk,ijk->ij", a, np.cross(b, c))
    denom = la * lb * lc + np.einsum("ijk,ijk->ij", a, b) * lc + np.einsum("ijk,ijk->ij", b, c) * la \
        + np.einsum("ijk,ijk->ij", c, a) * lb
    return (2 * np.arctan2(det, denom)).sum(-1) / (4 * np.pi)


def test_torus_matches_brute_force_reference():
    """Non-convex mesh: distance against a brute-force loop, sign against the exact winding number."""
    mesh = trimesh.creation.torus(major_radius=0.04, minor_radius=0.015, major_sections=32, minor_sections=16)
    sdf = ObjectSDF.from_trimesh(mesh)
    points = _shell_points(150, 3, torch.tensor([0.06, 0.06, 0.02], dtype=F64), 0, 1.0)
    result = sdf.query(points)
    tris = np.asarray(mesh.triangles)
    pts = points[0].numpy()
    unsigned = _brute_force_unsigned(pts, tris)
    inside = _winding_number(pts, tris) > 0.5
    expected = np.where(inside, -unsigned, unsigned)
    np.testing.assert_allclose(result.distance[0].numpy(), expected, atol=1e-7)
    assert inside.sum() > 10 and (~inside).sum() > 10


def test_sign_robust_on_mesh_with_holes():
    """Winding-number sign survives missing faces (non-watertight, YCB-style scans)."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    keep = np.ones(len(mesh.faces), bool)
    keep[np.random.default_rng(0).choice(len(keep), 20, replace=False)] = False
    holed = trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)
    assert not holed.is_watertight
    sdf = ObjectSDF.from_trimesh(holed)
    gen = torch.Generator().manual_seed(4)
    direction = torch.nn.functional.normalize(torch.randn(1, 500, 3, generator=gen, dtype=F64), dim=-1)
    radii = torch.where(torch.rand(1, 500, 1, generator=gen, dtype=F64) < 0.5, 0.04, 0.06)
    result = sdf.query(direction * radii)
    assert torch.equal(result.distance < 0, (radii < 0.05)[..., 0])
    assert torch.equal(sdf.contains(direction * radii), (radii < 0.05)[..., 0])


def test_gradcheck_wrt_points_float64(box):
    sdf, _ = box
    gen = torch.Generator().manual_seed(5)
    # Face, edge and vertex regions outside, and face regions inside (away from the medial surfaces).
    points = torch.tensor([[[0.025, 0.001, 0.002], [0.026, 0.035, 0.0], [0.024, 0.033, 0.047],
                            [0.012, 0.004, -0.001], [0.0, -0.025, 0.01], [0.001, 0.002, 0.043]]], dtype=F64)
    points = points + 1e-4 * torch.rand(points.shape, generator=gen, dtype=F64)
    points.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: sdf.query(p).distance, (points,), eps=1e-6, atol=1e-6)
    # The gradient is the unit outward normal.
    (grad,) = torch.autograd.grad(sdf.query(points).distance.sum(), points)
    torch.testing.assert_close(grad.norm(dim=-1), torch.ones(1, 6, dtype=F64))
    torch.testing.assert_close(grad, sdf.query(points).normal)


def test_gradcheck_wrt_object_pose_float64(box):
    sdf, _ = box
    xi0 = torch.tensor([[0.1, 0.02, 0.5, 0.3, -0.2, 0.1]], dtype=F64)
    points_obj = torch.tensor([[[0.011, 0.004, 0.001], [0.031, 0.012, 0.021], [-0.025, 0.036, -0.011],
                                [0.002, -0.001, 0.031]]], dtype=F64)
    points = transform_points(se3_exp(xi0), points_obj)

    def distance(xi):
        return sdf.signed_distance(points, se3_exp(xi)).distance

    assert (distance(xi0) < 0).any() and (distance(xi0) > 0).any()
    assert torch.autograd.gradcheck(distance, (xi0.clone().requires_grad_(True),), eps=1e-6, atol=1e-6)


def test_pose_aware_query_matches_object_frame_query(box):
    sdf, half = box
    T = se3_exp(torch.tensor([[0.05, -0.02, 0.4, 0.5, 0.2, -0.7]], dtype=F64))
    points_obj = _shell_points(300, 6, half, 0, 1.5)
    points_cam = transform_points(T, points_obj)
    cam = sdf.signed_distance(points_cam, T)
    obj = sdf.query(points_obj)
    torch.testing.assert_close(cam.distance, obj.distance, atol=1e-9, rtol=0)
    torch.testing.assert_close(cam.closest_point, transform_points(T, obj.closest_point))
    torch.testing.assert_close(cam.normal, obj.normal @ T[0, :3, :3].T)
    assert cam.closest_point.grad_fn is None and cam.normal.grad_fn is None


def test_batched_float32_threads_and_devices_agree(box):
    sdf, half = box
    points = _shell_points(6000, 7, half, 0, 2.0).reshape(3, 2000, 3)
    single = ObjectSDF(sdf.verts, sdf.faces, ContactSettings(cpu_threads=1)).query(points.float())
    threaded = ObjectSDF(sdf.verts, sdf.faces, ContactSettings(cpu_threads=2)).query(points.float())
    assert single.distance.dtype == torch.float32
    assert torch.equal(single.face, threaded.face)
    torch.testing.assert_close(single.distance, threaded.distance, atol=0, rtol=0)
    expected = _box_sd(points, half)
    assert (single.distance.double() - expected).abs().max() < 1e-6


def test_pseudo_normal_sign_method_on_watertight_mesh(box):
    sdf, half = box
    normal_sdf = ObjectSDF(sdf.verts, sdf.faces, ContactSettings(sign_method="normal"))
    points = _shell_points(2000, 8, half, 0, 2.0)
    expected = _box_sd(points[0], half)
    assert (normal_sdf.query(points).distance[0] - expected).abs().max() < 1e-7


def test_far_points_report_max_query_distance(box):
    sdf, _ = box
    near = ObjectSDF(sdf.verts, sdf.faces, ContactSettings(max_query_distance=0.05))
    result = near.query(torch.tensor([[[1.0, 0.0, 0.0], [0.03, 0.0, 0.0]]], dtype=F64))
    assert result.face[0, 0] == -1 and result.distance[0, 0] == 0.05
    assert result.face[0, 1] >= 0 and abs(result.distance[0, 1].item() - 0.01) < 1e-9


def test_bad_inputs_raise_typed_errors(box):
    sdf, _ = box
    with pytest.raises(ShapeError, match="points_obj"):
        sdf.query(torch.zeros(4, 3))
    with pytest.raises(InvalidValueError, match="points_obj"):
        sdf.query(torch.full((1, 2, 3), float("nan")))
    with pytest.raises(InvalidValueError, match="float32 or float64"):
        sdf.query(torch.zeros(1, 2, 3, dtype=torch.float16))
    with pytest.raises(ShapeError, match="object2camera"):
        sdf.signed_distance(torch.zeros(2, 3, 3, dtype=F64), torch.eye(4, dtype=F64)[None])
    with pytest.raises(InvalidValueError, match="faces"):
        ObjectSDF(torch.zeros(3, 3), torch.tensor([[0, 1, 5]]))
    empty = sdf.query(torch.zeros(2, 0, 3, dtype=F64))
    assert empty.distance.shape == (2, 0)
