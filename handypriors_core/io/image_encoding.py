"""Raw image buffers (the fields of a ``sensor_msgs/Image``: data, height, width, step, encoding, endianness) to
numpy arrays, without ROS: the one decoder of the bag reader and the ROS node.

:func:`decode_image_buffer` gives the native array of an encoding (dtype and channels; padded rows and big-endian
data honoured); :func:`rgb_to_color` makes colour RGB uint8, :func:`depth_to_metres` makes depth metres float32:
``16UC1`` / ``mono16`` hold millimetres with 0 = no return, ``32FC1`` metres with NaN / +-inf = no return; every
invalid pixel (and every value <= 0) becomes ``invalid_value`` (NaN by default). Bad input raises
:class:`~handypriors_core.errors.InvalidValueError` naming the field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import InvalidValueError

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "MAX_DEPTH_MM",
    "MM_TO_M",
    "SUPPORTED_ENCODINGS",
    "ImageEncoding",
    "decode_image_buffer",
    "depth_to_metres",
    "encoding_spec",
    "rgb_to_color",
]


@dataclasses.dataclass(frozen=True)
class ImageEncoding:
    """Element type and channel count of an encoding."""

    dtype: str  # numpy kind+size without byte order: "u1", "u2", "f4"
    channels: int


_ENCODINGS = {
    "rgb8": ImageEncoding("u1", 3),
    "bgr8": ImageEncoding("u1", 3),
    "rgba8": ImageEncoding("u1", 4),
    "bgra8": ImageEncoding("u1", 4),
    "mono8": ImageEncoding("u1", 1),
    "mono16": ImageEncoding("u2", 1),
    "16UC1": ImageEncoding("u2", 1),
    "32FC1": ImageEncoding("f4", 1),
}

#: Encodings :func:`decode_image_buffer` / :func:`array_to_image` handle.
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
#: Encodings :func:`image_to_rgb` accepts (mono ones are replicated to 3 channels, mono16 keeps its high byte).
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
#: Encodings :func:`image_to_depth` accepts (16-bit ones in millimetres, 32FC1 in metres).
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")

#: Millimetres -> metres for 16-bit depth.
MM_TO_M = 0.001
MAX_DEPTH_MM = np.iinfo(np.uint16).max


def encoding_spec(encoding: str) -> ImageEncoding:
    try:
        return _ENCODINGS[encoding]
    except KeyError:
        raise InvalidValueError(
            f"Image.encoding {encoding!r} is not supported (use one of {', '.join(SUPPORTED_ENCODINGS)})"
        ) from None


def decode_image_buffer(
    data: Any, height: int, width: int, step: int, encoding: str, is_bigendian: bool = False,
    trailing_bytes: bool = False,
) -> np.ndarray:
    """Raw ``sensor_msgs/Image`` fields -> a new native-byte-order array.

    Returns ``(H, W)`` for one-channel encodings and ``(H, W, C)`` otherwise, in the encoding's dtype
    (uint8, uint16 or float32) and channel order (``bgr8`` stays BGR here). Rows may be padded
    (``step >= width * channels * bytes``); ``data`` must hold exactly ``height * step`` bytes (at least that
    many with ``trailing_bytes``: recorded messages may carry padding after the last row).
    """
    spec = encoding_spec(encoding)
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
    if trailing_bytes and buffer.size > height * step:
        buffer = buffer[: height * step]
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
        depth = values.astype(np.float32) * np.float32(MM_TO_M)
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
