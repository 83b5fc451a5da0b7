"""``sensor_msgs/Image`` <-> numpy arrays: colour ``(H, W, 3) uint8`` RGB, depth ``(H, W) float32`` [m].

:func:`image_to_array` decodes an image into its native array (dtype and channels of the encoding), honouring a
padded ``step`` and ``is_bigendian``. :func:`image_to_rgb` and :func:`image_to_depth` normalise it: colour to RGB
uint8, depth to metres float32.

Depth conventions: ``16UC1`` / ``mono16`` hold millimetres (RealSense ``aligned_depth_to_color``) with 0 = no
return; ``32FC1`` holds metres (REP 118) with NaN / +-inf = no return. Every invalid pixel (and every value <= 0)
comes out as ``invalid_value``: **NaN by default**, as :class:`handypriors_core.io.frame.Frame` expects (an
invalid pixel can never pass as a distance; ``np.isfinite(depth)`` is the validity mask); pass
``invalid_value=0.0`` for a zero-filled image.

With a ROS 2 ``cv_bridge`` importable (a real ROS system; the look-alike PyPI ``cv-bridge`` is detected and
ignored because it corrupts 16UC1) it decodes the raw array; otherwise the core's numpy decoder does
(:mod:`handypriors_core.io.image_encoding`, shared with the bag reader).
Unsupported encodings and inconsistent sizes raise :class:`InvalidValueError` naming the field.
"""

from __future__ import annotations

import array
import dataclasses
import functools
import inspect
import sys
from typing import Any

import numpy as np

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.io.image_encoding import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    MAX_DEPTH_MM,
    MM_TO_M,
    SUPPORTED_ENCODINGS,
    decode_image_buffer,
    depth_to_metres,
    encoding_spec,
    rgb_to_color,
)

from .stamps import make_header

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "MILLIMETRE_DEPTH_ENCODINGS",
    "SUPPORTED_ENCODINGS",
    "WireImage",
    "array_to_image",
    "decode_image_buffer",
    "depth_to_image",
    "depth_to_metres",
    "image_to_array",
    "image_to_depth",
    "image_to_rgb",
    "image_to_wire",
    "rgb_to_color",
    "rgb_to_image",
]


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
    # (an image parsed from raw CDR bytes, handypriors_ros.cdr.Image, holds a memoryview: the numpy decoder reads it)
    bridge = None if backend == "numpy" or isinstance(msg.data, memoryview) else _ros2_cv_bridge()
    if backend == "cv_bridge" and bridge is None:
        raise InvalidValueError("backend 'cv_bridge' requested but no ROS 2 cv_bridge is importable")
    if bridge is not None:
        spec = encoding_spec(msg.encoding)  # same encoding checks as the numpy path
        result = np.asarray(bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
        expected = (msg.height, msg.width) if spec.channels == 1 else (msg.height, msg.width, spec.channels)
        if result.shape != expected:
            raise InvalidValueError(f"Image of encoding {msg.encoding!r} decoded to shape {result.shape}")
        return np.array(result, dtype=np.dtype(spec.dtype), copy=True)
    return decode_image_buffer(msg.data, msg.height, msg.width, msg.step, msg.encoding, bool(msg.is_bigendian))


@dataclasses.dataclass(frozen=True)
class WireImage:
    """An image's pixels as they came in, decoded later (by the tracker process, which copies them out of shared
    memory anyway: one pass instead of a decode here and a copy there).

    ``values``: the native array of ``encoding`` (``(H, W)`` or ``(H, W, C)``, e.g. 16UC1 depth as uint16 mm),
    often a read-only view of the message's bytes; ``kind``: ``"colour"`` or ``"depth"``.
    """

    values: np.ndarray
    encoding: str
    kind: str

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    def decoded(self, values: np.ndarray | None = None) -> np.ndarray:
        """Colour -> RGB ``(H, W, 3) uint8``; depth -> ``(H, W) float32`` [m], NaN where there is no return.
        ``values``: the pixels to decode instead of :attr:`values` (a copy of them, e.g. read from shared
        memory); an rgb8 copy is returned as it is. Millimetre depth (16UC1, mono16): the values of
        ``depth_to_metres`` with the holes written in place (``copyto``; its boolean indexing cost twice as much)."""
        values = self.values if values is None else values
        if self.kind == "depth":
            if self.encoding in MILLIMETRE_DEPTH_ENCODINGS and values.dtype == np.uint16:
                return _millimetres_to_metres(values)
            return depth_to_metres(values, self.encoding)
        return rgb_to_color(values, self.encoding)


#: Depth encodings in millimetres (uint16; 0 = no return): decoded, only values > 0 [m] or NaN.
MILLIMETRE_DEPTH_ENCODINGS = ("16UC1", "mono16")


def _millimetres_to_metres(values: np.ndarray) -> np.ndarray:
    """``(H, W) uint16`` [mm] -> ``(H, W) float32`` [m], NaN where 0 (``depth_to_metres``' values, bit for bit)."""
    depth = values.astype(np.float32)
    depth *= np.float32(MM_TO_M)
    np.copyto(depth, np.float32(np.nan), where=values == 0)
    return depth


def image_to_wire(msg: Any, kind: str) -> WireImage:
    """``sensor_msgs/Image`` -> :class:`WireImage` of ``kind`` (``"colour"`` / ``"depth"``), checked as
    :func:`image_to_rgb` / :func:`image_to_depth` check it (encoding, size, step). The pixels stay a view of the
    message's bytes when its rows are unpadded and in this machine's byte order; otherwise they are copied."""
    allowed = DEPTH_ENCODINGS if kind == "depth" else COLOR_ENCODINGS
    if msg.encoding not in allowed:
        encoding_spec(msg.encoding)
        raise InvalidValueError(f"Image.encoding {msg.encoding!r} is not a {kind} encoding (use one of "
                                f"{', '.join(allowed)})")
    spec = encoding_spec(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = int(spec.dtype[1:])
    native = bool(msg.is_bigendian) == (sys.byteorder == "big") or itemsize == 1
    if (height > 0 and width > 0 and step == width * spec.channels * itemsize and native
            and isinstance(msg.data, (bytes, bytearray, memoryview)) and len(msg.data) == height * step):
        shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
        values = np.frombuffer(msg.data, dtype=np.dtype(spec.dtype)).reshape(shape)
    else:  # (padded rows, the other byte order, an array.array: the checked copy)
        values = image_to_array(msg, "numpy")
    return WireImage(values, msg.encoding, kind)


def image_to_rgb(msg: Any, backend: str = "auto") -> np.ndarray:
    """Colour ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16) -> RGB ``(H, W, 3) uint8``."""
    if msg.encoding not in COLOR_ENCODINGS:
        encoding_spec(msg.encoding)
        raise InvalidValueError(
            f"Image.encoding {msg.encoding!r} is not a colour encoding (use one of {', '.join(COLOR_ENCODINGS)})"
        )
    return rgb_to_color(image_to_array(msg, backend), msg.encoding)


def image_to_depth(msg: Any, invalid_value: float = float("nan"), backend: str = "auto") -> np.ndarray:
    """Depth ``sensor_msgs/Image`` (16UC1 / mono16 in mm, 32FC1 in m) -> ``(H, W) float32`` [m].

    Pixels without a return (0 mm; NaN, inf or <= 0 m) become ``invalid_value`` (default NaN).
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        encoding_spec(msg.encoding)
        raise InvalidValueError(
            f"Image.encoding {msg.encoding!r} is not a depth encoding (use one of {', '.join(DEPTH_ENCODINGS)})"
        )
    return depth_to_metres(image_to_array(msg, backend), msg.encoding, invalid_value)


def array_to_image(values: np.ndarray, encoding: str, stamp: int | Any = 0, frame_id: str = "") -> Any:
    """Native array ``(H, W)`` or ``(H, W, C)`` of ``encoding``'s dtype -> ``sensor_msgs/Image`` (unpadded)."""
    from sensor_msgs.msg import Image

    spec = encoding_spec(encoding)
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
        mm = np.rint(np.where(invalid, 0.0, depth) / MM_TO_M)
        mm[(mm < 0) | (mm > MAX_DEPTH_MM)] = 0
        return array_to_image(mm.astype(np.uint16), "16UC1", stamp, frame_id)
    if encoding == "32FC1":
        return array_to_image(np.where(invalid, np.nan, depth).astype(np.float32), "32FC1", stamp, frame_id)
    raise InvalidValueError(f"depth_to_image encoding must be '16UC1' or '32FC1'; got {encoding!r}")
