"""A pure-Python TF buffer (no ROS): static and time-stamped transforms, chained and interpolated lookups.

The one transform tree of the project: used offline (``handypriors track BAG``) to compose ``hand2camera`` for
every image stamp from a bag's ``/tf_static`` and ``/tf``, and online by :class:`handypriors_ros.tf_buffer.TfBuffer`
(this buffer plus a lock, fed by ``/tf`` and ``/tf_static`` subscriptions). Semantics follow tf2:

- an edge ``parent <- child`` stores ``child2parent`` (``TransformStamped(header.frame_id=parent,
  child_frame_id=child)``: it maps child-frame coordinates into the parent frame);
- every frame has at most one parent; the edges form a forest and a lookup composes the chain through the two
  frames' common ancestor, in either direction. A transform that names a new parent for a child, or a static
  transform for a dynamic child (or the reverse), replaces that child's history (logged);
- a static edge is valid at every time; a dynamic edge is interpolated to the requested stamp between its two
  neighbouring samples (:func:`interpolate_transform`: translation linearly, rotation by quaternion slerp); a
  requested stamp equal to a sample's returns that sample exactly;
- a stamp before the first or after the last sample of a dynamic edge raises :class:`ExtrapolationError`,
  unless it is within ``max_extrapolation_ns``, in which case the nearest sample is used (no extrapolation);
- ``stamp_ns`` ``None`` or ``0`` (tf2's ``Time(0)``) asks for the latest time at which every dynamic edge of the
  chain has data; a lookup from a frame to itself is the identity, even for a frame never seen (as in tf2);
- with ``cache_time_s``, a dynamic edge keeps only the samples of the last ``cache_time_s`` before its newest
  one, and a stamp more than ``cache_time_s`` older than the newest sample (a clock jump back: a looped bag, a
  restarted simulation) restarts the edge's history. Without it (offline), every sample is kept.

Frame ids are compared without a leading ``/``. Poses are ``(4, 4)`` float64 tensors; quaternions are
``(x, y, z, w)``.

    buf = TransformBuffer()
    buf.add_static("camera_link", "camera_color_optical_frame", position=(0, 0, 0), quaternion=(-.5, .5, -.5, .5))
    buf.add_transform("camera_link", "hand_root", stamp_ns, T)      # dynamic, e.g. from /tf
    hand2camera = buf.lookup("camera_color_optical_frame", "hand_root", stamp_ns)
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import HandyPriorsError, InvalidValueError, ShapeError
from .sample_history import SampleHistory

__all__ = [
    "UNIT_QUATERNION_TOLERANCE",
    "ExtrapolationError",
    "NoPathError",
    "TransformBuffer",
    "TransformLookupError",
    "UnknownFrameError",
    "interpolate_transform",
    "slerp",
]

log = logging.getLogger("handypriors.transform_buffer")

_NS = 1_000_000_000
_MAX_DEPTH = 10_000  # guards against parent cycles
#: Largest accepted ``| |q|^2 - 1 |`` of a transform's quaternion (tf2 refuses denormalised quaternions the same way).
UNIT_QUATERNION_TOLERANCE = 0.01


class TransformLookupError(HandyPriorsError, LookupError):
    """A transform cannot be looked up (base class of the three errors below)."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownFrameError(TransformLookupError):
    """A frame id was never seen by the buffer (the message names it and lists the known frames)."""


class NoPathError(TransformLookupError):
    """Both frames are known but lie in different trees (no chain of transforms connects them)."""


class ExtrapolationError(TransformLookupError):
    """The stamp lies outside the time range of a dynamic transform of the chain by more than the tolerance."""


def _frame(frame_id: str) -> str:
    if not isinstance(frame_id, str) or not frame_id.strip("/"):
        raise InvalidValueError(f"frame id must be a non-empty string; got {frame_id!r}")
    return frame_id.lstrip("/")


def _normalise_quaternion(q: np.ndarray, where: str) -> np.ndarray:
    """``q / |q|``; a quaternion that is not finite, or whose squared norm is off 1 by more than
    :data:`UNIT_QUATERNION_TOLERANCE` (tf2's rule), is refused: it is not a rotation someone meant."""
    n = float(np.linalg.norm(q))
    if not math.isfinite(n) or n < 1e-9:
        raise InvalidValueError(f"{where}: quaternion (x, y, z, w) must be finite and non-zero; got {q.tolist()}")
    if abs(n * n - 1.0) > UNIT_QUATERNION_TOLERANCE:
        raise InvalidValueError(f"{where}: quaternion (x, y, z, w) is not a unit quaternion (norm {n:.6g}); got "
                                f"{q.tolist()}")
    return q / n


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (x, y, z, w) (Shepperd's method, numerically stable)."""
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q)


def slerp(q0: Sequence[float], q1: Sequence[float], weight: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (x, y, z, w) along the shorter arc; ``weight`` in [0, 1]."""
    a = np.asarray(q0, dtype=np.float64)
    b = np.asarray(q1, dtype=np.float64)
    dot = float(a @ b)
    if dot < 0.0:  # q and -q are the same rotation: take the short way
        b, dot = -b, -dot
    if dot > 1.0 - 1e-10:  # (nearly) the same rotation: normalised lerp is exact to rounding and avoids 0/0
        q = a + weight * (b - a)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    s = math.sin(theta)
    q = (math.sin((1.0 - weight) * theta) / s) * a + (math.sin(weight * theta) / s) * b
    return q / np.linalg.norm(q)


def _blend(T0: np.ndarray, q0: np.ndarray, T1: np.ndarray, q1: np.ndarray, weight: float) -> np.ndarray:
    """``(4, 4)`` between ``T0`` (rotation quaternion ``q0``) and ``T1`` (``q1``): lerp + slerp."""
    return _matrix((1.0 - weight) * T0[:3, 3] + weight * T1[:3, 3], slerp(q0, q1, weight))


def _as_pose(transform: Any, position: Any, quaternion: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(T (4, 4), quaternion (4,))`` float64 from a 4x4 matrix or from position + quaternion (xyzw).

    A matrix is kept as given (after the rigidity check), so that a lookup at its stamp returns it exactly.
    """
    if transform is not None:
        if position is not None or quaternion is not None:
            raise InvalidValueError(f"{where}: give either a 4x4 transform or position + quaternion, not both")
        T = transform.detach().cpu().double().numpy().copy() if isinstance(transform, torch.Tensor) \
            else np.array(transform, dtype=np.float64)
        if T.shape != (4, 4):
            raise ShapeError(f"{where}: transform must have shape (4, 4); got {T.shape}")
        if not np.isfinite(T).all():
            raise InvalidValueError(f"{where}: transform holds NaN/inf")
        R = T[:3, :3]
        if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) <= 0 or \
                not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
            raise InvalidValueError(f"{where}: transform is not rigid (rotation block not orthonormal or last row "
                                    f"not (0, 0, 0, 1))")
        return T, _matrix_to_quat(R)
    if position is None or quaternion is None:
        raise InvalidValueError(f"{where}: give a 4x4 transform or both position and quaternion")
    p = np.asarray(position.detach().cpu() if isinstance(position, torch.Tensor) else position, dtype=np.float64)
    q = np.asarray(quaternion.detach().cpu() if isinstance(quaternion, torch.Tensor) else quaternion,
                   dtype=np.float64)
    if p.shape != (3,):
        raise ShapeError(f"{where}: position must have shape (3,); got {p.shape}")
    if q.shape != (4,):
        raise ShapeError(f"{where}: quaternion must have shape (4,) (x, y, z, w); got {q.shape}")
    if not np.isfinite(p).all():
        raise InvalidValueError(f"{where}: position holds NaN/inf")
    q = _normalise_quaternion(q, where)
    return _matrix(p, q), q


def interpolate_transform(T0: Any, T1: Any, weight: float) -> Any:
    """Blend rigid transforms ``(4, 4)``: ``weight`` 0 -> ``T0``, 1 -> ``T1`` (the buffer's interpolation).

    Translation linearly, rotation along the shortest geodesic ``R0 exp(w log(R0^T R1))`` (= quaternion slerp).
    Returns a float64 CPU tensor when ``T0`` is a tensor, else a float64 numpy array.
    """
    A, qa = _as_pose(T0, None, None, "interpolate_transform T0")
    B, qb = _as_pose(T1, None, None, "interpolate_transform T1")
    out = _blend(A, qa, B, qb, float(weight))
    return torch.from_numpy(out) if isinstance(T0, torch.Tensor) else out


def _matrix(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _quat_to_matrix(q)
    T[:3, 3] = p
    return T


def _invert(T: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


class _Edge:
    """The history of one ``child2parent`` edge: samples ``(T (4, 4), rotation quaternion)``."""

    def __init__(self, parent: str, static: bool) -> None:
        self.parent = parent
        self.static = static
        self.history: SampleHistory[tuple[np.ndarray, np.ndarray]] = SampleHistory()

    @property
    def stamps(self) -> list[int]:
        return self.history.stamps

    def at(self, stamp: int | None, tolerance: int, child: str, what: str) -> np.ndarray:
        """``child2parent (4, 4)`` at ``stamp`` (None = latest); ``what`` names the lookup in errors."""
        values = self.history.values
        if self.static or stamp is None:
            return values[0 if self.static else -1][0]
        i, j, weight, outside = self.history.bracket(stamp)
        if abs(outside) > tolerance:
            stamps = self.history.stamps
            side = "the past: before the first" if outside < 0 else "the future: after the last"
            raise ExtrapolationError(
                f"{what} at {stamp / _NS:.9f} s would need extrapolation {abs(outside) / 1e6:.3f} ms into {side} "
                f"sample of edge {self.parent} <- {child} (data from {stamps[0] / _NS:.9f} to "
                f"{stamps[-1] / _NS:.9f} s, {len(stamps)} samples; tolerance {tolerance / 1e6:.3f} ms)"
            )
        if i == j:
            return values[i][0]
        return _blend(*values[i], *values[j], weight)


class TransformBuffer:
    """Static and dynamic transforms between named frames, looked up with chaining and interpolation.

    Args:
        max_extrapolation_s: a stamp at most this far outside a dynamic edge's data uses its nearest sample
            instead of raising :class:`ExtrapolationError` [s]; 0 = strict.
        cache_time_s: keep only this much history [s] per dynamic edge, back from its newest sample, and restart
            an edge's history when a stamp arrives more than this before its newest one; None = keep everything.

    Not thread-safe by itself; a subclass makes it so by setting ``_lock`` to a ``threading.RLock()`` (every
    public method holds ``_lock``).
    """

    _lock: contextlib.AbstractContextManager = contextlib.nullcontext()

    def __init__(self, max_extrapolation_s: float = 0.0, cache_time_s: float | None = None) -> None:
        if not (math.isfinite(max_extrapolation_s) and max_extrapolation_s >= 0):
            raise InvalidValueError(f"max_extrapolation_s must be a finite number >= 0; got {max_extrapolation_s}")
        if cache_time_s is not None and not (math.isfinite(cache_time_s) and cache_time_s > 0):
            raise InvalidValueError(f"cache_time_s must be a finite number > 0 or None; got {cache_time_s}")
        self.max_extrapolation_ns = round(max_extrapolation_s * _NS)
        self.cache_ns = None if cache_time_s is None else round(cache_time_s * _NS)
        self._edges: dict[str, _Edge] = {}

    # ----------------------------------------------------------------------------------------- adding
    def add_transform(self, parent: str, child: str, stamp_ns: int | None, transform: Any = None, *,
                      position: Any = None, quaternion: Any = None, static: bool = False) -> None:
        """Add ``child2parent`` at ``stamp_ns`` (ignored when ``static``), as a 4x4 matrix or position + xyzw.

        A child that gets a different parent, or a static edge that becomes dynamic (or the reverse), starts a
        new history (logged): like tf2, the newest information about a frame's parent wins.
        """
        parent, child = _frame(parent), _frame(child)
        if parent == child:
            raise InvalidValueError(f"transform from frame {child!r} to itself")
        where = f"transform {parent} <- {child}"
        sample = _as_pose(transform, position, quaternion, where)
        if not static and (stamp_ns is None or isinstance(stamp_ns, bool)
                           or not isinstance(stamp_ns, (int, np.integer))):
            raise InvalidValueError(f"{where}: stamp_ns must be an int [ns] for a dynamic transform; got {stamp_ns!r}")
        stamp = 0 if static else int(stamp_ns)
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                if self._creates_cycle(child, parent):
                    raise InvalidValueError(f"{where} would close a loop in the frame tree")
                if edge is not None:
                    log.info("frame %s: parent %s (%s) replaced by %s (%s)", child, edge.parent,
                             "static" if edge.static else "dynamic", parent, "static" if static else "dynamic")
                edge = self._edges[child] = _Edge(parent, static)
            elif not static and self.cache_ns is not None and stamp < edge.stamps[-1] - self.cache_ns:
                log.info("frame %s: stamp %.6f s is more than the cache time before the newest sample %.6f s "
                         "(clock jumped back): history restarted", child, stamp / _NS, edge.stamps[-1] / _NS)
                edge = self._edges[child] = _Edge(parent, static)
            edge.history.insert(stamp, sample)
            if not static and self.cache_ns is not None:
                edge.history.prune(self.cache_ns)

    def add_static(self, parent: str, child: str, transform: Any = None, *, position: Any = None,
                   quaternion: Any = None) -> None:
        """Add a static ``child2parent`` (valid at every time)."""
        self.add_transform(parent, child, None, transform, position=position, quaternion=quaternion, static=True)

    def add_dynamic(self, parent: str, child: str, stamp_ns: int, transform: Any = None, *, position: Any = None,
                    quaternion: Any = None) -> None:
        """Add one sample of a dynamic ``child2parent`` at ``stamp_ns`` [ns]."""
        self.add_transform(parent, child, stamp_ns, transform, position=position, quaternion=quaternion)

    def add_tf_message(self, msg: Any, static: bool = False) -> int:
        """Add every ``TransformStamped`` of a ``tf2_msgs/TFMessage`` (rosbags or rclpy object); returns the count.

        Stamps come from each transform's header (``sec``, ``nanosec``); ``static`` for ``/tf_static``.
        """
        count = 0
        with self._lock:
            for ts in getattr(msg, "transforms", []):
                stamp = int(ts.header.stamp.sec) * _NS + int(ts.header.stamp.nanosec)
                tr, rot = ts.transform.translation, ts.transform.rotation
                self.add_transform(ts.header.frame_id, ts.child_frame_id, stamp, position=(tr.x, tr.y, tr.z),
                                   quaternion=(rot.x, rot.y, rot.z, rot.w), static=static)
                count += 1
        return count

    def clear(self) -> None:
        """Forget every dynamic transform (static ones stay, as in tf2 after a time jump)."""
        with self._lock:
            self._edges = {child: edge for child, edge in self._edges.items() if edge.static}

    def _creates_cycle(self, child: str, parent: str) -> bool:
        frame, steps = parent, 0
        while frame in self._edges and steps < _MAX_DEPTH:
            if frame == child:
                return True
            frame = self._edges[frame].parent
            steps += 1
        return frame == child

    # ---------------------------------------------------------------------------------------- queries
    @property
    def frames(self) -> set[str]:
        """Every frame id seen (children and parents)."""
        with self._lock:
            return self._frames()

    @property
    def sample_count(self) -> int:
        """Stored transform samples over all edges (dynamic ones bounded by ``cache_time_s``; for diagnostics)."""
        with self._lock:
            return sum(len(edge.history) for edge in self._edges.values())

    def _frames(self) -> set[str]:
        out = set(self._edges)
        out.update(e.parent for e in self._edges.values())
        return out

    def parent(self, frame: str) -> str | None:
        """Parent of ``frame`` (None for a root or an unknown frame)."""
        with self._lock:
            edge = self._edges.get(_frame(frame))
            return edge.parent if edge is not None else None

    def is_static(self, child: str) -> bool | None:
        """Whether the edge ``parent <- child`` is static (None when ``child`` has no parent)."""
        with self._lock:
            edge = self._edges.get(_frame(child))
            return None if edge is None else edge.static

    def time_range(self, child: str) -> tuple[int, int] | None:
        """``(first, last)`` stamps [ns] of a dynamic edge; None for static edges and roots."""
        with self._lock:
            edge = self._edges.get(_frame(child))
            if edge is None or edge.static or not edge.stamps:
                return None
            return edge.stamps[0], edge.stamps[-1]

    def _chain(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > _MAX_DEPTH:
                raise InvalidValueError(f"frame tree above {frame!r} has a loop")
        return chain

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> torch.Tensor:
        """``source2target (4, 4)`` float64 at ``stamp_ns`` [ns] (None or 0 = the latest common time).

        It maps source-frame coordinates into the target frame (``hand2camera = lookup(camera, hand, t)``; tf2's
        ``lookup_transform(target, source, time)``). Raises UnknownFrameError, NoPathError or ExtrapolationError.
        """
        return torch.from_numpy(self.lookup_numpy(target_frame, source_frame, stamp_ns))

    def lookup_numpy(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """:meth:`lookup` as a ``(4, 4)`` float64 numpy array."""
        target, source = _frame(target_frame), _frame(source_frame)
        if stamp_ns is not None and (isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer))):
            raise InvalidValueError(f"stamp_ns must be an int [ns] or None; got {stamp_ns!r}")
        if target == source:
            return np.eye(4)
        what = f"lookup {source!r} -> {target!r}"
        with self._lock:
            known = self._frames()
            for frame in (source, target):
                if frame not in known:
                    names = sorted(known)
                    listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                    raise UnknownFrameError(f"frame {frame!r} is unknown to the transform tree ({what}); known "
                                            f"frames: {listed or 'none'}")
            up_source, up_target = self._chain(source), self._chain(target)
            common = next((f for f in up_source if f in set(up_target)), None)
            if common is None:
                raise NoPathError(f"no TF path between {source!r} (tree root {up_source[-1]!r}) and {target!r} "
                                  f"(tree root {up_target[-1]!r})")
            src_edges = up_source[:up_source.index(common)]
            tgt_edges = up_target[:up_target.index(common)]
            stamp = int(stamp_ns) if stamp_ns else self._latest_common(src_edges + tgt_edges)
            tol = self.max_extrapolation_ns
            source2common = np.eye(4)
            for child in src_edges:
                source2common = self._edges[child].at(stamp, tol, child, what) @ source2common
            target2common = np.eye(4)
            for child in tgt_edges:
                target2common = self._edges[child].at(stamp, tol, child, what) @ target2common
        return _invert(target2common) @ source2common

    def _latest_common(self, children: Iterable[str]) -> int | None:
        lasts = [self._edges[c].stamps[-1] for c in children if not self._edges[c].static]
        return min(lasts) if lasts else None

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> bool:
        """Whether :meth:`lookup` would succeed."""
        try:
            self.lookup_numpy(target_frame, source_frame, stamp_ns)
        except TransformLookupError:
            return False
        return True

    def __repr__(self) -> str:
        with self._lock:
            n_static = sum(e.static for e in self._edges.values())
            return f"{type(self).__name__}(frames={len(self._frames())}, static_edges={n_static}, " \
                   f"dynamic_edges={len(self._edges) - n_static})"
