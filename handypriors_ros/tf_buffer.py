"""The TF tree for the ROS nodes: :class:`TfBuffer` (the core buffer, thread-safe) and one lookup API for
``tf2_ros`` and systems without it (ROS 2 from PyPI wheels).

:class:`TfBuffer` is :class:`handypriors_core.io.transform_buffer.TransformBuffer` (chains through the common
ancestor, interpolation, extrapolation tolerance, typed errors; tf2 semantics, ``stamp_ns`` None / 0 = latest
common time) with a lock, a time-limited history of dynamic transforms (``cache_time_s``, default 10 s as in
tf2) and :meth:`~TfBuffer.add_tf_message` for what arrives on ``/tf`` and ``/tf_static``.

:func:`make_tf_lookup` returns a :class:`TfLookup` backed by ``tf2_ros`` where that is importable, else by a
:class:`TfBuffer` subscribed to ``/tf`` and ``/tf_static`` with the QoS of tf2's ``TransformListener``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from handypriors_core.errors import HandyPriorsError
from handypriors_core.io.transform_buffer import (
    ExtrapolationError,
    NoPathError,
    TransformBuffer,
    TransformLookupError,
    UnknownFrameError,
    interpolate_transform,
)

__all__ = [
    "ExtrapolationError",
    "NoPathError",
    "TfBuffer",
    "TfLookup",
    "TransformLookupError",
    "UnknownFrameError",
    "add_tf_message_safely",
    "interpolate_transform",
    "make_tf_lookup",
]


class TfBuffer(TransformBuffer):
    """Transform tree from ``/tf`` and ``/tf_static``; thread-safe (subscription callbacks vs. lookups).

    Args:
        cache_time_s: how long [s] dynamic samples are kept, measured back from each child's newest one; a
            stamp further back than that (a looped bag, a restarted simulation) restarts the child's history.
        max_extrapolation_s: how far [s] a stamp may lie outside an edge's buffered range (clamped to the
            nearest sample) before :class:`ExtrapolationError`.
    """

    def __init__(self, cache_time_s: float = 10.0, max_extrapolation_s: float = 0.0) -> None:
        super().__init__(max_extrapolation_s=max_extrapolation_s, cache_time_s=cache_time_s)
        self._lock = threading.RLock()


class TfLookup:
    """Callable ``lookup(target_frame, source_frame, stamp_ns=None) -> source2target (4, 4) float64``.

    ``backend`` is ``"tf2_ros"`` or ``"tf_buffer"``; keeps the subscriptions / listener alive.
    """

    def __init__(
        self,
        lookup: Callable[[str, str, int | None], torch.Tensor],
        backend: str,
        keep: Any = None,
        buffer: TfBuffer | None = None,
    ) -> None:
        self._lookup = lookup
        self.backend = backend
        #: The :class:`TfBuffer` of the ``"tf_buffer"`` backend (``None`` for tf2_ros).
        self.buffer = buffer
        self._keep = keep
        #: The ``/tf`` and ``/tf_static`` subscriptions of the ``"tf_buffer"`` backend (for a
        #: :class:`~handypriors_ros.raw_intake.RawIntake`; empty for tf2_ros).
        self.subscriptions = tuple(keep) if buffer is not None and keep is not None else ()

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> torch.Tensor:
        """See :meth:`TfBuffer.lookup`; the same errors whichever backend."""
        return self._lookup(target_frame, source_frame, stamp_ns)

    __call__ = lookup

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> bool:
        try:
            self._lookup(target_frame, source_frame, stamp_ns)
        except TransformLookupError:
            return False
        return True


def _tf2_ros_lookup(node: Any, cache_time_s: float) -> TfLookup | None:
    try:
        import tf2_ros  # type: ignore
        from rclpy.duration import Duration
        from rclpy.time import Time
    except ImportError:
        return None
    from .conversions import transform_to_matrix

    buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time_s))
    listener = tf2_ros.TransformListener(buffer, node)

    def lookup(target_frame: str, source_frame: str, stamp_ns: int | None = None) -> torch.Tensor:
        try:
            msg = buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=int(stamp_ns or 0)))
        except tf2_ros.ExtrapolationException as exc:
            raise ExtrapolationError(f"lookup {source_frame!r} -> {target_frame!r}: {exc}") from exc
        except tf2_ros.ConnectivityException as exc:
            raise NoPathError(f"lookup {source_frame!r} -> {target_frame!r}: {exc}") from exc
        except tf2_ros.LookupException as exc:
            raise UnknownFrameError(f"lookup {source_frame!r} -> {target_frame!r}: {exc}") from exc
        except tf2_ros.TransformException as exc:
            raise TransformLookupError(f"lookup {source_frame!r} -> {target_frame!r}: {exc}") from exc
        return transform_to_matrix(msg)

    return TfLookup(lookup, "tf2_ros", keep=(buffer, listener))


def add_tf_message_safely(buffer: TfBuffer, msg: Any, static: bool, on_error: Callable[[str], None]) -> int:
    """Add each transform of a ``TFMessage`` on its own; a bad one (non-finite or zero quaternion, a loop, a frame
    to itself, an out-of-range stamp) is passed to ``on_error`` as one line and skipped, never raised (this runs
    in a subscription callback: an exception there would stop the node). Returns the count added."""
    topic = "/tf_static" if static else "/tf"
    added = 0
    for transform in getattr(msg, "transforms", []):
        try:
            added += buffer.add_tf_message(_OneTransform([transform]), static=static)
        except (HandyPriorsError, ValueError, TypeError, OverflowError) as exc:
            on_error(f"{topic}: {exc}")
    return added


class _OneTransform:
    def __init__(self, transforms: list[Any]) -> None:
        self.transforms = transforms


def make_tf_lookup(
    node: Any,
    cache_time_s: float = 10.0,
    max_extrapolation_s: float = 0.0,
    prefer_tf2_ros: bool = True,
    *,
    raw: bool = True,
    callback_group: Any = None,
    on_transform: Callable[[int, str], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> TfLookup:
    """A :class:`TfLookup` for ``node``: tf2_ros-backed when importable (and ``prefer_tf2_ros``), else a
    :class:`TfBuffer` fed by subscriptions to ``/tf`` and ``/tf_static`` (tf2 listener QoS).

    The :class:`TfBuffer` backend subscribes with ``raw`` (the CDR bytes, parsed by :mod:`.cdr`: no message
    object per ``/tf`` message) in ``callback_group``; ``on_transform(stamp_ns, child_frame_id)`` is called for
    every dynamic transform received (intake-lag statistics). Malformed messages and transforms the
    :class:`TfBuffer` refuses go to ``on_error`` (default: the node's logger, as warnings).
    ``max_extrapolation_s`` applies to the :class:`TfBuffer` backend only (tf2 never extrapolates).
    """
    if prefer_tf2_ros:
        found = _tf2_ros_lookup(node, cache_time_s)
        if found is not None:
            return found
    from tf2_msgs.msg import TFMessage

    from . import cdr
    from .qos import TF_LISTENER_QOS, TF_STATIC_LISTENER_QOS

    buffer = TfBuffer(cache_time_s=cache_time_s, max_extrapolation_s=max_extrapolation_s)
    report = on_error if on_error is not None else node.get_logger().warning

    def callback(static: bool) -> Callable[[Any], None]:
        def add(msg: Any) -> None:
            if raw:
                try:
                    msg = cdr.parse_tf_message(msg)
                except cdr.CdrError as exc:
                    report(f"{'/tf_static' if static else '/tf'}: {exc}")
                    return
            add_tf_message_safely(buffer, msg, static, report)
            if on_transform is not None and not static:
                for transform in msg.transforms:
                    stamp = transform.header.stamp
                    on_transform(int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
                                 transform.child_frame_id)

        return add

    subscriptions = (
        node.create_subscription(TFMessage, "/tf", callback(False), TF_LISTENER_QOS, raw=raw,
                                 callback_group=callback_group),
        node.create_subscription(TFMessage, "/tf_static", callback(True), TF_STATIC_LISTENER_QOS, raw=raw,
                                 callback_group=callback_group),
    )
    return TfLookup(buffer.lookup, "tf_buffer", keep=subscriptions, buffer=buffer)
