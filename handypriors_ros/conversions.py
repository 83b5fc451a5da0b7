"""The one place where ROS messages and core types are converted into each other.

Core types: images are numpy arrays (colour ``(H, W, 3) uint8`` RGB, depth ``(H, W) float32`` [m]);
poses are ``(4, 4)`` float64 torch tensors acting on column vectors; cameras are
:class:`handypriors_core.geometry.camera.PinholeCamera`; stamps are integer nanoseconds.

Images
    :func:`image_to_array` decodes ``sensor_msgs/Image`` into its native array (dtype and channels of the
    encoding), honouring a padded ``step`` and ``is_bigendian``. :func:`image_to_rgb` and
    :func:`image_to_depth` normalise it: colour to RGB uint8, depth to metres float32.

    Depth conventions: ``16UC1`` / ``mono16`` hold millimetres (RealSense ``aligned_depth_to_color``) with 0 =
    no return; ``32FC1`` holds metres (REP 118) with NaN / +-inf = no return. Every invalid pixel (and every
    value <= 0) comes out as ``invalid_value``: **NaN by default**, as :class:`handypriors_core.io.frame.Frame`
    expects (an invalid pixel can never pass as a distance; ``np.isfinite(depth)`` is the validity mask);
    pass ``invalid_value=0.0`` for a zero-filled image.

    With a ROS 2 ``cv_bridge`` importable (a real ROS system; the look-alike PyPI ``cv-bridge`` is detected
    and ignored because it corrupts 16UC1) it decodes the raw array; otherwise the numpy converter here does.
    Unsupported encodings and inconsistent sizes raise :class:`InvalidValueError` naming the field.

Transforms
    A ``geometry_msgs/TransformStamped`` with ``header.frame_id = parent`` and ``child_frame_id = child`` holds
    the pose of the child in the parent, i.e. ``child2parent`` (``p_parent = T @ p_child``). A ``Pose`` in a
    ``PoseStamped`` with ``frame_id = camera`` is ``<thing>2camera``. Quaternions go through
    :mod:`handypriors_core.geometry.transforms` (x, y, z, w order). Pose covariances are 6x6 row-major over
    ``(x, y, z, rotation about X, rotation about Y, rotation about Z)`` as in geometry_msgs.

Time
    ``builtin_interfaces/Time`` <-> integer nanoseconds (exact) and float seconds.
"""

from __future__ import annotations

import array
import dataclasses
import functools
import inspect
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry.camera import DISTORTION_COEFFICIENTS, PinholeCamera
from handypriors_core.geometry.transforms import pose_from_transform, transform_from_pose

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "NANOSECONDS_PER_SECOND",
    "SUPPORTED_ENCODINGS",
    "array_to_image",
    "camera_info_to_camera",
    "camera_to_camera_info",
    "covariance_from_msg",
    "decode_image_buffer",
    "depth_to_image",
    "depth_to_metres",
    "image_to_array",
    "image_to_depth",
    "image_to_rgb",
    "make_header",
    "matrix_to_pose",
    "matrix_to_pose_stamped",
    "matrix_to_pose_with_covariance_stamped",
    "matrix_to_transform",
    "matrix_to_transform_stamped",
    "pose_to_matrix",
    "rgb_to_color",
    "rgb_to_image",
    "stamp_ns",
    "time_from_ns",
    "time_from_seconds",
    "time_to_ns",
    "time_to_seconds",
    "transform_to_matrix",
    "transforms_to_matrices",
]

NANOSECONDS_PER_SECOND = 1_000_000_000


# ---------------------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------------------
def time_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (or anything with ``sec`` and ``nanosec``) -> integer nanoseconds (exact)."""
    return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)


def time_from_ns(ns: int) -> Any:
    """Integer nanoseconds -> ``builtin_interfaces/Time`` (exact; ``nanosec`` in ``[0, 1e9)``)."""
    from builtin_interfaces.msg import Time

    if isinstance(ns, bool) or not isinstance(ns, (int, np.integer)):
        raise InvalidValueError(f"stamp_ns must be an int [ns]; got {ns!r}")
    sec, nanosec = divmod(int(ns), NANOSECONDS_PER_SECOND)
    if not -(2**31) <= sec < 2**31:
        raise InvalidValueError(f"stamp_ns {ns} does not fit builtin_interfaces/Time (int32 seconds)")
    return Time(sec=sec, nanosec=nanosec)


def time_to_seconds(stamp: Any) -> float:
    """``builtin_interfaces/Time`` -> float seconds (double precision: ~0.2 us resolution at 2023 epochs)."""
    return time_to_ns(stamp) / NANOSECONDS_PER_SECOND


def time_from_seconds(seconds: float) -> Any:
    """Float seconds -> ``builtin_interfaces/Time``, rounded to the nearest nanosecond."""
    if not math.isfinite(seconds):
        raise InvalidValueError(f"seconds must be finite; got {seconds}")
    return time_from_ns(round(seconds * NANOSECONDS_PER_SECOND))


def stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` in integer nanoseconds."""
    return time_to_ns(msg.header.stamp)


def make_header(stamp: int | Any = 0, frame_id: str = "") -> Any:
    """``std_msgs/Header`` from a stamp (int ns or ``Time``) and a frame id."""
    from std_msgs.msg import Header

    time = stamp if hasattr(stamp, "nanosec") else time_from_ns(stamp)
    return Header(stamp=time, frame_id=str(frame_id))


# ---------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Encoding:
    dtype: str  # numpy kind+size without byte order: "u1", "u2", "f4"
    channels: int


_ENCODINGS = {
    "rgb8": _Encoding("u1", 3),
    "bgr8": _Encoding("u1", 3),
    "rgba8": _Encoding("u1", 4),
    "bgra8": _Encoding("u1", 4),
    "mono8": _Encoding("u1", 1),
    "mono16": _Encoding("u2", 1),
    "16UC1": _Encoding("u2", 1),
    "32FC1": _Encoding("f4", 1),
}

#: Encodings :func:`decode_image_buffer` / :func:`array_to_image` handle.
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
#: Encodings :func:`image_to_rgb` accepts (mono ones are replicated to 3 channels, mono16 keeps its high byte).
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
#: Encodings :func:`image_to_depth` accepts (16-bit ones in millimetres, 32FC1 in metres).
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")

#: Millimetres -> metres for 16-bit depth.
_MM_TO_M = 0.001
_MAX_DEPTH_MM = np.iinfo(np.uint16).max


def _encoding(encoding: str) -> _Encoding:
    try:
        return _ENCODINGS[encoding]
    except KeyError:
        raise InvalidValueError(
            f"Image.encoding {encoding!r} is not supported (use one of {', '.join(SUPPORTED_ENCODINGS)})"
        ) from None


def decode_image_buffer(
    data: Any, height: int, width: int, step: int, encoding: str, is_bigendian: bool = False
) -> np.ndarray:
    """Raw ``sensor_msgs/Image`` fields -> a new native-byte-order array.

    Returns ``(H, W)`` for one-channel encodings and ``(H, W, C)`` otherwise, in the encoding's dtype
    (uint8, uint16 or float32) and channel order (``bgr8`` stays BGR here). Rows may be padded
    (``step >= width * channels * bytes``); ``data`` must hold exactly ``height * step`` bytes.
    """
    spec = _encoding(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise InvalidValueError(f"Image height and width must be > 0; got height={height}, width={width}")
    itemsize = int(spec.dtype[1:])
    row_bytes = width * spec.channels * itemsize
    if step < row_bytes:
        raise InvalidValueError(
            f"Image.step {step} is smaller than width * channels * bytes = {width} * {spec.channels} * {itemsize} "
            f"= {row_bytes} for encoding {encoding!r}"
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size != height * step:
        raise InvalidValueError(
            f"Image.data holds {buffer.size} bytes but height * step = {height} * {step} = {height * step} "
            f"(encoding {encoding!r})"
        )
    rows = np.ascontiguousarray(buffer.reshape(height, step)[:, :row_bytes])
    wire = np.dtype(spec.dtype).newbyteorder(">" if is_bigendian else "<")
    values = rows.view(wire).astype(np.dtype(spec.dtype), copy=True)  # -> native byte order, owned copy
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    return values.reshape(shape)


@functools.lru_cache(maxsize=1)
def _ros2_cv_bridge() -> Any:
    """A ``cv_bridge.CvBridge`` of a real ROS 2 install, or ``None``.

    The PyPI ``cv-bridge`` package is a ROS 1 port that silently corrupts 16UC1 images; it lacks the ROS 2
    ``header`` argument of ``cv2_to_imgmsg``, which is how it is told apart.
    """
    try:
        from cv_bridge import CvBridge  # type: ignore
    except Exception:  # noqa: BLE001 - absent or broken
        return None
    try:
        if "header" not in inspect.signature(CvBridge.cv2_to_imgmsg).parameters:
            return None
        return CvBridge()
    except Exception:  # noqa: BLE001
        return None


def image_to_array(msg: Any, backend: str = "auto") -> np.ndarray:
    """``sensor_msgs/Image`` -> native array as in :func:`decode_image_buffer`.

    ``backend``: ``"auto"`` (ROS 2 cv_bridge when importable, else numpy), ``"numpy"`` or ``"cv_bridge"``.
    """
    if backend not in ("auto", "numpy", "cv_bridge"):
        raise InvalidValueError(f"backend must be 'auto', 'numpy' or 'cv_bridge'; got {backend!r}")
    bridge = None if backend == "numpy" else _ros2_cv_bridge()
    if backend == "cv_bridge" and bridge is None:
        raise InvalidValueError("backend 'cv_bridge' requested but no ROS 2 cv_bridge is importable")
    if bridge is not None:
        spec = _encoding(msg.encoding)  # same encoding checks as the numpy path
        result = np.asarray(bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
        expected = (msg.height, msg.width) if spec.channels == 1 else (msg.height, msg.width, spec.channels)
        if result.shape != expected:
            raise InvalidValueError(f"Image of encoding {msg.encoding!r} decoded to shape {result.shape}")
        return np.array(result, dtype=np.dtype(spec.dtype), copy=True)
    return decode_image_buffer(msg.data, msg.height, msg.width, msg.step, msg.encoding, bool(msg.is_bigendian))


def rgb_to_color(values: np.ndarray, encoding: str) -> np.ndarray:
    """Native array of a colour ``encoding`` -> contiguous RGB ``(H, W, 3) uint8``."""
    if encoding not in COLOR_ENCODINGS:
        raise InvalidValueError(
            f"Image.encoding {encoding!r} is not a colour encoding (use one of {', '.join(COLOR_ENCODINGS)})"
        )
    if encoding == "rgb8":
        out = values
    elif encoding == "bgr8":
        out = values[..., ::-1]
    elif encoding == "rgba8":
        out = values[..., :3]
    elif encoding == "bgra8":
        out = values[..., 2::-1]
    elif encoding == "mono8":
        out = np.repeat(values[..., None], 3, axis=-1)
    else:  # mono16: keep the most significant byte
        out = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    return np.ascontiguousarray(out, dtype=np.uint8)


def depth_to_metres(values: np.ndarray, encoding: str, invalid_value: float = float("nan")) -> np.ndarray:
    """Native array of a depth ``encoding`` -> ``(H, W) float32`` [m]; invalid pixels -> ``invalid_value``."""
    if encoding in ("16UC1", "mono16"):
        depth = values.astype(np.float32) * np.float32(_MM_TO_M)
        invalid = values == 0
    elif encoding == "32FC1":
        depth = values.astype(np.float32, copy=True)
        invalid = ~np.isfinite(depth) | (depth <= 0)
    else:
        raise InvalidValueError(
            f"Image.encoding {encoding!r} is not a depth encoding (use one of {', '.join(DEPTH_ENCODINGS)})"
        )
    depth[invalid] = invalid_value
    return depth


def image_to_rgb(msg: Any, backend: str = "auto") -> np.ndarray:
    """Colour ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16) -> RGB ``(H, W, 3) uint8``."""
    if msg.encoding not in COLOR_ENCODINGS:
        _encoding(msg.encoding)
        raise InvalidValueError(
            f"Image.encoding {msg.encoding!r} is not a colour encoding (use one of {', '.join(COLOR_ENCODINGS)})"
        )
    return rgb_to_color(image_to_array(msg, backend), msg.encoding)


def image_to_depth(msg: Any, invalid_value: float = float("nan"), backend: str = "auto") -> np.ndarray:
    """Depth ``sensor_msgs/Image`` (16UC1 / mono16 in mm, 32FC1 in m) -> ``(H, W) float32`` [m].

    Pixels without a return (0 mm; NaN, inf or <= 0 m) become ``invalid_value`` (default NaN).
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        _encoding(msg.encoding)
        raise InvalidValueError(
            f"Image.encoding {msg.encoding!r} is not a depth encoding (use one of {', '.join(DEPTH_ENCODINGS)})"
        )
    return depth_to_metres(image_to_array(msg, backend), msg.encoding, invalid_value)


def array_to_image(values: np.ndarray, encoding: str, stamp: int | Any = 0, frame_id: str = "") -> Any:
    """Native array ``(H, W)`` or ``(H, W, C)`` of ``encoding``'s dtype -> ``sensor_msgs/Image`` (unpadded)."""
    from sensor_msgs.msg import Image

    spec = _encoding(encoding)
    values = np.asarray(values)
    expected_ndim = 2 if spec.channels == 1 else 3
    if values.ndim != expected_ndim or (spec.channels > 1 and values.shape[2] != spec.channels):
        want = "(H, W)" if spec.channels == 1 else f"(H, W, {spec.channels})"
        raise ShapeError(f"Expected image for encoding {encoding!r} to have shape {want}; got {values.shape}")
    if values.dtype != np.dtype(spec.dtype):
        raise InvalidValueError(
            f"image for encoding {encoding!r} must have dtype {np.dtype(spec.dtype)}; got {values.dtype}"
        )
    height, width = values.shape[:2]
    if height == 0 or width == 0:
        raise InvalidValueError(f"image must not be empty; got shape {values.shape}")
    native = np.ascontiguousarray(values)
    msg = Image()
    msg.header = make_header(stamp, frame_id)
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = int(width * spec.channels * native.dtype.itemsize)
    msg.data = array.array("B", native.tobytes())
    return msg


def rgb_to_image(rgb: np.ndarray, stamp: int | Any = 0, frame_id: str = "", encoding: str = "rgb8") -> Any:
    """RGB ``(H, W, 3) uint8`` -> ``sensor_msgs/Image`` in ``rgb8`` or ``bgr8``."""
    rgb = np.asarray(rgb)
    if encoding == "bgr8":
        return array_to_image(np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb, "bgr8", stamp, frame_id)
    if encoding != "rgb8":
        raise InvalidValueError(f"rgb_to_image encoding must be 'rgb8' or 'bgr8'; got {encoding!r}")
    return array_to_image(rgb, "rgb8", stamp, frame_id)


def depth_to_image(depth_m: np.ndarray, stamp: int | Any = 0, frame_id: str = "", encoding: str = "16UC1") -> Any:
    """Depth ``(H, W)`` float [m] -> ``sensor_msgs/Image`` in ``16UC1`` (mm, rounded) or ``32FC1`` (m).

    Invalid depths (NaN, inf, <= 0, and for 16UC1 anything that rounds outside 1 .. 65535 mm) are written
    as 0 (16UC1) or NaN (32FC1).
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim != 2:
        raise ShapeError(f"Expected depth_m to have shape (H, W); got {depth.shape}")
    invalid = ~np.isfinite(depth) | (depth <= 0)
    if encoding == "16UC1":
        mm = np.rint(np.where(invalid, 0.0, depth) / _MM_TO_M)
        mm[(mm < 0) | (mm > _MAX_DEPTH_MM)] = 0
        return array_to_image(mm.astype(np.uint16), "16UC1", stamp, frame_id)
    if encoding == "32FC1":
        return array_to_image(np.where(invalid, np.nan, depth).astype(np.float32), "32FC1", stamp, frame_id)
    raise InvalidValueError(f"depth_to_image encoding must be '16UC1' or '32FC1'; got {encoding!r}")


# ---------------------------------------------------------------------------------------------------------
# Camera info
# ---------------------------------------------------------------------------------------------------------
def camera_info_to_camera(
    msg: Any, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> PinholeCamera:
    """``sensor_msgs/CameraInfo`` -> :class:`PinholeCamera` (``k``, ``d``, ``distortion_model``, size).

    An all-zero ``k`` (an uncalibrated camera per REP 104) and a zero-sized image are rejected.
    """
    k = [float(v) for v in msg.k]
    if len(k) == 9 and all(v == 0.0 for v in k):
        raise InvalidValueError(
            "CameraInfo.k is all zeros: the camera is uncalibrated (REP 104); cannot build the pinhole model"
        )
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise InvalidValueError(f"CameraInfo width and height must be > 0; got {msg.width} x {msg.height}")
    try:
        return PinholeCamera.from_camera_info(
            k, [float(v) for v in msg.d], int(msg.width), int(msg.height), str(msg.distortion_model),
            device=device, dtype=dtype,
        )
    except InvalidValueError as exc:
        raise InvalidValueError(f"CameraInfo: {exc}") from exc


def camera_to_camera_info(camera: PinholeCamera, stamp: int | Any = 0, frame_id: str = "") -> Any:
    """:class:`PinholeCamera` -> ``sensor_msgs/CameraInfo`` with ``R = I`` and ``P = [K | 0]``."""
    from sensor_msgs.msg import CameraInfo

    K = camera.K.detach().to("cpu", torch.float64).reshape(-1).tolist()
    msg = CameraInfo()
    msg.header = make_header(stamp, frame_id)
    msg.width, msg.height = int(camera.width), int(camera.height)
    msg.distortion_model = camera.distortion_model
    if camera.D is None:
        msg.d = [0.0] * DISTORTION_COEFFICIENTS[camera.distortion_model]
    else:
        msg.d = camera.D.detach().to("cpu", torch.float64).tolist()
    msg.k = K
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [K[0], K[1], K[2], 0.0, K[3], K[4], K[5], 0.0, K[6], K[7], K[8], 0.0]
    return msg


# ---------------------------------------------------------------------------------------------------------
# Poses and transforms
# ---------------------------------------------------------------------------------------------------------
def _as_matrix(T: Any, name: str) -> torch.Tensor:
    if isinstance(T, torch.Tensor):
        matrix = T.detach().to("cpu", torch.float64)
    else:
        matrix = torch.as_tensor(np.asarray(T, dtype=np.float64))
    if matrix.shape != (4, 4):
        raise ShapeError(f"Expected {name} to have shape (4, 4); got {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise InvalidValueError(f"{name} contains non-finite values")
    return matrix


def _quaternion_tensor(q: Any, name: str) -> torch.Tensor:
    values = torch.tensor([float(q.x), float(q.y), float(q.z), float(q.w)], dtype=torch.float64)
    norm = float(values.norm())
    if not math.isfinite(norm) or norm < 1e-9:
        raise InvalidValueError(f"{name} must be a finite non-zero quaternion; got {values.tolist()}")
    return values


def pose_to_matrix(msg: Any) -> torch.Tensor:
    """``Pose`` / ``PoseStamped`` / ``PoseWithCovariance(Stamped)`` -> ``(4, 4)`` float64 (quaternion normalised)."""
    pose = msg
    while not hasattr(pose, "orientation"):  # unwrap .pose layers
        pose = pose.pose
    p = pose.position
    position = torch.tensor([float(p.x), float(p.y), float(p.z)], dtype=torch.float64)
    return transform_from_pose(position, _quaternion_tensor(pose.orientation, "Pose.orientation"))


def transform_to_matrix(msg: Any) -> torch.Tensor:
    """``Transform`` / ``TransformStamped`` -> ``(4, 4)`` float64 (``child2parent`` for a stamped one)."""
    transform = msg.transform if hasattr(msg, "transform") else msg
    t = transform.translation
    translation = torch.tensor([float(t.x), float(t.y), float(t.z)], dtype=torch.float64)
    return transform_from_pose(translation, _quaternion_tensor(transform.rotation, "Transform.rotation"))


def _position_quaternion(T: Any, name: str) -> tuple[list[float], list[float]]:
    position, quaternion = pose_from_transform(_as_matrix(T, name))
    return position.tolist(), quaternion.tolist()


def matrix_to_pose(T: Any) -> Any:
    """``(4, 4)`` (torch or numpy) -> ``geometry_msgs/Pose``."""
    from geometry_msgs.msg import Point, Pose, Quaternion

    (x, y, z), (qx, qy, qz, qw) = _position_quaternion(T, "T")
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def matrix_to_transform(T: Any) -> Any:
    """``(4, 4)`` (torch or numpy) -> ``geometry_msgs/Transform``."""
    from geometry_msgs.msg import Quaternion, Transform, Vector3

    (x, y, z), (qx, qy, qz, qw) = _position_quaternion(T, "T")
    return Transform(translation=Vector3(x=x, y=y, z=z), rotation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def matrix_to_transform_stamped(child2parent: Any, parent_frame: str, child_frame: str, stamp: int | Any = 0) -> Any:
    """``child2parent (4, 4)`` -> ``geometry_msgs/TransformStamped`` (``frame_id = parent``)."""
    from geometry_msgs.msg import TransformStamped

    if not parent_frame or not child_frame:
        raise InvalidValueError(
            f"parent_frame and child_frame must be non-empty; got {parent_frame!r} and {child_frame!r}"
        )
    return TransformStamped(
        header=make_header(stamp, parent_frame),
        child_frame_id=str(child_frame),
        transform=matrix_to_transform(child2parent),
    )


def matrix_to_pose_stamped(T: Any, frame_id: str, stamp: int | Any = 0) -> Any:
    """``thing2frame (4, 4)`` -> ``geometry_msgs/PoseStamped``."""
    from geometry_msgs.msg import PoseStamped

    return PoseStamped(header=make_header(stamp, frame_id), pose=matrix_to_pose(T))


def matrix_to_pose_with_covariance_stamped(T: Any, covariance: Any, frame_id: str, stamp: int | Any = 0) -> Any:
    """``thing2frame (4, 4)`` and a ``(6, 6)`` covariance -> ``geometry_msgs/PoseWithCovarianceStamped``.

    Covariance order ``(x, y, z, rot X, rot Y, rot Z)`` [m^2, rad^2], stored row-major; it must be symmetric
    and finite.
    """
    from geometry_msgs.msg import PoseWithCovariance, PoseWithCovarianceStamped

    if isinstance(covariance, torch.Tensor):
        covariance = covariance.detach().cpu().numpy()
    cov = np.asarray(covariance, dtype=np.float64)
    if cov.shape != (6, 6):
        raise ShapeError(f"Expected covariance to have shape (6, 6); got {cov.shape}")
    if not np.isfinite(cov).all():
        raise InvalidValueError("covariance contains non-finite values")
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12):
        raise InvalidValueError("covariance must be symmetric")
    inner = PoseWithCovariance(pose=matrix_to_pose(T), covariance=cov.reshape(-1).tolist())
    return PoseWithCovarianceStamped(header=make_header(stamp, frame_id), pose=inner)


def covariance_from_msg(msg: Any) -> np.ndarray:
    """``PoseWithCovariance(Stamped)`` -> ``(6, 6)`` float64 covariance (row-major in the message)."""
    inner = msg.pose if hasattr(msg, "header") else msg
    values = np.asarray(inner.covariance, dtype=np.float64)
    if values.size != 36:
        raise InvalidValueError(f"PoseWithCovariance.covariance must hold 36 values; got {values.size}")
    return values.reshape(6, 6).copy()


def transforms_to_matrices(transforms: Sequence[Any]) -> list[tuple[str, str, int, torch.Tensor]]:
    """TransformStamped list -> ``[(parent, child, stamp_ns, child2parent (4, 4))]``.

    Frame ids lose a leading '/'.
    """
    return [
        (t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"), stamp_ns(t), transform_to_matrix(t))
        for t in transforms
    ]

