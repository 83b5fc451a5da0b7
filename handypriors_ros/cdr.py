"""A compact reader of the CDR bytes of the node's inputs: ``sensor_msgs/JointState``, ``tf2_msgs/TFMessage``,
``sensor_msgs/Image`` and ``sensor_msgs/CameraInfo``; and a writer of its per-frame pose outputs
(:func:`write_tf_message`, :func:`write_pose_with_covariance_stamped`: published as bytes, no message objects).

The node subscribes to joint states (100-333 Hz), ``/tf`` (100 Hz or more) and the camera streams with
``raw=True`` and parses the serialized bytes here: no rclpy message object is built per message (an Image's
pixels stay a view of the received bytes until the worker decodes them), which keeps the intake short while the
tracker computes (see ``docs/node_runtime.md``). No rclpy import: unit-tested against
``rclpy.serialization.serialize_message``.

Format (ROS 2 / Fast DDS, XCDR1 plain CDR): a 4-byte encapsulation header (``00 01``: little endian,
``00 00``: big endian; then two option bytes), then the fields in declaration order, each primitive aligned
to its own size (at most 8) relative to the byte after the header; strings are a ``uint32`` length that
counts the terminating NUL, then the bytes; sequences a ``uint32`` count, then the elements.

The parsed objects carry the attribute names of the messages they stand for (``msg.header.stamp.sec``,
``msg.name``, ``msg.position``, ``msg.transforms[i].transform.translation.x``), so the buffers that take
messages (:class:`~handypriors_ros.joint_state_buffer.JointStateBuffer`,
:class:`~handypriors_core.io.transform_buffer.TransformBuffer`) take them unchanged.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from handypriors_core.errors import InvalidValueError

__all__ = ["CdrError", "header_stamp_ns", "parse_camera_info", "parse_image", "parse_joint_state", "parse_tf_message",
           "restamp_header", "write_pose_with_covariance_stamped", "write_tf_message"]

_NS = 1_000_000_000


class CdrError(InvalidValueError):
    """The bytes are not a well-formed CDR message of the expected type (truncated, bad lengths)."""


class Time(NamedTuple):
    sec: int
    nanosec: int


class Header(NamedTuple):
    stamp: Time
    frame_id: str


class JointState(NamedTuple):
    """``sensor_msgs/JointState``: ``position`` / ``velocity`` / ``effort`` as float64 arrays."""

    header: Header
    name: list[str]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    @property
    def stamp_ns(self) -> int:
        return self.header.stamp.sec * _NS + self.header.stamp.nanosec


class Vector3(NamedTuple):
    x: float
    y: float
    z: float


class Quaternion(NamedTuple):
    x: float
    y: float
    z: float
    w: float


class Transform(NamedTuple):
    translation: Vector3
    rotation: Quaternion


class TransformStamped(NamedTuple):
    header: Header
    child_frame_id: str
    transform: Transform


class TFMessage(NamedTuple):
    transforms: list[TransformStamped]


class Image(NamedTuple):
    """``sensor_msgs/Image``; ``data`` is a read-only view of the message's bytes (no copy)."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


class CameraInfo(NamedTuple):
    """``sensor_msgs/CameraInfo`` (without ``roi``): ``d`` a float64 array, ``k`` / ``r`` / ``p`` tuples."""

    header: Header
    height: int
    width: int
    distortion_model: str
    d: np.ndarray
    k: tuple
    r: tuple
    p: tuple
    binning_x: int
    binning_y: int


class _Reader:
    """Sequential reader over the payload (after the 4-byte encapsulation header)."""

    __slots__ = ("data", "end", "little", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        if len(data) < 4:
            raise CdrError(f"CDR message of {len(data)} bytes is shorter than its 4-byte header")
        kind = data[1]
        if data[0] != 0 or kind not in (0, 1):
            raise CdrError(f"unsupported CDR encapsulation {bytes(data[:2]).hex()} (plain CDR expected)")
        self.data = memoryview(data)[4:]
        self.little = kind == 1
        self.pos = 0
        self.end = len(self.data)

    def _align(self, size: int) -> None:
        self.pos += -self.pos % size

    def _take(self, fmt: str, size: int, align: int) -> tuple:
        self._align(align)
        if self.pos + size > self.end:
            raise CdrError(f"CDR message truncated at byte {self.pos + 4} (needs {size} more)")
        values = struct.unpack_from(("<" if self.little else ">") + fmt, self.data, self.pos)
        self.pos += size
        return values

    def uint32(self) -> int:
        return self._take("I", 4, 4)[0]

    def time(self) -> Time:
        sec, nanosec = self._take("iI", 8, 4)
        return Time(sec, nanosec)

    def string(self) -> str:
        length = self.uint32()
        if length == 0:  # some writers send 0 for an empty string
            return ""
        if self.pos + length > self.end:
            raise CdrError(f"CDR string of {length} bytes runs past the end of the message")
        raw = bytes(self.data[self.pos:self.pos + length - 1])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def header(self) -> Header:
        return Header(self.time(), self.string())

    def doubles(self) -> np.ndarray:
        count = self.uint32()
        if count == 0:
            return np.empty(0)
        self._align(8)
        size = 8 * count
        if self.pos + size > self.end:
            raise CdrError(f"CDR float64 sequence of {count} elements runs past the end of the message")
        values = np.frombuffer(self.data, dtype="<f8" if self.little else ">f8", count=count, offset=self.pos)
        self.pos += size
        return values.astype(np.float64)  # a copy: the message buffer is not kept

    def uint8(self) -> int:
        return self._take("B", 1, 1)[0]

    def byte_view(self) -> memoryview:
        """A ``uint8[]`` sequence as a view of the message (no copy)."""
        count = self.uint32()
        if self.pos + count > self.end:
            raise CdrError(f"CDR byte sequence of {count} elements runs past the end of the message")
        view = self.data[self.pos:self.pos + count]
        self.pos += count
        return view

    def fixed_doubles(self, count: int) -> tuple:
        return self._take(f"{count}d", 8 * count, 8)


#: The last name list parsed: ``(its CDR bytes, the names)``. A driver sends the same names in every message, so
#: the next message's names are one byte comparison instead of a string parse per joint (the bytes of a name list
#: do not depend on where it starts: its count is 4-aligned and so is every string length after it).
_last_names: tuple[bytes, list[str]] = (b"", [])


def parse_joint_state(data: bytes | memoryview) -> JointState:
    """``sensor_msgs/msg/JointState`` CDR bytes -> :class:`JointState`; :class:`CdrError` if malformed."""
    global _last_names
    r = _Reader(data)
    header = r.header()
    start = r.pos
    cached_bytes, cached_names = _last_names
    if cached_bytes and r.data[start:start + len(cached_bytes)] == cached_bytes:
        r.pos = start + len(cached_bytes)
        names = list(cached_names)
    else:
        count = r.uint32()
        if count > r.end:
            raise CdrError(f"JointState claims {count} names in {r.end} bytes")
        names = [r.string() for _ in range(count)]
        _last_names = (bytes(r.data[start:r.pos]), list(names))
    return JointState(header, names, r.doubles(), r.doubles(), r.doubles())


def parse_tf_message(data: bytes | memoryview) -> TFMessage:
    """``tf2_msgs/msg/TFMessage`` CDR bytes -> :class:`TFMessage`; :class:`CdrError` if malformed."""
    r = _Reader(data)
    count = r.uint32()
    if count > r.end:
        raise CdrError(f"TFMessage claims {count} transforms in {r.end} bytes")
    transforms = []
    for _ in range(count):
        header = r.header()
        child = r.string()
        values = r.fixed_doubles(7)
        transforms.append(TransformStamped(header, child, Transform(Vector3(*values[:3]), Quaternion(*values[3:]))))
    return TFMessage(transforms)


def parse_image(data: bytes | memoryview) -> Image:
    """``sensor_msgs/msg/Image`` CDR bytes -> :class:`Image` (pixels not copied); :class:`CdrError` if malformed."""
    r = _Reader(data)
    header = r.header()
    height, width = r.uint32(), r.uint32()
    encoding = r.string()
    is_bigendian = r.uint8()
    step = r.uint32()
    return Image(header, height, width, encoding, is_bigendian, step, r.byte_view())


def parse_camera_info(data: bytes | memoryview) -> CameraInfo:
    """``sensor_msgs/msg/CameraInfo`` CDR bytes -> :class:`CameraInfo`; :class:`CdrError` if malformed."""
    r = _Reader(data)
    header = r.header()
    height, width = r.uint32(), r.uint32()
    distortion_model = r.string()
    d = r.doubles()
    k, rectification, projection = r.fixed_doubles(9), r.fixed_doubles(9), r.fixed_doubles(12)
    binning_x, binning_y = r.uint32(), r.uint32()
    return CameraInfo(header, height, width, distortion_model, d, k, rectification, projection, binning_x, binning_y)


def header_stamp_ns(data: bytes | memoryview) -> int:
    """The ``header.stamp`` [ns] of the CDR bytes of a message whose first field is a ``std_msgs/Header``."""
    r = _Reader(data)
    stamp = r.time()
    return stamp.sec * _NS + stamp.nanosec


def restamp_header(data: bytes, stamp_ns: int) -> bytes:
    """The CDR bytes of a message whose first field is a ``std_msgs/Header``, with ``header.stamp`` replaced
    (the rest unchanged: no deserialisation)."""
    _Reader(data)  # checks the encapsulation header
    if len(data) < 12:
        raise CdrError(f"CDR message of {len(data)} bytes has no header stamp")
    sec, nanosec = divmod(int(stamp_ns), _NS)
    if not -(2**31) <= sec < 2**31:
        raise CdrError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time")
    return bytes(data[:4]) + struct.pack("<iI" if data[1] == 1 else ">iI", sec, nanosec) + bytes(data[12:])


# -- writing (little endian) ---------------------------------------------------------------------------------------
_ENCAPSULATION_LE = b"\x00\x01\x00\x00"


def _put_header(out: bytearray, stamp_ns: int, frame_id: str) -> None:
    """A ``std_msgs/Header`` at a 4-aligned position of ``out`` (after the encapsulation header)."""
    sec, nanosec = divmod(int(stamp_ns), _NS)
    _put_string(out, struct.pack("<iI", sec, nanosec), "")
    _put_string(out, b"", frame_id)


def _put_string(out: bytearray, prefix: bytes, text: str) -> None:
    out += prefix
    if text or not prefix:
        raw = text.encode("utf-8") + b"\0"
        out += struct.pack("<I", len(raw)) + raw


def _put_doubles(out: bytearray, values: list[float]) -> None:
    out += bytes(-(len(out) - 4) % 8)  # (alignment counts from the byte after the encapsulation header)
    out += struct.pack(f"<{len(values)}d", *values)


def write_tf_message(stamp_ns: int, parent_frame: str, child_frame: str, translation: list[float],
                     quaternion_xyzw: list[float]) -> bytes:
    """CDR bytes of a ``tf2_msgs/TFMessage`` with one transform ``parent_frame -> child_frame`` at ``stamp_ns``."""
    out = bytearray(_ENCAPSULATION_LE)
    out += struct.pack("<I", 1)
    _put_header(out, stamp_ns, parent_frame)
    out += bytes(-(len(out) - 4) % 4)
    _put_string(out, b"", child_frame)
    _put_doubles(out, [*translation, *quaternion_xyzw])
    return bytes(out)


def write_pose_with_covariance_stamped(stamp_ns: int, frame_id: str, position: list[float],
                                       quaternion_xyzw: list[float], covariance: list[float]) -> bytes:
    """CDR bytes of a ``geometry_msgs/PoseWithCovarianceStamped``; ``covariance``: 36 values, row-major."""
    if len(covariance) != 36:
        raise CdrError(f"a pose covariance has 36 values; got {len(covariance)}")
    out = bytearray(_ENCAPSULATION_LE)
    _put_header(out, stamp_ns, frame_id)
    _put_doubles(out, [*position, *quaternion_xyzw, *covariance])
    return bytes(out)
