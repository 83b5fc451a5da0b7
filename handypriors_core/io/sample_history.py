"""Time-stamped samples of one signal, kept sorted: insert, prune to a window, bracket a query stamp.

The one history behind the TF buffer's dynamic edges (:mod:`.transform_buffer`) and the ROS joint-state
buffer (one history per joint). The caller blends the two bracketing values its own way (a pose: lerp +
slerp; a joint angle: lerp) and decides what an out-of-range stamp means (hold the nearest sample within a
tolerance, else raise its own error).

    history = SampleHistory()
    history.insert(stamp_ns, value)              # the same stamp again replaces the value
    history.prune(window_ns)                     # drop samples older than newest - window
    i, j, w, outside_ns = history.bracket(stamp_ns)
    value = (1 - w) * history.values[i] + w * history.values[j]
"""

from __future__ import annotations

import bisect
from typing import Generic, TypeVar

__all__ = ["SampleHistory"]

V = TypeVar("V")


class SampleHistory(Generic[V]):
    """Samples ``(stamp [ns], value)`` sorted by stamp, at most one value per stamp."""

    __slots__ = ("stamps", "values")

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.values: list[V] = []

    def __len__(self) -> int:
        return len(self.stamps)

    def insert(self, stamp: int, value: V) -> None:
        """Add a sample; a sample at an already stored stamp replaces it (the newer message wins)."""
        stamps = self.stamps
        if not stamps or stamp > stamps[-1]:  # the usual case: a newer sample
            stamps.append(stamp)
            self.values.append(value)
            return
        index = bisect.bisect_left(stamps, stamp)
        if index < len(stamps) and stamps[index] == stamp:
            self.values[index] = value
        else:
            self.stamps.insert(index, stamp)
            self.values.insert(index, value)

    def prune(self, window_ns: int) -> None:
        """Drop the samples older than ``newest - window_ns``."""
        if not self.stamps or self.stamps[0] >= self.stamps[-1] - window_ns:  # (nothing to drop: the usual case)
            return
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - window_ns)
        if cut:
            del self.stamps[:cut]
            del self.values[:cut]

    def bracket(self, stamp: int) -> tuple[int, int, float, int]:
        """``(i, j, weight, outside_ns)`` for ``stamp`` (the history must not be empty).

        The value at ``stamp`` is ``(1 - weight) * values[i] + weight * values[j]``: ``i == j`` (weight 0) at a
        stored stamp and outside the stored range (the nearest sample). ``outside_ns`` is how far the stamp lies
        before the first sample (negative) or after the last one (positive); 0 inside the range.
        """
        stamps = self.stamps
        index = bisect.bisect_left(stamps, stamp)
        if index < len(stamps) and stamps[index] == stamp:
            return index, index, 0.0, 0
        if index == 0:
            return 0, 0, 0.0, stamp - stamps[0]
        if index == len(stamps):
            return index - 1, index - 1, 0.0, stamp - stamps[-1]
        t0, t1 = stamps[index - 1], stamps[index]
        return index - 1, index, (stamp - t0) / (t1 - t0), 0
