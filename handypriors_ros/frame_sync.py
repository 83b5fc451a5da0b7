"""Frame assembly for the tracker node without rclpy: the mailbox, stamp matching and bounded waiting.

One colour image is the pivot of a frame. Its depth image and object mask are matched to it by stamp with
the approximate-time policy of ``message_filters`` (the candidate nearest in stamp, within ``slop``; while a
nearer one could still arrive, i.e. while nothing newer than ``stamp + slop`` has been seen, the matcher keeps
waiting); joint states and TF are interpolated at the image stamp by their own buffers. Every wait is bounded
by one deadline per frame (the node's ``sync_timeout`` after the image arrived): an input that is late by less
than that bound never costs the frame.

- :class:`Mailbox`: one slot, the newest frame wins; a frame replaced before the worker took it is a frame
  dropped because the tracker was busy (the only reason frames are dropped while inputs are on time).
- :class:`StampedBuffer`: the last messages of one stream, matched by stamp.
- :class:`InputSignal`: input callbacks notify it; the worker waits on it for a condition up to a deadline.
- :class:`LagStats`: intake lag of a stream (arrival wall clock minus stamp), percentiles for diagnostics.
- :class:`FrameAssembler`: holds the inputs (callbacks call its ``add_*`` methods) and turns one colour image
  into a :class:`~handypriors_core.io.frame.Frame` (:meth:`FrameAssembler.assemble`, worker thread).

Nothing here imports rclpy, so it is unit-tested without DDS (``test/test_ros_frame_sync.py``).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from handypriors_core.errors import HandyPriorsError, InvalidValueError, JointNameError
from handypriors_core.geometry.transforms import transform_from_pose
from handypriors_core.io.frame import Frame
from handypriors_core.io.transform_buffer import ExtrapolationError, TransformLookupError, UnknownFrameError
from handypriors_core.models.joint_maps import JointMap

from . import conversions
from .joint_state_buffer import JointStateBuffer

__all__ = ["FrameAssembler", "ImageItem", "InputSignal", "LagStats", "Mailbox", "StampedBuffer", "extrapolate_pose",
           "pose_from_list"]

_NS = 1_000_000_000

_STREAM_ACTIVE_S = 1.0  # a depth / mask stream counts as active this long after its last message
_BUFFERED = 30  # messages kept per stream for stamp matching
_RESTART_NS = 1_000_000_000  # a stamp this much older than the newest buffered one restarts a stream


class Mailbox:
    """A one-slot mailbox: :meth:`put` replaces what is there (the newest wins), :meth:`take` waits for an item.

    ``bell``: rung (``bell.ring()``) by :meth:`put`, :meth:`wake` and :meth:`close`, for a worker that waits on a
    file descriptor (``select``) instead of :meth:`take` (:class:`~handypriors_ros.frame_pipeline.Doorbell`).
    """

    def __init__(self, bell: Any = None) -> None:
        self._item: Any = None
        self._closed = False
        self._cv = threading.Condition()
        self._bell = bell

    def put(self, item: Any) -> bool:
        """Store ``item``; returns True when it replaced an item that was never taken (a dropped frame)."""
        with self._cv:
            replaced = self._item is not None
            self._item = item
            self._cv.notify()
        self._ring()
        return replaced

    def take(self, timeout: float) -> Any:
        """The item (removed), or None after ``timeout`` seconds (0: at once) or when closed."""
        with self._cv:
            if self._item is None and not self._closed and timeout > 0:
                self._cv.wait(timeout)
            item, self._item = self._item, None
            return item

    def wake(self) -> None:
        """Make a waiting :meth:`take` return now (e.g. a reset request to apply)."""
        with self._cv:
            self._cv.notify_all()
        self._ring()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._ring()

    def _ring(self) -> None:
        if self._bell is not None:
            self._bell.ring()

    @property
    def pending(self) -> bool:
        """Whether an item waits to be taken (the mailbox holds at most one)."""
        return self._item is not None


@dataclasses.dataclass
class ImageItem:
    """A colour image waiting for the worker: the message, its stamp [ns] and its arrival (``time.monotonic``)."""

    msg: Any
    stamp_ns: int
    received: float
    #: the image-side inputs decoded ahead of the joint states and TF (:meth:`FrameAssembler.prepare`): a dict,
    #: or the error that decoding raised (re-raised by :meth:`FrameAssembler.assemble`); None: not yet
    prepared: Any = None


class StampedBuffer:
    """The last ``size`` messages of one stream with their stamps [ns]; thread-safe (one writer, one reader).

    :meth:`match` is the approximate-time rule for one pivot stamp: the message nearest in stamp within
    ``slop_ns``. :meth:`settled` says whether waiting could still improve the match.
    """

    def __init__(self, size: int = _BUFFERED, active_s: float = _STREAM_ACTIVE_S) -> None:
        self._items: collections.deque = collections.deque(maxlen=size)
        self._active_s = active_s
        self._newest: int | None = None  # the newest buffered stamp (kept: settled() is asked often)
        self.last_received = -math.inf

    def add(self, stamp_ns: int, msg: Any, now: float | None = None) -> None:
        """Buffer ``msg``; a stamp more than ``_RESTART_NS`` older than the newest buffered one means the stream
        restarted (a looped bag, a restarted driver) or the buffered stamps were garbage (far in the future): the
        old messages are dropped, so they can neither match nor make :meth:`settled` stop the wait early."""
        stamp_ns = int(stamp_ns)
        newest = self.newest_stamp()
        if newest is not None and stamp_ns < newest - _RESTART_NS:
            self._items.clear()
            newest = None
        evicted = self._items[0][0] if len(self._items) == self._items.maxlen else None
        self._items.append((stamp_ns, msg))
        if newest is None or stamp_ns >= newest:
            self._newest = stamp_ns
        elif evicted == newest:  # (the newest fell out of an out-of-order stream)
            self._newest = max(s for s, _ in list(self._items))
        self.last_received = time.monotonic() if now is None else now

    def active(self, now: float | None = None) -> bool:
        """Whether a message arrived in the last ``active_s`` seconds (an optional stream is in use)."""
        return (time.monotonic() if now is None else now) - self.last_received < self._active_s

    def match(self, stamp_ns: int, slop_ns: int) -> Any:
        """The message whose stamp is nearest to ``stamp_ns`` and within ``slop_ns``, else None."""
        best = min(list(self._items), key=lambda item: abs(item[0] - stamp_ns), default=None)
        return best[1] if best is not None and abs(best[0] - stamp_ns) <= slop_ns else None

    def settled(self, stamp_ns: int, slop_ns: int) -> bool:
        """True when no better match for ``stamp_ns`` can arrive: a message at or after ``stamp_ns`` is buffered
        (the stamps of one stream increase, so any later message is farther away). ``slop_ns`` is unused: a match
        outside the slop cannot improve either once the stream has passed the stamp."""
        newest = self.newest_stamp()
        return newest is not None and newest >= stamp_ns

    def newest_stamp(self) -> int | None:
        return self._newest if self._items else None

    def clear(self) -> None:
        self._items.clear()
        self._newest = None

    def __len__(self) -> int:
        return len(self._items)


class InputSignal:
    """Wakes the worker when an input arrives. Callbacks call :meth:`notify`; the worker calls :meth:`wait_for`.

    A worker that waits on a file descriptor instead sets :attr:`bell` and :attr:`armed` (while a frame waits for
    its inputs): an input then rings the bell, at most once until the worker clears it. :meth:`poke` rings it
    without the condition variable (inputs that :meth:`wait_for` polls for, e.g. TF samples).
    """

    def __init__(self, poll_s: float = 0.005, bell: Any = None) -> None:
        self._cv = threading.Condition()
        self._poll_s = poll_s
        self.bell = bell
        self.armed = False

    def notify(self) -> None:
        with self._cv:
            self._cv.notify_all()
        self.poke()

    def poke(self) -> None:
        if self.armed and self.bell is not None:
            self.bell.ring()

    def wait_for(self, ready: Callable[[], bool], deadline: float, stop: threading.Event | None = None) -> bool:
        """Wait until ``ready()`` or the monotonic ``deadline`` (or ``stop``); returns ``ready()``.

        ``ready`` is re-checked on every notification and at least every ``poll_s`` (inputs such as a tf2_ros
        buffer that do not notify).
        """
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return ready()
            with self._cv:
                self._cv.wait(min(remaining, self._poll_s))
        return True


class LagStats:
    """Intake lag of one stream [ns]: the wall clock when a message was handled minus its stamp.

    Keeps the last ``size`` samples; :meth:`summary` gives median / p99 / max in milliseconds. Meaningful when
    the publisher stamps with the same wall clock (a driver on this machine, a player with ``restamp``); with
    recorded stamps it measures the offset to the recording instead.
    """

    def __init__(self, size: int = 2000) -> None:
        self._lags: collections.deque = collections.deque(maxlen=size)
        self.count = 0

    def add(self, stamp_ns: int, now_ns: int | None = None) -> None:
        self._lags.append((time.time_ns() if now_ns is None else now_ns) - int(stamp_ns))
        self.count += 1

    def summary(self) -> dict[str, float]:
        """``{"median_ms", "p99_ms", "max_ms"}`` over the kept samples (NaN without samples)."""
        values = np.asarray(list(self._lags), dtype=np.float64) / 1e6
        if not values.size:
            return {"median_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
        return {"median_ms": float(np.median(values)), "p99_ms": float(np.percentile(values, 99)),
                "max_ms": float(values.max())}

    def clear(self) -> None:
        self._lags.clear()


def _unchecked_frame(fields: dict[str, Any]) -> Frame:
    """A :class:`Frame` of ``fields`` without its ``__post_init__`` checks (the tracker process rebuilds and checks
    it; fields left out take their defaults)."""
    frame = object.__new__(Frame)
    for field in dataclasses.fields(Frame):
        object.__setattr__(frame, field.name, fields.get(field.name, field.default))
    return frame


def extrapolate_pose(earlier: torch.Tensor, newest: torch.Tensor, ratio: float) -> torch.Tensor:
    """The ``(4, 4)`` pose ``ratio`` times the motion from ``earlier`` to ``newest`` past ``newest`` (constant
    velocity: translation along its line, rotation about the same axis at the same rate; ratio 0 = ``newest``).
    numpy (Rodrigues): a few tens of microseconds, where torch's small ops cost a millisecond."""
    T1, T0 = newest.double().numpy(), earlier.double().numpy()
    step = T1[:3, :3] @ T0[:3, :3].T  # (the rotation between them, in the parent frame)
    sin_axis = 0.5 * np.array([step[2, 1] - step[1, 2], step[0, 2] - step[2, 0], step[1, 0] - step[0, 1]])
    angle = math.atan2(float(np.linalg.norm(sin_axis)), 0.5 * (float(np.trace(step)) - 1.0))
    out = T1.copy()
    if angle > 1e-12 and math.pi - angle > 1e-6:  # (a half turn between two samples: no axis to trust; held)
        k = sin_axis / np.linalg.norm(sin_axis)
        K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
        theta = ratio * angle
        out[:3, :3] = (np.eye(3) + math.sin(theta) * K + (1.0 - math.cos(theta)) * (K @ K)) @ T1[:3, :3]
    out[:3, 3] = T1[:3, 3] + ratio * (T1[:3, 3] - T0[:3, 3])
    return torch.from_numpy(out)


def pose_from_list(values: Any) -> torch.Tensor | None:
    """``[x y z qx qy qz qw]`` -> ``(4, 4)`` float64 pose (quaternion normalised); ``[]`` -> None."""
    if not values:
        return None
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    return transform_from_pose(v[:3], v[3:] / v[3:].norm())


class FrameAssembler:
    """The inputs of the tracker's frames, and their assembly around one colour image.

    Callbacks (executor thread) call :meth:`add_camera_info`, :meth:`add_depth_info`, :meth:`add_depth`,
    :meth:`add_mask`, :meth:`add_joint_state`: they store and notify, never wait. The worker calls
    :meth:`assemble`, which waits (up to ``sync_timeout`` after the image arrived) for what belongs to the image.

    Args:
        hand_joint_names: the hand model's joint names (order of ``Frame.joint_angles``).
        settings: returns the current node settings (``camera_frame``, ``use_depth``, ``mask_source``,
            ``sync_timeout`` [s], ``stamp_tolerance`` [s], ``input_extrapolation`` [s], ``hand2camera_override``,
            ``hand_root_frame``).
        tf_lookup: ``(target, source, stamp_ns) -> source2target (4, 4)``, raising the transform buffer's errors.
        report: ``report(message, warn)`` records an input problem (diagnostics, throttled log).
        joint_map: a fixed joint map, or None to choose one from the first JointState's names.
        tf_newest: ``frame -> newest stamp [ns] of its dynamic parent edge`` (None: static / unknown), used to wait
            for the TF sample after the image stamp; None = do not wait for it.
        topics: resolved topic names for messages (``joint_states``, ``color_info``).
        stop: set when the node shuts down (ends every wait).
        publishing: ``stream -> bool`` (``"depth"``, ``"masks"``): whether that optional stream has a publisher
            now. Before its first message a stream with a publisher is waited for (bounded by ``sync_timeout``),
            so the first frame does not go without the depth that is on its way; after it (and with None) a
            stream is waited for while it sent a message in the last second.
        check_frames: validate each :class:`Frame` here (False: the tracker process validates it when it rebuilds
            it from what the node sends, so the node does not pay for the checks twice: about 1 ms per 640x480
            RGB-D frame, most of it the depth check).
        wire_images: the frame's colour and depth are :class:`~handypriors_ros.conversions.WireImage` (the
            message's pixels, checked, not decoded: the tracker process decodes them as it copies them out of
            shared memory; 16UC1 depth crosses as uint16, half the bytes of float32 metres); False: decoded here
            (RGB ``(H, W, 3) uint8`` and ``(H, W) float32`` [m] tensors).
    """

    def __init__(self, hand_joint_names: Any, settings: Callable[[], Any], tf_lookup: Callable[..., torch.Tensor],
                 report: Callable[[str, bool], Any], joint_map: JointMap | None = None,
                 tf_newest: Callable[[str], int | None] | None = None, topics: dict[str, str] | None = None,
                 stop: threading.Event | None = None, publishing: Callable[[str], bool] | None = None,
                 check_frames: bool = True, wire_images: bool = False) -> None:
        self.hand_joint_names = tuple(hand_joint_names)
        self._settings = settings
        self._tf_lookup = tf_lookup
        self._tf_newest = tf_newest
        self._report = report
        self._topics = {"joint_states": "/joint_states", "color_info": "camera_info", **(topics or {})}
        self.stop = stop if stop is not None else threading.Event()
        self._publishing = publishing
        self._check_frames = check_frames
        self._wire_images = wire_images
        self._intrinsics_checked: tuple = ()  # (depth K, colour K) last found to agree
        self._cameras: tuple[Any, Any] = (None, None)  # (CameraInfo key, PinholeCamera) of the last frame
        self.signal = InputSignal()
        self.camera_info: Any = None
        self.depth_info: Any = None
        self.depth = StampedBuffer()
        self.masks = StampedBuffer()
        self.joint_lag = LagStats()
        self.joint_error = ""
        self.joints: JointStateBuffer | None = None if joint_map is None else self._joint_buffer(joint_map)

    # -- intake (callbacks) ---------------------------------------------------------------------------
    def _joint_buffer(self, joint_map: JointMap) -> JointStateBuffer:
        return JointStateBuffer(self.hand_joint_names, joint_map, history_s=2.0,
                                max_extrapolation_s=self._settings().stamp_tolerance)

    def add_camera_info(self, msg: Any) -> None:
        self.camera_info = msg
        self.signal.notify()

    def add_depth_info(self, msg: Any) -> None:
        self.depth_info = msg

    def add_depth(self, msg: Any) -> None:
        self.depth.add(conversions.stamp_ns(msg), msg)
        self.signal.notify()

    def add_mask(self, msg: Any) -> None:
        self.masks.add(conversions.stamp_ns(msg), msg)
        self.signal.notify()

    def add_joint_state(self, msg: Any) -> str:
        """Store a JointState (message or :class:`~handypriors_ros.cdr.JointState`); returns a line to log
        when a joint map was chosen for it (``joint_map: auto``), else ``""``."""
        stamp = conversions.stamp_ns(msg)
        chosen = ""
        if self.joints is None:
            try:
                joint_map = JointMap.best_match(list(msg.name), self.hand_joint_names)
            except JointNameError as exc:
                self.joint_error = f"joint_states: {exc}"
                self._report(self.joint_error, False)
                self.joint_lag.add(stamp)  # (counted as received)
                return ""
            self.joints = self._joint_buffer(joint_map)
            self.joint_error = ""
            chosen = f"joint map {joint_map.name!r} chosen for joint names {list(msg.name)[:4]}..."
        for issue in self.joints.add(msg.name, msg.position, stamp):
            self._report(issue.message, issue.level == "warn")
        self.joint_lag.add(stamp)  # (once the sample is in the buffer: the lag the worker sees)
        self.signal.notify()
        return chosen

    def set_stamp_tolerance(self, seconds: float) -> None:
        if self.joints is not None:
            self.joints.max_extrapolation_ns = round(seconds * _NS)

    # -- assembly (worker) ----------------------------------------------------------------------------
    def wait_for(self, ready: Callable[[], bool], deadline: float) -> bool:
        return self.signal.wait_for(ready, deadline, self.stop)

    def deadline(self, item: ImageItem) -> float:
        """When the wait for ``item``'s inputs ends (``time.monotonic``): ``sync_timeout`` after it arrived."""
        return item.received + self._settings().sync_timeout

    def images_ready(self, item: ImageItem) -> bool:
        """Whether ``item``'s image-side inputs are there: the camera info, the depth and mask streams in use past
        the stamp. Never waits."""
        s, stamp = self._settings(), item.stamp_ns
        if self.camera_info is None:
            return False
        slop = round(s.stamp_tolerance * _NS)
        if s.use_depth and self._present(self.depth) and not self.depth.settled(stamp, slop):
            return False
        return not (s.mask_source == "external" and self._present(self.masks) and not self.masks.settled(stamp, slop))

    def inputs_ready(self, item: ImageItem) -> bool:
        """Whether :meth:`assemble` would find everything it waits for (without waiting): :meth:`images_ready`,
        joint states and TF at or after the stamp. Never waits."""
        stamp = item.stamp_ns
        return self.images_ready(item) and self._joints_reached(stamp) and self._tf_reached(self._settings(), stamp)

    def prepare(self, item: ImageItem) -> None:
        """Decode ``item``'s images (colour, the matched depth and mask, the camera model) into ``item.prepared``
        once :meth:`images_ready`, so that the worker does this while the joint-state and TF samples after the
        stamp are still on their way (the interpolation waits for them). Never raises: an error is kept for
        :meth:`assemble`. Does nothing when already prepared or when the images are not all there."""
        if item.prepared is not None or not self.images_ready(item):
            return
        try:
            item.prepared = self._images(item, self.deadline(item))
        except Exception as exc:  # noqa: BLE001 - kept and raised by assemble, where the pipeline reports it
            item.prepared = exc

    def _horizon_ns(self) -> int:
        """How far before the image stamp the newest joint-state / TF sample may lie for the frame not to wait for
        the sample after the stamp (extrapolated instead; ``input_extrapolation``, at most ``stamp_tolerance``: a
        stream with a single sample is held, which the buffers allow that far) [ns]."""
        s = self._settings()
        return round(min(getattr(s, "input_extrapolation", 0.0), s.stamp_tolerance) * _NS)

    def _joints_reached(self, stamp: int) -> bool:
        """A joint-state sample at or after ``stamp`` is buffered (the angles interpolate), or one at most the
        extrapolation horizon before it."""
        buffer = self.joints
        span = buffer.time_range_ns() if buffer is not None else None
        return span is not None and span[1] >= stamp - self._horizon_ns()

    def _tf_reached(self, s: Any, stamp: int) -> bool:
        """The hand root's TF has a sample at or after ``stamp`` (or is fixed, static, or not observable here)."""
        if self._tf_newest is None or pose_from_list(s.hand2camera_override) is not None:
            return True
        return (self._tf_newest(s.hand_root_frame) or stamp) >= stamp - self._horizon_ns()

    def assemble(self, item: ImageItem, index: int) -> tuple[Frame, str]:
        """The :class:`Frame` of the colour image ``item`` and its camera frame id.

        Raises :class:`~handypriors_core.errors.HandyPriorsError` (or a transform / joint-state lookup error)
        naming the missing or bad input when the frame cannot be built by the deadline.
        """
        stamp = item.stamp_ns
        deadline = self.deadline(item)
        images = item.prepared if item.prepared is not None else self._images(item, deadline)
        if isinstance(images, Exception):
            raise images
        camera_frame = images.pop("camera_frame")
        joints = self._joint_angles(stamp, deadline)
        hand2camera = self._hand2camera(camera_frame, stamp, deadline)
        fields = {"index": index, "stamp": stamp / _NS, **images, "joint_angles": joints.float(),
                  "hand2camera": hand2camera.float(), "joint_names": self.hand_joint_names}
        return (Frame(**fields) if self._check_frames else _unchecked_frame(fields)), camera_frame

    def _images(self, item: ImageItem, deadline: float) -> dict[str, Any]:
        """The image-side fields of ``item``'s :class:`Frame` (``rgb``, ``camera``, ``depth``, ``object_mask``) and
        its ``camera_frame``, waiting (up to ``deadline``) for the camera info and the matching depth and mask."""
        s = self._settings()
        msg, stamp = item.msg, item.stamp_ns
        camera_frame = (s.camera_frame or msg.header.frame_id).lstrip("/")
        if not camera_frame:
            raise InvalidValueError("the image header has no frame_id and the camera_frame parameter is empty")
        if self._wire_images:
            rgb = conversions.image_to_wire(msg, "colour")
            size = rgb.shape
        else:
            rgb = torch.from_numpy(conversions.image_to_rgb(msg))
            size = tuple(rgb.shape[:2])
        self.wait_for(lambda: self.camera_info is not None, deadline)  # a driver may send it just after
        camera = self._camera(msg)
        depth = self._matching_depth(stamp, size, deadline) if s.use_depth else None
        mask = self._matching_mask(stamp, size, deadline) if s.mask_source == "external" else None
        return {"camera_frame": camera_frame, "rgb": rgb, "camera": camera, "depth": depth,
                "object_mask": None if mask is None else torch.from_numpy(mask)}

    def _camera(self, image: Any) -> Any:
        info = self.camera_info
        if info is None:
            raise InvalidValueError(f"no CameraInfo received on {self._topics['color_info']} yet; frame skipped")
        if (int(info.width), int(info.height)) != (int(image.width), int(image.height)):
            raise InvalidValueError(f"image is {image.width}x{image.height} but its CameraInfo says "
                                    f"{info.width}x{info.height}; frame skipped")
        key = (tuple(info.k), tuple(info.d), info.width, info.height, info.distortion_model)
        if key != self._cameras[0]:  # (a driver sends the same calibration with every image)
            self._cameras = (key, conversions.camera_info_to_camera(info))
        return self._cameras[1]

    def _matched(self, buffer: StampedBuffer, stamp: int, deadline: float) -> Any:
        """The message of ``buffer`` matched to ``stamp`` (approximate time, slop = stamp_tolerance), waiting
        until no better match can come or ``deadline``; None for an inactive stream or no match."""
        slop = round(self._settings().stamp_tolerance * _NS)
        if not self._present(buffer):
            return None
        self.wait_for(lambda: buffer.settled(stamp, slop), deadline)
        return buffer.match(stamp, slop)

    def _present(self, buffer: StampedBuffer) -> bool:
        """Whether an optional stream is in use: a message came in the last second, or none ever came and it has a
        publisher (its first message may be on its way)."""
        if buffer.active():
            return True
        if buffer.last_received != -math.inf or self._publishing is None:
            return False
        return bool(self._publishing("depth" if buffer is self.depth else "masks"))

    def _matching_depth(self, stamp: int, size: tuple[int, int], deadline: float) -> Any:
        """The depth matched to ``stamp`` (a ``(H, W) float32`` [m] tensor, or a
        :class:`~handypriors_ros.conversions.WireImage` with ``wire_images``), None when there is none to use."""
        if not self._present(self.depth):
            return None
        msg = self._matched(self.depth, stamp, deadline)
        if msg is None:
            tolerance = self._settings().stamp_tolerance
            self._report(f"no depth image within {1e3 * tolerance:.0f} ms of the colour image at {stamp / _NS:.3f} "
                         f"s; tracking this frame without depth", True)
            return None
        try:
            depth = conversions.image_to_wire(msg, "depth") if self._wire_images else conversions.image_to_depth(msg)
        except HandyPriorsError as exc:
            self._report(f"depth image rejected ({exc}); tracking without depth", False)
            return None
        if tuple(depth.shape) != tuple(size):
            self._report(f"depth image is {depth.shape[1]}x{depth.shape[0]} but the colour image is "
                         f"{size[1]}x{size[0]} (depth must be aligned to colour); tracking without depth", False)
            return None
        info, colour = self.depth_info, self.camera_info
        if info is not None and colour is not None:
            key = (tuple(info.k), tuple(colour.k))  # (a driver sends the same calibrations with every image)
            if key != self._intrinsics_checked:
                if np.allclose(info.k, colour.k, rtol=1e-3, atol=1e-3):
                    self._intrinsics_checked = key
                else:
                    self._report("the depth CameraInfo has other intrinsics than the colour one: is the depth topic "
                                 "aligned to colour (aligned_depth_to_color)? Using it as aligned", True)
        return depth if self._wire_images else torch.from_numpy(depth)

    def _matching_mask(self, stamp: int, size: tuple[int, int], deadline: float) -> np.ndarray | None:
        msg = self._matched(self.masks, stamp, deadline)
        if msg is None:
            return None
        try:
            if msg.encoding != "mono8":
                raise InvalidValueError(f"Image.encoding {msg.encoding!r} of the object mask must be 'mono8'")
            values = conversions.image_to_array(msg)
        except HandyPriorsError as exc:
            self._report(f"object mask rejected ({exc})", False)
            return None
        if values.shape != size:
            self._report(f"object mask is {values.shape[1]}x{values.shape[0]} but the image is {size[1]}x{size[0]}",
                         False)
            return None
        scale = 255.0 if values.max(initial=0) > 1 else 1.0
        return (values.astype(np.float32) / np.float32(scale)).clip(0.0, 1.0)

    def _joint_angles(self, stamp: int, deadline: float) -> torch.Tensor:
        """Joint angles at ``stamp``: waits for a sample at or after it (interpolation), or extrapolates linearly
        when the newest one is at most ``input_extrapolation`` before it; holds the newest one within
        ``stamp_tolerance`` when none came by the deadline."""
        self.wait_for(lambda: self._joints_reached(stamp), deadline)
        buffer = self.joints
        if buffer is None:
            raise InvalidValueError(self.joint_error or f"no JointState received on {self._topics['joint_states']} "
                                    f"yet; frame skipped")
        horizon, span = self._horizon_ns(), buffer.time_range_ns()
        if span is not None and 0 < stamp - span[1] <= horizon and span[1] > span[0]:
            earlier = max(span[0], span[1] - horizon)  # (the baseline: the horizon, or all there is)
            q1, q0 = buffer.positions_at(span[1]).positions, buffer.positions_at(earlier).positions
            return q1 + (q1 - q0) * ((stamp - span[1]) / (span[1] - earlier))
        return buffer.positions_at(stamp).positions

    def _hand2camera(self, camera_frame: str, stamp: int, deadline: float) -> torch.Tensor:
        s = self._settings()
        override = pose_from_list(s.hand2camera_override)
        if override is not None:
            return override
        self.wait_for(lambda: self._tf_reached(s, stamp), deadline)  # the sample after the stamp: interpolate
        newest, horizon = (self._tf_newest(s.hand_root_frame) if self._tf_newest else None), self._horizon_ns()
        if newest is not None and 0 < stamp - newest <= horizon:  # extrapolated (constant velocity)
            try:
                pose = self._tf_lookup(camera_frame, s.hand_root_frame, newest)
                earlier = self._tf_lookup(camera_frame, s.hand_root_frame, newest - horizon)
            except (ExtrapolationError, UnknownFrameError, TransformLookupError):
                pass  # (too little history: looked up at the stamp below, the newest sample held)
            else:
                return extrapolate_pose(earlier, pose, (stamp - newest) / horizon)
        while True:
            try:
                return self._tf_lookup(camera_frame, s.hand_root_frame, stamp)
            except (ExtrapolationError, UnknownFrameError) as exc:
                future = isinstance(exc, UnknownFrameError) or "the future" in str(exc)
                if not future or time.monotonic() >= deadline or self.stop.is_set():
                    raise TransformLookupError(f"hand2camera: {exc}") from None
                self.wait_for(lambda: False, min(deadline, time.monotonic() + 0.002))
