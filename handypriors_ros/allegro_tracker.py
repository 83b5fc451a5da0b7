"""``allegro_tracker``: the ROS 2 node tracking a known object in an Allegro hand (issue #7).

Thin by design: it converts messages into a :class:`~handypriors_core.io.frame.Frame`, hands it to
:class:`~handypriors_core.estimation.tracker.ObjectTracker` and converts the
:class:`~handypriors_core.estimation.tracker.Estimate` back into messages. Parameters are described in
:mod:`handypriors_ros.params` (``tracking.*`` = TrackerSettings, the rest = :class:`~.node_settings.NodeSettings`)
and loaded from ``config/allegro_tracking.yaml``::

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
coloured by contact value, normals as arrows), ``~/object_mesh`` (MarkerArray, latched: the object mesh in
``object_frame``, sent once per object), ``~/overlay`` (Image: hand and object outlines over the input) and
``/diagnostics``. Service ``~/reset`` (std_srvs/Trigger): forget the track and start again from the
``initial_pose`` parameter (or wait for ``~/initial_pose`` / the global search); it answers at once and the
worker applies it before the next frame.

Threading (``docs/node_runtime.md``): callbacks only store messages and never wait. Every input arrives as CDR
bytes (``raw=True``) parsed by :mod:`.cdr` in an intake thread; images go into a one-slot mailbox (the newest frame
wins; a frame replaced before it was processed counts as dropped ``busy``) read by one worker thread that
assembles frames, sends them to the tracker and publishes (:mod:`.frame_pipeline`: the next frame is assembled
while the tracker process tracks this one, and sent before this one's outputs are published). The worker waits
at most ``sync_timeout`` after an image arrived for the depth, mask, joint states and TF belonging to it
(:mod:`.frame_sync`). The node shortens CPython's thread switch
interval so that the executor thread gets the interpreter lock within a fraction of a millisecond while the
worker computes.

Bad input never stops the node: wrong encodings, size mismatches, a missing CameraInfo, unknown joint names,
NaN joint values, stamps going backwards, TF gaps are logged (throttled), counted and reported in
``/diagnostics``, and the node recovers when good data returns. Without a usable ``object_mesh`` it stays up in
an error state and loads the mesh when the parameter is set.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
import traceback
from typing import Any, NoReturn

import torch
from rclpy.node import Node

from handypriors_core import defaults
from handypriors_core.errors import HandyPriorsError, InvalidValueError
from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import Estimate
from handypriors_core.io.frame import Frame
from handypriors_core.models import URDFHand, allegro_urdf

from . import cdr, conversions, outputs
from .calibration_outputs import calibration_messages, calibration_status
from .diagnostics import HealthThresholds, TrackerHealth, diagnostic_array, tracker_status
from .frame_pipeline import Doorbell, FramePipeline, FrameReplaced, StagedFrame
from .frame_sync import FrameAssembler, ImageItem, LagStats, Mailbox
from .initial_pose import InitialPoseSource, WaitingForPose
from .joint_state_buffer import JointStateLookupError
from .node_activity import NodeActivity
from .node_runtime import exit_process, name_os_thread, profiled_thread, run_node
from .node_settings import NodeSettings, pose_from_parameter
from .params import ParameterBinding
from .qos import JOINT_STATES_QOS, LATCHED_QOS, OUTPUT_QOS, SENSOR_SUBSCRIBER_QOS, TF_QOS
from .raw_intake import RawIntake, ServedElsewhere
from .tf_buffer import TransformLookupError, make_tf_lookup
from .tracker_process import InProcessTracker, TrackerProcess
from .tracker_setup import load_joint_map

__all__ = ["GIL_SWITCH_INTERVAL_S", "TOPICS", "AllegroTracker", "Mailbox", "main"]

#: Default topic names (all remappable): the project's defaults plus the latched object mesh.
TOPICS = {**defaults.TOPICS, "object_mesh": "~/object_mesh"}

#: CPython thread switch interval [s] the node sets with the tracker in its own process (default 5 ms): how long the
#: executor thread may wait for the interpreter lock while the worker assembles a frame (docs/node_runtime.md).
GIL_SWITCH_INTERVAL_S = 0.0005

_NS = 1_000_000_000
_POLL_S = 0.1  # worker wake-up period without frames (applies requests)


class _FrameSkipped(Exception):
    """A frame is not processed for a reason that is not an input error (no tracker: a configuration error)."""


@dataclasses.dataclass
class _Assembled:
    """A frame assembled by the worker, ready for the tracker: ``packed`` by it (images in shared memory),
    ``reset`` a reason to reset the track before it is sent ('' for none)."""

    frame: Frame
    camera_frame: str
    packed: Any
    reset: str = ""


class AllegroTracker(Node):
    """The tracker node (see the module docstring). ``**kwargs`` go to ``Node`` (context, parameter_overrides)."""

    def __init__(self, node_name: str = "allegro_tracker", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._state_lock = threading.RLock()
        self.activity = NodeActivity()  # counters, timings and input errors, for /diagnostics
        self.params = ParameterBinding(self, on_change=self._on_parameters_changed)
        s = self.params.node
        if s.tracker_process:  # (with the tracker in this process a short interval slows it down several times)
            sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        torch.set_num_threads(s.torch_threads)
        self._hand = URDFHand.from_urdf(s.hand_urdf or allegro_urdf())
        # -- inputs (callbacks only store; the high-rate streams are drained by an intake thread of their own)
        self._intake_group = ServedElsewhere()
        self._bell = Doorbell()  # rung by the intake thread: a new image, an input the waiting frame needs
        self._mailbox = Mailbox(self._bell)
        self._stop = threading.Event()
        self._tf_lag = LagStats()
        self._image_lag = LagStats(150)  # colour image: stamp -> taken in here (the camera and DDS on the way in)
        self._output_lag = LagStats(150)  # stamp -> the object TF published (the node's share of the latency)
        self._tf = make_tf_lookup(self, cache_time_s=10.0, max_extrapolation_s=s.stamp_tolerance, raw=True,
                                  callback_group=self._intake_group, on_transform=self._on_tf_sample,
                                  on_error=lambda message: self._report(message, warn=True))
        buffer = self._tf.buffer
        self._inputs = FrameAssembler(
            self._hand.joint_names, lambda: self.params.node, self._tf.lookup, self._report,
            joint_map=None if s.joint_map == "auto" else load_joint_map(s.joint_map),
            tf_newest=None if buffer is None else lambda frame: (buffer.time_range(frame) or (None, None))[1],
            topics={"joint_states": self.resolve_topic_name(TOPICS["joint_states"]),
                    "color_info": self.resolve_topic_name(TOPICS["color_info"])},
            stop=self._stop, publishing=lambda stream: self._optional_publishers.get(stream, lambda: 0)() > 0,
            # (the tracker process checks each frame it rebuilds, and decodes its images as it copies them)
            check_frames=not s.tracker_process, wire_images=s.tracker_process)
        self._inputs.signal.bell = self._bell
        self._optional_publishers: dict = {}  # stream -> publisher count of its subscription (set below)
        # -- outputs
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from sensor_msgs.msg import Image
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        self._tf_pub = self.create_publisher(TFMessage, TOPICS["tf"], TF_QOS)
        self._pose_pub = self.create_publisher(PoseWithCovarianceStamped, TOPICS["object_pose"], OUTPUT_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, TOPICS["contacts"], OUTPUT_QOS)
        self._mesh_pub = self.create_publisher(MarkerArray, TOPICS["object_mesh"], LATCHED_QOS)
        self._overlay_pub = self.create_publisher(Image, TOPICS["overlay"], OUTPUT_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, TOPICS["diagnostics"], OUTPUT_QOS)
        from geometry_msgs.msg import TransformStamped
        from sensor_msgs.msg import JointState as JointStateMsg

        self._correction_pub = self.create_publisher(TransformStamped, TOPICS["hand_camera_correction"], OUTPUT_QOS)
        self._offsets_pub = self.create_publisher(JointStateMsg, TOPICS["joint_offsets"], OUTPUT_QOS)
        # -- state (worker thread; read by diagnostics under _state_lock)
        self._compute = TrackerProcess() if s.tracker_process else InProcessTracker()
        self._tracker: TrackerProcess | InProcessTracker | None = None  # the process once it holds a tracker
        self._object_mesh: tuple[torch.Tensor, torch.Tensor] | None = None
        self.mask_source_type = ""
        self._threads_requested = False
        self._config_error = ""
        self._rebuild_requested = False
        self._keep_track = True
        self._reset_requested = False
        self._initial_pose = InitialPoseSource(self._tf.lookup, self._report, self.get_logger().info)
        self._last_estimate: Estimate | None = None
        self._last_stamp_ns: int | None = None
        self._frame_index = 0
        self._build_tracker()
        # -- subscriptions and services last: a sequence player waiting for subscribers starts when we are ready
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import CameraInfo, JointState
        from std_srvs.srv import Trigger

        inputs, raw = self._inputs, {"raw": True, "callback_group": self._intake_group}
        streams = [  # (every input as CDR bytes, parsed by .cdr in the intake thread: no message objects)
            (JointState, "joint_states", cdr.parse_joint_state, self._on_joint_state, JOINT_STATES_QOS),
            (CameraInfo, "color_info", cdr.parse_camera_info, inputs.add_camera_info, SENSOR_SUBSCRIBER_QOS),
            (Image, "depth", cdr.parse_image, inputs.add_depth, SENSOR_SUBSCRIBER_QOS),
            (CameraInfo, "depth_info", cdr.parse_camera_info, inputs.add_depth_info, SENSOR_SUBSCRIBER_QOS),
            (Image, "object_mask", cdr.parse_image, inputs.add_mask, SENSOR_SUBSCRIBER_QOS),
            (Image, "color", cdr.parse_image, self._on_image, SENSOR_SUBSCRIBER_QOS)]
        subscriptions = [self.create_subscription(kind, TOPICS[key], self._parsed(key, parse, handler), qos, **raw)
                         for kind, key, parse, handler, qos in streams]
        # each wake-up drains in this order: the colour image (the frame's pivot, handed to the worker) after what
        # came with it (its depth, infos, joint states, TF), so that the worker finds them stored, e.g. the first
        # depth image (an optional stream counts as present once a message came)
        *companions, colour = subscriptions
        by_key = {key: sub for (_, key, *_), sub in zip(streams, subscriptions)}
        self._optional_publishers = {"depth": by_key["depth"].get_publisher_count,
                                     "masks": by_key["object_mask"].get_publisher_count}
        self._intake = RawIntake(self.context, [*companions, *self._tf.subscriptions, colour],
                                 on_error=lambda message: self._report(message, warn=True), nice=s.intake_nice)
        self._intake.start()
        self.create_subscription(PoseStamped, TOPICS["initial_pose"], self._on_initial_pose, OUTPUT_QOS)
        self.create_service(Trigger, TOPICS["reset"], self._on_reset)
        self.create_timer(s.diagnostics_period, self.publish_diagnostics)
        self._pipeline = FramePipeline(
            self._worker_stages(), self._bell, arm=lambda on: setattr(self._inputs.signal, "armed", on),
            poll_s=0.005 if self._tf.buffer is None else None, idle_s=_POLL_S)  # (tf2_ros: TF does not ring)
        self._worker = threading.Thread(target=self._work, name="allegro_tracker_worker", daemon=True)
        self._worker.start()
        if s.intake_nice and self._intake.wait_started(1.0) is False:
            self.get_logger().info(f"intake_nice {s.intake_nice}: not permitted here (needs CAP_SYS_NICE); the intake "
                                   f"thread keeps the default priority")
        self.get_logger().info(
            f"ready: mode {self.params.tracking.mode}, device {self.params.tracking.device}, TF via "
            f"{self._tf.backend}, mask source {s.mask_source}; "
            + (f"error: {self._config_error}" if self._config_error else "waiting for images"))

    # =============================================================================================== setup
    def _build_tracker(self, keep_track: bool = False) -> None:
        """(Re)build the tracker in its process from the current parameters; ``keep_track``: continue from the
        last estimate."""
        s, settings = self.params.node, self.params.tracking
        previous = self._last_estimate.object2camera if keep_track and self._last_estimate is not None else None
        with self._state_lock:
            if not keep_track:
                self._last_estimate = None
            self._tracker = None
        if not s.object_mesh:
            self._set_config_error("object_mesh is empty: set it to the tracked object's mesh file (.obj/.ply/.stl)")
            return
        t0 = time.monotonic()
        try:
            info = self._compute.build(s.hand_urdf, s.object_mesh, s.object_mesh_scale, settings, s.mask_source,
                                       s.warm_up, s.torch_threads, s.calibration_file, keep_track)
            pose = previous if previous is not None else pose_from_parameter(s.initial_pose)
            if pose is not None:
                self._compute.initialize(pose)
        except Exception as exc:  # noqa: BLE001 - whatever fails, the node stays up in an error state
            self._set_config_error(f"cannot build the tracker: {exc}")
            return
        if info["warning"]:
            self.get_logger().warning(info["warning"])
        with self._state_lock:
            self._tracker = self._compute
            self._object_mesh = (info["verts"], info["faces"])
            self.mask_source_type = info["mask_source"]
            self._config_error = ""
        self._mesh_pub.publish(outputs.object_mesh_marker_array(info["verts"], info["faces"], s.object_frame))
        self.get_logger().info(f"tracker built for {info['description']} in {time.monotonic() - t0:.1f} s "
                               f"({'initialised' if pose is not None else 'waiting for an initial pose'})")

    def _set_config_error(self, message: str) -> None:
        with self._state_lock:
            self._config_error = message
        self.get_logger().error(message)

    def _on_parameters_changed(self, tracking: TrackerSettings, node: NodeSettings, changed: set) -> None:
        """Post-set callback (executor thread): record what the worker has to apply; never waits."""
        rebuild = {"object_mesh", "object_mesh_scale", "mask_source", "warm_up", "object_frame", "calibration_file"}
        if any(name.startswith("tracking.") or name in rebuild for name in changed):
            # another object (or calibration) starts a new track; other changes continue from the last estimate
            self._keep_track = self._keep_track and not ({"object_mesh", "object_mesh_scale", "calibration_file"}
                                                         & changed)
            self._rebuild_requested = True
        if "torch_threads" in changed:
            torch.set_num_threads(node.torch_threads)
            self._threads_requested = True
        if "stamp_tolerance" in changed:
            if self._tf.buffer is not None:
                self._tf.buffer.max_extrapolation_ns = round(node.stamp_tolerance * _NS)
            self._inputs.set_stamp_tolerance(node.stamp_tolerance)
        self.get_logger().info(f"parameters updated: {', '.join(sorted(changed))}")
        self._mailbox.wake()
        self._inputs.signal.notify()

    # ========================================================================================== callbacks
    def _on_image(self, msg: Any) -> None:
        self.activity.image_received()
        stamp = conversions.stamp_ns(msg)
        self._image_lag.add(stamp)
        if self._mailbox.put(ImageItem(msg, stamp, time.monotonic())):
            self._count_drop("busy")

    def _on_tf_sample(self, stamp_ns: int, child_frame_id: str) -> None:
        if child_frame_id != self.params.node.object_frame:  # (the intake lag of inputs, not of our own poses)
            self._tf_lag.add(stamp_ns)
            self._inputs.signal.poke()  # (wakes the worker when a frame waits for the TF after its stamp)

    def _parsed(self, key: str, parse: Any, handler: Any) -> Any:
        """A raw subscription's callback: ``handler(parse(data))``; malformed bytes are reported, not raised."""
        def callback(data: bytes) -> None:
            try:
                msg = parse(data)
            except cdr.CdrError as exc:
                self._report(f"{key}: {exc}")
                return
            handler(msg)

        return callback

    def _on_joint_state(self, msg: Any) -> None:
        chosen = self._inputs.add_joint_state(msg)
        if chosen:
            self.get_logger().info(chosen)

    def _on_initial_pose(self, msg: Any) -> None:
        self._initial_pose.received(msg)
        self._mailbox.wake()
        self.get_logger().info(f"initial pose received in frame {msg.header.frame_id!r}; applied at the next frame")

    def _on_reset(self, request: Any, response: Any) -> Any:
        """Queue the reset for the worker (applied before the next frame) and answer at once."""
        self._reset_requested = True
        self._mailbox.wake()
        response.success = True
        response.message = f"reset: {self._reset_outcome()} (applied before the next frame)"
        return response

    def _reset_outcome(self) -> str:
        if self._tracker is None:
            return f"no tracker ({self._config_error})"
        if pose_from_parameter(self.params.node.initial_pose) is not None:
            return "the track restarts from the initial_pose parameter"
        return f"waiting for a pose on {self.resolve_topic_name(TOPICS['initial_pose'])}"

    # ============================================================================================== worker
    def _work(self) -> None:
        name_os_thread("hp_worker")
        with profiled_thread("worker"):
            self._work_loop()

    def _work_loop(self) -> None:
        self._pipeline.run(self._stop)

    def _worker_stages(self) -> Any:
        """The worker's stages for :class:`~.frame_pipeline.FramePipeline` (called in the worker thread)."""
        import types

        return types.SimpleNamespace(
            take=lambda: self._mailbox.take(0), inputs_ready=self._inputs.inputs_ready, prepare=self._inputs.prepare,
            deadline=self._inputs.deadline,
            assemble=self._assemble, start=self._start_frame, finish=self._compute.finish_track,
            reply_fileno=self._compute.reply_fileno, publish=self._publish_frame, failed=self._frame_failed,
            requests_pending=lambda: self._rebuild_requested or self._reset_requested or self._threads_requested,
            apply_requests=self._apply_requests_safely, record_stages=self._record_stages)

    def _record_stages(self, stages_ms: dict[str, float]) -> None:
        """The worker's stage times of the frame just published, with the tracker's CPU in its last call
        (``tracker_{receive,step,reply}_cpu_ms``; with ``tracker_process: false``, ``receive`` and ``reply`` cost
        nothing and ``step`` is the worker's own)."""
        tracker = self._tracker
        cpu = getattr(tracker, "cpu_ms", None) or {}
        self.activity.set_stages({**stages_ms, **{f"tracker_{k}_cpu_ms": v for k, v in cpu.items()}})

    def _frame_failed(self, error: Exception) -> None:
        """A frame was not tracked: a newer image replaced it (``busy``), the node waits (no tracker, no pose), or
        an input / the tracker failed (``input``, reported)."""
        if isinstance(error, FrameReplaced):
            self._count_drop("busy")
        elif isinstance(error, (_FrameSkipped, WaitingForPose)):
            self.activity.waiting_reason = str(error)
        elif isinstance(error, (HandyPriorsError, TransformLookupError, JointStateLookupError)):
            self._count_drop("input")
            self._report(str(error))
        elif not self._stop.is_set() and self.context.ok():  # (shutting down: a context that is gone fails)
            self._count_drop("input")  # bad input must never stop the node
            if self._report(f"internal error: {error!r}"):
                self.get_logger().error("".join(traceback.format_exception(error)))

    def _apply_requests_safely(self) -> None:
        try:
            if self._rebuild_requested:
                self._rebuild_requested = False
                keep, self._keep_track = self._keep_track, True
                self._build_tracker(keep_track=keep)
            if self._reset_requested:
                self._reset_requested = False
                self._reset_track("reset requested")
            if self._threads_requested:
                self._threads_requested = False
                self._compute.set_threads(self.params.node.torch_threads)
        except Exception as exc:  # noqa: BLE001 - the worker never dies
            if self._report(f"internal error while applying a request: {exc!r}"):
                self.get_logger().error(traceback.format_exc())

    def _reset_track(self, reason: str) -> str:
        """Forget the track; re-initialise from the ``initial_pose`` parameter when it is set."""
        tracker = self._tracker
        with self._state_lock:
            self._last_estimate = None
        message = f"{reason}: {self._reset_outcome()}"
        if tracker is not None:
            tracker.reset(pose_from_parameter(self.params.node.initial_pose))
        self.get_logger().info(message)
        return message

    def _assemble(self, item: ImageItem) -> _Assembled:
        """The frame of ``item`` with its inputs, packed for the tracker (images into shared memory)."""
        s = self.params.node
        stamp = item.stamp_ns
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
        frame, camera_frame = self._inputs.assemble(item, self._frame_index)
        reset = ""
        if self._last_stamp_ns is not None and stamp < self._last_stamp_ns:  # (a complete frame only: a broken
            back = (self._last_stamp_ns - stamp) / _NS  # message with an old stamp must not reset the track)
            reset = f"image stamp went backwards by {back:.3f} s (looped bag or restarted camera?)"
        self._last_stamp_ns = stamp
        self._frame_index += 1
        return _Assembled(frame, camera_frame, tracker.pack_track(frame), reset)

    def _start_frame(self, assembled: _Assembled) -> None:
        """Send an assembled frame to the tracker (a reset it asked for and the initial pose first)."""
        tracker = self._tracker
        if tracker is None:
            self._count_drop("not ready")
            raise _FrameSkipped(f"error: {self._config_error}")
        if assembled.reset:
            self._report(f"{assembled.reset}; {self._reset_track('time went backwards')}", warn=True)
        s = self.params.node
        self._initial_pose.ensure(tracker, assembled.frame, assembled.camera_frame, pose_from_parameter(s.initial_pose),
                                  s.global_search)
        tracker.start_track(assembled.packed)

    def _publish_frame(self, staged: StagedFrame, estimate: Estimate) -> None:
        with self._state_lock:
            self._last_estimate = estimate
        assembled = staged.payload
        self._publish(estimate, assembled.frame, assembled.camera_frame, staged.item.stamp_ns, staged.item)

    # -- outputs -----------------------------------------------------------------------------------------
    def _publish(self, estimate: Estimate, frame: Frame, camera_frame: str, stamp: int, item: ImageItem) -> None:
        s = self.params.node
        pose = outputs.pose_of(estimate)
        self._tf_pub.publish(outputs.object_tf(pose, camera_frame, s.object_frame, stamp))
        self._output_lag.add(stamp)
        now = self.get_clock().now().nanoseconds
        self._pose_pub.publish(outputs.object_pose(pose, estimate.covariance, camera_frame, stamp))
        tracked = self.activity.frame_tracked()
        if s.publish_markers and self._marker_pub.get_subscription_count() > 0:
            self._marker_pub.publish(outputs.contact_marker_array(estimate, camera_frame, stamp))
        mesh = self._object_mesh
        if (s.publish_overlay and mesh is not None and tracked % s.overlay_every_n == 0
                and self._overlay_pub.get_subscription_count() > 0):
            self._overlay_pub.publish(outputs.overlay_image(estimate, frame, mesh, self._hand, pose,
                                                            self.params.tracking.mode, camera_frame, stamp))
        self.activity.frame_published((now - stamp) / _NS, time.monotonic() - item.received, estimate.timings)

    # ========================================================================================= diagnostics
    def _count_drop(self, reason: str) -> None:
        self.activity.count_drop(reason)

    def _report(self, message: str, warn: bool = False) -> bool:
        """Record an input problem for diagnostics and log it (the same message at most once per error_hold).

        Returns whether it was logged.
        """
        if not self.activity.report(message, self.params.node.error_hold):
            return False
        if warn:  # (rclpy ties one severity to each logging call site)
            self.get_logger().warning(message)
        else:
            self.get_logger().error(message)
        return True

    def health(self) -> tuple[TrackerHealth, dict[str, Any]]:
        """The node's current health (for /diagnostics) and extra key-values."""
        s = self.params.node
        with self._state_lock:
            tracker, estimate, config_error = self._tracker, self._last_estimate, self._config_error
        state = "initialising" if tracker is None or not tracker.initialized else tracker.status
        health = self.activity.health(state, estimate.quality if estimate is not None else math.nan, s.error_hold)
        if config_error:
            node_state = "error"
        elif tracker is not None and not tracker.initialized:
            node_state = "waiting for initial pose"
        else:
            node_state = state
        extra: dict[str, Any] = {
            "node_state": node_state,
            "config_error": config_error,
            "mode": self.params.tracking.mode,
            "device": self.params.tracking.device,
            "object_mesh": s.object_mesh,
            "joint_map": self._inputs.joints.joint_map.name if self._inputs.joints is not None else "",
            "tf_backend": self._tf.backend,
            "joint_states_received": self._inputs.joint_lag.count,
            "intake_nice": {True: f"{s.intake_nice} (applied, with {self._intake.receive_threads_niced} DDS threads)",
                            False: f"{s.intake_nice} (not permitted)",
                            None: "0"}[self._intake.nice_applied],
        }
        extra.update(self.activity.values())
        for name, stats in (("joint_states", self._inputs.joint_lag), ("tf", self._tf_lag), ("image", self._image_lag),
                            ("object_tf_out", self._output_lag)):
            extra.update({f"{name}_lag_{key}": value for key, value in stats.summary().items()})
        extra.update(self._queue_sizes())
        return health, extra

    def _queue_sizes(self) -> dict[str, int]:
        """Items held by the node's input buffers (``size_*`` in diagnostics; each is bounded)."""
        tf_buffer, inputs = self._tf.buffer, self._inputs
        return {"size_mailbox": int(self._mailbox.pending), "size_depth": len(inputs.depth),
                "size_masks": len(inputs.masks), "size_joint_samples": inputs.joints.sample_count if inputs.joints
                else 0, "size_tf_samples": tf_buffer.sample_count if tf_buffer is not None else -1,
                "size_tf_frames": len(tf_buffer.frames) if tf_buffer is not None else -1}

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
        intake = getattr(self, "_intake", None)
        if intake is not None:
            intake.stop()
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self._mailbox.close()
            self._inputs.signal.notify()
            if self._worker.is_alive() and self._worker is not threading.current_thread():
                self._worker.join(timeout=10.0)
            self._compute.close()
            if not self._worker.is_alive():
                self._bell.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> NoReturn:
    """Entry point (console script ``allegro_tracker``; ``python -m handypriors_ros.allegro_tracker --ros-args``):
    ends the process with :func:`~.node_runtime.run_node`'s exit code (:func:`~.node_runtime.exit_process`)."""
    exit_process(run_node(AllegroTracker, args, logger_name="allegro_tracker"))


if __name__ == "__main__":
    main()
