"""The filter step's kernel-side fast paths (hand z-buffer plan, contact query pre-test) equal the general paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handypriors_core.geometry import PinholeCamera
from handypriors_core.geometry.rotations import axis_angle_to_matrix


def _soup(dtype: torch.dtype, seed: int, batch: int = 2, faces: int = 40):
    """``batch`` sets of random overlapping triangles (both windings) 0.3 m in front of a 64 x 48 camera."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, faces, 1, 3, generator=g, dtype=dtype) * torch.tensor([0.1, 0.08, 0.1], dtype=dtype) \
        + torch.tensor([-0.05, -0.04, 0.3], dtype=dtype)
    verts = (centres + 0.03 * torch.randn(batch, faces, 3, 3, generator=g, dtype=dtype)).reshape(batch, 3 * faces, 3)
    tri = torch.arange(3 * faces).reshape(faces, 3)
    tri[::3] = tri[::3].flip(-1)
    K = torch.tensor([[120.0, 0, 31.5], [0, 120.0, 23.5], [0, 0, 1]], dtype=dtype)
    return verts, tri, PinholeCamera(K=K, width=64, height=48)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_projection_equals_project_vertices(dtype):
    """``project_vertices_array`` gives ``project_vertices``' values bit for bit, undrawable vertices included (behind
    the camera, closer than ``near``, non-finite, beyond ``MAX_SCREEN``)."""
    from handypriors_core.render.nearest_depth import project_vertices_array
    from handypriors_core.render.rasterizer import MAX_SCREEN, project_vertices

    verts, _, cam = _soup(dtype, 3, batch=1, faces=100)
    verts[0, 0, 2] = -0.2
    verts[0, 1, 2] = 0.005
    verts[0, 2, 0] = math.nan
    verts[0, 3] = torch.tensor([1e4, 0.0, 1e-3], dtype=dtype) * torch.tensor([1.0, 1.0, 20.0], dtype=dtype)
    xy, inv_depth, ok = project_vertices(verts, cam, 0.01)
    xy_a, inv_a, ok_a = project_vertices_array(verts[0].numpy(), cam.K.numpy(), 0.01, MAX_SCREEN)
    assert not bool(ok[0, :4].any()) and bool(ok[0, 4:].all())
    assert np.array_equal(ok_a, ok[0].numpy())
    assert np.array_equal(xy_a, xy[0].numpy()) and np.array_equal(inv_a, inv_depth[0].numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zbuffer_plan_equals_the_torch_path(dtype):
    """``nearest_depth`` on the CPU (numpy projection, replayed launches of a kept plan) equals ``nearest_depth_torch``
    (torch projection, fresh launches) bit for bit: two batches, a vertex behind the camera, ``grow`` 0 and 2,
    ``cull_back`` on a closed box, and the same plan reused for new vertices (its buffers overwritten)."""
    from handypriors_core.models import RigidObject
    from handypriors_core.render import RasterSettings
    from handypriors_core.render.rasterizer import HardRasterizer

    raster = HardRasterizer(RasterSettings(cpu_threads=1))
    _, faces, cam = _soup(dtype, 5)
    for seed in (5, 6):  # the second seed reuses the plans of the first
        verts = _soup(dtype, seed)[0]
        verts[1, 4, 2] = -0.1
        for grow in (0, 2):
            fast = raster.nearest_depth(verts, faces, cam, grow=grow)
            assert int(torch.isfinite(fast).sum()) > 800
            assert torch.equal(fast, raster.nearest_depth_torch(verts, faces, cam, grow=grow))
    assert len(raster._plans) == 1  # one plan for every grow (its maximum filter runs after the kernel)
    box = RigidObject.box([0.04, 0.06, 0.03])
    for angle in (0.5, 1.1):
        R = axis_angle_to_matrix(torch.tensor([angle, -0.3, 0.2], dtype=dtype))
        box_verts = (box.verts.to(dtype) @ R.T + torch.tensor([0.01, 0.0, 0.25], dtype=dtype))[None]
        fast = raster.nearest_depth(box_verts, box.faces, cam, cull_back=True, grow=1)
        assert int(torch.isfinite(fast).sum()) > 300
        assert torch.equal(fast, raster.nearest_depth_torch(box_verts, box.faces, cam, cull_back=True, grow=1))
    assert int(torch.isfinite(raster.nearest_depth(verts[:, :0], faces[:0], cam)).sum()) == 0  # an empty mesh


def test_contact_query_skips_the_sign_test_only_outside_the_hull():
    """``ObjectSDF.query_array`` with its convex-hull pre-test gives the full query's distances and normals on a
    concave mesh (a torus: its box corners and the air above its hole lie outside the hull); the points it marks
    are all outside, and a point marked by hand as outside gets sign +1 from the kernel (the flag is obeyed)."""
    import trimesh

    from handypriors_core.physics.sdf import ObjectSDF
    from handypriors_core.physics.settings import ContactSettings
    from handypriors_core.physics.warp_bridge import closest_faces

    mesh = trimesh.creation.torus(major_radius=0.04, minor_radius=0.015)
    sdf = ObjectSDF(torch.as_tensor(mesh.vertices, dtype=torch.float32), torch.as_tensor(mesh.faces),
                    ContactSettings(max_query_distance=0.2))
    g = torch.Generator().manual_seed(2)
    points = (torch.rand(1500, 3, generator=g) * 2 - 1) * torch.tensor([0.06, 0.06, 0.02])
    marked = sdf._outside_hull(points.numpy())
    reference = sdf.query(points[None])
    assert int(marked.sum()) > 100 and bool((reference.distance[0] < 0).sum() > 50)
    assert bool((reference.distance[0][torch.from_numpy(marked)] > 0).all())
    distance, normal = sdf.query_array(points.numpy())
    assert torch.equal(torch.from_numpy(distance) < 0, reference.distance[0] < 0)
    torch.testing.assert_close(torch.from_numpy(distance), reference.distance[0], atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(torch.from_numpy(normal), reference.normal[0], atol=1e-6, rtol=1e-5)
    inside = int(torch.argmin(reference.distance[0]))
    flag = torch.zeros(len(points), dtype=torch.bool)
    flag[inside] = True
    _, _, sign = closest_faces(sdf._mesh_on(torch.device("cpu")), points, len(points), sdf.settings, flag)
    _, _, sign_ref = closest_faces(sdf._mesh_on(torch.device("cpu")), points, len(points), sdf.settings)
    assert float(sign[inside]) == 1.0 and float(sign_ref[inside]) == -1.0
    others = torch.arange(len(points)) != inside
    assert torch.equal(sign[others], sign_ref[others])


def test_kept_closest_face_launch_equals_a_fresh_launch():
    """``ClosestFacePlan`` (buffers, warp views and one recorded launch kept, replayed with each call's count) gives
    ``closest_faces``' faces, barycentrics and signs bit for bit on a concave mesh, for calls of different sizes in
    turn (a smaller call after a larger one, an empty one), with the known-outside flag obeyed; more points than its
    capacity raise."""
    import trimesh

    from handypriors_core.errors import ShapeError
    from handypriors_core.physics.settings import ContactSettings
    from handypriors_core.physics.warp_bridge import ClosestFacePlan, WarpMeshSet, closest_faces

    mesh = trimesh.creation.torus(major_radius=0.04, minor_radius=0.015)
    meshes = WarpMeshSet(torch.as_tensor(mesh.vertices, dtype=torch.float32)[None], torch.as_tensor(mesh.faces))
    settings = ContactSettings(max_query_distance=0.012)
    plan = ClosestFacePlan(meshes, 300, settings)
    g = torch.Generator().manual_seed(3)
    for n in (300, 17, 0, 120):
        points = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([0.08, 0.08, 0.03])
        outside = torch.rand(n, generator=g) < 0.2
        face, bary, sign = plan(points.numpy(), outside.numpy())
        ref = closest_faces(meshes, points, max(n, 1), settings, known_outside=outside)
        assert np.array_equal(face, ref[0].numpy()) and np.array_equal(bary, ref[1].numpy())
        assert np.array_equal(sign, ref[2].numpy())
        if n == 300:  # far points, inside points, flagged points inside (sign +1 there)
            assert int((ref[0] < 0).sum()) > 10 and int((ref[2] < 0).sum()) > 10
    with pytest.raises(ShapeError):
        plan(np.zeros((301, 3), np.float32), np.zeros(301, bool))


def test_contact_query_bounds_far_points_by_box_and_slabs():
    """``query_array(points, exact_within)`` on a torus (round: its box corners lie far from it): the points it
    queries get the full query's values; the others, some of them near the box but beyond one of its 26 bounding
    planes, get a lower bound of their distance above ``exact_within`` and a zero normal, so every comparison with a
    threshold up to ``exact_within`` decides as the full query does."""
    import trimesh

    from handypriors_core.physics.sdf import ObjectSDF
    from handypriors_core.physics.settings import ContactSettings

    mesh = trimesh.creation.torus(major_radius=0.04, minor_radius=0.015)
    sdf = ObjectSDF(torch.as_tensor(mesh.vertices, dtype=torch.float32), torch.as_tensor(mesh.faces),
                    ContactSettings(max_query_distance=0.2))
    g = torch.Generator().manual_seed(8)
    points = ((torch.rand(2000, 3, generator=g) * 2 - 1) * torch.tensor([0.07, 0.07, 0.04])).numpy()
    exact_within = 0.008
    full_d, full_n = sdf.query_array(points)
    d, n = sdf.query_array(points, exact_within=exact_within)
    queried = np.abs(n).sum(1) > 0
    in_box = sdf._box_distance(points) <= exact_within + 1e-5
    assert int((in_box & ~queried).sum()) > 50 and int(queried.sum()) > 100  # the slabs skip points near the box
    assert np.array_equal(d[queried], full_d[queried]) and np.array_equal(n[queried], full_n[queried])
    assert bool((d[~queried] > exact_within).all()) and bool((d[~queried] <= full_d[~queried]).all())
    for threshold in (0.0, 0.003, exact_within):
        assert np.array_equal(d < threshold, full_d < threshold)
    # a limit per point (the filter's contact candidates and fingertip centres): each point decides by its own
    limits = np.where(np.arange(len(points)) % 3 == 0, 0.02, 0.002)
    d, n = sdf.query_array(points, exact_within=limits)
    queried = np.abs(n).sum(1) > 0
    assert np.array_equal(d[queried], full_d[queried]) and bool((d[~queried] > limits[~queried]).all())
    assert np.array_equal(d < limits, full_d < limits)
    wide = limits > 0.01  # the wider limit queries a larger share of its points
    assert 0 < queried[~wide].mean() < queried[wide].mean()
    from handypriors_core.errors import ShapeError

    with pytest.raises(ShapeError):
        sdf.query_array(points, exact_within=limits[:-1])


def test_zbuffer_plan_path_rejects_bad_input():
    """The kept-plan path checks its input as the general path does: vertices of the wrong shape or dtype, faces
    indexing past the vertices and a negative ``grow`` raise, before and after a plan exists."""
    from handypriors_core.errors import InvalidValueError, ShapeError
    from handypriors_core.render import RasterSettings
    from handypriors_core.render.rasterizer import HardRasterizer

    verts, faces, cam = _soup(torch.float32, 7, batch=1)
    raster = HardRasterizer(RasterSettings(cpu_threads=1))
    bad_faces = faces.clone()
    bad_faces[0, 0] = verts.shape[1]
    with pytest.raises(ShapeError):
        raster.nearest_depth(verts, bad_faces, cam)
    raster.nearest_depth(verts, faces, cam)  # a plan now exists for these faces
    with pytest.raises(ShapeError):
        raster.nearest_depth(verts.half(), faces, cam)
    with pytest.raises(InvalidValueError):
        raster.nearest_depth(verts, faces, cam, grow=-1)
    with pytest.raises(InvalidValueError):
        raster.nearest_depth(verts, faces, object())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_crop_camera_and_box_from_plain_numbers_equal_the_tensor_path(dtype):
    """``crop_and_resize`` with a box of plain numbers (numpy scalars) gives the tensor box's ``K`` bit for bit, and
    ``square_crop_box`` on CPU points (numpy columns) the box of ``PinholeCamera.project`` + torch reductions;
    boxes partly outside the image, a point behind the camera, and bad boxes rejected alike."""
    from handypriors_core.errors import InvalidValueError, ShapeError
    from handypriors_core.geometry.camera import square_crop_box

    g = torch.Generator().manual_seed(4)
    K = torch.tensor([[615.3, 0, 318.7], [0, 614.9, 241.2], [0, 0, 1]], dtype=dtype)
    cam = PinholeCamera(K=K, width=640, height=480)
    for _ in range(20):
        x0, y0 = (torch.rand(2, generator=g) * 700 - 50).tolist()
        size = float(torch.rand(1, generator=g) * 300 + 10)
        box = (x0, y0, x0 + size, y0 + size * 1.01)
        fast = cam.crop_and_resize(box, 96, 96)
        assert torch.equal(fast.K, cam.crop_and_resize(torch.tensor(box), 96, 96).K)
        assert fast.K.dtype == dtype and (fast.width, fast.height) == (96, 96)
        points = torch.randn(8, 3, generator=g, dtype=dtype) * 0.05 + torch.tensor([0.0, 0.0, 0.5], dtype=dtype)
        if _ == 0:
            points[3, 2] = -0.1
        uv = cam.project(points[None])[0]
        lo, hi = uv.min(0).values, uv.max(0).values
        centre = 0.5 * (lo + hi)
        half = min(max(0.5 * float((hi - lo).max()) * 1.2, 32.0), 1280.0)
        cx, cy = float(centre[0].clamp(-640, 1280)), float(centre[1].clamp(-480, 960))
        assert square_crop_box(cam, points, 0.1, 64.0) == (cx - half, cy - half, cx + half, cy + half)
    with pytest.raises(InvalidValueError):
        cam.crop_and_resize((10.0, 10.0, 5.0, 20.0), 96, 96)
    with pytest.raises(InvalidValueError):
        cam.crop_and_resize((10.0, math.nan, 50.0, 20.0), 96, 96)
    with pytest.raises(ShapeError):
        cam.crop_and_resize((10.0, 10.0, 50.0), 96, 96)


def test_motion_predict_checks_each_process_noise_tensor_once():
    """The CPU motion predict keeps the checked process noise per tensor: a second ``Q`` is used (covariance grows
    by it, not by the first) and a bad one is still rejected after good ones."""
    from handypriors_core.errors import InvalidValueError
    from handypriors_core.estimation.ekf import ErrorStateEKF
    from handypriors_core.estimation.pose_state import PoseState

    _F64 = torch.float64
    P = torch.eye(6, dtype=_F64) * 1e-4
    ekf = ErrorStateEKF(PoseState.from_pose(torch.eye(4, dtype=_F64)), P)
    for scale in (1e-5, 3e-5):
        before = ekf.covariance.clone()
        assert ekf.predict_motion(torch.eye(4, dtype=_F64), torch.eye(6, dtype=_F64) * scale).accepted
        torch.testing.assert_close(ekf.covariance, before + torch.eye(6, dtype=_F64) * scale, atol=1e-18, rtol=0)
    asymmetric = torch.eye(6, dtype=_F64) * 1e-5
    asymmetric[0, 1] = 1e-3
    with pytest.raises(InvalidValueError, match="symmetric"):
        ekf.predict_motion(torch.eye(4, dtype=_F64), asymmetric)
