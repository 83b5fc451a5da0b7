"""What the ``sequence_player`` plays: a recorded sequence read as timed events of ROS messages.

Sources (:func:`open_source` picks one by what the folder holds):

- a **rosbag2** folder (or a file inside one; mcap or sqlite3 storage), read with the pure-Python
  ``rosbags`` library (:class:`BagSource`): one event per recorded message at its log time, carrying the recorded
  CDR bytes with their recorded types (no deserialisation).
- a **dev-sequence folder** (``meta.json`` + ``rgb/`` + ``depth/``; the format of the shared development
  data and of the project's generator) read with :class:`handypriors_core.io.dev_sequence.DevSequence`
  (:class:`DevSequenceSource`). Per frame: colour image (rgb8), its camera info, aligned depth (16UC1, mm,
  0 = invalid), its camera info and one joint state; a fixed hand base becomes ``/tf_static`` (frame 0's pose),
  a moving one ``/tf``. ``gt.json`` and ``mask/`` (ground truth, oracle masks) are never read.

Topics: the sensor streams go to :class:`TopicNames` (RealSense ROS 2 wrapper defaults, ``/joint_states``). For a
bag, recorded topics are matched to those roles by type and name (``depth`` / ``color`` / ``rgb`` in the name; any
``sensor_msgs/JointState``) unless ``remap_recorded_topics`` is false; other topics keep their recorded names,
``/tf`` and ``/tf_static`` always do. Recorded topics matching an ``exclude_topics`` pattern (ground truth, masks,
oracle data by default) are never published. All static transforms are merged into ONE ``/tf_static`` message.
No node here: sources build messages (and deserialise ``/tf_static``), the player publishes them.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import importlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handypriors_core.errors import InvalidValueError

from . import conversions

__all__ = [
    "DEFAULT_EXCLUDE_TOPICS",
    "REQUIRED_ROLES",
    "TF_STATIC_TOPIC",
    "TF_TOPIC",
    "BagSource",
    "DevSequenceSource",
    "PlaybackEvent",
    "TopicNames",
    "open_source",
]

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
#: Recorded topics matching any of these (``re.search``, case-insensitive) are never published.
DEFAULT_EXCLUDE_TOPICS = (r"ground_?truth", r"(^|/)gt(/|_|$)", r"mask", r"oracle")


@dataclasses.dataclass(frozen=True)
class TopicNames:
    """Output topics of the sensor streams (RealSense ROS 2 wrapper and ros2_control defaults)."""

    color: str = "/camera/camera/color/image_raw"
    color_info: str = "/camera/camera/color/camera_info"
    depth: str = "/camera/camera/aligned_depth_to_color/image_raw"
    depth_info: str = "/camera/camera/aligned_depth_to_color/camera_info"
    joint_states: str = "/joint_states"


@dataclasses.dataclass
class PlaybackEvent:
    """Messages to publish at recorded time ``time_ns``: ``[(topic, message)]``."""

    time_ns: int
    messages: list[tuple[str, Any]]


def _msg_class(msgtype: str) -> Any:
    """``"sensor_msgs/msg/Image"`` (or ``"sensor_msgs/Image"``) -> the rclpy message class."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise InvalidValueError(f"message type {msgtype!r} is not of the form package/msg/Name")
    module = importlib.import_module(f"{parts[0]}.{parts[1]}")
    return getattr(module, parts[2])


def _merge_static(transforms: Sequence[Any]) -> Any | None:
    """One ``TFMessage`` holding the last transform of every child frame (``None`` when there is none)."""
    from tf2_msgs.msg import TFMessage

    by_child: dict[str, Any] = {}
    for transform in transforms:
        by_child[transform.child_frame_id] = transform
    return TFMessage(transforms=list(by_child.values())) if by_child else None


class DevSequenceSource:
    """Events of a dev-sequence folder (see the module docstring).

    Metadata (camera, joint names and positions, hand base poses, depth encoding) comes from
    :class:`DevSequence`; the PNGs named in ``meta.json`` are decoded one frame ahead in a worker thread.
    Depth stored as millimetres with 0 = invalid is published as recorded (no float round trip).
    """

    kind = "dev_sequence"

    def __init__(self, path: str | Path, topics: TopicNames) -> None:
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from tf2_msgs.msg import TFMessage

        from handypriors_core.io.dev_sequence import DevSequence

        path = Path(path)
        self.sequence = DevSequence(path, dtype=torch.float64)
        self.topic_names = topics
        self._hand2camera = self.sequence.hand2camera()  # (N, 4, 4) float64
        self._joint_positions = self.sequence.joint_positions().tolist()  # N lists of J floats [rad]
        self.stamps_ns, self._files = self._read_frame_entries(path)
        missing = [str(f) for pair in self._files for f in pair if f is not None and not f.is_file()]
        if missing:
            raise InvalidValueError(
                f"dev sequence {str(path)!r}: {len(missing)} image file(s) missing, e.g. {missing[0]}"
            )
        self._raw_depth = self.sequence.depth_scale_to_m == 0.001 and self.sequence.depth_invalid == 0
        self.topics: dict[str, Any] = {topics.color: Image, topics.color_info: CameraInfo}
        if any(depth is not None for _, depth in self._files):
            self.topics.update({topics.depth: Image, topics.depth_info: CameraInfo})
        self.topics[topics.joint_states] = JointState
        if self.sequence.base_moving:
            self.topics[TF_TOPIC] = TFMessage
        self.start_ns, self.end_ns = int(self.stamps_ns[0]), int(self.stamps_ns[-1])

    @staticmethod
    def _read_frame_entries(path: Path) -> tuple[np.ndarray, list[tuple[Path, Path | None]]]:
        """Exact stamps [ns] (``stamp_ns``, else rounded ``stamp``) and the (rgb, depth) files of every frame."""
        frames = json.loads((path / "meta.json").read_text())["frames"]
        stamps, files = [], []
        for i, entry in enumerate(frames):
            stamps.append(int(entry["stamp_ns"]) if "stamp_ns" in entry else round(float(entry["stamp"]) * 1e9))
            depth = entry.get("depth", f"depth/{i:06d}.png")
            files.append((path / str(entry.get("rgb", f"rgb/{i:06d}.png")), path / str(depth) if depth else None))
        return np.asarray(stamps, dtype=np.int64), files

    def _hand_transform(self, index: int, stamp: int) -> Any:
        seq = self.sequence
        return conversions.matrix_to_transform_stamped(
            self._hand2camera[index], seq.camera_frame_id, seq.hand_root_frame, stamp
        )

    def static_message(self) -> Any | None:
        """``camera -> hand_root`` of frame 0 when the hand base is fixed."""
        if self.sequence.base_moving:
            return None
        return _merge_static([self._hand_transform(0, int(self.stamps_ns[0]))])

    def _load(self, index: int) -> PlaybackEvent:
        import cv2
        from sensor_msgs.msg import JointState
        from tf2_msgs.msg import TFMessage

        seq, topics = self.sequence, self.topic_names
        frame_id = seq.camera_frame_id
        stamp = int(self.stamps_ns[index])
        rgb_path, depth_path = self._files[index]
        bgr = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[:2] != (seq.camera.height, seq.camera.width):
            raise InvalidValueError(
                f"cannot decode {rgb_path} as a {seq.camera.width}x{seq.camera.height} colour image"
            )
        info = conversions.camera_to_camera_info(seq.camera, stamp, frame_id)
        messages = [
            (topics.color, conversions.array_to_image(np.ascontiguousarray(bgr[..., ::-1]), "rgb8", stamp, frame_id)),
            (topics.color_info, info),
        ]
        if depth_path is not None:
            raw = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
            if raw is None or raw.dtype != np.uint16 or raw.shape != bgr.shape[:2]:
                raise InvalidValueError(f"{depth_path} must be a uint16 depth PNG of the colour image's size")
            if self._raw_depth:
                depth = conversions.array_to_image(raw, "16UC1", stamp, frame_id)
            else:
                depth_m = seq.read_depth(depth_path).numpy()
                depth = conversions.depth_to_image(depth_m, stamp, frame_id, encoding="16UC1")
            messages += [(topics.depth, depth), (topics.depth_info, copy.deepcopy(info))]
        joints = JointState(header=conversions.make_header(stamp, ""), name=list(seq.joint_names),
                            position=self._joint_positions[index])
        messages.append((topics.joint_states, joints))
        if seq.base_moving:
            messages.append((TF_TOPIC, TFMessage(transforms=[self._hand_transform(index, stamp)])))
        return PlaybackEvent(stamp, messages)

    def events(self) -> Iterator[PlaybackEvent]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame_loader") as pool:
            pending = pool.submit(self._load, 0)
            for index in range(len(self._files)):
                event = pending.result()
                if index + 1 < len(self._files):
                    pending = pool.submit(self._load, index + 1)
                yield event

    def describe(self) -> str:
        return (f"dev sequence {self.sequence.name!r}: {len(self.sequence)} frames, "
                f"{self.sequence.camera.width}x{self.sequence.camera.height}, hand base "
                f"{'moving (/tf)' if self.sequence.base_moving else 'fixed (/tf_static)'}")

    def close(self) -> None:
        pass


class BagSource:
    """Events of a rosbag2 (mcap or sqlite3), one per recorded message, at its log time."""

    kind = "rosbag2"

    def __init__(
        self,
        path: str | Path,
        topics: TopicNames,
        remap_recorded_topics: bool = True,
        exclude_topics: Sequence[str] = DEFAULT_EXCLUDE_TOPICS,
        warn: Callable[[str], None] = lambda text: None,
    ) -> None:
        from rosbags.rosbag2 import Reader

        path = Path(path)
        if path.is_file():
            path = path.parent
        if not (path / "metadata.yaml").is_file():
            raise InvalidValueError(f"source {str(path)!r} is not a rosbag2 folder (no metadata.yaml)")
        try:
            patterns = [re.compile(p, re.IGNORECASE) for p in exclude_topics]
        except re.error as exc:
            raise InvalidValueError(f"exclude_topics holds an invalid regular expression: {exc}") from exc
        try:
            self._reader = Reader(path)
            self._reader.open()
        except Exception as exc:
            raise InvalidValueError(f"cannot open rosbag2 {str(path)!r}: {exc}") from exc
        self.path = path
        self.excluded: list[str] = []
        self.skipped: list[str] = []
        roles = {}
        connections = []
        static_connections = []
        for connection in self._reader.connections:
            topic, msgtype = connection.topic, connection.msgtype
            if any(p.search(topic) for p in patterns):
                self.excluded.append(topic)
                continue
            try:
                cls = _msg_class(msgtype)
            except (ImportError, AttributeError, InvalidValueError):
                self.skipped.append(f"{topic} ({msgtype})")
                continue
            if topic == TF_STATIC_TOPIC:
                static_connections.append(connection)
                continue
            connections.append((connection, cls))
            roles[connection.id] = self._role(topic, msgtype, topics) if remap_recorded_topics else None
        # one recorded topic per role; several candidates keep their recorded names
        by_role: dict[str, set[str]] = {}
        for connection, _ in connections:
            if roles[connection.id] is not None:
                by_role.setdefault(roles[connection.id], set()).add(connection.topic)
        if remap_recorded_topics:
            _check_required_roles(path, by_role, self._reader.connections)
        for role, names in by_role.items():
            if len(names) > 1:
                warn(f"several recorded topics look like {role}: {sorted(names)}; they keep their recorded names")
                for connection, _ in connections:
                    if connection.topic in names:
                        roles[connection.id] = None
        self._out: dict[int, tuple[str, Any]] = {}
        self.topics: dict[str, Any] = {}
        for connection, cls in connections:
            role = roles[connection.id]
            out = getattr(topics, role) if role else connection.topic
            self._out[connection.id] = (out, cls)
            self.topics[out] = cls
        self._connections = [c for c, _ in connections]
        self._static_connections = static_connections
        self.start_ns, self.end_ns = int(self._reader.start_time), int(self._reader.end_time)
        if self.end_ns < self.start_ns:
            raise InvalidValueError(f"rosbag2 {str(path)!r} holds no messages")

    @staticmethod
    def _role(topic: str, msgtype: str, topics: TopicNames) -> str | None:
        name = topic.lower()
        if msgtype.endswith("JointState"):
            return "joint_states"
        if msgtype.endswith(("/Image", "/CameraInfo")):
            info = msgtype.endswith("CameraInfo")
            if "depth" in name:
                return "depth_info" if info else "depth"
            if "color" in name or "rgb" in name:
                return "color_info" if info else "color"
        return None

    def static_message(self) -> Any | None:
        from rclpy.serialization import deserialize_message
        from tf2_msgs.msg import TFMessage

        transforms = []
        if not self._static_connections:  # (rosbags reads every connection when given none)
            return None
        for connection, _, raw in self._reader.messages(connections=self._static_connections):
            transforms.extend(deserialize_message(raw, TFMessage).transforms)
        return _merge_static(transforms)

    def events(self) -> Iterator[PlaybackEvent]:
        """One event per recorded message, carrying the recorded CDR bytes (republished as they are)."""
        if not self._connections:
            return
        count, last = 0, None
        try:
            for connection, timestamp, raw in self._reader.messages(connections=self._connections):
                topic, _ = self._out[connection.id]
                event = PlaybackEvent(int(timestamp), [(topic, bytes(raw))])
                count, last = count + 1, int(timestamp)
                yield event
        except Exception as exc:  # a corrupted chunk / damaged page: stop there, saying what was played
            where = "at its first message" if last is None else \
                f"after {count} messages ({(last - self.start_ns) * 1e-9:.3f} s into the recording)"
            reason = " ".join(str(exc).split()) or "unreadable"
            raise InvalidValueError(f"rosbag2 {str(self.path)!r} is damaged {where}, the rest is not played: "
                                    f"{type(exc).__name__}: {reason}") from exc

    def describe(self) -> str:
        text = (f"rosbag2 {str(self.path)!r}: {self._reader.message_count} messages over "
                f"{(self.end_ns - self.start_ns) / 1e9:.3f} s")
        if self.excluded:
            text += f"; excluded (ground truth / masks): {sorted(set(self.excluded))}"
        if self.skipped:
            text += f"; skipped (type not importable): {self.skipped}"
        return text

    def close(self) -> None:
        self._reader.close()


#: Streams the tracker needs from a bag (role -> what it is), checked when recorded topics are remapped.
REQUIRED_ROLES = {"color": "colour image (sensor_msgs/msg/Image, 'color' or 'rgb' in the topic name)",
                  "color_info": "colour camera info (sensor_msgs/msg/CameraInfo)",
                  "joint_states": "joint states (sensor_msgs/msg/JointState)"}
_ROLE_NAME_HINTS = {"color": ("image", "color", "rgb"), "color_info": ("camera_info",), "joint_states": ("joint",)}


def _check_required_roles(path: Path, by_role: dict[str, set[str]], connections: Sequence[Any]) -> None:
    """InvalidValueError naming the first stream of :data:`REQUIRED_ROLES` the bag lacks (and a topic whose name
    looks like it but whose message type is another)."""
    for role, what in REQUIRED_ROLES.items():
        if role in by_role:
            continue
        lookalikes = [f"{c.topic} is a {c.msgtype}" for c in connections
                      if any(h in c.topic.lower() for h in _ROLE_NAME_HINTS[role])]
        hint = f" ({'; '.join(sorted(set(lookalikes)))})" if lookalikes else ""
        raise InvalidValueError(f"rosbag2 {str(path)!r} has no {what}{hint}")


def open_source(
    path: str | Path,
    topics: TopicNames = TopicNames(),
    remap_recorded_topics: bool = True,
    exclude_topics: Sequence[str] = DEFAULT_EXCLUDE_TOPICS,
    warn: Callable[[str], None] = lambda text: None,
) -> DevSequenceSource | BagSource:
    """A rosbag2 source for a folder with ``metadata.yaml`` (or a file in one), a dev-sequence source for a
    folder with ``meta.json``; :class:`InvalidValueError` otherwise."""
    path = Path(str(path)).expanduser()
    if not str(path) or not path.exists():
        raise InvalidValueError(f"source {str(path)!r} does not exist (set the 'source' parameter)")
    folder = path.parent if path.is_file() else path
    if (folder / "metadata.yaml").is_file():
        return BagSource(path, topics, remap_recorded_topics, exclude_topics, warn)
    if path.is_dir() and (path / "meta.json").is_file():
        return DevSequenceSource(path, topics)
    raise InvalidValueError(
        f"source {str(path)!r} is neither a rosbag2 folder (metadata.yaml) nor a dev-sequence folder (meta.json)"
    )
