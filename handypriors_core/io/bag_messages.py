"""Messages of a rosbag2 without ROS: the message type names, CDR deserialisation (the rosbags type store) and
image decoding (colour to RGB uint8, depth to metres with NaN where invalid).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bag_files import BagError

__all__ = [
    "CAMERA_INFO",
    "COLOUR_ENCODINGS",
    "COMPRESSED",
    "DEPTH_ENCODINGS",
    "IMAGE",
    "JOINT_STATE",
    "TF",
    "decode_colour",
    "decode_depth",
    "stamp_to_ns",
    "typestore",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
JOINT_STATE = "sensor_msgs/msg/JointState"
TF = "tf2_msgs/msg/TFMessage"

#: Colour encodings decoded to RGB.
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
#: Depth encodings (z-depth): 16-bit millimetres or 32-bit float metres.
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def typestore():
    """The rosbags type store of the ROS 2 message definitions (Humble; the messages read here are unchanged)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> int nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _image_array(msg: Any, channels: int, dtype: np.dtype) -> np.ndarray:
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if h <= 0 or w <= 0 or step < w * channels * itemsize or data.size < h * step:
        raise BagError(f"image message of {w}x{h} ({msg.encoding}) has {data.size} bytes of data and step {step}; "
                       f"expected {h} rows of >= {w * channels * itemsize} bytes")
    rows = data[: h * step].reshape(h, step)[:, : w * channels * itemsize]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).reshape(h, w, channels) if channels > 1 \
        else np.ascontiguousarray(rows).view(dt).reshape(h, w)
    return np.array(arr, dtype=np.dtype(dtype).newbyteorder("="), copy=True)  # own, writable memory


def decode_colour(msg: Any, msgtype: str = IMAGE) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from a colour ``sensor_msgs/Image`` (or CompressedImage)."""
    if msgtype == COMPRESSED:
        import cv2

        buf = np.asarray(msg.data, dtype=np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None:
            raise BagError(f"cannot decode compressed image (format {msg.format!r})")
        return np.ascontiguousarray(bgr[..., ::-1])
    enc = str(msg.encoding).lower()
    if enc == "rgb8":
        return _image_array(msg, 3, np.uint8)
    if enc == "bgr8":
        return np.ascontiguousarray(_image_array(msg, 3, np.uint8)[..., ::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(_image_array(msg, 4, np.uint8)[..., :3])
    if enc == "bgra8":
        return np.ascontiguousarray(_image_array(msg, 4, np.uint8)[..., 2::-1])
    if enc == "mono8":
        return np.repeat(_image_array(msg, 1, np.uint8)[..., None], 3, axis=2)
    raise BagError(f"colour image encoding {msg.encoding!r} is not supported (supported: "
                   f"{', '.join(COLOUR_ENCODINGS)})")


def decode_depth(msg: Any) -> np.ndarray:
    """``(H, W)`` float32 z-depth [m], NaN where invalid, from a ``16UC1``/``mono16`` [mm] or ``32FC1`` [m] image."""
    enc = str(msg.encoding)
    if enc.upper() in ("16UC1",) or enc.lower() == "mono16":
        raw = _image_array(msg, 1, np.uint16)
        depth = raw.astype(np.float32) * np.float32(0.001)
        depth[raw == 0] = np.nan
        return depth
    if enc.upper() == "32FC1":
        depth = _image_array(msg, 1, np.float32).astype(np.float32, copy=True)
        depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
        return depth
    raise BagError(f"depth image encoding {enc!r} is not supported (supported: {', '.join(DEPTH_ENCODINGS)})")
