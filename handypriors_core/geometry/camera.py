"""Pinhole camera with optional OpenCV lens distortion, crops and resizes.

Conventions: ROS optical frame (x right, y down, z forward) in metres; pixel coordinates follow OpenCV,
the centre of pixel ``(u, v)`` is at ``(u, v)`` and ``u = fx * x / z + cx``. Distortion coefficients
``D`` follow sensor_msgs/CameraInfo: ``plumb_bob`` = ``(k1, k2, p1, p2, k3)``, ``rational_polynomial`` =
``(k1, k2, p1, p2, k3, k4, k5, k6)``. ``project`` / ``unproject`` are the ideal pinhole; combine with
``distort_points`` / ``undistort_points`` to go to and from raw image pixels.

A crop box ``(x0, y0, x1, y1)`` [px] selects pixel columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``
(edges at ``x0 - 0.5`` and ``x1 - 0.5``), like ``image[y0:y1, x0:x1]``; after resizing to ``out_width``,
``u' = (u - x0 + 0.5) * out_width / (x1 - x0) - 0.5``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError, ShapeError

__all__ = ["DISTORTION_COEFFICIENTS", "MIN_DEPTH", "PinholeCamera", "crop_and_resize_image", "square_crop_box"]

#: Depths [m] are clamped to at least this in ``project`` so points at or behind the camera stay finite.
MIN_DEPTH = 1e-4

#: Number of coefficients of each supported CameraInfo distortion model.
DISTORTION_COEFFICIENTS = {"plumb_bob": 5, "rational_polynomial": 8}

BoxLike = Sequence[float] | torch.Tensor


def _check_size(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidValueError(f"{name} must be a positive int; got {value!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class PinholeCamera:
    """Intrinsics of one camera.

    Attributes:
        K: ``(3, 3)`` float intrinsic matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` [px] (no skew).
        width, height: image size [px].
        D: distortion coefficients ``(5,)`` / ``(8,)`` (see ``distortion_model``), or ``None`` = none.
        distortion_model: ``"plumb_bob"`` or ``"rational_polynomial"``.
    """

    K: torch.Tensor
    width: int
    height: int
    D: torch.Tensor | None = None
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        check_shape(self.K, (3, 3), "K")
        k = self.K.detach().tolist()  # validated in Python floats: one call instead of a dozen small tensor ops
        bad = sum(not math.isfinite(v) for row in k for v in row)
        if bad:
            raise InvalidValueError(f"K contains {bad} non-finite value(s) (NaN or inf)")
        _check_size(self.width, "width")
        _check_size(self.height, "height")
        if not (k[0][0] > 0 and k[1][1] > 0):
            raise InvalidValueError(f"K must have fx > 0 and fy > 0; got fx={k[0][0]}, fy={k[1][1]}")
        if (k[0][1], k[1][0], k[2][0], k[2][1], k[2][2]) != (0, 0, 0, 0, 1):
            raise InvalidValueError(f"K must have zero skew and last row (0, 0, 1); got {k}")
        if self.distortion_model not in DISTORTION_COEFFICIENTS:
            raise InvalidValueError(
                f"distortion_model {self.distortion_model!r} is not supported (use one of "
                f"{sorted(DISTORTION_COEFFICIENTS)})"
            )
        if self.D is not None:
            check_shape(self.D, (DISTORTION_COEFFICIENTS[self.distortion_model],), "D")
            check_finite(self.D, "D")
            object.__setattr__(self, "D", self.D.to(self.K))

    @classmethod
    def from_camera_info(
        cls,
        k: Sequence[float],
        d: Sequence[float],
        width: int,
        height: int,
        distortion_model: str = "plumb_bob",
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> PinholeCamera:
        """Build from sensor_msgs/CameraInfo fields: ``k`` 9 floats row-major, ``d`` coefficients.

        An empty or all-zero ``d`` means no distortion (``D = None``); an empty ``distortion_model``
        is read as ``plumb_bob``.
        """
        k = [float(v) for v in k]
        d = [float(v) for v in d]
        if len(k) != 9:
            raise InvalidValueError(f"k must hold 9 values (row-major 3x3); got {len(k)}")
        for index, label in ((0, "fx"), (4, "fy")):
            if not (math.isfinite(k[index]) and k[index] > 0):
                raise InvalidValueError(f"k[{index}] ({label}) must be finite and > 0; got {k[index]}")
        if not all(math.isfinite(v) for v in k):
            raise InvalidValueError(f"k contains non-finite values: {k}")
        if not all(math.isfinite(v) for v in d):
            raise InvalidValueError(f"d contains non-finite values: {d}")
        _check_size(width, "width")
        _check_size(height, "height")
        model = distortion_model or "plumb_bob"
        if model not in DISTORTION_COEFFICIENTS:
            raise InvalidValueError(
                f"distortion_model {distortion_model!r} is not supported (use one of {sorted(DISTORTION_COEFFICIENTS)})"
            )
        D = None
        if any(v != 0.0 for v in d):
            if len(d) != DISTORTION_COEFFICIENTS[model]:
                raise InvalidValueError(
                    f"d must hold {DISTORTION_COEFFICIENTS[model]} coefficients for {model}; got {len(d)}"
                )
            D = torch.tensor(d, dtype=dtype, device=device)
        K = torch.tensor(k, dtype=dtype, device=device).reshape(3, 3)
        return cls(K=K, width=width, height=height, D=D, distortion_model=model)

    # -- intrinsics -----------------------------------------------------------------------------------
    @property
    def fx(self) -> torch.Tensor:
        """Focal length along x [px], 0-dim tensor."""
        return self.K[0, 0]

    @property
    def fy(self) -> torch.Tensor:
        """Focal length along y [px], 0-dim tensor."""
        return self.K[1, 1]

    @property
    def cx(self) -> torch.Tensor:
        """Principal point x [px], 0-dim tensor."""
        return self.K[0, 2]

    @property
    def cy(self) -> torch.Tensor:
        """Principal point y [px], 0-dim tensor."""
        return self.K[1, 2]

    def _intrinsics_like(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Focal lengths ``(2,)`` and principal point ``(2,)`` on ``x``'s device and dtype."""
        K = self.K.to(device=x.device, dtype=x.dtype)
        return torch.stack((K[0, 0], K[1, 1])), K[:2, 2]

    # -- pinhole projection -----------------------------------------------------------------------------
    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Ideal pinhole projection of ``points (..., N, 3)`` [m, camera frame] -> pixels ``(..., N, 2)``.

        Depth is clamped to :data:`MIN_DEPTH` so points at or behind the camera give large but finite
        pixels (with zero gradient through z); mask them with :meth:`in_front`. No distortion.
        """
        check_shape(points, (..., None, 3), "points")
        focal, centre = self._intrinsics_like(points)
        z = points[..., 2:].clamp_min(MIN_DEPTH)
        return points[..., :2] / z * focal + centre

    def in_front(self, points: torch.Tensor) -> torch.Tensor:
        """``(..., N)`` bool: which ``points (..., N, 3)`` lie farther than :data:`MIN_DEPTH` in front."""
        check_shape(points, (..., None, 3), "points")
        return points[..., 2] > MIN_DEPTH

    def unproject(self, pixels: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Back-project ``pixels (..., N, 2)`` at ``depth (..., N)`` [m, along z] -> points ``(..., N, 3)``."""
        check_shape(pixels, (..., None, 2), "pixels")
        check_shape(depth, (..., None), "depth")
        if depth.shape != pixels.shape[:-1]:
            raise ShapeError(f"Expected depth to have shape {tuple(pixels.shape[:-1])}; got {tuple(depth.shape)}")
        focal, centre = self._intrinsics_like(pixels)
        xy = (pixels - centre) / focal * depth[..., None]
        return torch.cat((xy, depth[..., None]), -1)

    # -- lens distortion ---------------------------------------------------------------------------------
    @staticmethod
    def _radial_and_tangential(xy: torch.Tensor, D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Radial factor ``(...)`` and tangential shift ``(..., 2)`` at normalised coordinates ``xy (..., 2)``.

        ``distorted = xy * radial + tangential``.
        """
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        k1, k2, p1, p2, k3 = D[0], D[1], D[2], D[3], D[4]
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        if D.shape[0] == 8:
            radial = radial / (1 + r2 * (D[5] + r2 * (D[6] + r2 * D[7])))
        tangential = torch.stack((2 * p1 * x * y + p2 * (r2 + 2 * x * x), p1 * (r2 + 2 * y * y) + 2 * p2 * x * y), -1)
        return radial, tangential

    def distort_points(self, pixels: torch.Tensor) -> torch.Tensor:
        """Ideal pinhole pixels ``(..., N, 2)`` -> raw (distorted) image pixels ``(..., N, 2)``."""
        check_shape(pixels, (..., None, 2), "pixels")
        if self.D is None:
            return pixels
        focal, centre = self._intrinsics_like(pixels)
        D = self.D.to(device=pixels.device, dtype=pixels.dtype)
        xy = (pixels - centre) / focal
        radial, tangential = self._radial_and_tangential(xy, D)
        return (xy * radial[..., None] + tangential) * focal + centre

    def undistort_points(self, pixels: torch.Tensor, iterations: int = 20) -> torch.Tensor:
        """Raw image pixels ``(..., N, 2)`` -> ideal pinhole pixels ``(..., N, 2)`` (inverse of distort).

        OpenCV's fixed-point iteration ``x <- (x_d - tangential(x)) / radial(x)`` in normalised coordinates
        with a fixed ``iterations`` count; differentiable through the iterations. Converges for the moderate
        distortion of ordinary (non-fisheye) lenses inside the image.
        """
        check_shape(pixels, (..., None, 2), "pixels")
        if self.D is None:
            return pixels
        focal, centre = self._intrinsics_like(pixels)
        D = self.D.to(device=pixels.device, dtype=pixels.dtype)
        distorted = (pixels - centre) / focal
        xy = distorted
        for _ in range(iterations):
            radial, tangential = self._radial_and_tangential(xy, D)
            xy = (distorted - tangential) / radial[..., None]
        return xy * focal + centre

    # -- derived cameras ------------------------------------------------------------------------------------
    def crop_and_resize(self, box: BoxLike, out_width: int, out_height: int) -> PinholeCamera:
        """Camera of the image crop ``box = (x0, y0, x1, y1)`` [px] resized to ``out_width x out_height``.

        Its projection equals this camera's mapped by ``u' = (u - x0 + 0.5) * sx - 0.5`` with
        ``sx = out_width / (x1 - x0)`` (same for v). Distortion coefficients are unchanged. A tensor box
        keeps gradients.
        """
        _check_size(out_width, "out_width")
        _check_size(out_height, "out_height")
        if not isinstance(box, torch.Tensor):  # plain numbers: the affine's entries in numpy scalars (same values)
            return dataclasses.replace(self, K=_crop_affine(box, out_width, out_height, self.K) @ self.K,
                                       width=out_width, height=out_height)
        x0, y0, x1, y1 = _box_tensor(box, self.K).unbind(0)
        sx, sy = out_width / (x1 - x0), out_height / (y1 - y0)
        one, zero = torch.ones_like(sx), torch.zeros_like(sx)
        affine = torch.stack(
            (
                torch.stack((sx, zero, (0.5 - x0) * sx - 0.5)),
                torch.stack((zero, sy, (0.5 - y0) * sy - 0.5)),
                torch.stack((zero, zero, one)),
            )
        )
        return dataclasses.replace(self, K=affine @ self.K, width=out_width, height=out_height)

    def scaled(self, factor: float) -> PinholeCamera:
        """Camera of the whole image resized by ``factor`` (size rounded; exact scale = new size / old size)."""
        if not (math.isfinite(factor) and factor > 0):
            raise InvalidValueError(f"factor must be finite and > 0; got {factor}")
        out_width, out_height = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        return self.crop_and_resize((0.0, 0.0, float(self.width), float(self.height)), out_width, out_height)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PinholeCamera:
        """Copy with ``K`` and ``D`` on ``device`` / in ``dtype`` (``None`` keeps the current one)."""
        K = self.K.to(device=device, dtype=dtype)
        D = None if self.D is None else self.D.to(device=device, dtype=dtype)
        if K is self.K and D is self.D:  # already there (a frozen camera: the same one)
            return self
        return dataclasses.replace(self, K=K, D=D)


def _crop_affine(box: Sequence[float], out_width: int, out_height: int, like: torch.Tensor) -> torch.Tensor:
    """The ``(3, 3)`` pixel map of :meth:`PinholeCamera.crop_and_resize` for a box of plain numbers, in ``like``'s
    dtype and device: the torch path's scalar operations (the box rounded to float32 as ``torch.tensor`` does, then
    cast; ``n / d`` as ``reciprocal(d) * n``) on numpy scalars, so the same values without a dozen tiny tensors."""
    if len(box) != 4:
        raise ShapeError(f"Expected box to have 4 values (x0, y0, x1, y1); got {len(box)}")
    dtype = np.float64 if like.dtype == torch.float64 else np.float32
    x0, y0, x1, y1 = np.array([float(v) for v in box], dtype=np.float32).astype(dtype)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InvalidValueError("box contains NaN/inf")
    if not (x1 > x0 and y1 > y0):
        raise InvalidValueError(f"box must satisfy x1 > x0 and y1 > y0; got {[float(v) for v in (x0, y0, x1, y1)]}")
    half = dtype(0.5)
    sx = np.reciprocal(x1 - x0) * dtype(out_width)
    sy = np.reciprocal(y1 - y0) * dtype(out_height)
    rows = [[sx, 0.0, (half - x0) * sx - half], [0.0, sy, (half - y0) * sy - half], [0.0, 0.0, 1.0]]
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _box_tensor(box: BoxLike, like: torch.Tensor) -> torch.Tensor:
    """Validate a crop box and return it as a ``(4,)`` tensor in ``like``'s dtype and device."""
    if not isinstance(box, torch.Tensor):
        if len(box) != 4:
            raise ShapeError(f"Expected box to have 4 values (x0, y0, x1, y1); got {len(box)}")
        box = torch.tensor([float(v) for v in box])
    check_shape(box, (4,), "box")
    check_finite(box, "box")
    box = box.to(device=like.device, dtype=like.dtype)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise InvalidValueError(f"box must satisfy x1 > x0 and y1 > y0; got {box.tolist()}")
    return box


def crop_and_resize_image(image: torch.Tensor, box: BoxLike, out_width: int, out_height: int) -> torch.Tensor:
    """Crop ``box = (x0, y0, x1, y1)`` [px] from ``image (B, C, H, W)`` and resize -> ``(B, C, out_height, out_width)``.

    Bilinear ``grid_sample`` (``align_corners=False``, zeros outside the image), pixel-for-pixel consistent
    with :meth:`PinholeCamera.crop_and_resize`. No anti-aliasing: blur first when shrinking a lot.
    """
    check_shape(image, (None, None, None, None), "image")
    _check_size(out_width, "out_width")
    _check_size(out_height, "out_height")
    if not image.is_floating_point():
        raise InvalidValueError(f"image must be a floating-point tensor; got {image.dtype}")
    batch, _, height, width = image.shape
    x0, y0, x1, y1 = _box_tensor(box, image).unbind(0)
    # Output pixel centre u' comes from source pixel u = (u' + 0.5) / sx + x0 - 0.5;
    # grid_sample (align_corners=False) wants (2 u + 1) / W - 1.
    u_out = torch.arange(out_width, dtype=image.dtype, device=image.device)
    v_out = torch.arange(out_height, dtype=image.dtype, device=image.device)
    u_src = (u_out + 0.5) * ((x1 - x0) / out_width) + x0 - 0.5
    v_src = (v_out + 0.5) * ((y1 - y0) / out_height) + y0 - 0.5
    grid_x = (2 * u_src + 1) / width - 1
    grid_y = (2 * v_src + 1) / height - 1
    grid = torch.stack(torch.broadcast_tensors(grid_x[None, :], grid_y[:, None]), -1)
    return torch.nn.functional.grid_sample(
        image, grid.expand(batch, out_height, out_width, 2), mode="bilinear", padding_mode="zeros", align_corners=False
    )


def square_crop_box(camera: PinholeCamera, points: torch.Tensor, margin: float,
                    min_box: float) -> tuple[float, float, float, float]:
    """Square crop box ``(x0, y0, x1, y1)`` [px] around the projection of ``points (N, 3)`` [m, camera frame].

    The box is the projected bounding box of the points, grown by ``margin`` (a fraction of its size) on each
    side and to at least ``min_box`` px; it may extend past the image border. Its centre is kept within one
    image size of the image and its half-size below two image sizes (points far outside give an edge crop).
    """
    if points.device.type != "cpu":
        uv = camera.project(points[None])[0]
        lo, hi = uv.min(0).values, uv.max(0).values
        centre = 0.5 * (lo + hi)
        extent = float((hi - lo).max())
        cx = float(centre[0].clamp(-camera.width, 2 * camera.width))
        cy = float(centre[1].clamp(-camera.height, 2 * camera.height))
    else:  # a few corners on the CPU: :meth:`PinholeCamera.project`'s operations on numpy columns (same values)
        check_shape(points, (None, 3), "points")
        p = points.detach().numpy()
        K = camera.K.detach().to("cpu", points.dtype).numpy()
        z = np.maximum(p[:, 2], p.dtype.type(MIN_DEPTH))
        u, v = p[:, 0] / z * K[0, 0] + K[0, 2], p[:, 1] / z * K[1, 1] + K[1, 2]
        lo, hi = np.array([u.min(), v.min()]), np.array([u.max(), v.max()])
        centre = p.dtype.type(0.5) * (lo + hi)
        extent = float((hi - lo).max())
        cx = float(np.clip(centre[0], -camera.width, 2 * camera.width))
        cy = float(np.clip(centre[1], -camera.height, 2 * camera.height))
    half = 0.5 * extent * (1 + 2 * margin)
    half = max(half, 0.5 * min_box)
    half = min(half, 2.0 * max(camera.width, camera.height))
    return (cx - half, cy - half, cx + half, cy + half)
