"""QoS profiles used by the package's nodes, in one place.

- TF: tf2_ros' own choices (ros2/geometry2, jazzy): broadcasters publish ``/tf`` reliable, volatile, depth 100
  and ``/tf_static`` reliable, transient local, depth 1 (so every static frame must go into ONE message);
  listeners subscribe with depth 100 (transient local on ``/tf_static``).
- Sensor streams: publishers are reliable, volatile, depth 10 (the RealSense wrapper's default and what
  ``ros2 bag record`` stores for it). A best-effort subscriber (:data:`SENSOR_SUBSCRIBER_QOS`) matches both
  reliable and best-effort publishers; a reliable one (:data:`RELIABLE_SUBSCRIBER_QOS`) loses nothing but does
  not match best-effort publishers (rclpy only logs an "incompatible QoS" warning then).
- Outputs (poses, markers, diagnostics): reliable, volatile, depth 10.

:func:`qos_from_name` maps a parameter string to a profile.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from handypriors_core.errors import InvalidValueError

__all__ = [
    "JOINT_STATES_QOS",
    "LATCHED_QOS",
    "OUTPUT_QOS",
    "QOS_NAMES",
    "RELIABLE_SUBSCRIBER_QOS",
    "SENSOR_PUBLISHER_QOS",
    "SENSOR_SUBSCRIBER_QOS",
    "TF_LISTENER_QOS",
    "TF_QOS",
    "TF_STATIC_LISTENER_QOS",
    "TF_STATIC_QOS",
    "qos_from_name",
]

#: ``/tf`` publisher (tf2_ros TransformBroadcaster).
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
#: ``/tf_static`` publisher (tf2_ros StaticTransformBroadcaster): latched, last message only.
TF_STATIC_QOS = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
#: ``/tf`` subscriber (tf2_ros TransformListener).
TF_LISTENER_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
#: ``/tf_static`` subscriber (tf2_ros TransformListener).
TF_STATIC_LISTENER_QOS = QoSProfile(
    depth=100,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
#: Images, camera info (publisher side).
SENSOR_PUBLISHER_QOS = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
#: Images, camera info (subscriber side): best effort, matches any publisher, keeps the newest 5.
SENSOR_SUBSCRIBER_QOS = QoSProfile(
    depth=5, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE
)
#: Reliable subscriber: no losses, but only matches reliable publishers.
RELIABLE_SUBSCRIBER_QOS = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
#: Joint states (100-150 Hz drivers): deep enough to bridge a slow callback.
JOINT_STATES_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
#: Pose, marker and diagnostics outputs.
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
#: Latched outputs (e.g. a mesh marker published once): late joiners get the last message.
LATCHED_QOS = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

_BY_NAME = {
    "reliable": RELIABLE_SUBSCRIBER_QOS,
    "best_effort": SENSOR_SUBSCRIBER_QOS,
    "sensor_data": SENSOR_SUBSCRIBER_QOS,
    "latched": LATCHED_QOS,
}
#: Names :func:`qos_from_name` accepts.
QOS_NAMES = tuple(_BY_NAME)


def qos_from_name(name: str, depth: int | None = None) -> QoSProfile:
    """Profile for a parameter value (``reliable``, ``best_effort`` / ``sensor_data``, ``latched``).

    ``depth`` overrides the history depth (> 0).
    """
    try:
        base = _BY_NAME[name]
    except KeyError:
        raise InvalidValueError(f"QoS name {name!r} is unknown (use one of {', '.join(QOS_NAMES)})") from None
    if depth is None:
        return base
    if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
        raise InvalidValueError(f"QoS depth must be a positive int; got {depth!r}")
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=base.reliability,
                      durability=base.durability)
