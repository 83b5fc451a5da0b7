"""``sequence_player``: publish a recorded sequence the way the RealSense camera and the Allegro driver would.

Source (parameter ``source``): a rosbag2 folder or a dev-sequence folder, read as timed events by
:mod:`.playback_sources` (which also says how recorded topics map to the ``*_topic`` parameters and which are
never published). A bag's recorded CDR bytes are republished unchanged (with ``restamp`` or ``loop`` only the
header stamp is patched in the bytes; ``/tf`` is deserialised to restamp it), at their recorded log times: joint
states at their own rate. All static transforms go out as ONE latched ``/tf_static`` message at start.

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

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from . import cdr, conversions
from .frame_sync import LagStats
from .node_runtime import declare_parameter, exit_process, run_node
from .playback_sources import DEFAULT_EXCLUDE_TOPICS, TF_STATIC_TOPIC, TF_TOPIC, TopicNames, open_source
from .qos import JOINT_STATES_QOS, SENSOR_PUBLISHER_QOS, TF_QOS, TF_STATIC_QOS

__all__ = ["SequencePlayer", "main"]

_SPIN_SLICE_S = 0.1  # longest single wait inside the playback loop (keeps shutdown prompt)
_LAG_REPORT_S = 5.0  # period of the playback-lag log line
_ACK_TIMEOUT_S = 3.0  # at the end: longest total wait for reliable subscribers to acknowledge the last messages
# (Fast DDS learns about acknowledgements through its heartbeats, every few seconds)


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
