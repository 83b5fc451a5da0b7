"""Write rosbag2 bags of sensor data with the pure-Python ``rosbags`` library (no rclpy, no ROS install).

:class:`SensorBagWriter` writes MCAP storage (rosbag2 metadata version 8 by default) with the message
definitions of a rosbags typestore (``ROS2_HUMBLE`` default: same wire format as Iron / Jazzy). Topics are
created on first use with the type their writer method implies; ``/tf_static``-style topics
(``static=True``) are recorded with a transient-local, reliable, keep-last-1 QoS profile in
``metadata.yaml`` so that a player re-latches them. Header stamps equal the log times.

    with SensorBagWriter(out / "bag") as bag:
        bag.image("/camera/camera/color/image_raw", t_ns, rgb, "camera_color_optical_frame")    # rgb8
        bag.image("/camera/camera/aligned_depth_to_color/image_raw", t_ns, depth_mm_uint16, frame)  # 16UC1
        bag.camera_info("/camera/camera/color/camera_info", t_ns, camera, frame)
        bag.joint_state("/allegroHand/joint_states", t_ns, names, positions, velocities)
        bag.transforms("/tf_static", t_ns, [("camera_color_optical_frame", "hand_root", T)], static=True)

Images: ``(H, W, 3)`` uint8 -> ``rgb8``; ``(H, W)`` uint16 -> ``16UC1`` (depth in millimetres, 0 = no
return); ``(H, W)`` uint8 -> ``mono8``; float32 ``(H, W)`` -> ``32FC1``. Transforms are ``(4, 4)`` matrices
``child2parent`` (the pose of ``child`` in ``parent``), converted to translation + quaternion (x, y, z, w).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch

from ..errors import InvalidValueError, ShapeError
from ..geometry.rotations import matrix_to_quaternion

__all__ = ["SensorBagWriter", "tf_static_qos"]

_ENCODINGS = {(np.dtype(np.uint8), 3): ("rgb8", 3), (np.dtype(np.uint16), 1): ("16UC1", 2),
              (np.dtype(np.uint8), 1): ("mono8", 1), (np.dtype(np.float32), 1): ("32FC1", 4)}


def tf_static_qos():
    """The QoS profile recorded for static-transform topics: keep last 1, reliable, transient local."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL, deadline=zero, lifespan=zero,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=zero,
               avoid_ros_namespace_conventions=False)



def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class SensorBagWriter:
    """A rosbag2 writer for images, camera infos, joint states and transforms (see the module docstring).

    Args:
        path: the bag folder to create (must not exist; rosbags refuses to overwrite).
        typestore: ``"ROS2_HUMBLE"`` or ``"ROS2_JAZZY"`` (any ``rosbags.typesys.Stores`` name).
        version: rosbag2 metadata version (8 or 9).
        storage: ``"mcap"`` or ``"sqlite3"``.
    """

    def __init__(self, path: str | os.PathLike, typestore: str = "ROS2_HUMBLE", version: int = 8,
                 storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        try:
            store = Stores[typestore]
        except KeyError:
            raise InvalidValueError(f"unknown rosbags typestore {typestore!r}") from None
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise InvalidValueError(f"storage must be 'mcap' or 'sqlite3'; got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise InvalidValueError(f"bag folder {self.path} already exists")
        self.typestore = get_typestore(store)
        self._writer = Writer(self.path, version=version, storage_plugin=plugins[storage])
        self._writer.open()
        self._connections: dict[str, tuple[object, str]] = {}
        self.counts: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------ plumbing
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Finish the bag (writes ``metadata.yaml``); idempotent."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _connection(self, topic: str, msgtype: str, static: bool = False):
        if not topic.startswith("/"):
            raise InvalidValueError(f"topic {topic!r} must start with '/'")
        if topic in self._connections:
            conn, kind = self._connections[topic]
            if kind != msgtype:
                raise InvalidValueError(f"topic {topic} already holds {kind}, cannot write {msgtype}")
            return conn
        qos = [tf_static_qos()] if static else []
        conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore, offered_qos_profiles=qos)
        self._connections[topic] = (conn, msgtype)
        self.counts[topic] = 0
        return conn

    def write(self, topic: str, msgtype: str, stamp_ns: int, message, static: bool = False) -> None:
        """Serialise ``message`` (a typestore message object) and write it at log time ``stamp_ns``."""
        if self._writer is None:
            raise InvalidValueError(f"bag {self.path} is closed")
        conn = self._connection(topic, msgtype, static)
        self._writer.write(conn, int(stamp_ns), self.typestore.serialize_cdr(message, msgtype))
        self.counts[topic] += 1

    def header(self, stamp_ns: int, frame_id: str):
        """A ``std_msgs/Header`` for ``stamp_ns`` [ns since the epoch]."""
        t = self.typestore.types
        stamp_ns = int(stamp_ns)
        if stamp_ns < 0:
            raise InvalidValueError(f"stamp_ns must be >= 0; got {stamp_ns}")
        stamp = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return t["std_msgs/msg/Header"](stamp=stamp, frame_id=str(frame_id))

    # ------------------------------------------------------------------------------------------ messages
    def image(self, topic: str, stamp_ns: int, image, frame_id: str) -> None:
        """``sensor_msgs/Image`` from ``(H, W, 3)`` uint8 (rgb8), ``(H, W)`` uint16 (16UC1), uint8 (mono8) or
        float32 (32FC1)."""
        arr = np.ascontiguousarray(_numpy(image))
        channels = arr.shape[2] if arr.ndim == 3 else 1
        key = (arr.dtype, channels)
        if arr.ndim not in (2, 3) or key not in _ENCODINGS:
            raise ShapeError(f"image for {topic} must be (H, W, 3) uint8 or (H, W) uint16/uint8/float32; "
                             f"got {arr.shape} {arr.dtype}")
        encoding, pixel_bytes = _ENCODINGS[key]
        height, width = arr.shape[:2]
        little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        msg = self.typestore.types["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, frame_id), height=height, width=width, encoding=encoding, is_bigendian=0,
            step=width * pixel_bytes, data=np.frombuffer(little.tobytes(), dtype=np.uint8))
        self.write(topic, "sensor_msgs/msg/Image", stamp_ns, msg)

    def camera_info(self, topic: str, stamp_ns: int, camera, frame_id: str) -> None:
        """``sensor_msgs/CameraInfo`` of a :class:`~handypriors_core.geometry.camera.PinholeCamera`
        (``P = [K | 0]``, ``R = I``; D zeros for an undistorted camera)."""
        t = self.typestore.types
        K = _numpy(camera.K).astype(np.float64)
        n_d = 8 if camera.distortion_model == "rational_polynomial" else 5
        D = np.zeros(n_d) if camera.D is None else _numpy(camera.D).astype(np.float64)
        P = np.concatenate([K, np.zeros((3, 1))], 1)
        roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        msg = t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, frame_id), height=int(camera.height), width=int(camera.width),
            distortion_model=camera.distortion_model, d=D, k=K.reshape(-1), r=np.eye(3).reshape(-1),
            p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi)
        self.write(topic, "sensor_msgs/msg/CameraInfo", stamp_ns, msg)

    def joint_state(self, topic: str, stamp_ns: int, names: Sequence[str], position, velocity=None, effort=None,
                    frame_id: str = "") -> None:
        """``sensor_msgs/JointState``; ``velocity`` / ``effort`` may be None (empty arrays)."""
        names = [str(n) for n in names]
        arrays = []
        for label, values in (("position", position), ("velocity", velocity), ("effort", effort)):
            arr = np.zeros(0) if values is None else _numpy(values).astype(np.float64).reshape(-1)
            if values is not None and len(arr) != len(names):
                raise ShapeError(f"joint_state {label} has {len(arr)} values for {len(names)} names")
            arrays.append(arr)
        msg = self.typestore.types["sensor_msgs/msg/JointState"](
            header=self.header(stamp_ns, frame_id), name=names, position=arrays[0], velocity=arrays[1],
            effort=arrays[2])
        self.write(topic, "sensor_msgs/msg/JointState", stamp_ns, msg)

    def transforms(self, topic: str, stamp_ns: int, transforms: Sequence[tuple[str, str, object]],
                   static: bool = False) -> None:
        """``tf2_msgs/TFMessage`` of ``[(parent_frame, child_frame, child2parent (4, 4)), ...]`` (may be empty,
        e.g. to create a ``/tf_static`` topic). ``static`` records the transient-local QoS profile."""
        t = self.typestore.types
        items = []
        for parent, child, matrix in transforms:
            T = torch.as_tensor(_numpy(matrix), dtype=torch.float64)
            if T.shape != (4, 4):
                raise ShapeError(f"transform {parent} -> {child} must be (4, 4); got {tuple(T.shape)}")
            x, y, z, w = matrix_to_quaternion(T[:3, :3]).tolist()
            tr = t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                rotation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
            items.append(t["geometry_msgs/msg/TransformStamped"](
                header=self.header(stamp_ns, parent), child_frame_id=str(child), transform=tr))
        msg = t["tf2_msgs/msg/TFMessage"](transforms=items)
        self.write(topic, "tf2_msgs/msg/TFMessage", stamp_ns, msg, static=static)
