"""PinholeCamera against OpenCV (projectPoints, undistortPoints), crop/resize consistency, gradients."""

import cv2
import numpy as np
import pytest
import torch

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry.camera import MIN_DEPTH, PinholeCamera, crop_and_resize_image

F64 = torch.float64
K_ROW_MAJOR = [615.0, 0.0, 322.5, 0.0, 612.0, 241.25, 0.0, 0.0, 1.0]
PLUMB_BOB = [-0.28, 0.09, 1.2e-3, -8e-4, -0.015]
RATIONAL = [0.4, -0.2, 1e-3, -5e-4, 0.05, 0.7, -0.15, 0.08]


def _camera(d=(), model="plumb_bob", dtype=F64) -> PinholeCamera:
    return PinholeCamera.from_camera_info(K_ROW_MAJOR, list(d), 640, 480, model, dtype=dtype)


def _points_in_view(n: int, seed: int = 0) -> torch.Tensor:
    """(1, n, 3) points [m] whose projections fall inside the 640x480 image."""
    gen = torch.Generator().manual_seed(seed)
    z = 0.3 + torch.rand(n, generator=gen, dtype=F64)
    u = torch.rand(n, generator=gen, dtype=F64) * 600 + 20
    v = torch.rand(n, generator=gen, dtype=F64) * 440 + 20
    x, y = (u - 322.5) / 615.0 * z, (v - 241.25) / 612.0 * z
    return torch.stack((x, y, z), -1)[None]


def _cv2_project(points: torch.Tensor, d) -> np.ndarray:
    K = np.array(K_ROW_MAJOR).reshape(3, 3)
    out, _ = cv2.projectPoints(points.reshape(-1, 3).numpy(), np.zeros(3), np.zeros(3), K, np.array(d, dtype=float))
    return out.reshape(points.shape[:-1] + (2,))


def test_from_camera_info_fields():
    cam = _camera(PLUMB_BOB, dtype=torch.float32)
    assert (cam.width, cam.height) == (640, 480)
    assert cam.K.dtype == torch.float32 and cam.D.shape == (5,)
    assert (float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy)) == (615.0, 612.0, 322.5, 241.25)
    assert _camera([0.0] * 5).D is None  # all-zero distortion = none
    assert _camera([], model="").distortion_model == "plumb_bob"
    assert _camera(RATIONAL, model="rational_polynomial").D.shape == (8,)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"k": [0.0] + K_ROW_MAJOR[1:]}, "fx"),
        ({"k": K_ROW_MAJOR[:4] + [-1.0] + K_ROW_MAJOR[5:]}, "fy"),
        ({"k": K_ROW_MAJOR[:2] + [float("nan")] + K_ROW_MAJOR[3:]}, "k"),
        ({"k": K_ROW_MAJOR[:8]}, "k"),
        ({"width": 0}, "width"),
        ({"height": -5}, "height"),
        ({"d": [0.1, 0.0, 0.0, 0.0, float("inf")]}, "d"),
        ({"d": [0.1, 0.0, 0.0, 0.0]}, "d"),
        ({"distortion_model": "equidistant", "d": [0.1, 0.0, 0.0, 0.0]}, "distortion_model"),
    ],
)
def test_from_camera_info_rejects_bad_values(kwargs, name):
    args = {"k": K_ROW_MAJOR, "d": [], "width": 640, "height": 480}
    args.update(kwargs)
    with pytest.raises(InvalidValueError, match=name):
        PinholeCamera.from_camera_info(**args)


def test_direct_construction_validates():
    with pytest.raises(ShapeError, match="K"):
        PinholeCamera(K=torch.eye(4), width=10, height=10)
    with pytest.raises(ShapeError, match="D"):
        PinholeCamera(K=torch.eye(3), width=10, height=10, D=torch.zeros(8))
    skewed = torch.eye(3)
    skewed[0, 1] = 0.5
    with pytest.raises(InvalidValueError, match="skew"):
        PinholeCamera(K=skewed, width=10, height=10)


def test_project_matches_opencv_and_unproject_inverts():
    cam = _camera()
    points = _points_in_view(50)
    pixels = cam.project(points)
    np.testing.assert_allclose(pixels.numpy(), _cv2_project(points, [0.0] * 5), atol=1e-9)
    torch.testing.assert_close(cam.unproject(pixels, points[..., 2]), points)
    # principal point convention: the optical axis hits (cx, cy)
    axis = cam.project(torch.tensor([[[0.0, 0.0, 2.0]]], dtype=F64))
    torch.testing.assert_close(axis, torch.tensor([[[322.5, 241.25]]], dtype=F64))


def test_points_behind_camera_stay_finite():
    cam = _camera(dtype=torch.float32)
    points = torch.tensor([[[0.1, 0.2, 0.0], [0.1, -0.2, -1.0], [0.0, 0.0, 1.0]]])
    pixels = cam.project(points)
    assert torch.isfinite(pixels).all()
    assert cam.in_front(points).tolist() == [[False, False, True]]
    assert MIN_DEPTH > 0


def test_project_follows_input_dtype_and_leading_dims():
    cam = _camera(dtype=torch.float32)
    points = _points_in_view(6).reshape(2, 3, 3)[:, None]  # (2, 1, 3, 3)
    pixels = cam.project(points)
    assert pixels.dtype == F64 and pixels.shape == (2, 1, 3, 2)
    assert cam.to(dtype=F64).K.dtype == F64
    assert cam.to(dtype=F64).D is None
    assert cam.to("cpu", torch.float32) is cam  # nothing to move: the same (frozen) camera, not a copy
    assert cam.to(dtype=F64).to(dtype=F64).K.dtype == F64


@pytest.mark.parametrize(("d", "model"), [(PLUMB_BOB, "plumb_bob"), (RATIONAL, "rational_polynomial")])
def test_distortion_matches_opencv(d, model):
    cam = _camera(d, model)
    points = _points_in_view(200, seed=1)
    distorted = cam.distort_points(cam.project(points))
    np.testing.assert_allclose(distorted.numpy(), _cv2_project(points, d), atol=1e-6)
    # undistortion recovers the ideal pixels and agrees with OpenCV's iterative solver
    ideal = cam.undistort_points(distorted)
    np.testing.assert_allclose(ideal.numpy(), cam.project(points).numpy(), atol=1e-6)
    K = np.array(K_ROW_MAJOR).reshape(3, 3)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    src = distorted.numpy().reshape(-1, 1, 2)
    cv_ideal = cv2.undistortPoints(src, K, np.array(d), R=np.eye(3), P=K, criteria=criteria)
    np.testing.assert_allclose(ideal.numpy().reshape(-1, 2), cv_ideal.reshape(-1, 2), atol=1e-3)


def test_no_distortion_is_identity():
    cam = _camera()
    pixels = torch.rand(1, 5, 2, dtype=F64) * 400
    assert torch.equal(cam.distort_points(pixels), pixels)
    assert torch.equal(cam.undistort_points(pixels), pixels)


@pytest.mark.parametrize(
    ("box", "out_size"),
    [((100, 50, 420, 290), (160, 120)), ((10.5, 20.25, 74.5, 68.25), (256, 192)), ((0, 0, 640, 480), (640, 480))],
)
def test_crop_and_resize_is_affine_map_of_pixels(box, out_size):
    cam = _camera(PLUMB_BOB)
    crop = cam.crop_and_resize(box, *out_size)
    assert (crop.width, crop.height) == out_size
    x0, y0, x1, y1 = box
    scale = torch.tensor([out_size[0] / (x1 - x0), out_size[1] / (y1 - y0)], dtype=F64)
    origin = torch.tensor([x0, y0], dtype=F64)
    points = _points_in_view(30, seed=2)
    for fn in ("project",):
        expected = (getattr(cam, fn)(points) - origin + 0.5) * scale - 0.5
        torch.testing.assert_close(getattr(crop, fn)(points), expected)
    expected_raw = (cam.distort_points(cam.project(points)) - origin + 0.5) * scale - 0.5
    torch.testing.assert_close(crop.distort_points(crop.project(points)), expected_raw)


def test_scaled_halves_resolution():
    cam = _camera()
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (320, 240)
    points = _points_in_view(10, seed=3)
    torch.testing.assert_close(half.project(points), (cam.project(points) + 0.5) * 0.5 - 0.5)
    with pytest.raises(InvalidValueError, match="factor"):
        cam.scaled(0.0)


def _coordinate_image(height: int, width: int) -> torch.Tensor:
    """(1, 2, H, W) image whose channels hold each pixel's own (u, v) coordinates."""
    v, u = torch.meshgrid(torch.arange(height, dtype=F64), torch.arange(width, dtype=F64), indexing="ij")
    return torch.stack((u, v))[None]


@pytest.mark.parametrize(
    ("box", "out_size"), [((100, 50, 420, 290), (80, 60)), ((200.3, 100.7, 240.3, 130.7), (96, 72))]
)
def test_crop_image_is_consistent_with_crop_camera(box, out_size):
    cam = _camera()
    crop_cam = cam.crop_and_resize(box, *out_size)
    cropped = crop_and_resize_image(_coordinate_image(480, 640), box, *out_size)
    assert cropped.shape == (1, 2, out_size[1], out_size[0])
    # Each output pixel holds the source pixel it samples; that source ray must project onto the output pixel.
    source = cropped[0].permute(1, 2, 0).reshape(1, -1, 2)
    rays = cam.unproject(source, torch.ones(source.shape[:-1], dtype=F64))
    v_out, u_out = torch.meshgrid(
        torch.arange(out_size[1], dtype=F64), torch.arange(out_size[0], dtype=F64), indexing="ij"
    )
    torch.testing.assert_close(crop_cam.project(rays), torch.stack((u_out, v_out), -1).reshape(1, -1, 2))


def test_pixel_feature_lands_where_crop_camera_projects_it():
    cam = _camera()
    point = torch.tensor([[[0.03, -0.02, 0.5]]], dtype=F64)
    centre = cam.project(point)[0, 0]
    v, u = torch.meshgrid(torch.arange(480, dtype=F64), torch.arange(640, dtype=F64), indexing="ij")
    blob = torch.exp(-((u - centre[0]) ** 2 + (v - centre[1]) ** 2) / (2 * 6.0**2))[None, None]
    box, out_w, out_h = (300.0, 180.0, 460.0, 300.0), 200, 150
    cropped = crop_and_resize_image(blob, box, out_w, out_h)[0, 0]
    v_out, u_out = torch.meshgrid(torch.arange(out_h, dtype=F64), torch.arange(out_w, dtype=F64), indexing="ij")
    centroid = torch.stack(((cropped * u_out).sum(), (cropped * v_out).sum())) / cropped.sum()
    expected = cam.crop_and_resize(box, out_w, out_h).project(point)[0, 0]
    torch.testing.assert_close(centroid, expected, atol=0.05, rtol=0)


def test_gradcheck_camera_functions():
    cam = _camera(PLUMB_BOB)
    points = _points_in_view(4, seed=4).requires_grad_()
    assert torch.autograd.gradcheck(cam.project, (points,))
    pixels = cam.project(points.detach()).requires_grad_()
    depth = points[..., 2].detach().requires_grad_()
    assert torch.autograd.gradcheck(cam.unproject, (pixels, depth))
    assert torch.autograd.gradcheck(cam.distort_points, (pixels,))
    assert torch.autograd.gradcheck(cam.undistort_points, (pixels,))
    box = torch.tensor([100.0, 50.0, 420.0, 290.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b: cam.crop_and_resize(b, 64, 48).project(points.detach()), (box,))
    image = torch.rand(1, 1, 12, 16, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda im: crop_and_resize_image(im, (2.2, 1.6, 13.1, 9.7), 5, 4), (image,))


def test_bad_arguments_name_themselves():
    cam = _camera()
    with pytest.raises(ShapeError, match="points"):
        cam.project(torch.zeros(3))
    with pytest.raises(ShapeError, match="depth"):
        cam.unproject(torch.zeros(1, 4, 2), torch.zeros(1, 5))
    with pytest.raises(ShapeError, match="pixels"):
        cam.undistort_points(torch.zeros(1, 4, 3))
    with pytest.raises(InvalidValueError, match="box"):
        cam.crop_and_resize((10, 10, 5, 20), 8, 8)
    with pytest.raises(ShapeError, match="box"):
        cam.crop_and_resize((10, 10, 5), 8, 8)
    with pytest.raises(InvalidValueError, match="out_width"):
        cam.crop_and_resize((0, 0, 5, 5), 0, 8)
    with pytest.raises(ShapeError, match="image"):
        crop_and_resize_image(torch.zeros(3, 8, 8), (0, 0, 4, 4), 2, 2)
