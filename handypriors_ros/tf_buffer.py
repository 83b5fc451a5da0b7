"""A small TF buffer for systems without ``tf2_ros`` (ROS 2 from PyPI wheels), and one lookup API for both.

:class:`TfBuffer` keeps what arrives on ``/tf`` (dynamic: a time-limited history per child frame) and
``/tf_static`` (latched: one transform per child frame) and answers
``lookup(target_frame, source_frame, stamp_ns) -> source2target (4, 4)`` by composing the edges of the frame
tree through the two frames' common ancestor. Dynamic edges are interpolated to the stamp: translation
linearly, rotation along the geodesic (= quaternion slerp). Frame ids are compared without a leading '/'.

Semantics (close to tf2):

- ``stamp_ns`` ``None`` or ``0`` means "latest": the newest time at which every dynamic edge of the chain
  has data (static edges are valid at any time).
- A stamp outside an edge's buffered range by at most ``max_extrapolation_s`` uses the nearest sample
  (no extrapolation); further out raises :class:`ExtrapolationError`.
- Every child frame has one parent. A transform that names a new parent for a child, a static transform for
  a dynamic child (or the reverse), or a dynamic stamp more than ``cache_time_s`` older than the child's
  newest sample (a clock jump back: a looped bag, a restarted simulation) replaces that child's history.
- ``TransformStamped(header.frame_id=parent, child_frame_id=child)`` is ``child2parent``.

:func:`make_tf_lookup` returns a :class:`TfLookup` backed by ``tf2_ros`` where that is importable, else by a
:class:`TfBuffer` subscribed to ``/tf`` and ``/tf_static`` with the QoS of tf2's ``TransformListener``.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from collections.abc import Callable, Iterable
from typing import Any

import torch

from handypriors_core.errors import HandyPriorsError, InvalidValueError
from handypriors_core.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from handypriors_core.geometry.transforms import invert_transform, make_transform

__all__ = [
    "ExtrapolationError",
    "NoPathError",
    "TfBuffer",
    "TfLookup",
    "TransformLookupError",
    "UnknownFrameError",
    "interpolate_transform",
    "make_tf_lookup",
]

_NS = 1_000_000_000
_MAX_CHAIN = 1000  # frames; guards against parent cycles


class TransformLookupError(HandyPriorsError, LookupError):
    """A transform cannot be looked up (base class; the message says why)."""


class UnknownFrameError(TransformLookupError):
    """A frame id was never seen in any transform."""


class NoPathError(TransformLookupError):
    """Both frames are known but belong to different trees."""


class ExtrapolationError(TransformLookupError):
    """The stamp lies outside the buffered time range of an edge of the chain by more than the tolerance."""


def interpolate_transform(T0: torch.Tensor, T1: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend rigid transforms ``(4, 4)``: ``weight`` 0 -> ``T0``, 1 -> ``T1``.

    Translation linear, rotation along the shortest geodesic ``R0 exp(w log(R0^T R1))`` (= quaternion slerp).
    """
    rel = T0[:3, :3].transpose(0, 1) @ T1[:3, :3]
    rotation = T0[:3, :3] @ axis_angle_to_matrix(weight * matrix_to_axis_angle(rel))
    translation = (1.0 - weight) * T0[:3, 3] + weight * T1[:3, 3]
    return make_transform(rotation, translation)


def _frame(frame_id: str) -> str:
    return str(frame_id).lstrip("/")


@dataclasses.dataclass
class _History:
    """Sorted samples of one dynamic edge ``child -> parent``."""

    parent: str
    stamps: list[int] = dataclasses.field(default_factory=list)
    matrices: list[torch.Tensor] = dataclasses.field(default_factory=list)

    def insert(self, stamp: int, matrix: torch.Tensor) -> None:
        index = bisect.bisect_left(self.stamps, stamp)
        if index < len(self.stamps) and self.stamps[index] == stamp:
            self.matrices[index] = matrix
        else:
            self.stamps.insert(index, stamp)
            self.matrices.insert(index, matrix)

    def prune(self, cache_ns: int) -> None:
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_ns)
        if cut:
            del self.stamps[:cut]
            del self.matrices[:cut]


class TfBuffer:
    """Transform tree from ``/tf`` and ``/tf_static``; thread-safe.

    Args:
        cache_time_s: how long [s] dynamic samples are kept, measured back from each child's newest one.
        max_extrapolation_s: how far [s] a stamp may lie outside an edge's buffered range (clamped to the
            nearest sample) before :class:`ExtrapolationError`.
    """

    def __init__(self, cache_time_s: float = 10.0, max_extrapolation_s: float = 0.0) -> None:
        if not cache_time_s > 0:
            raise InvalidValueError(f"cache_time_s must be > 0; got {cache_time_s}")
        if not max_extrapolation_s >= 0:
            raise InvalidValueError(f"max_extrapolation_s must be >= 0; got {max_extrapolation_s}")
        self.cache_ns = round(cache_time_s * _NS)
        self.max_extrapolation_ns = round(max_extrapolation_s * _NS)
        self._static: dict[str, tuple[str, torch.Tensor]] = {}
        self._dynamic: dict[str, _History] = {}
        self._lock = threading.Lock()

    # -- filling ---------------------------------------------------------------------------------------
    def add_transform(
        self, parent: str, child: str, stamp_ns: int, child2parent: torch.Tensor, static: bool = False
    ) -> None:
        """Store one edge. ``child2parent``: ``(4, 4)`` float (copied to float64 on the CPU)."""
        parent, child = _frame(parent), _frame(child)
        if not parent or not child:
            raise InvalidValueError(f"transform frame ids must be non-empty; got parent={parent!r}, child={child!r}")
        if parent == child:
            raise InvalidValueError(f"transform parent and child are the same frame {child!r}")
        matrix = torch.as_tensor(child2parent).detach().to("cpu", torch.float64).clone()
        if matrix.shape != (4, 4) or not torch.isfinite(matrix).all():
            raise InvalidValueError(f"transform {parent!r} -> {child!r} must be a finite (4, 4) matrix")
        stamp_ns = int(stamp_ns)
        with self._lock:
            if static:
                self._dynamic.pop(child, None)
                self._static[child] = (parent, matrix)
                return
            self._static.pop(child, None)
            history = self._dynamic.get(child)
            if history is None or history.parent != parent or stamp_ns < history.stamps[-1] - self.cache_ns:
                history = self._dynamic[child] = _History(parent)
            history.insert(stamp_ns, matrix)
            history.prune(self.cache_ns)

    def add_tf_message(self, msg: Any, static: bool = False) -> None:
        """Store every ``TransformStamped`` of a ``tf2_msgs/TFMessage`` (``static`` for ``/tf_static``)."""
        from .conversions import transforms_to_matrices

        for parent, child, stamp, matrix in transforms_to_matrices(msg.transforms):
            self.add_transform(parent, child, stamp, matrix, static=static)

    def clear(self) -> None:
        """Forget all dynamic transforms (static ones stay, as in tf2 after a time jump)."""
        with self._lock:
            self._dynamic.clear()

    # -- queries -------------------------------------------------------------------------------------------
    def frames(self) -> set[str]:
        """Every frame id seen as a parent or a child."""
        with self._lock:
            return self._frames_locked()

    def _frames_locked(self) -> set[str]:
        names = set(self._static) | set(self._dynamic)
        names.update(parent for parent, _ in self._static.values())
        names.update(history.parent for history in self._dynamic.values())
        return names

    def _parent(self, frame: str) -> str | None:
        if frame in self._static:
            return self._static[frame][0]
        history = self._dynamic.get(frame)
        return history.parent if history is not None else None

    def _chain(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        chain = [frame]
        while (parent := self._parent(chain[-1])) is not None:
            if len(chain) > _MAX_CHAIN or parent in chain:
                raise NoPathError(f"the frame tree above {frame!r} contains a cycle through {parent!r}")
            chain.append(parent)
        return chain

    def _edge(self, child: str, stamp: int, target: str, source: str) -> torch.Tensor:
        """``child2parent`` at ``stamp`` (interpolated, or the nearest sample within the tolerance)."""
        if child in self._static:
            return self._static[child][1]
        history = self._dynamic[child]
        stamps = history.stamps
        index = bisect.bisect_left(stamps, stamp)
        if index < len(stamps) and stamps[index] == stamp:
            return history.matrices[index]
        if index == 0 or index == len(stamps):
            nearest = 0 if index == 0 else len(stamps) - 1
            gap = abs(stamp - stamps[nearest])
            if gap > self.max_extrapolation_ns:
                direction = "past" if index == 0 else "future"
                raise ExtrapolationError(
                    f"lookup {source!r} -> {target!r} at {stamp / _NS:.6f} s would need extrapolation "
                    f"{gap / 1e6:.3f} ms into the {direction} on edge {history.parent!r} -> {child!r} "
                    f"(buffered {stamps[0] / _NS:.6f} .. {stamps[-1] / _NS:.6f} s, "
                    f"tolerance {self.max_extrapolation_ns / 1e6:.3f} ms)"
                )
            return history.matrices[nearest]
        t0, t1 = stamps[index - 1], stamps[index]
        weight = (stamp - t0) / (t1 - t0)
        return interpolate_transform(history.matrices[index - 1], history.matrices[index], weight)

    def _latest_common(self, edges: Iterable[str]) -> int:
        newest = [self._dynamic[child].stamps[-1] for child in edges if child in self._dynamic]
        return min(newest) if newest else 0

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> torch.Tensor:
        """``source2target`` ``(4, 4)`` float64 at ``stamp_ns`` (``None`` / 0 = latest common time).

        Maps points given in ``source_frame`` into ``target_frame`` (tf2's ``lookup_transform(target, source,
        time)``). Raises :class:`UnknownFrameError`, :class:`NoPathError` or :class:`ExtrapolationError`.
        """
        target, source = _frame(target_frame), _frame(source_frame)
        with self._lock:
            known = self._frames_locked()
            missing = [name for name in dict.fromkeys((target, source)) if name not in known]
            if missing and target != source:
                listed = ", ".join(sorted(known)) if known else "none"
                raise UnknownFrameError(
                    f"frame {missing[0]!r} is unknown to the TF buffer (lookup {source!r} -> {target!r}); "
                    f"known frames: {listed}"
                )
            if target == source:
                return torch.eye(4, dtype=torch.float64)
            up_source, up_target = self._chain(source), self._chain(target)
            common = next((frame for frame in up_source if frame in set(up_target)), None)
            if common is None:
                raise NoPathError(
                    f"no TF path between {source!r} (tree root {up_source[-1]!r}) and {target!r} "
                    f"(tree root {up_target[-1]!r})"
                )
            source_edges = up_source[: up_source.index(common)]
            target_edges = up_target[: up_target.index(common)]
            stamp = int(stamp_ns) if stamp_ns else self._latest_common(source_edges + target_edges)
            source2common = torch.eye(4, dtype=torch.float64)
            for child in source_edges:
                source2common = self._edge(child, stamp, target, source) @ source2common
            target2common = torch.eye(4, dtype=torch.float64)
            for child in target_edges:
                target2common = self._edge(child, stamp, target, source) @ target2common
        return invert_transform(target2common) @ source2common

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> bool:
        """Whether :meth:`lookup` would succeed."""
        try:
            self.lookup(target_frame, source_frame, stamp_ns)
        except TransformLookupError:
            return False
        return True


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


def make_tf_lookup(
    node: Any, cache_time_s: float = 10.0, max_extrapolation_s: float = 0.0, prefer_tf2_ros: bool = True
) -> TfLookup:
    """A :class:`TfLookup` for ``node``: tf2_ros-backed when importable (and ``prefer_tf2_ros``), else a
    :class:`TfBuffer` fed by subscriptions to ``/tf`` and ``/tf_static`` (tf2 listener QoS).

    ``max_extrapolation_s`` applies to the :class:`TfBuffer` backend only (tf2 never extrapolates).
    """
    if prefer_tf2_ros:
        found = _tf2_ros_lookup(node, cache_time_s)
        if found is not None:
            return found
    from tf2_msgs.msg import TFMessage

    from .qos import TF_LISTENER_QOS, TF_STATIC_LISTENER_QOS

    buffer = TfBuffer(cache_time_s=cache_time_s, max_extrapolation_s=max_extrapolation_s)
    subscriptions = (
        node.create_subscription(
            TFMessage, "/tf", lambda msg: buffer.add_tf_message(msg, static=False), TF_LISTENER_QOS
        ),
        node.create_subscription(
            TFMessage, "/tf_static", lambda msg: buffer.add_tf_message(msg, static=True), TF_STATIC_LISTENER_QOS
        ),
    )
    return TfLookup(buffer.lookup, "tf_buffer", keep=subscriptions, buffer=buffer)
