"""``allegro_tracker``: the ROS 2 node tracking a known object in an Allegro hand (issue #7).

Thin by design: it converts messages into a :class:`~handypriors_core.io.frame.Frame`, hands it to
:class:`~handypriors_core.estimation.tracker.ObjectTracker` and converts the
:class:`~handypriors_core.estimation.tracker.Estimate` back into messages. Parameters are described in
:mod:`handypriors_ros.params` (``tracking.*`` = TrackerSettings, the rest = NodeSettings) and loaded from
``config/allegro_tracking.yaml``::

    python -m handypriors_ros.allegro_tracker --ros-args --params-file config/allegro_tracking.yaml \\
        -p object_mesh:=/path/model.obj -p initial_pose:="[0.0, 0.0, 0.4, 0.0, 0.0, 0.0, 1.0]"

Subscriptions (remap with ``-r name:=new``; defaults as the RealSense ROS 2 wrapper and the Allegro drivers
publish them)

- ``/camera/camera/color/image_raw`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8) and
  ``/camera/camera/color/camera_info``;
- ``/camera/camera/aligned_depth_to_color/image_raw`` (optional; 16UC1 millimetres or 32FC1 metres, REP 118),
  matched to each image by stamp;
- ``/joint_states`` (sensor_msgs/JointState), names mapped through the joint map and interpolated to each image
  stamp (:class:`~handypriors_ros.joint_state_buffer.JointStateBuffer`);
- ``~/object_mask`` (optional, mono8, with ``mask_source: external``), matched by stamp;
- ``~/initial_pose`` (geometry_msgs/PoseStamped): (re-)initialises the track at the next frame; a pose in
  another frame is transformed into the camera frame through TF;
- ``/tf`` and ``/tf_static``: ``hand_root_frame`` in the camera frame at each image stamp, composed along the
  tree and interpolated (:func:`~handypriors_ros.tf_buffer.make_tf_lookup`; tf2_ros where it exists), unless
  ``hand2camera_override`` fixes it.

Publications: the object pose on ``/tf`` (parent: the camera optical frame, child: ``object_frame``),
``~/object_pose`` (PoseWithCovarianceStamped, EKF covariance), ``~/contacts`` (MarkerArray: contact points
coloured by contact value, normals as arrows, the object mesh), ``~/overlay`` (Image: hand and object outlines
over the input) and ``/diagnostics``. Service ``~/reset`` (std_srvs/Trigger): forget the track and start again
from the ``initial_pose`` parameter (or wait for ``~/initial_pose`` / the global search).

Threading: callbacks only store messages. Images go into a one-slot mailbox (the newest frame wins; a frame
replaced before it was processed counts as dropped) read by one worker thread that does all the work and
publishes; the executor thread stays free. The worker waits at most ``sync_timeout`` for the depth, mask, joint
states and TF belonging to a frame.

Bad input never stops the node: wrong encodings, size mismatches, a missing CameraInfo, unknown joint names,
NaN joint values, stamps going backwards, TF gaps are logged (throttled), counted and reported in
``/diagnostics``, and the node recovers when good data returns. Without a usable ``object_mesh`` it stays up in
an error state and loads the mesh when the parameter is set.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from rclpy.node import Node

from handypriors_core import defaults
from handypriors_core.errors import HandyPriorsError, InvalidValueError, JointNameError
from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import Estimate, ObjectTracker
from handypriors_core.io.frame import Frame
from handypriors_core.models import JointMap, RigidObject, URDFHand, allegro_urdf

from . import conversions, markers, overlay
from .calibration_outputs import calibration_messages, calibration_status
from .diagnostics import ErrorCounter, HealthThresholds, TrackerHealth, diagnostic_array, tracker_status
from .joint_state_buffer import JointStateBuffer, JointStateLookupError
from .node_runtime import exit_process, run_node
from .params import NodeSettings, ParameterBinding, pose_from_parameter
from .qos import JOINT_STATES_QOS, OUTPUT_QOS, SENSOR_SUBSCRIBER_QOS, TF_QOS
from .tf_buffer import ExtrapolationError, TransformLookupError, UnknownFrameError, make_tf_lookup

__all__ = ["TOPICS", "AllegroTracker", "Mailbox", "main"]

#: Default topic names (all remappable).
TOPICS = defaults.TOPICS

_NS = 1_000_000_000
_RATE_WINDOW_S = 2.0  # processed frames counted over this window for the rate
_DROP_WINDOW_S = 5.0  # "recent" dropped frames
_POLL_S = 0.1  # worker wake-up period without frames (applies requests)
_SEARCH_RETRY_S = 2.0  # global search: least time between two attempts
_STREAM_ACTIVE_S = 1.0  # a depth / mask stream counts as active this long after its last message
_BUFFERED = 30  # depth images / masks kept for stamp matching
_NUMBERS = re.compile(r"\d+(\.\d+)?")


class Mailbox:
    """A one-slot mailbox: :meth:`put` replaces what is there (the newest wins), :meth:`take` waits for an item."""

    def __init__(self) -> None:
        self._item: Any = None
        self._closed = False
        self._cv = threading.Condition()

    def put(self, item: Any) -> bool:
        """Store ``item``; returns True when it replaced an item that was never taken (a dropped frame)."""
        with self._cv:
            replaced = self._item is not None
            self._item = item
            self._cv.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        """The item (removed), or None after ``timeout`` seconds or when closed."""
        with self._cv:
            if self._item is None and not self._closed:
                self._cv.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def pending(self) -> bool:
        """Whether an item waits to be taken (the mailbox holds at most one)."""
        return self._item is not None


@dataclasses.dataclass
class _Image:
    msg: Any
    stamp_ns: int
    received: float  # time.monotonic()


class _StampedBuffer:
    """The last few stamped messages of a stream, matched to image stamps."""

    def __init__(self, size: int = _BUFFERED) -> None:
        self._items: collections.deque = collections.deque(maxlen=size)
        self.last_received = -math.inf

    def add(self, msg: Any) -> None:
        self._items.append((conversions.stamp_ns(msg), msg))
        self.last_received = time.monotonic()

    def active(self) -> bool:
        return time.monotonic() - self.last_received < _STREAM_ACTIVE_S

    def nearest(self, stamp_ns: int, tolerance_ns: int) -> Any:
        best = min(list(self._items), key=lambda item: abs(item[0] - stamp_ns), default=None)
        return best[1] if best is not None and abs(best[0] - stamp_ns) <= tolerance_ns else None

    def newest_stamp(self) -> int | None:
        items = list(self._items)
        return max(s for s, _ in items) if items else None

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class _FrameSkipped(Exception):
    """A frame is not processed for a reason that is not an input error (waiting for an initial pose)."""


def _mask_source(name: str, scene: Any) -> Any:
    """The core's mask source ``name`` (``colour``: built-in colour model; ``detectron2``: imported only here, a
    ConfigError says how to install it where it is missing) with the settings of ``config/segmentation.yaml``."""
    try:
        from handypriors_core.segmentation import SegmentationSettings, make_mask_source  # type: ignore
    except ImportError:
        from handypriors_core.segmentation.base import SegmentationSettings, make_mask_source
    try:
        try:
            from handypriors_core.segmentation import load_segmentation_settings  # type: ignore
        except ImportError:
            from handypriors_core.segmentation.base import load_segmentation_settings
        settings = load_segmentation_settings()
    except (HandyPriorsError, ImportError):
        settings = SegmentationSettings()
    return make_mask_source(dataclasses.replace(settings, source=name), scene)


class AllegroTracker(Node):
    """The tracker node (see the module docstring). ``**kwargs`` go to ``Node`` (context, parameter_overrides)."""

    def __init__(self, node_name: str = "allegro_tracker", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._state_lock = threading.RLock()
        self._inputs = threading.Condition()  # notified by every input callback
        self._error_counts = ErrorCounter()  # input errors by kind, for /diagnostics
        self.params = ParameterBinding(self, on_change=self._on_parameters_changed)
        s = self.params.node
        torch.set_num_threads(s.torch_threads)
        self._hand = URDFHand.from_urdf(s.hand_urdf or allegro_urdf())
        # -- inputs
        self._mailbox = Mailbox()
        self._camera_info: Any = None
        self._depth_info: Any = None
        self._depth = _StampedBuffer()
        self._masks = _StampedBuffer()
        self._joints: JointStateBuffer | None = None
        self._joint_error = ""
        if s.joint_map != "auto":
            self._joints = self._joint_buffer(self._load_joint_map(s.joint_map))
        self._tf = make_tf_lookup(self, cache_time_s=10.0, max_extrapolation_s=s.stamp_tolerance,
                                  on_error=lambda message: self._report(message, warn=True))
        # -- outputs
        self._tf_pub = self.create_publisher(_tf_message_type(), TOPICS["tf"], TF_QOS)
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from sensor_msgs.msg import Image
        from visualization_msgs.msg import MarkerArray

        self._pose_pub = self.create_publisher(PoseWithCovarianceStamped, TOPICS["object_pose"], OUTPUT_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, TOPICS["contacts"], OUTPUT_QOS)
        self._overlay_pub = self.create_publisher(Image, TOPICS["overlay"], OUTPUT_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, TOPICS["diagnostics"], OUTPUT_QOS)
        from geometry_msgs.msg import TransformStamped
        from sensor_msgs.msg import JointState as JointStateMsg

        self._correction_pub = self.create_publisher(TransformStamped, TOPICS["hand_camera_correction"], OUTPUT_QOS)
        self._offsets_pub = self.create_publisher(JointStateMsg, TOPICS["joint_offsets"], OUTPUT_QOS)
        # -- state (worker thread; read by diagnostics under _state_lock)
        self._tracker: ObjectTracker | None = None
        self._config_error = ""
        self._rebuild_requested = False
        self._keep_track = True
        self._reset_requested: threading.Event | None = None
        self._reset_result = ""
        self._pending_pose_msg: Any = None
        self._last_estimate: Estimate | None = None
        self._last_stamp_ns: int | None = None
        self._last_search = -math.inf
        self._searcher: Any = None
        self._frame_index = 0
        self._images_received = 0
        self._tracked_count = 0
        self._mesh_marker: Any = None
        self._processed_times: collections.deque = collections.deque()
        self._drop_times: collections.deque = collections.deque()
        self._dropped: collections.Counter = collections.Counter()
        self._latency_s = math.nan
        self._processing_s = math.nan
        self._last_timings: dict[str, float] = {}
        self._stages_ms: dict[str, float] = {}
        self._last_error = ""
        self._last_error_time = -math.inf
        self._logged: dict[str, float] = {}
        self._waiting_reason = "no frame yet"
        self._build_tracker()
        # -- subscriptions and services last: a sequence player waiting for subscribers starts when we are ready
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import CameraInfo, JointState
        from std_srvs.srv import Trigger

        self.create_subscription(Image, TOPICS["color"], self._on_image, SENSOR_SUBSCRIBER_QOS)
        self.create_subscription(CameraInfo, TOPICS["color_info"], self._on_camera_info, SENSOR_SUBSCRIBER_QOS)
        self.create_subscription(Image, TOPICS["depth"], self._on_depth, SENSOR_SUBSCRIBER_QOS)
        self.create_subscription(CameraInfo, TOPICS["depth_info"], self._on_depth_info, SENSOR_SUBSCRIBER_QOS)
        self.create_subscription(Image, TOPICS["object_mask"], self._on_mask, SENSOR_SUBSCRIBER_QOS)
        self.create_subscription(JointState, TOPICS["joint_states"], self._on_joint_state, JOINT_STATES_QOS)
        self.create_subscription(PoseStamped, TOPICS["initial_pose"], self._on_initial_pose, OUTPUT_QOS)
        self.create_service(Trigger, TOPICS["reset"], self._on_reset)
        self.create_timer(s.diagnostics_period, self.publish_diagnostics)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="allegro_tracker_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: mode {self.params.tracking.mode}, device {self.params.tracking.device}, TF via "
            f"{self._tf.backend}, mask source {s.mask_source}; "
            + (f"error: {self._config_error}" if self._config_error else "waiting for images"))

    # =============================================================================================== setup
    @staticmethod
    def _load_joint_map(name: str) -> JointMap:
        if name.endswith((".yaml", ".yml")):
            return JointMap.from_yaml(name)
        return JointMap.shipped(name)

    def _joint_buffer(self, joint_map: JointMap) -> JointStateBuffer:
        return JointStateBuffer(self._hand.joint_names, joint_map, history_s=2.0,
                                max_extrapolation_s=self.params.node.stamp_tolerance)

    def _build_tracker(self, keep_track: bool = False) -> None:
        """(Re)build the tracker from the current parameters; ``keep_track``: continue from the last estimate."""
        s, settings = self.params.node, self.params.tracking
        previous = self._last_estimate.object2camera if keep_track and self._last_estimate is not None else None
        if not keep_track:
            with self._state_lock:
                self._last_estimate = None
        with self._state_lock:
            self._tracker = None
            self._mesh_marker = None
        if not s.object_mesh:
            self._set_config_error("object_mesh is empty: set it to the tracked object's mesh file (.obj/.ply/.stl)")
            return
        t0 = time.monotonic()
        try:
            obj = RigidObject.from_mesh(s.object_mesh, scale=s.object_mesh_scale)
            tracker = ObjectTracker(self._hand, obj, settings)
            if s.mask_source in ("colour", "detectron2"):
                tracker.mask_source = _mask_source(s.mask_source, tracker.scene)
        except Exception as exc:  # noqa: BLE001 - whatever fails, the node stays up in an error state
            self._set_config_error(f"cannot build the tracker: {exc}")
            return
        if s.warm_up:
            self._warm_up(tracker)
        try:  # hand calibration: the file (prior), the previous tracker's estimate on a rebuild, or none
            calibration = self._tracker_calibration(keep_track)
            if calibration is not None or settings.calibration.enabled:
                tracker.set_calibration(calibration)  # (after the warm-up: its synthetic frame is forgotten)
        except HandyPriorsError as exc:
            self._set_config_error(f"calibration_file: {exc}")
            return
        pose = previous if previous is not None else pose_from_parameter(s.initial_pose)
        if pose is not None:
            tracker.initialize(pose)
        with self._state_lock:
            self._tracker = tracker
            self._config_error = ""
        self.get_logger().info(f"tracker built for {obj!r} in {time.monotonic() - t0:.1f} s "
                               f"({'initialised' if pose is not None else 'waiting for an initial pose'})")

    def _tracker_calibration(self, keep_track: bool) -> Any:
        old = self._tracker
        if keep_track and old is not None and old.calibration is not None:
            return old.calibration.result()
        if self.params.node.calibration_file:
            from handypriors_core.io.calibration_file import load_calibration

            return load_calibration(Path(self.params.node.calibration_file).expanduser(), self._hand.joint_names)
        return None

    def _set_config_error(self, message: str) -> None:
        with self._state_lock:
            self._config_error = message
        self.get_logger().error(message)

    def _warm_up(self, tracker: ObjectTracker) -> None:
        """One track() on a synthetic frame (object 0.4 m ahead, hand behind it) to load every kernel."""
        t0 = time.monotonic()
        try:
            from handypriors_core.geometry.camera import PinholeCamera

            width, height = 64, 48
            camera = PinholeCamera(torch.tensor([[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]]),
                                   width, height)
            hand2camera = torch.eye(4)
            hand2camera[:3, :3] = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
            hand2camera[:3, 3] = torch.tensor([0.0, 0.0, 0.45])
            object2camera = torch.eye(4, dtype=torch.float64)
            object2camera[2, 3] = 0.4
            frame = Frame(index=0, stamp=0.0, rgb=torch.full((height, width, 3), 128, dtype=torch.uint8),
                          camera=camera, joint_angles=torch.zeros(len(self._hand.joint_names)),
                          hand2camera=hand2camera, depth=torch.full((height, width), 0.4),
                          object_mask=torch.zeros(height, width))
            tracker.initialize(object2camera)
            tracker.track(frame)
        except Exception as exc:  # noqa: BLE001 - a warm-up failure must not stop the node
            self.get_logger().warning(f"tracker warm-up failed (the first frame will be slow): {exc!r}")
        finally:
            tracker.reset()
            if hasattr(tracker.mask_source, "reset"):
                tracker.mask_source.reset()
        self.get_logger().debug(f"warm-up took {time.monotonic() - t0:.1f} s")

    def _on_parameters_changed(self, tracking: TrackerSettings, node: NodeSettings, changed: set) -> None:
        """Post-set callback (executor thread): record what the worker has to apply."""
        rebuild = {"object_mesh", "object_mesh_scale", "mask_source", "warm_up", "calibration_file"}
        if any(name.startswith("tracking.") or name in rebuild for name in changed):
            # another object starts a new track; other changes continue from the last estimate
            self._keep_track = self._keep_track and not ({"object_mesh", "object_mesh_scale", "calibration_file"}
                                                         & changed)
            self._rebuild_requested = True
        if "torch_threads" in changed:
            torch.set_num_threads(node.torch_threads)
        if "stamp_tolerance" in changed:
            if self._tf.buffer is not None:
                self._tf.buffer.max_extrapolation_ns = round(node.stamp_tolerance * _NS)
            if self._joints is not None:
                self._joints.max_extrapolation_ns = round(node.stamp_tolerance * _NS)
        self.get_logger().info(f"parameters updated: {', '.join(sorted(changed))}")
        with self._inputs:
            self._inputs.notify_all()

    # ========================================================================================== callbacks
    def _on_image(self, msg: Any) -> None:
        self._images_received += 1
        if self._mailbox.put(_Image(msg, conversions.stamp_ns(msg), time.monotonic())):
            self._count_drop("busy")

    def _on_camera_info(self, msg: Any) -> None:
        self._camera_info = msg
        with self._inputs:
            self._inputs.notify_all()

    def _on_depth_info(self, msg: Any) -> None:
        self._depth_info = msg

    def _on_depth(self, msg: Any) -> None:
        self._depth.add(msg)
        with self._inputs:
            self._inputs.notify_all()

    def _on_mask(self, msg: Any) -> None:
        self._masks.add(msg)
        with self._inputs:
            self._inputs.notify_all()

    def _on_joint_state(self, msg: Any) -> None:
        if self._joints is None:
            try:
                joint_map = JointMap.best_match(list(msg.name), self._hand.joint_names)
            except JointNameError as exc:
                self._joint_error = f"joint_states: {exc}"
                self._report(self._joint_error)
                return
            self._joints = self._joint_buffer(joint_map)
            self._joint_error = ""
            self.get_logger().info(f"joint map {joint_map.name!r} chosen for joint names {list(msg.name)[:4]}...")
        for issue in self._joints.add_message(msg):
            self._report(issue.message, warn=issue.level == "warn")
        with self._inputs:
            self._inputs.notify_all()

    def _on_initial_pose(self, msg: Any) -> None:
        self._pending_pose_msg = msg
        self.get_logger().info(f"initial pose received in frame {msg.header.frame_id!r}; applied at the next frame")

    def _on_reset(self, request: Any, response: Any) -> Any:
        done = threading.Event()
        self._reset_requested = done
        with self._inputs:
            self._inputs.notify_all()
        if done.wait(timeout=2.0):
            response.success, response.message = True, self._reset_result
        else:
            response.success, response.message = True, "reset queued: the tracker is busy with a frame"
        return response

    # ============================================================================================== worker
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self._apply_requests()
            except Exception as exc:  # noqa: BLE001 - the worker never dies
                if self._report(f"internal error while applying a request: {exc!r}"):
                    self.get_logger().error(traceback.format_exc())
            item = self._mailbox.take(_POLL_S)
            if item is None or self._stop.is_set():
                continue
            try:
                self._process(item, time.monotonic())
            except _FrameSkipped as skip:
                self._waiting_reason = str(skip)
            except (HandyPriorsError, TransformLookupError, JointStateLookupError) as exc:
                self._count_drop("input")
                self._report(str(exc))
            except Exception as exc:  # noqa: BLE001 - bad input must never stop the node
                self._count_drop("input")
                if self._report(f"internal error: {exc!r}"):
                    self.get_logger().error(traceback.format_exc())

    def _apply_requests(self) -> None:
        if self._rebuild_requested:
            self._rebuild_requested = False
            keep, self._keep_track = self._keep_track, True
            self._build_tracker(keep_track=keep)
        done = self._reset_requested
        if done is not None:
            self._reset_requested = None
            self._reset_result = self._reset_track("reset requested")
            done.set()

    def _reset_track(self, reason: str) -> str:
        """Forget the track; re-initialise from the ``initial_pose`` parameter when it is set."""
        tracker = self._tracker
        with self._state_lock:
            self._last_estimate = None
        if tracker is None:
            return f"{reason}: no tracker ({self._config_error})"
        tracker.reset()
        if hasattr(tracker.mask_source, "reset"):
            tracker.mask_source.reset()
        pose = pose_from_parameter(self.params.node.initial_pose)
        if pose is not None:
            tracker.initialize(pose)
            message = f"{reason}: re-initialised from the initial_pose parameter"
        else:
            message = f"{reason}: waiting for a pose on {self.resolve_topic_name(TOPICS['initial_pose'])}"
        self.get_logger().info(message)
        return message

    def _wait_for(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Wait until ``ready()`` or ``deadline`` (monotonic); input callbacks wake the wait (TF is polled)."""
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return ready()
            with self._inputs:
                self._inputs.wait(min(remaining, 0.005))
        return True

    def _process(self, item: _Image, taken: float) -> None:
        s = self.params.node
        msg, stamp = item.msg, item.stamp_ns
        tracker = self._tracker
        if tracker is None:
            self._count_drop("not ready")
            raise _FrameSkipped(f"error: {self._config_error}")
        if s.max_image_age > 0:
            age = (self.get_clock().now().nanoseconds - stamp) / _NS
            if age > s.max_image_age:
                self._count_drop("stale")
                raise InvalidValueError(f"image is {age:.3f} s old (max_image_age {s.max_image_age:g} s); skipped")
        if stamp == self._last_stamp_ns:
            self._count_drop("duplicate")
            raise InvalidValueError(f"image stamp {stamp / _NS:.6f} s repeats the previous one; skipped")
        camera_frame = (s.camera_frame or msg.header.frame_id).lstrip("/")
        if not camera_frame:
            raise InvalidValueError("the image header has no frame_id and the camera_frame parameter is empty")
        rgb = conversions.image_to_rgb(msg)
        deadline = item.received + s.sync_timeout
        self._wait_for(lambda: self._camera_info is not None, deadline)  # a driver may send it just after
        camera = self._camera(msg)
        depth = self._matching_depth(stamp, rgb.shape[:2], deadline) if s.use_depth else None
        mask = self._matching_mask(stamp, rgb.shape[:2], deadline) if s.mask_source == "external" else None
        joints = self._joint_angles(stamp, deadline)
        hand2camera = self._hand2camera(camera_frame, stamp, deadline)
        if self._last_stamp_ns is not None and stamp < self._last_stamp_ns:  # (a complete frame only: a broken
            back = (self._last_stamp_ns - stamp) / _NS  # message with an old stamp must not reset the track)
            self._report(f"image stamp went backwards by {back:.3f} s (looped bag or restarted camera?); "
                         f"{self._reset_track('time went backwards')}", warn=True)
        self._last_stamp_ns = stamp
        frame = Frame(index=self._frame_index, stamp=stamp / _NS, rgb=torch.from_numpy(rgb), camera=camera,
                      joint_angles=joints.float(), hand2camera=hand2camera.float(),
                      depth=None if depth is None else torch.from_numpy(depth),
                      object_mask=None if mask is None else torch.from_numpy(mask),
                      joint_names=tuple(self._hand.joint_names))
        self._frame_index += 1
        if not self._ensure_initialized(tracker, frame, camera_frame):
            return
        inputs_done = time.monotonic()
        estimate = tracker.track(frame)
        tracked = time.monotonic()
        with self._state_lock:
            self._last_estimate = estimate
        self._publish(estimate, frame, camera_frame, stamp, item)
        with self._state_lock:
            self._stages_ms = {"queue_ms": 1e3 * (taken - item.received), "inputs_ms": 1e3 * (inputs_done - taken),
                               "track_ms": 1e3 * (tracked - inputs_done),
                               "publish_ms": 1e3 * (time.monotonic() - tracked)}

    # -- inputs of one frame ----------------------------------------------------------------------------
    def _camera(self, image: Any) -> Any:
        info = self._camera_info
        if info is None:
            raise InvalidValueError(f"no CameraInfo received on {self.resolve_topic_name(TOPICS['color_info'])} "
                                    f"yet; frame skipped")
        if (int(info.width), int(info.height)) != (int(image.width), int(image.height)):
            raise InvalidValueError(f"image is {image.width}x{image.height} but its CameraInfo says "
                                    f"{info.width}x{info.height}; frame skipped")
        return conversions.camera_info_to_camera(info)

    def _matching_depth(self, stamp: int, size: tuple[int, int], deadline: float) -> np.ndarray | None:
        tolerance = round(self.params.node.stamp_tolerance * _NS)
        if not self._depth.active():
            return None
        self._wait_for(lambda: self._depth.nearest(stamp, tolerance) is not None
                       or (self._depth.newest_stamp() or 0) > stamp + tolerance, deadline)
        msg = self._depth.nearest(stamp, tolerance)
        if msg is None:
            self._report(f"no depth image within {tolerance / 1e6:.0f} ms of the colour image at {stamp / _NS:.3f} s; "
                         f"tracking this frame without depth", warn=True)
            return None
        try:
            depth = conversions.image_to_depth(msg)
        except HandyPriorsError as exc:
            self._report(f"depth image rejected ({exc}); tracking without depth")
            return None
        if depth.shape != size:
            self._report(f"depth image is {depth.shape[1]}x{depth.shape[0]} but the colour image is "
                         f"{size[1]}x{size[0]} (depth must be aligned to colour); tracking without depth")
            return None
        info, colour = self._depth_info, self._camera_info
        if info is not None and colour is not None and not np.allclose(info.k, colour.k, rtol=1e-3, atol=1e-3):
            self._report("the depth CameraInfo has other intrinsics than the colour one: is the depth topic aligned "
                         "to colour (aligned_depth_to_color)? Using it as aligned", warn=True)
        return depth

    def _matching_mask(self, stamp: int, size: tuple[int, int], deadline: float) -> np.ndarray | None:
        tolerance = round(self.params.node.stamp_tolerance * _NS)
        if not self._masks.active():
            return None
        self._wait_for(lambda: self._masks.nearest(stamp, tolerance) is not None, deadline)
        msg = self._masks.nearest(stamp, tolerance)
        if msg is None:
            return None
        try:
            if msg.encoding != "mono8":
                raise InvalidValueError(f"Image.encoding {msg.encoding!r} of the object mask must be 'mono8'")
            values = conversions.image_to_array(msg)
        except HandyPriorsError as exc:
            self._report(f"object mask rejected ({exc})")
            return None
        if values.shape != size:
            self._report(f"object mask is {values.shape[1]}x{values.shape[0]} but the image is {size[1]}x{size[0]}")
            return None
        scale = 255.0 if values.max(initial=0) > 1 else 1.0
        return (values.astype(np.float32) / np.float32(scale)).clip(0.0, 1.0)

    def _joint_angles(self, stamp: int, deadline: float) -> torch.Tensor:
        def available() -> bool:
            buffer = self._joints
            span = buffer.time_range_ns() if buffer is not None else None
            return span is not None and span[1] + buffer.max_extrapolation_ns >= stamp

        self._wait_for(available, deadline)
        buffer = self._joints
        if buffer is None:
            raise InvalidValueError(self._joint_error or f"no JointState received on "
                                    f"{self.resolve_topic_name(TOPICS['joint_states'])} yet; frame skipped")
        return buffer.positions_at(stamp).positions

    def _hand2camera(self, camera_frame: str, stamp: int, deadline: float) -> torch.Tensor:
        s = self.params.node
        override = pose_from_parameter(s.hand2camera_override)
        if override is not None:
            return override
        while True:
            try:
                return self._tf.lookup(camera_frame, s.hand_root_frame, stamp)
            except (ExtrapolationError, UnknownFrameError) as exc:
                future = isinstance(exc, UnknownFrameError) or "future" in str(exc)
                if not future or time.monotonic() >= deadline or self._stop.is_set():
                    raise TransformLookupError(f"hand2camera: {exc}") from None
                time.sleep(0.002)

    def _ensure_initialized(self, tracker: ObjectTracker, frame: Frame, camera_frame: str) -> bool:
        """Apply a pose from ~/initial_pose, the parameter or the global search; False = not initialised yet."""
        pose_msg, self._pending_pose_msg = self._pending_pose_msg, None
        if pose_msg is not None:
            try:  # a bad pose is reported and ignored; the frame is still tracked
                source = pose_msg.header.frame_id.lstrip("/")
                pose = conversions.pose_to_matrix(pose_msg)
                if source and source != camera_frame:
                    pose = self._tf.lookup(camera_frame, source, conversions.stamp_ns(pose_msg) or None) @ pose
                if not bool(torch.isfinite(pose).all()):
                    raise InvalidValueError(f"pose is not finite: {pose[:3].tolist()}")
            except (HandyPriorsError, TransformLookupError) as exc:
                self._report(f"~/initial_pose in frame {pose_msg.header.frame_id!r} ignored: {exc}")
            else:
                tracker.reset()
                tracker.initialize(pose)
                self.get_logger().info("track (re-)initialised from ~/initial_pose")
        if tracker.initialized:
            return True
        pose = pose_from_parameter(self.params.node.initial_pose)
        if pose is not None:
            tracker.initialize(pose)
            return True
        if self.params.node.global_search and time.monotonic() - self._last_search >= _SEARCH_RETRY_S:
            self._last_search = time.monotonic()
            found = self._global_search(tracker, frame)
            if found is not None:
                tracker.initialize(found)
                return True
        raise _FrameSkipped("waiting for an initial pose (initial_pose parameter or ~/initial_pose)")

    def _global_search(self, tracker: ObjectTracker, frame: Frame) -> torch.Tensor | None:
        """The core's global pose search on ``frame`` (mask: the frame's, or bootstrapped from depth)."""
        try:
            from handypriors_core.estimation.initialization import GlobalPoseSearch, bootstrap_mask
        except ImportError:
            return None
        t0 = time.monotonic()
        try:
            if self._searcher is None or self._searcher.scene is not tracker.scene:
                try:
                    from handypriors_core.estimation.initialization import load_initialization_settings

                    settings = load_initialization_settings()
                except (HandyPriorsError, ImportError):
                    settings = None
                self._searcher = GlobalPoseSearch(tracker.scene, settings)
            mask = frame.object_mask
            if mask is None:
                mask = bootstrap_mask(tracker.scene, frame)
            result = self._searcher.search(frame, mask)
        except HandyPriorsError as exc:
            self._report(f"global pose search failed: {exc}", warn=True)
            return None
        if not result.ok:
            self._report(f"global pose search found no pose ({result.status})", warn=True)
            return None
        self.get_logger().info(f"initial pose from the global search (score {result.score:.2f}, "
                               f"{time.monotonic() - t0:.1f} s)")
        return result.object2camera

    # -- outputs -----------------------------------------------------------------------------------------
    def _publish(self, estimate: Estimate, frame: Frame, camera_frame: str, stamp: int, item: _Image) -> None:
        s = self.params.node
        pose = estimate.object2camera.detach().to("cpu", torch.float64)
        transform = conversions.matrix_to_transform_stamped(pose, camera_frame, s.object_frame, stamp)
        self._tf_pub.publish(_tf_message_type()(transforms=[transform]))
        now = self.get_clock().now().nanoseconds
        covariance = estimate.covariance.detach().to("cpu", torch.float64)
        covariance = 0.5 * (covariance + covariance.T)
        self._pose_pub.publish(conversions.matrix_to_pose_with_covariance_stamped(pose, covariance, camera_frame,
                                                                                  stamp))
        self._tracked_count += 1
        if s.publish_markers and self._marker_pub.get_subscription_count() > 0:
            self._marker_pub.publish(self._markers(estimate, pose, camera_frame, stamp))
        if (s.publish_overlay and self._tracked_count % s.overlay_every_n == 0
                and self._overlay_pub.get_subscription_count() > 0):
            self._overlay_pub.publish(self._overlay(estimate, frame, pose, camera_frame, stamp))
        done = time.monotonic()
        with self._state_lock:
            self._latency_s = (now - stamp) / _NS
            self._processing_s = done - item.received
            self._last_timings = dict(estimate.timings)
            self._processed_times.append(done)
            while self._processed_times and done - self._processed_times[0] > _RATE_WINDOW_S:
                self._processed_times.popleft()
            self._waiting_reason = ""

    def _markers(self, estimate: Estimate, pose: torch.Tensor, camera_frame: str, stamp: int) -> Any:
        scene = self._tracker.scene if self._tracker is not None else None
        if self._mesh_marker is None and scene is not None:
            self._mesh_marker = markers.mesh_marker(scene.object.verts.cpu(), scene.object.faces.cpu(), camera_frame,
                                                    stamp, ns="object_mesh")
        items = []
        if self._mesh_marker is not None:
            mesh = self._mesh_marker
            mesh.header = conversions.make_header(stamp, camera_frame)
            mesh.pose = conversions.matrix_to_pose(pose)
            items.append(mesh)
        points = estimate.contact_points.detach().cpu()
        if points.shape[0]:
            items.append(markers.contact_markers(points, estimate.contact_values.detach().cpu(), camera_frame, stamp))
            normals = estimate.contact_normals.detach().cpu()
            good = torch.isfinite(normals).all(1) & (normals.norm(dim=1) > 1e-9)
            if bool(good.any()):
                items.extend(markers.normal_markers(points[good], normals[good], camera_frame, stamp))
        return markers.marker_array(items)

    def _overlay(self, estimate: Estimate, frame: Frame, pose: torch.Tensor, camera_frame: str, stamp: int) -> Any:
        scene = self._tracker.scene
        with torch.no_grad():
            hand_verts, _, vertex_link = self._hand.mesh(frame.joint_angles.to(scene.device))
            hand2camera = frame.hand2camera.to(hand_verts)
            hand_cam = hand_verts @ hand2camera[:3, :3].T + hand2camera[:3, 3]
            object_cam = scene.object.verts.double().cpu() @ pose[:3, :3].T + pose[:3, 3]
        camera = frame.camera
        lines = [f"{estimate.status}  quality {estimate.quality:.2f}  {self.params.tracking.mode}",
                 f"{1e3 * estimate.timings.get('total', math.nan):.0f} ms/frame"]
        image = overlay.tracking_overlay(
            frame.rgb.numpy(), camera.K.double().cpu().numpy(), None if camera.D is None else camera.D.cpu().numpy(),
            object_cam.numpy(), scene.object.faces.cpu().numpy(), hand_cam.cpu().numpy(), vertex_link.cpu().numpy(),
            contact_points=estimate.contact_points.cpu().numpy(), contact_values=estimate.contact_values.cpu().numpy(),
            lines=lines)
        return conversions.rgb_to_image(image, stamp, camera_frame)

    # ========================================================================================= diagnostics
    def _count_drop(self, reason: str) -> None:
        now = time.monotonic()
        with self._state_lock:
            self._dropped[reason] += 1
            self._drop_times.append(now)
            while self._drop_times and now - self._drop_times[0] > _DROP_WINDOW_S:
                self._drop_times.popleft()

    def _report(self, message: str, warn: bool = False) -> bool:
        """Record an input problem for diagnostics and log it (the same message at most once per error_hold).

        Returns whether it was logged.
        """
        now = time.monotonic()
        self._error_counts.count(message)
        with self._state_lock:
            self._last_error = message
            self._last_error_time = now
            key = _NUMBERS.sub("#", message)  # the same problem at another stamp is the same problem
            last = self._logged.get(key, -math.inf)
            if now - last < max(self.params.node.error_hold, 1.0):
                return False
            self._logged[key] = now
            if len(self._logged) > 256:
                self._logged.clear()
        if warn:  # (rclpy ties one severity to each logging call site)
            self.get_logger().warning(message)
        else:
            self.get_logger().error(message)
        return True

    def health(self) -> tuple[TrackerHealth, dict[str, Any]]:
        """The node's current health (for /diagnostics) and extra key-values."""
        now = time.monotonic()
        s = self.params.node
        with self._state_lock:
            tracker, estimate = self._tracker, self._last_estimate
            times = [t for t in self._processed_times if now - t <= _RATE_WINDOW_S]
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else (
                0.0 if self._tracked_count else math.nan)
            recent_drops = sum(1 for t in self._drop_times if now - t <= _DROP_WINDOW_S)
            error = self._last_error if now - self._last_error_time <= s.error_hold else ""
            state = "initialising" if tracker is None else tracker.status
            if tracker is not None and not tracker.initialized:
                state = "initialising"
            health = TrackerHealth(
                state=state, rate_hz=rate, latency_s=self._latency_s, quality=(
                    estimate.quality if estimate is not None else math.nan),
                frames_processed=self._tracked_count, dropped_frames=sum(self._dropped.values()),
                dropped_frames_recent=recent_drops,
                seconds_since_last_frame=(now - self._processed_times[-1]) if self._processed_times else math.nan,
                last_error=error)
            if self._config_error:
                node_state = "error"
            elif tracker is not None and not tracker.initialized:
                node_state = "waiting for initial pose"
            else:
                node_state = state
            extra: dict[str, Any] = {
                "node_state": node_state,
                "images_received": self._images_received,
                "config_error": self._config_error,
                "waiting": self._waiting_reason,
                "mode": self.params.tracking.mode,
                "device": self.params.tracking.device,
                "object_mesh": s.object_mesh,
                "processing_ms": 1e3 * self._processing_s,
                "tracker_ms": 1e3 * self._last_timings.get("total", math.nan),
                "joint_map": self._joints.joint_map.name if self._joints is not None else "",
                "tf_backend": self._tf.backend,
            }
            extra.update(self._stages_ms)
            extra.update({f"dropped_{reason.replace(' ', '_')}": count for reason, count in self._dropped.items()})
            extra.update(self._error_counts.values())
            extra.update(self._queue_sizes())
        return health, extra

    def _queue_sizes(self) -> dict[str, int]:
        """Items held by every buffer of the node (``size_*`` in diagnostics; each is bounded)."""
        tf_buffer = self._tf.buffer
        return {"size_mailbox": int(self._mailbox.pending), "size_depth": len(self._depth),
                "size_masks": len(self._masks), "size_joint_samples": self._joints.sample_count if self._joints
                else 0, "size_tf_samples": tf_buffer.sample_count if tf_buffer is not None else -1,
                "size_tf_frames": len(tf_buffer.frames) if tf_buffer is not None else -1,
                "size_error_log": len(self._logged), "size_drop_times": len(self._drop_times)}

    def publish_diagnostics(self) -> None:
        """Publish one DiagnosticArray (timer callback; also callable directly)."""
        from diagnostic_msgs.msg import DiagnosticStatus

        health, extra = self.health()
        status = tracker_status(health, name=f"{self.get_name()}: object tracking",
                                hardware_id=self.params.node.object_mesh or "no object mesh",
                                thresholds=HealthThresholds(stale_after_s=max(2.0, 3 * self.params.node.sync_timeout)),
                                extra=extra)
        if extra["config_error"]:
            status.level = DiagnosticStatus.ERROR
            status.message = f"error: {extra['config_error']}"
        elif extra["node_state"] == "waiting for initial pose" and not health.last_error:
            status.message = "waiting for an initial pose"
        statuses = [status]
        with self._state_lock:
            calibrator = self._tracker.calibration if self._tracker is not None else None
        if calibrator is not None:  # hand calibration: its own status (WARN: recalibrate), topics
            now = self.get_clock().now().nanoseconds
            statuses.append(calibration_status(calibrator, f"{self.get_name()}: hand calibration",
                                               self.params.node.calibration_file))
            transform, offsets = calibration_messages(calibrator, self.params.node.hand_root_frame, now)
            self._correction_pub.publish(transform)
            self._offsets_pub.publish(offsets)
        self._diag_pub.publish(diagnostic_array(statuses, self.get_clock().now().nanoseconds))

    # ============================================================================================ teardown
    def destroy_node(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self._mailbox.close()
            with self._inputs:
                self._inputs.notify_all()
            if self._worker.is_alive() and self._worker is not threading.current_thread():
                self._worker.join(timeout=10.0)
        super().destroy_node()


def _tf_message_type() -> Any:
    from tf2_msgs.msg import TFMessage

    return TFMessage


def main(args: list[str] | None = None) -> NoReturn:
    """Entry point (console script ``allegro_tracker``; ``python -m handypriors_ros.allegro_tracker --ros-args``):
    ends the process with :func:`~.node_runtime.run_node`'s exit code (:func:`~.node_runtime.exit_process`)."""
    exit_process(run_node(AllegroTracker, args, logger_name="allegro_tracker"))


if __name__ == "__main__":
    main()
