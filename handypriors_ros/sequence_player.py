"""``sequence_player``: publish a recorded sequence the way the RealSense camera and the Allegro driver would.

Sources (parameter ``source``):

- a **rosbag2** folder (or a file inside one; mcap or sqlite3 storage), read with the pure-Python
  ``rosbags`` library. The recorded CDR bytes are republished unchanged (no deserialisation; with ``restamp``
  or ``loop`` only the header stamp is patched in the bytes, ``/tf`` is deserialised to restamp it), with their
  recorded types, at their recorded log times: joint states at their own rate.
- a **dev-sequence folder** (``meta.json`` + ``rgb/`` + ``depth/``; the format of the shared development
  data and of the project's generator) read with :class:`handypriors_core.io.dev_sequence.DevSequence`.
  Per frame: colour image (rgb8), its camera info, aligned depth (16UC1, mm, 0 = invalid), its camera info
  and one joint state; a fixed hand base becomes ``/tf_static`` (frame 0's pose), a moving one ``/tf``.
  ``gt.json`` and ``mask/`` (ground truth, oracle masks) are never read.

Topics: the sensor streams go to the ``*_topic`` parameters (RealSense ROS 2 wrapper defaults,
``/joint_states``). For a bag, recorded topics are matched to those roles by type and name (``depth`` /
``color`` / ``rgb`` in the name; any ``sensor_msgs/JointState``) unless ``remap_recorded_topics`` is false;
other topics keep their recorded names, ``/tf`` and ``/tf_static`` always do. Recorded topics matching an
``exclude_topics`` pattern (ground truth, masks, oracle data by default) are never published.
All static transforms are merged into ONE latched ``/tf_static`` message published at start.

Timing: ``rate`` is the playback speed factor (1.0 = real time, 0 = as fast as possible); ``start_delay``
[s] waits before the first message; ``wait_for_subscribers`` (> 0) first waits until every sensor publisher
has that many subscribers (at most ``wait_for_subscribers_timeout`` s). Stamps are the recorded ones, or with
``restamp`` the node clock at playback start plus the recorded offset (divided by ``rate`` when > 0), so
messages that shared a stamp still do. With ``loop``, the sequence repeats; recorded stamps are then shifted
by one sequence length (plus one frame period) per repetition so time never runs backwards.

The player logs its own lag (publish time minus the recorded schedule: median, p99, max) every 5 s and at
the end. The node exits 0 when the sequence ends (without ``loop``) and on SIGINT / SIGTERM; 2 on a bad source.

    python -m handypriors_ros.sequence_player --ros-args -p source:=/path/to/sequence -p rate:=1.0
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import dataclasses
import importlib
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import rclpy
import torch
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from handypriors_core.errors import InvalidValueError

from . import cdr, conversions
from .frame_sync import LagStats
from .node_runtime import declare_parameter, exit_process, run_node
from .qos import JOINT_STATES_QOS, SENSOR_PUBLISHER_QOS, TF_QOS, TF_STATIC_QOS

__all__ = [
    "DEFAULT_EXCLUDE_TOPICS",
    "BagSource",
    "DevSequenceSource",
    "PlaybackEvent",
    "SequencePlayer",
    "TopicNames",
    "main",
    "open_source",
]

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
#: Recorded topics matching any of these (``re.search``, case-insensitive) are never published.
DEFAULT_EXCLUDE_TOPICS = (r"ground_?truth", r"(^|/)gt(/|_|$)", r"mask", r"oracle")

_SPIN_SLICE_S = 0.1  # longest single wait inside the playback loop (keeps shutdown prompt)
_LAG_REPORT_S = 5.0  # period of the playback-lag log line
_ACK_TIMEOUT_S = 3.0  # at the end: longest total wait for reliable subscribers to acknowledge the last messages
# (Fast DDS learns about acknowledgements through its heartbeats, every few seconds)


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


# ---------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# Node
# ---------------------------------------------------------------------------------------------------------
def _header_first(cls: Any) -> bool:
    """Whether the message type's first field is a ``std_msgs/Header`` (its stamp can be patched in the CDR)."""
    fields = getattr(cls, "get_fields_and_field_types", dict)()
    return next(iter(fields.items()), ("", ""))[1] == "std_msgs/Header"


def _restamp_raw(data: bytes, cls: Any, shift: Callable[[int], int]) -> Any:
    """Recorded CDR bytes with ``shift`` applied to the stamps: patched in place for header-first types, else
    (``/tf``: stamps inside the transforms) deserialised, restamped and returned as a message."""
    if _header_first(cls):
        return cdr.restamp_header(data, shift(cdr.header_stamp_ns(data)))
    from rclpy.serialization import deserialize_message

    return _restamp(deserialize_message(data, cls), shift)


def _restamp(msg: Any, shift: Callable[[int], int]) -> Any:
    """Apply ``shift`` (ns -> ns) to ``msg.header.stamp`` and to every transform of a TFMessage, in place."""
    if hasattr(msg, "header"):
        msg.header.stamp = conversions.time_from_ns(shift(conversions.time_to_ns(msg.header.stamp)))
    for transform in getattr(msg, "transforms", ()):
        transform.header.stamp = conversions.time_from_ns(shift(conversions.time_to_ns(transform.header.stamp)))
    return msg


def _loop_period(recorded_start: int, last_event: int, times: Sequence[int]) -> int:
    """Shift [ns] between repetitions: the recorded span plus one median spacing of ``times`` (1/30 s if none)."""
    steps = np.diff(np.asarray(times, dtype=np.int64))
    steps = steps[steps > 0]
    return last_event - recorded_start + (int(np.median(steps)) if steps.size else 33_333_333)


def _stamp_map(recorded_start: int, new_start: int, scale: float) -> Callable[[int], int]:
    """``ns -> new_start + (ns - recorded_start) * scale`` [ns]."""

    def shift(ns: int) -> int:
        return new_start + round((ns - recorded_start) * scale)

    return shift


class SequencePlayer(Node):
    """Publishes one source (see the module docstring); :meth:`play` runs the playback."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sequence_player", **kwargs)
        p = self._declare_parameters()
        self.rate: float = p["rate"]
        self.loop: bool = p["loop"]
        self.start_delay: float = p["start_delay"]
        self.restamp: bool = p["restamp"]
        self.wait_for_subscribers: int = p["wait_for_subscribers"]
        self.wait_for_subscribers_timeout: float = p["wait_for_subscribers_timeout"]
        topics = TopicNames(p["color_topic"], p["color_info_topic"], p["depth_topic"], p["depth_info_topic"],
                            p["joint_states_topic"])
        self._color_topic = topics.color
        self.source = open_source(p["source"], topics, p["remap_recorded_topics"], p["exclude_topics"],
                                  warn=self.get_logger().warning)
        self._outputs: dict[str, Any] = {}
        for topic, cls in self.source.topics.items():
            self._outputs[topic] = self.create_publisher(cls, topic, self._qos(topic, topics))
        self._static = self.source.static_message()
        if self._static is not None:
            self._outputs[TF_STATIC_TOPIC] = self.create_publisher(type(self._static), TF_STATIC_TOPIC,
                                                                      TF_STATIC_QOS)
        self.messages_published = 0
        #: Publish time minus due time of every event [ns] (the player's own lag; see :meth:`_log_lag`).
        self.lag = LagStats(size=100_000)
        self.get_logger().info(
            f"{self.source.describe()}; publishing {sorted(self._outputs)}; rate {self.rate:g}"
            f"{' (as fast as possible)' if self.rate == 0 else ''}, loop {self.loop}, restamp {self.restamp}"
        )

    def _declare_parameters(self) -> dict[str, Any]:
        defaults = TopicNames()
        spec = [
            ("source", "", ("Path of a rosbag2 folder (mcap/sqlite3; or a file in it) or a dev-sequence folder "
                            "(meta.json + rgb/ + depth/)."), {}),
            ("rate", 1.0, "Playback speed factor: 1.0 = real time, 2.0 = twice as fast, 0 = as fast as possible.",
             {"floating_range": (0.0, 1000.0)}),
            ("loop", False, "Start again at the end instead of exiting.", {}),
            ("start_delay", 0.0, "Seconds to wait before the first message (after wait_for_subscribers).",
             {"floating_range": (0.0, 3600.0)}),
            ("restamp", False, ("Stamp messages with the node clock at playback start plus the recorded offset "
                                "(instead of the recorded stamps)."), {}),
            ("wait_for_subscribers", 0, ("Before playing, wait until every sensor topic has this many subscribers "
                                         "(0 = do not wait)."), {"integer_range": (0, 100)}),
            ("wait_for_subscribers_timeout", 10.0, "Longest wait [s] for wait_for_subscribers; then play anyway.",
             {"floating_range": (0.0, 3600.0)}),
            ("color_topic", defaults.color, "Colour image output topic (sensor_msgs/Image).", {}),
            ("color_info_topic", defaults.color_info, "Colour camera info output topic.", {}),
            ("depth_topic", defaults.depth, "Aligned depth output topic (sensor_msgs/Image, 16UC1 mm).", {}),
            ("depth_info_topic", defaults.depth_info, "Aligned depth camera info output topic.", {}),
            ("joint_states_topic", defaults.joint_states, "Joint states output topic (sensor_msgs/JointState).", {}),
            ("remap_recorded_topics", True, ("Bags: publish recorded colour/depth/camera-info/joint-state topics "
                                             "on the *_topic names (false: keep every recorded name)."), {}),
            ("exclude_topics", list(DEFAULT_EXCLUDE_TOPICS), ("Bags: regular expressions (search, case-insensitive) "
                                                              "of recorded topics never to publish (ground truth, "
                                                              "masks)."), {}),
        ]
        return {name: declare_parameter(self, name, default, description, read_only=True, **extra)
                for name, default, description, extra in spec}

    @staticmethod
    def _qos(topic: str, topics: TopicNames) -> Any:
        if topic == TF_TOPIC:
            return TF_QOS
        if topic == topics.joint_states:
            return JOINT_STATES_QOS
        return SENSOR_PUBLISHER_QOS

    # -- playback ------------------------------------------------------------------------------------
    def _wait(
        self, executor: SingleThreadedExecutor, seconds: float, until: Callable[[], bool] = lambda: False
    ) -> bool:
        """Serve callbacks for up to ``seconds`` or until ``until()``; returns ``until()``."""
        deadline = time.monotonic() + seconds
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if not rclpy.ok(context=self.context):
                raise ExternalShutdownException()
            executor.spin_once(timeout_sec=min(remaining, _SPIN_SLICE_S))
        return True

    def _sensor_publishers(self) -> list[Any]:
        return [pub for topic, pub in self._outputs.items() if topic not in (TF_TOPIC, TF_STATIC_TOPIC)]

    def _wait_for_subscribers(self, executor: SingleThreadedExecutor) -> None:
        if self.wait_for_subscribers <= 0:
            return
        publishers = self._sensor_publishers()
        ready = self._wait(
            executor, self.wait_for_subscribers_timeout,
            lambda: all(pub.get_subscription_count() >= self.wait_for_subscribers for pub in publishers),
        )
        if not ready:
            counts = {pub.topic_name: pub.get_subscription_count() for pub in publishers}
            self.get_logger().warning(f"wait_for_subscribers timed out ({counts}); playing anyway")

    def play(self, executor: SingleThreadedExecutor) -> None:
        """Publish the statics, then every event on schedule; returns at the end (never with ``loop``)."""
        self._wait_for_subscribers(executor)
        self._wait(executor, self.start_delay)
        loop_period = 0
        restamp_start = 0
        color_times: list[int] = []  # recorded times of the colour events of the first repetition
        event_times: list[int] = []
        if self._static is not None:
            static = self._static
            if self.restamp:
                now = self.get_clock().now().nanoseconds
                static = _restamp(copy.deepcopy(static), lambda _ns: now)
            self._outputs[TF_STATIC_TOPIC].publish(static)
        repetition = 0
        next_report = time.monotonic() + _LAG_REPORT_S
        while True:
            published_before = self.messages_published
            wall_start = time.monotonic()
            t0 = self.source.start_ns
            if self.restamp:
                scale = 1.0 / self.rate if self.rate > 0 else 1.0
                new_start = self.get_clock().now().nanoseconds
                if repetition:  # never behind the previous repetition (rate 0 outruns the recorded spacing)
                    new_start = max(new_start, restamp_start + round(loop_period * scale))
                restamp_start = new_start
                shift = _stamp_map(t0, new_start, scale)
            else:
                shift = _stamp_map(t0, t0 + repetition * loop_period, 1.0)
            for event in self.source.events():
                if self.rate > 0:
                    due = wall_start + (event.time_ns - t0) / 1e9 / self.rate
                    self._wait(executor, due - time.monotonic())
                    due_ns = round(due * 1e9)
                else:
                    executor.spin_once(timeout_sec=0.0)
                    due_ns = time.monotonic_ns()
                if not rclpy.ok(context=self.context):
                    raise ExternalShutdownException()
                if repetition == 0:
                    event_times.append(event.time_ns)
                    if any(topic == self._color_topic for topic, _ in event.messages):
                        color_times.append(event.time_ns)
                self.lag.add(due_ns, time.monotonic_ns())
                for topic, msg in event.messages:
                    if self.restamp or repetition:
                        if isinstance(msg, bytes):
                            msg = _restamp_raw(msg, self._outputs[topic].msg_type, shift)
                        else:
                            _restamp(msg, shift)
                    self._outputs[topic].publish(msg)
                    self.messages_published += 1
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + _LAG_REPORT_S
                    self._log_lag("playing")
            if repetition == 0 and event_times:
                loop_period = _loop_period(t0, event_times[-1], color_times if len(color_times) > 1 else event_times)
            repetition += 1
            if not self.loop:
                break
            if published_before == self.messages_published:
                self.get_logger().warning("the source holds no messages to repeat; stopping the loop")
                break
        self._wait_for_acks()
        self._log_lag(f"sequence done: {self.messages_published} messages published")

    def _log_lag(self, prefix: str) -> None:
        """Log how late the messages went out against their recorded schedule (the player's own lag)."""
        lag = self.lag.summary()
        self.get_logger().info(f"{prefix}; publish lag behind the recorded schedule: median {lag['median_ms']:.1f} ms, "
                               f"p99 {lag['p99_ms']:.1f} ms, max {lag['max_ms']:.1f} ms")

    def _wait_for_acks(self) -> None:
        """Give reliable subscribers the chance to receive the last messages before the node goes away."""
        deadline = time.monotonic() + _ACK_TIMEOUT_S
        for topic, pub in self._outputs.items():
            remaining = deadline - time.monotonic()
            acked = False
            if remaining > 0:
                with contextlib.suppress(Exception):  # best effort only
                    acked = pub.wait_for_all_acked(Duration(seconds=remaining))
            if not acked:
                self.get_logger().debug(f"not every subscriber of {topic} acknowledged the last messages")

    def destroy_node(self) -> None:
        self.source.close()
        super().destroy_node()


def _spin_player(node: SequencePlayer) -> None:
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        node.play(executor)
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0.0)


def main(args: Sequence[str] | None = None) -> NoReturn:
    """Entry point: ``python -m handypriors_ros.sequence_player --ros-args -p source:=...`` (console script
    ``sequence_player``); ends the process with the exit code (:func:`~.node_runtime.exit_process`)."""
    exit_process(run_node(SequencePlayer, args, spin=_spin_player, logger_name="sequence_player"))


if __name__ == "__main__":
    main()
