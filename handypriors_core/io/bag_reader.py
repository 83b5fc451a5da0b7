"""Read a rosbag2 recording of an Allegro hand + RealSense rig into tracker :class:`~.frame.Frame` s (no ROS).

What a real rig records (``/work/shared/data/dev/README.md`` describes one such bag): a colour image
(``sensor_msgs/Image``), its ``CameraInfo``, optionally the depth image aligned to colour, the hand's
``sensor_msgs/JointState`` and ``/tf_static`` (camera mount) plus ``/tf`` (a hand on a moving arm publishes its
base there). The bag may be a rosbag2 folder, a single ``.mcap`` file or a single ``.db3`` (sqlite3) file
(``bag_files``; messages are deserialised and decoded by ``bag_messages``).

For every colour image message (in log order; ``Frame.index`` = its position among the image messages):

- ``camera`` from the camera info (the message nearest in time; checked against the image size);
- ``depth`` from the aligned depth message whose header stamp is nearest, within ``depth_tolerance_s``
  (``16UC1`` millimetres or ``32FC1`` metres; 0 / NaN become NaN);
- ``joint_angles`` interpolated linearly to the image stamp from the joint-state messages, converted to the
  hand model's joint order with a :class:`~handypriors_core.models.JointMap` (chosen by matching the bag's joint
  names against the shipped maps unless given);
- ``hand2camera`` composed from ``/tf_static`` and ``/tf`` at the image stamp (dynamic edges interpolated,
  :class:`~.transform_buffer.TransformBuffer`).

A frame whose joint states or transforms are more than ``max_gap_s`` away from its stamp is reported with a
reason and no :class:`Frame` (the caller decides; the CLI skips it). Stamps are header stamps (the log time
where a header stamp is zero).

Topic names come from :class:`~.bag_settings.BagTopics` (defaults: the RealSense / Allegro driver names). A
configured topic that is not in the bag is replaced by the one topic of the right message type where that is
unambiguous (one colour image, its camera info, one joint-state topic, aligned depth by encoding); each choice is
reported through the ``report`` callback. A topic named explicitly (``explicit``) must exist.

Every problem is raised as a :class:`~.bag_files.BagError` (or the core's typed errors, e.g. JointNameError) with
one readable line; rosbags' own exceptions never escape. A configured topic of the wrong message type is not used.
Damage met after the first messages (a corrupted chunk, a damaged sqlite3 page) does not raise: reading stops there,
the frames before it are produced and :attr:`BagReader.damage` says where and why (the caller reports the images it
could not read). One image message that cannot be decoded is a frame with a reason, not an error.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import HandyPriorsError, InvalidValueError, JointNameError
from ..geometry.camera import PinholeCamera
from .bag_files import BagError, MissingTopicError, error_line, open_bag
from .bag_messages import (
    CAMERA_INFO,
    COLOUR_ENCODINGS,
    COMPRESSED,
    IMAGE,
    JOINT_STATE,
    TF,
    decode_colour,
    decode_depth,
    stamp_to_ns,
    typestore,
)
from .bag_settings import BagTopics
from .frame import Frame
from .transform_buffer import TransformBuffer, TransformLookupError

__all__ = ["BagFrame", "BagReader"]


# ----------------------------------------------------------------------------------------------- frames
@dataclass
class BagFrame:
    """One colour image message of the bag.

    Attributes:
        index: position among the image messages (0-based). stamp_ns: its header stamp [ns].
        frame: the tracker's input, or None when it could not be built (``reason`` says why).
        log_time_ns: the message's log time [ns].
    """

    index: int
    stamp_ns: int
    frame: Frame | None
    reason: str = ""
    log_time_ns: int = 0


@dataclass
class _JointSamples:
    stamps: np.ndarray  # (N,) int64 ns, sorted
    positions: np.ndarray  # (N, J) float64, hand joint order

    def at(self, stamp: int, max_gap: int) -> np.ndarray | None:
        s = self.stamps
        if stamp <= s[0] or stamp >= s[-1]:
            j = 0 if stamp <= s[0] else len(s) - 1
            return self.positions[j].copy() if abs(int(s[j]) - stamp) <= max_gap else None
        i = int(np.searchsorted(s, stamp))
        t0, t1 = int(s[i - 1]), int(s[i])
        if t1 - t0 > 2 * max_gap and min(stamp - t0, t1 - stamp) > max_gap:
            return None  # a hole in the joint-state stream
        w = (stamp - t0) / (t1 - t0)
        return (1.0 - w) * self.positions[i - 1] + w * self.positions[i]


class BagReader:
    """A rig recording opened for tracking: topics chosen, small topics loaded, frames produced lazily.

    Args:
        path: rosbag2 folder or ``.mcap`` / ``.db3`` file.
        hand_joint_names: the hand model's joint names (``URDFHand.joint_names``): the order of
            ``Frame.joint_angles``.
        settings: topics and options (:class:`BagTopics`; defaults if None).
        report: called with one human-readable line for every automatic choice (topics, joint map).
        dtype: float dtype of the frames' joint angles and hand2camera.

    Attributes:
        image_topic, camera_info_topic, depth_topic (None without depth), joint_topic: the topics used.
        joint_map: the :class:`JointMap` used. camera_frame, hand_frame: TF frames. num_images: image count.
        tf: the :class:`TransformBuffer` of the whole bag. choices: the reported lines.
    """

    def __init__(self, path: str | os.PathLike, hand_joint_names: list[str] | tuple[str, ...],
                 settings: BagTopics | None = None, report: Callable[[str], None] | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        self.path = Path(path)
        self.settings = settings if settings is not None else BagTopics()
        self.hand_joint_names = tuple(hand_joint_names)
        self.dtype = dtype
        self.choices: list[str] = []
        self._report = report
        self.damage: str | None = None  # set when reading stopped at a damaged part of the bag
        self.typestore = typestore()
        self.reader = open_bag(self.path)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------ setup
    def close(self) -> None:
        """Close the bag (idempotent)."""
        reader, self.reader = getattr(self, "reader", None), None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # noqa: BLE001 - closing a broken bag must not mask the real error
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _say(self, line: str) -> None:
        self.choices.append(line)
        if self._report is not None:
            self._report(line)

    def _deserialize(self, raw: bytes, msgtype: str) -> Any:
        try:
            return self.typestore.deserialize_cdr(raw, msgtype)
        except Exception as exc:
            raise BagError(f"bag {self.path}: cannot decode a {msgtype} message: {error_line(exc)}") from exc

    def _messages(self, connections: list, tolerate_damage: bool = False) -> Iterator[tuple[Any, int, bytes]]:
        """Raw messages of ``connections`` in log order. With ``tolerate_damage``, an unreadable part of the bag
        after the first message ends the iteration and sets :attr:`damage` (else: BagError)."""
        last = None
        try:
            for item in self.reader.messages(connections=connections):
                last = int(item[1])
                yield item
        except HandyPriorsError:
            raise
        except Exception as exc:
            if not tolerate_damage or last is None:
                raise BagError(f"cannot read bag {self.path}: {error_line(exc)}") from exc
            if self.damage is None:
                into = (last - int(self.reader.start_time)) * 1e-9
                self.damage = f"bag {self.path} is damaged {into:.3f} s into the recording ({error_line(exc)})"

    def _first_message(self, conn) -> Any | None:
        for c, _, raw in self._messages([conn]):
            return self._deserialize(raw, c.msgtype)
        return None

    def _setup(self) -> None:
        conns = self.reader.connections
        self._by_topic: dict[str, list] = {}
        for c in conns:
            self._by_topic.setdefault(c.topic, []).append(c)
        self.topic_types = {t: cs[0].msgtype for t, cs in self._by_topic.items()}
        self.topic_counts = {t: sum(c.msgcount for c in cs) for t, cs in self._by_topic.items()}
        s = self.settings

        # colour image
        self.image_topic = self._choose(
            "image", s.image, lambda t: self.topic_types[t] in (IMAGE, COMPRESSED) and self._is_colour(t),
            "colour image (sensor_msgs/Image with a colour encoding)", required=True, prefer=("color", "colour", "rgb"))
        self.image_type = self.topic_types[self.image_topic]
        self.num_images = self.topic_counts[self.image_topic]
        if self.num_images == 0:
            raise MissingTopicError(f"bag {self.path}: image topic {self.image_topic} has no messages")
        # camera info: same namespace as the image preferred
        ns = self.image_topic.rsplit("/", 1)[0]
        self.camera_info_topic = self._choose(
            "camera_info", s.camera_info, lambda t: self.topic_types[t] == CAMERA_INFO,
            "camera info (sensor_msgs/CameraInfo)", required=True, prefer_exact=f"{ns}/camera_info",
            prefer_prefix=ns)
        # depth (optional)
        self.depth_topic = None
        if s.depth:
            self.depth_topic = self._choose(
                "depth", s.depth, lambda t: self.topic_types[t] == IMAGE and self._is_depth(t),
                "aligned depth image (16UC1 / 32FC1)", required=False, prefer=("aligned",))
        # joint states
        self.joint_topic = self._choose(
            "joint_states", s.joint_states, lambda t: self.topic_types[t] == JOINT_STATE,
            "joint states (sensor_msgs/JointState)", required=True, prefer=("allegro", "hand"))
        self._load_small_topics()

    def _is_colour(self, topic: str) -> bool:
        if self.topic_types[topic] == COMPRESSED:
            return "depth" not in topic
        msg = self._first_message(self._by_topic[topic][0])
        return msg is not None and str(msg.encoding).lower() in COLOUR_ENCODINGS

    def _is_depth(self, topic: str) -> bool:
        msg = self._first_message(self._by_topic[topic][0])
        return msg is not None and (str(msg.encoding).upper() in ("16UC1", "32FC1") or msg.encoding == "mono16")

    def _choose(self, key: str, configured: str, accept: Callable[[str], bool], what: str, required: bool,
                prefer: tuple[str, ...] = (), prefer_exact: str = "", prefer_prefix: str = "") -> str | None:
        """The configured topic when present (and of the right type); else the one topic ``accept`` takes
        (reported)."""
        wrong_type = ""
        if configured in self._by_topic:
            if accept(configured):
                return configured
            wrong_type = f"topic {configured} is a {self.topic_types[configured]}, not a {what}"
            if key in self.settings.explicit:
                raise MissingTopicError(f"bag {self.path}: {wrong_type}")
            self._say(f"not using {wrong_type}")
        elif key in self.settings.explicit:
            raise MissingTopicError(f"bag {self.path} has no topic {configured} ({what}); topics: "
                                    f"{', '.join(sorted(self._by_topic)) or 'none'}")
        candidates = sorted(t for t in self._by_topic if t != configured and accept(t))
        chosen = None
        if len(candidates) == 1:
            chosen = candidates[0]
        elif candidates:
            narrowed = [t for t in candidates if t == prefer_exact] if prefer_exact else []
            if not narrowed and prefer_prefix:
                narrowed = [t for t in candidates if t.startswith(prefer_prefix + "/")]
            if not narrowed and prefer:
                narrowed = [t for t in candidates if any(p in t.lower() for p in prefer)]
            if len(narrowed) == 1:
                chosen = narrowed[0]
            elif required:
                raise MissingTopicError(
                    f"bag {self.path}: configured {key} topic {configured} is missing and several topics could be "
                    f"the {what}: {', '.join(candidates)}; pass --{key.replace('_', '-')}-topic")
        if chosen is None:
            if required:
                missing = wrong_type or f"topic {configured} is missing"
                raise MissingTopicError(f"bag {self.path} has no {what}: {missing} and no other topic has that type "
                                        f"(topics: {', '.join(sorted(self._by_topic)) or 'none'})")
            self._say(f"no {what} in the bag (configured topic {configured} is missing): tracking without it")
            return None
        self._say(f"using {key} topic {chosen} (configured {configured} is not in the bag; picked by message type)")
        return chosen

    def _load_small_topics(self) -> None:
        s = self.settings
        self.tf = TransformBuffer(max_extrapolation_s=s.max_gap_s)
        tf_conns = [c for t in (s.tf, s.tf_static) for c in self._by_topic.get(t, []) if c.msgtype == TF]
        small = tf_conns + self._by_topic[self.joint_topic] + self._by_topic[self.camera_info_topic]
        joint_msgs: list[tuple[int, list[str], np.ndarray]] = []
        infos: list[tuple[int, Any]] = []
        static_topic = s.tf_static
        for conn, t_log, raw in self._messages(small, tolerate_damage=True):
            msg = self._deserialize(raw, conn.msgtype)
            if conn.msgtype == TF:
                try:
                    self.tf.add_tf_message(msg, static=conn.topic == static_topic)
                except InvalidValueError as exc:
                    raise BagError(f"bag {self.path}: bad transform on {conn.topic}: {exc}") from None
            elif conn.topic == self.joint_topic:
                stamp = stamp_to_ns(msg.header.stamp) or int(t_log)
                joint_msgs.append((stamp, [str(n) for n in msg.name], np.asarray(msg.position, dtype=np.float64)))
            else:
                infos.append((stamp_to_ns(msg.header.stamp) or int(t_log), msg))
        if self.damage is not None:
            self._say(f"{self.damage}: reading stops there")
        if not joint_msgs:
            raise MissingTopicError(f"bag {self.path}: joint-state topic {self.joint_topic} has no messages")
        if not infos:
            raise MissingTopicError(f"bag {self.path}: camera-info topic {self.camera_info_topic} has no messages")
        self._setup_joint_map(joint_msgs)
        self._setup_cameras(infos)
        self._setup_frames()

    def _setup_frames(self) -> None:
        s = self.settings
        first = self._first_message(self._by_topic[self.image_topic][0])
        self.camera_frame = s.camera_frame or str(getattr(first.header, "frame_id", "") if first else "")
        if not self.camera_frame:
            raise BagError(f"bag {self.path}: images on {self.image_topic} have no header.frame_id; pass "
                           f"--camera-frame")
        self._fixed_hand2camera = None
        if s.hand2camera_override:
            from .transform_buffer import _matrix, _normalise_quaternion

            o = np.asarray(s.hand2camera_override, dtype=np.float64)
            self._fixed_hand2camera = _matrix(o[:3], _normalise_quaternion(o[3:], "hand2camera_override"))
            self._say("hand2camera: the fixed hand2camera_override (TF is not used)")
            return
        if not self.tf.frames:
            raise MissingTopicError(f"bag {self.path} has no transforms on {s.tf_static} or {s.tf}: hand2camera "
                                    f"({self.camera_frame} <- {s.hand_frame}) cannot be composed")
        for role, name, flag in (("hand", s.hand_frame, "--hand-frame"), ("camera", self.camera_frame,
                                                                          "--camera-frame")):
            if name not in self.tf.frames:
                known = ", ".join(sorted(self.tf.frames)[:12])
                raise BagError(f"bag {self.path}: {role} frame {name!r} is not in the bag's TF tree (frames: {known}); "
                               f"pass {flag}")
        try:
            self.tf.lookup_numpy(self.camera_frame, s.hand_frame, None)
        except TransformLookupError as exc:
            raise BagError(f"bag {self.path}: cannot compose hand2camera from {s.tf_static} and {s.tf}: {exc}") \
                from None

    def _setup_joint_map(self, joint_msgs: list[tuple[int, list[str], np.ndarray]]) -> None:
        from ..models.joint_maps import JointMap

        spec = self.settings.joint_map or "auto"
        names = set().union(*(set(n) for _, n, _ in joint_msgs))
        if spec == "auto":
            try:
                self.joint_map = JointMap.best_match(names, self.hand_joint_names)
            except JointNameError as exc:
                raise JointNameError(f"bag {self.path}, topic {self.joint_topic}: {exc}") from None
            self._say(f"joint map: {self.joint_map.name} (matches the joint names on {self.joint_topic})")
        elif spec.endswith((".yaml", ".yml")) or os.sep in spec:
            self.joint_map = JointMap.from_yaml(spec)
        else:
            self.joint_map = JointMap.shipped(spec)
        stamps, rows = [], []
        for stamp, msg_names, pos in sorted(joint_msgs, key=lambda m: m[0]):
            if len(msg_names) != len(pos):
                raise BagError(f"bag {self.path}, topic {self.joint_topic}: a JointState has {len(msg_names)} names "
                               f"but {len(pos)} positions")
            mapped = [n for n in msg_names if n in self.joint_map.mapping]
            if len(mapped) < len(self.hand_joint_names):
                unknown = sorted(set(msg_names) - set(self.joint_map.mapping))
                if unknown and not mapped:
                    raise JointNameError(f"bag {self.path}, topic {self.joint_topic}: joint map "
                                         f"{self.joint_map.name!r} does not know joint(s) {unknown[:6]}")
                continue  # a partial message (e.g. one finger group): not enough on its own
            try:
                rows.append(self.joint_map.to_joint_vector(msg_names, pos, self.hand_joint_names,
                                                           ignore_unknown=True))
            except JointNameError as exc:
                raise JointNameError(f"bag {self.path}, topic {self.joint_topic}: {exc}") from None
            stamps.append(stamp)
        if not rows:
            raise JointNameError(f"bag {self.path}, topic {self.joint_topic}: no JointState message carries all "
                                 f"{len(self.hand_joint_names)} hand joints through joint map {self.joint_map.name!r}")
        s = np.asarray(stamps, dtype=np.int64)
        keep = np.concatenate(([True], np.diff(s) > 0))  # duplicated stamps: keep the first
        self._joints = _JointSamples(s[keep], np.stack(rows)[keep])

    def _setup_cameras(self, infos: list[tuple[int, Any]]) -> None:
        infos.sort(key=lambda x: x[0])
        self._info_stamps = np.asarray([s for s, _ in infos], dtype=np.int64)
        self._info_msgs = [m for _, m in infos]
        self._cameras: dict[tuple, PinholeCamera] = {}

    def _camera(self, stamp: int, width: int, height: int) -> PinholeCamera:
        i = int(np.clip(np.searchsorted(self._info_stamps, stamp), 0, len(self._info_msgs) - 1))
        if i > 0 and abs(int(self._info_stamps[i - 1]) - stamp) < abs(int(self._info_stamps[i]) - stamp):
            i -= 1
        msg = self._info_msgs[i]
        key = (tuple(float(v) for v in msg.k), tuple(float(v) for v in msg.d), int(msg.width), int(msg.height),
               str(msg.distortion_model))
        cam = self._cameras.get(key)
        if cam is None:
            if (int(msg.width), int(msg.height)) != (width, height):
                raise BagError(f"bag {self.path}: camera info on {self.camera_info_topic} is {msg.width}x{msg.height} "
                               f"but the images on {self.image_topic} are {width}x{height}")
            model = str(msg.distortion_model) or "plumb_bob"
            d = list(key[1])
            if model == "plumb_bob" and len(d) < 5:
                d = d + [0.0] * (5 - len(d))
            try:
                cam = PinholeCamera.from_camera_info(list(key[0]), d, width, height, model)
            except HandyPriorsError as exc:
                raise BagError(f"bag {self.path}: camera info on {self.camera_info_topic}: {exc}") from None
            self._cameras[key] = cam
        return cam

    # ------------------------------------------------------------------------------------------ frames
    def hand2camera(self, camera_frame: str, stamp: int) -> np.ndarray:
        """``hand2camera (4, 4)`` at ``stamp`` [ns] from the bag's TF (raises TransformLookupError)."""
        if self._fixed_hand2camera is not None:
            return self._fixed_hand2camera.copy()
        return self.tf.lookup_numpy(camera_frame, self.settings.hand_frame, stamp)

    def frames(self) -> Iterator[BagFrame]:
        """One :class:`BagFrame` per colour image message, in log order (images decoded lazily)."""
        conns = list(self._by_topic[self.image_topic])
        depth_conns = list(self._by_topic[self.depth_topic]) if self.depth_topic else []
        depth_ids = {c.id for c in depth_conns}
        tol = round(self.settings.depth_tolerance_s * 1e9)
        pending: deque[tuple[int, int, int, Any, bytes]] = deque()  # (index, stamp, log, conn, raw)
        depths: deque[tuple[int, Any]] = deque()  # (stamp, msg)
        newest_depth = -(2 ** 62)
        index = 0
        for conn, t_log, raw in self._messages(conns + depth_conns, tolerate_damage=True):
            try:
                msg = self._deserialize(raw, conn.msgtype)
            except BagError as exc:  # one undecodable message: a frame with a reason (depth: none)
                msg, reason = None, str(exc)
            if conn.id in depth_ids:
                if msg is not None:
                    stamp = stamp_to_ns(msg.header.stamp) or int(t_log)
                    depths.append((stamp, msg))
                    newest_depth = max(newest_depth, stamp)
            else:
                stamp = int(t_log) if msg is None else stamp_to_ns(msg.header.stamp) or int(t_log)
                pending.append((index, stamp, int(t_log), msg, reason if msg is None else conn.msgtype))
                index += 1
            # emit colour images whose depth partner can no longer arrive
            while pending and (not depth_conns or newest_depth > pending[0][1] + tol
                               or len(pending) > 64):
                yield self._emit(pending.popleft(), depths, tol)
        while pending:
            yield self._emit(pending.popleft(), depths, tol)

    def _emit(self, item, depths: deque, tol: int) -> BagFrame:
        index, stamp, t_log, msg, msgtype = item
        if msg is None:  # undecodable message: msgtype holds the reason
            return BagFrame(index, stamp, None, msgtype, t_log)
        while depths and depths[0][0] < stamp - tol:
            depths.popleft()
        depth_msg = None
        best = tol + 1
        for d_stamp, d_msg in depths:
            if abs(d_stamp - stamp) < best:
                best, depth_msg = abs(d_stamp - stamp), d_msg
        try:
            return self._build(index, stamp, t_log, msg, msgtype, depth_msg)
        except BagError as exc:  # a bad image (size, encoding, data): this frame only
            return BagFrame(index, stamp, None, str(exc), t_log)

    def _build(self, index: int, stamp: int, t_log: int, msg: Any, msgtype: str, depth_msg: Any) -> BagFrame:
        rgb = decode_colour(msg, msgtype)
        height, width = rgb.shape[:2]
        camera = self._camera(stamp, width, height)
        gap = round(self.settings.max_gap_s * 1e9)
        q = self._joints.at(stamp, gap)
        if q is None:
            return BagFrame(index, stamp, None, f"no joint states within {self.settings.max_gap_s} s of the image "
                                                f"stamp on {self.joint_topic}", t_log)
        try:
            T = self.hand2camera(self.camera_frame, stamp)
        except TransformLookupError as exc:
            return BagFrame(index, stamp, None, f"no hand2camera at the image stamp: {exc}", t_log)
        depth = None
        if depth_msg is not None:
            d = decode_depth(depth_msg)
            if d.shape == (height, width):
                depth = torch.from_numpy(d)
        frame = Frame(index=index, stamp=stamp * 1e-9, rgb=torch.from_numpy(rgb), camera=camera,
                      joint_angles=torch.from_numpy(np.asarray(q)).to(self.dtype),
                      hand2camera=torch.from_numpy(T).to(self.dtype), depth=depth,
                      joint_names=self.hand_joint_names)
        return BagFrame(index, stamp, frame, "", t_log)

    @property
    def hand_frame(self) -> str:
        return self.settings.hand_frame

    def describe(self) -> str:
        """One line: topics used and counts."""
        depth = self.depth_topic or "none"
        return (f"{self.path.name}: {self.num_images} images on {self.image_topic}, depth {depth}, joints "
                f"{self.joint_topic} ({self.joint_map.name}), camera info {self.camera_info_topic}")
