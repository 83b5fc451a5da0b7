"""Recent ``sensor_msgs/JointState`` messages, interpolated to an image stamp, in the hand's URDF joint order.

Drivers publish joint states at their own rate (100-150 Hz) while images arrive at 30 Hz with their own
stamps, so the tracker needs the hand configuration *at the image stamp*. :class:`JointStateBuffer` keeps a
time-limited history **per joint** (a driver may publish subsets of the joints in separate messages) after
mapping the driver's names through a :class:`~handypriors_core.models.joint_maps.JointMap` (``urdf =
sign * driver + offset``), and :meth:`JointStateBuffer.positions_at` interpolates every joint linearly
between the two samples that bracket the stamp.

Messages are never rejected by raising: :meth:`JointStateBuffer.add_message` returns a list of
:class:`JointStateIssue` (level + message) for the node to log or put into diagnostics:

- a position that is NaN / inf is dropped (the other joints of the message are kept), naming the joint;
- names the joint map does not know are ignored and reported **once** per name;
- a stamp older than the last sample of a joint in the message (a looped bag, a restarted driver or
  simulation) resets the whole buffer (level ``warn``), then the message is stored;
- a message whose ``position`` length differs from ``name`` (and is not empty) is dropped.

A query outside the buffered range raises :class:`JointStateLookupError` unless it is within
``max_extrapolation_s`` of the range, where the nearest sample is held (status ``"held"``).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from handypriors_core.errors import HandyPriorsError, InvalidValueError, JointNameError
from handypriors_core.io.sample_history import SampleHistory
from handypriors_core.models.joint_maps import JointMap

__all__ = [
    "JointSample",
    "JointStateBuffer",
    "JointStateIssue",
    "JointStateLookupError",
]

_NS = 1_000_000_000
#: Largest believable joint position magnitude [rad or m]; larger values (1e6, 1e300) are dropped like NaN.
MAX_ABS_POSITION = 100.0
_MAX_REPORTED_NAMES = 1024  # unknown joint names remembered (reported once each)


class JointStateLookupError(HandyPriorsError, LookupError):
    """Joint angles are not available at the requested stamp (the message says which joints and why)."""


@dataclasses.dataclass(frozen=True)
class JointStateIssue:
    """Something wrong with an incoming message: ``level`` is ``"warn"`` or ``"error"``."""

    level: str
    message: str


@dataclasses.dataclass(frozen=True)
class JointSample:
    """Joint angles at one stamp.

    Attributes:
        positions: ``(J,)`` float64 [rad] (or [m] for prismatic joints), in ``joint_names`` order.
        joint_names: the hand's URDF joint names.
        stamp_ns: the requested stamp.
        status: ``"exact"`` (every joint has a sample at the stamp), ``"interpolated"`` or ``"held"`` (some
            joint is outside its buffered range by at most the tolerance and holds its nearest sample).
        max_offset_ns: the largest distance from the stamp to a sample used, over all joints [ns].
    """

    positions: torch.Tensor
    joint_names: tuple[str, ...]
    stamp_ns: int
    status: str
    max_offset_ns: int


class JointStateBuffer:
    """Per-joint history of joint states, queried at image stamps; thread-safe.

    Args:
        hand_joint_names: the hand model's joint names, in the order :meth:`positions_at` returns
            (``URDFHand.joint_names``).
        joint_map: driver names -> URDF names (default: identity, driver names are the URDF names). Every
            hand joint must be reachable through it, else :class:`JointNameError`.
        history_s: how long [s] samples are kept, back from each joint's newest one.
        max_extrapolation_s: how far [s] outside a joint's buffered range a stamp may be and still hold the
            nearest sample.
    """

    def __init__(
        self,
        hand_joint_names: Sequence[str],
        joint_map: JointMap | None = None,
        history_s: float = 2.0,
        max_extrapolation_s: float = 0.02,
    ) -> None:
        self.joint_names = tuple(str(n) for n in hand_joint_names)
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise InvalidValueError(f"hand_joint_names must be non-empty and unique; got {list(self.joint_names)}")
        self.joint_map = joint_map if joint_map is not None else JointMap.identity(self.joint_names)
        reachable = set(self.joint_map.mapping.values())
        unreachable = [n for n in self.joint_names if n not in reachable]
        if unreachable:
            raise JointNameError(
                f"joint map {self.joint_map.name!r} maps no driver joint to hand joint(s) {unreachable}"
            )
        if not (math.isfinite(history_s) and history_s > 0):
            raise InvalidValueError(f"history_s must be > 0; got {history_s}")
        if not (math.isfinite(max_extrapolation_s) and max_extrapolation_s >= 0):
            raise InvalidValueError(f"max_extrapolation_s must be >= 0; got {max_extrapolation_s}")
        self.history_ns = round(history_s * _NS)
        self.max_extrapolation_ns = round(max_extrapolation_s * _NS)
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self._series = [SampleHistory() for _ in self.joint_names]
        self._reported_unknown: set[str] = set()
        self._lock = threading.Lock()

    @property
    def sample_count(self) -> int:
        """Stored samples over all joints (bounded by the history window; for diagnostics)."""
        with self._lock:
            return sum(len(series) for series in self._series)

    # -- filling -------------------------------------------------------------------------------------
    def add_message(self, msg: Any) -> list[JointStateIssue]:
        """Store a ``sensor_msgs/JointState`` (header stamp, ``name``, ``position``); returns the issues."""
        from .conversions import stamp_ns

        return self.add(list(msg.name), list(msg.position), stamp_ns(msg))

    def add(self, names: Sequence[str], positions: Sequence[float], stamp_ns: int) -> list[JointStateIssue]:
        """Store driver-named ``positions`` measured at ``stamp_ns``; returns the issues (possibly empty)."""
        names = [str(n) for n in names]
        stamp_ns = int(stamp_ns)
        if len(positions) != len(names):
            return [JointStateIssue("error", f"joint_states message at {stamp_ns / _NS:.6f} s has {len(names)} "
                                             f"names but {len(positions)} positions; message dropped")]
        issues: list[JointStateIssue] = []
        mapping, sign, offset = self.joint_map.mapping, self.joint_map.sign, self.joint_map.offset
        unknown = [n for n in names if n not in mapping]
        with self._lock:
            new_unknown = [n for n in dict.fromkeys(unknown) if n not in self._reported_unknown]
            if len(self._reported_unknown) + len(new_unknown) > _MAX_REPORTED_NAMES:  # hostile names: stay bounded
                self._reported_unknown.clear()
            self._reported_unknown.update(new_unknown)
        if new_unknown:
            issues.append(JointStateIssue(
                "error",
                f"joint_states names {new_unknown} are not in joint map {self.joint_map.name!r}; ignored "
                f"(reported once)",
            ))
        updates: list[tuple[int, float]] = []
        bad: list[str] = []
        for name, value in zip(names, positions):
            target = mapping.get(name)
            if target is None or target not in self._index:
                continue
            value = float(value)
            if not math.isfinite(value) or abs(value) > MAX_ABS_POSITION:
                bad.append(name if name == target else f"{name} ({target})")
                continue
            updates.append((self._index[target], sign[name] * value + offset[name]))
        if bad:
            issues.append(JointStateIssue(
                "error", f"joint_states position is NaN/inf or beyond +-{MAX_ABS_POSITION:g} for joint(s) "
                         f"{', '.join(bad)} at {stamp_ns / _NS:.6f} s; those values dropped"))
        with self._lock:
            went_back = [
                (self.joint_names[i], self._series[i].stamps[-1])
                for i, _ in updates
                if self._series[i].stamps and stamp_ns < self._series[i].stamps[-1]
            ]
            if went_back:
                joint, previous = went_back[0]
                issues.append(JointStateIssue(
                    "warn",
                    f"joint_states stamp went backwards by {(previous - stamp_ns) / 1e6:.3f} ms "
                    f"({previous / _NS:.6f} -> {stamp_ns / _NS:.6f} s, joint {joint}); buffer reset",
                ))
                self._series = [SampleHistory() for _ in self.joint_names]
            for i, value in updates:
                self._series[i].insert(stamp_ns, value)
                self._series[i].prune(self.history_ns)
        return issues

    def clear(self) -> None:
        """Forget every sample (the once-only reports of unknown names stay)."""
        with self._lock:
            self._series = [SampleHistory() for _ in self.joint_names]

    # -- queries -------------------------------------------------------------------------------------
    def time_range_ns(self) -> tuple[int, int] | None:
        """``(oldest, newest)`` stamps [ns] over which every joint has data, or ``None``."""
        with self._lock:
            if any(not s.stamps for s in self._series):
                return None
            return max(s.stamps[0] for s in self._series), min(s.stamps[-1] for s in self._series)

    def positions_at(self, stamp_ns: int) -> JointSample:
        """Joint positions at ``stamp_ns`` in ``joint_names`` order (see :class:`JointSample`).

        Raises :class:`JointStateLookupError` naming the joints without data, or saying how far the stamp is
        outside the buffered range.
        """
        stamp_ns = int(stamp_ns)
        positions = np.empty(len(self.joint_names), dtype=np.float64)
        status = "exact"
        max_offset = 0
        with self._lock:
            empty = [self.joint_names[i] for i, s in enumerate(self._series) if not s.stamps]
            if empty:
                raise JointStateLookupError(f"no joint_states received yet for joint(s) {empty}")
            for i, series in enumerate(self._series):
                lower, upper, weight, outside = series.bracket(stamp_ns)
                stamps = series.stamps
                if abs(outside) > self.max_extrapolation_ns:
                    where = "before the oldest" if outside < 0 else "after the newest"
                    raise JointStateLookupError(
                        f"image stamp {stamp_ns / _NS:.6f} s is {abs(outside) / 1e6:.3f} ms {where} joint state of "
                        f"{self.joint_names[i]} (buffered {stamps[0] / _NS:.6f} .. {stamps[-1] / _NS:.6f} s, "
                        f"tolerance {self.max_extrapolation_ns / 1e6:.3f} ms)"
                    )
                positions[i] = (1.0 - weight) * series.values[lower] + weight * series.values[upper]
                if outside:
                    status = "held"
                elif lower != upper and status == "exact":
                    status = "interpolated"
                max_offset = max(max_offset, abs(stamp_ns - stamps[lower]), stamps[upper] - stamp_ns)
        return JointSample(torch.from_numpy(positions), self.joint_names, stamp_ns, status, max_offset)
