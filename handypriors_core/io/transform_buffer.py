"""A pure-Python TF buffer (no ROS): static and time-stamped transforms, chained and interpolated lookups.

Used offline (``handypriors track BAG``) to compose ``hand2camera`` for every image stamp from a bag's
``/tf_static`` and ``/tf``. Semantics follow tf2:

- an edge ``parent <- child`` stores ``child2parent`` (``TransformStamped(header.frame_id=parent,
  child_frame_id=child)``: it maps child-frame coordinates into the parent frame);
- every frame has at most one parent; the edges form a forest and a lookup composes the chain through the two
  frames' common ancestor, in either direction;
- a static edge is valid at every time; a dynamic edge is interpolated to the requested stamp between its two
  neighbouring samples: translation linearly, rotation by quaternion slerp;
- a stamp before the first or after the last sample of a dynamic edge raises :class:`ExtrapolationError`,
  unless it is within ``max_extrapolation_ns``, in which case the nearest sample is used (no extrapolation);
- ``stamp_ns=None`` asks for the latest time at which every dynamic edge of the chain has data.

Frame ids are compared without a leading ``/``. Poses are ``(4, 4)`` float64 tensors; quaternions are
``(x, y, z, w)``.

    buf = TransformBuffer()
    buf.add_static("camera_link", "camera_color_optical_frame", position=(0, 0, 0), quaternion=(-.5, .5, -.5, .5))
    buf.add_transform("camera_link", "hand_root", stamp_ns, T)      # dynamic, e.g. from /tf
    hand2camera = buf.lookup("camera_color_optical_frame", "hand_root", stamp_ns)
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import HandyPriorsError, InvalidValueError, ShapeError

__all__ = [
    "ExtrapolationError",
    "NoPathError",
    "TransformBuffer",
    "TransformLookupError",
    "UnknownFrameError",
    "slerp",
]

log = logging.getLogger("handypriors.transform_buffer")

_MAX_DEPTH = 10_000  # guards against parent cycles


class TransformLookupError(HandyPriorsError, LookupError):
    """A transform cannot be looked up (base class of the three errors below)."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownFrameError(TransformLookupError):
    """A frame id was never seen by the buffer (the message names it and lists the known frames)."""


class NoPathError(TransformLookupError):
    """Both frames are known but lie in different trees (no chain of transforms connects them)."""


class ExtrapolationError(TransformLookupError):
    """The stamp lies outside the time range of a dynamic transform of the chain."""


def _frame(frame_id: str) -> str:
    if not isinstance(frame_id, str) or not frame_id.strip("/"):
        raise InvalidValueError(f"frame id must be a non-empty string; got {frame_id!r}")
    return frame_id.lstrip("/")


def _normalise_quaternion(q: np.ndarray, where: str) -> np.ndarray:
    n = float(np.linalg.norm(q))
    if not math.isfinite(n) or n < 1e-9:
        raise InvalidValueError(f"{where}: quaternion (x, y, z, w) must be finite and non-zero; got {q.tolist()}")
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
    dot = min(dot, 1.0)
    if dot > 0.9995:  # nearly parallel: normalised lerp is accurate and avoids 0/0
        q = a + weight * (b - a)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    s = math.sin(theta)
    q = (math.sin((1.0 - weight) * theta) / s) * a + (math.sin(weight * theta) / s) * b
    return q / np.linalg.norm(q)


def _as_pose(transform: Any, position: Any, quaternion: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(position (3,), quaternion (4,))`` float64 from a 4x4 matrix or from position + quaternion (xyzw)."""
    if transform is not None:
        if position is not None or quaternion is not None:
            raise InvalidValueError(f"{where}: give either a 4x4 transform or position + quaternion, not both")
        T = transform.detach().cpu().double().numpy() if isinstance(transform, torch.Tensor) \
            else np.asarray(transform, dtype=np.float64)
        if T.shape != (4, 4):
            raise ShapeError(f"{where}: transform must have shape (4, 4); got {T.shape}")
        if not np.isfinite(T).all():
            raise InvalidValueError(f"{where}: transform holds NaN/inf")
        R = T[:3, :3]
        if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) <= 0 or \
                not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
            raise InvalidValueError(f"{where}: transform is not rigid (rotation block not orthonormal or last row "
                                    f"not (0, 0, 0, 1))")
        return T[:3, 3].copy(), _matrix_to_quat(R)
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
    return p.copy(), _normalise_quaternion(q, where)


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
    """The history of one ``child2parent`` edge."""

    def __init__(self, parent: str, static: bool) -> None:
        self.parent = parent
        self.static = static
        self.stamps: list[int] = []
        self.positions: list[np.ndarray] = []
        self.quaternions: list[np.ndarray] = []

    def insert(self, stamp: int, p: np.ndarray, q: np.ndarray) -> None:
        if self.static:
            self.stamps, self.positions, self.quaternions = [stamp], [p], [q]
            return
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:  # same stamp again: the newer message wins
            self.positions[i], self.quaternions[i] = p, q
            return
        self.stamps.insert(i, stamp)
        self.positions.insert(i, p)
        self.quaternions.insert(i, q)

    def at(self, stamp: int | None, tolerance: int, child: str) -> np.ndarray:
        """``child2parent (4, 4)`` at ``stamp`` (None = latest)."""
        if self.static or stamp is None:
            j = 0 if self.static else len(self.stamps) - 1
            return _matrix(self.positions[j], self.quaternions[j])
        first, last = self.stamps[0], self.stamps[-1]
        if stamp < first or stamp > last:
            gap = first - stamp if stamp < first else stamp - last
            if gap > tolerance:
                side = "before the first" if stamp < first else "after the last"
                raise ExtrapolationError(
                    f"transform {self.parent} <- {child}: stamp {stamp * 1e-9:.9f} s is {gap * 1e-9:.4f} s {side} "
                    f"sample (data from {first * 1e-9:.9f} to {last * 1e-9:.9f} s, {len(self.stamps)} samples)"
                )
            j = 0 if stamp < first else len(self.stamps) - 1
            return _matrix(self.positions[j], self.quaternions[j])
        i = bisect.bisect_left(self.stamps, stamp)
        if self.stamps[i] == stamp:
            return _matrix(self.positions[i], self.quaternions[i])
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        w = (stamp - t0) / (t1 - t0)
        p = (1.0 - w) * self.positions[i - 1] + w * self.positions[i]
        return _matrix(p, slerp(self.quaternions[i - 1], self.quaternions[i], w))


class TransformBuffer:
    """Static and dynamic transforms between named frames, looked up with chaining and interpolation.

    Args:
        max_extrapolation_s: a stamp at most this far outside a dynamic edge's data uses its nearest sample
            instead of raising :class:`ExtrapolationError` [s]; 0 = strict.
    """

    def __init__(self, max_extrapolation_s: float = 0.0) -> None:
        if not (math.isfinite(max_extrapolation_s) and max_extrapolation_s >= 0):
            raise InvalidValueError(f"max_extrapolation_s must be a finite number >= 0; got {max_extrapolation_s}")
        self.max_extrapolation_ns = round(max_extrapolation_s * 1e9)
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
        p, q = _as_pose(transform, position, quaternion, where)
        if not static and (stamp_ns is None or isinstance(stamp_ns, bool)
                           or not isinstance(stamp_ns, (int, np.integer))):
            raise InvalidValueError(f"{where}: stamp_ns must be an int [ns] for a dynamic transform; got {stamp_ns!r}")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            if self._creates_cycle(child, parent):
                raise InvalidValueError(f"{where} would close a loop in the frame tree")
            if edge is not None:
                log.info("frame %s: parent %s (%s) replaced by %s (%s)", child, edge.parent,
                         "static" if edge.static else "dynamic", parent, "static" if static else "dynamic")
            edge = self._edges[child] = _Edge(parent, static)
        edge.insert(0 if static else int(stamp_ns), p, q)

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

        Stamps come from each transform's header (``sec``, ``nanosec``).
        """
        count = 0
        for ts in getattr(msg, "transforms", []):
            stamp = int(ts.header.stamp.sec) * 1_000_000_000 + int(ts.header.stamp.nanosec)
            tr, rot = ts.transform.translation, ts.transform.rotation
            self.add_transform(ts.header.frame_id, ts.child_frame_id, stamp,
                               position=(tr.x, tr.y, tr.z), quaternion=(rot.x, rot.y, rot.z, rot.w), static=static)
            count += 1
        return count

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
        out = set(self._edges)
        out.update(e.parent for e in self._edges.values())
        return out

    def parent(self, frame: str) -> str | None:
        """Parent of ``frame`` (None for a root or an unknown frame)."""
        edge = self._edges.get(_frame(frame))
        return edge.parent if edge is not None else None

    def is_static(self, child: str) -> bool | None:
        """Whether the edge ``parent <- child`` is static (None when ``child`` has no parent)."""
        edge = self._edges.get(_frame(child))
        return None if edge is None else edge.static

    def time_range(self, child: str) -> tuple[int, int] | None:
        """``(first, last)`` stamps [ns] of a dynamic edge; None for static edges and roots."""
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

    def _known(self, frame: str) -> None:
        if frame not in self.frames:
            known = sorted(self.frames)
            listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise UnknownFrameError(f"frame {frame!r} is not in the transform tree (known frames: "
                                    f"{listed or 'none'})")

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> torch.Tensor:
        """``source2target (4, 4)`` float64 at ``stamp_ns`` [ns] (None = the latest common time).

        It maps source-frame coordinates into the target frame (``hand2camera = lookup(camera, hand, t)``).
        Raises UnknownFrameError, NoPathError or ExtrapolationError.
        """
        return torch.from_numpy(self.lookup_numpy(target_frame, source_frame, stamp_ns))

    def lookup_numpy(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """:meth:`lookup` as a ``(4, 4)`` float64 numpy array."""
        target, source = _frame(target_frame), _frame(source_frame)
        self._known(target)
        self._known(source)
        if target == source:
            return np.eye(4)
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((f for f in up_source if f in set(up_target)), None)
        if common is None:
            raise NoPathError(f"no transform chain between {target!r} (tree root {up_target[-1]!r}) and {source!r} "
                              f"(tree root {up_source[-1]!r})")
        src_edges = up_source[:up_source.index(common)]
        tgt_edges = up_target[:up_target.index(common)]
        if stamp_ns is None:
            stamp_ns = self._latest_common(src_edges + tgt_edges)
        elif isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise InvalidValueError(f"stamp_ns must be an int [ns] or None; got {stamp_ns!r}")
        tol = self.max_extrapolation_ns
        source2common = np.eye(4)
        for child in src_edges:
            source2common = self._edges[child].at(stamp_ns, tol, child) @ source2common
        target2common = np.eye(4)
        for child in tgt_edges:
            target2common = self._edges[child].at(stamp_ns, tol, child) @ target2common
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
        n_static = sum(e.static for e in self._edges.values())
        return f"TransformBuffer(frames={len(self.frames)}, static_edges={n_static}, " \
               f"dynamic_edges={len(self._edges) - n_static})"
