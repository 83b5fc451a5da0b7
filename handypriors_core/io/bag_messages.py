"""Messages of a rosbag2 without ROS: the message type names, CDR deserialisation (the rosbags type store) and
image decoding (colour to RGB uint8, depth to metres with NaN where invalid; the buffers through
:mod:`.image_encoding`, the decoder the ROS node uses too). Depth encodings: ``DEPTH_ENCODINGS`` of
:mod:`.image_encoding` (16-bit millimetres, 32-bit float metres).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidValueError
from .bag_files import BagError
from .image_encoding import DEPTH_ENCODINGS, decode_image_buffer, depth_to_metres, rgb_to_color

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


def typestore():
    """The rosbags type store of the ROS 2 message definitions (Humble; the messages read here are unchanged)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> int nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _image_array(msg: Any, encoding: str) -> np.ndarray:
    """The native array of an image message in ``encoding`` (recorded padding after the last row allowed)."""
    try:
        return decode_image_buffer(msg.data, msg.height, msg.width, msg.step, encoding, bool(msg.is_bigendian),
                                   trailing_bytes=True)
    except InvalidValueError as exc:
        raise BagError(f"image message of {msg.width}x{msg.height} ({msg.encoding}): {exc}") from None


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
    if enc in COLOUR_ENCODINGS:
        return rgb_to_color(_image_array(msg, enc), enc)
    raise BagError(f"colour image encoding {msg.encoding!r} is not supported (supported: "
                   f"{', '.join(COLOUR_ENCODINGS)})")


def decode_depth(msg: Any) -> np.ndarray:
    """``(H, W)`` float32 z-depth [m], NaN where invalid, from a ``16UC1``/``mono16`` [mm] or ``32FC1`` [m] image."""
    enc = str(msg.encoding)
    canonical = "mono16" if enc.lower() == "mono16" else enc.upper()
    if canonical in DEPTH_ENCODINGS:
        return depth_to_metres(_image_array(msg, canonical), canonical)
    raise BagError(f"depth image encoding {enc!r} is not supported (supported: {', '.join(DEPTH_ENCODINGS)})")
