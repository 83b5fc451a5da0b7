"""What the tracker node has done, for ``/diagnostics``: images received, frames tracked and dropped (by reason,
with the recent rate), per-stage timings, and the input problems it reported (counted by kind, each logged at
most once per hold time).

Thread-safe (callbacks, the worker and the diagnostics timer all write or read it) and free of rclpy, so it is
unit-testable without DDS; the node turns its :meth:`NodeActivity.health` into a ``DiagnosticStatus``
(:mod:`.diagnostics`). Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import collections
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from .diagnostics import ErrorCounter, TrackerHealth

__all__ = ["DROP_WINDOW_S", "RATE_WINDOW_S", "NodeActivity"]

#: Processed frames are counted over this window for the rate [s].
RATE_WINDOW_S = 2.0
#: Frames dropped within this window are "recent" (they set the WARN level) [s].
DROP_WINDOW_S = 5.0
_NUMBERS = re.compile(r"\d+(\.\d+)?")


def _trim(times: collections.deque, now: float, window: float) -> None:
    while times and now - times[0] > window:
        times.popleft()


class NodeActivity:
    """Counters, timings and the throttled error log of one tracker node (see the module docstring).

    Attributes (read freely; written through the methods):
        images_received: colour images the node received.
        frames_tracked: frames tracked and published.
        dropped: frames dropped, by reason (``busy``, ``input``, ``stale``, ``duplicate``, ``not ready``).
        waiting_reason: why the node is not tracking ('' while it tracks).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: seconds, monotonic (tests pass their own)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = ErrorCounter()
        self.images_received = 0
        self.frames_tracked = 0
        self.dropped: collections.Counter = collections.Counter()
        self.waiting_reason = "no frame yet"
        self._processed_times: collections.deque = collections.deque()
        self._drop_times: collections.deque = collections.deque()
        self._latency_s = math.nan
        self._processing_s = math.nan
        self._last_timings: dict[str, float] = {}
        self._stages_ms: dict[str, float] = {}
        self._last_error = ""
        self._last_error_time = -math.inf
        self._logged: dict[str, float] = {}

    def image_received(self) -> None:
        self.images_received += 1

    def count_drop(self, reason: str) -> None:
        """One frame dropped for ``reason``."""
        now = self._clock()
        with self._lock:
            self.dropped[reason] += 1
            self._drop_times.append(now)
            _trim(self._drop_times, now, DROP_WINDOW_S)

    def report(self, message: str, hold_s: float) -> bool:
        """Record an input problem; returns whether to log it (the same message at most once per ``hold_s``,
        at least 1 s; numbers in it do not make another message: the same problem at another stamp)."""
        now = self._clock()
        self._errors.count(message)
        with self._lock:
            self._last_error = message
            self._last_error_time = now
            key = _NUMBERS.sub("#", message)
            if now - self._logged.get(key, -math.inf) < max(hold_s, 1.0):
                return False
            self._logged[key] = now
            if len(self._logged) > 256:
                self._logged.clear()
        return True

    def frame_tracked(self) -> int:
        """One more frame tracked; returns how many so far."""
        with self._lock:
            self.frames_tracked += 1
            return self.frames_tracked

    def frame_published(self, latency_s: float, processing_s: float, timings: dict[str, float]) -> None:
        """A tracked frame's outputs are out: image stamp -> now ``latency_s`` [s], image received -> now
        ``processing_s`` [s], the tracker's ``timings``."""
        done = self._clock()
        with self._lock:
            self._latency_s = latency_s
            self._processing_s = processing_s
            self._last_timings = dict(timings)
            self._processed_times.append(done)
            _trim(self._processed_times, done, RATE_WINDOW_S)
            self.waiting_reason = ""

    def set_stages(self, stages_ms: dict[str, float]) -> None:
        """The last frame's stage durations [ms] (``queue_ms``, ``inputs_ms`` ...)."""
        with self._lock:
            self._stages_ms = dict(stages_ms)

    def health(self, state: str, quality: float, error_hold_s: float) -> TrackerHealth:
        """The node's health now, with the tracker's ``state`` and ``quality``; the last error counts for
        ``error_hold_s``."""
        now = self._clock()
        with self._lock:
            times = [t for t in self._processed_times if now - t <= RATE_WINDOW_S]
            if len(times) >= 2 and times[-1] > times[0]:
                rate = (len(times) - 1) / (times[-1] - times[0])
            else:
                rate = 0.0 if self.frames_tracked else math.nan
            return TrackerHealth(
                state=state, rate_hz=rate, latency_s=self._latency_s, quality=quality,
                frames_processed=self.frames_tracked, dropped_frames=sum(self.dropped.values()),
                dropped_frames_recent=sum(1 for t in self._drop_times if now - t <= DROP_WINDOW_S),
                seconds_since_last_frame=(now - self._processed_times[-1]) if self._processed_times else math.nan,
                last_error=self._last_error if now - self._last_error_time <= error_hold_s else "")

    def values(self) -> dict[str, Any]:
        """Key-values for the diagnostics: images received, timings [ms], drops and errors by kind, the sizes of
        its own bounded buffers."""
        with self._lock:
            values: dict[str, Any] = {
                "images_received": self.images_received,
                "waiting": self.waiting_reason,
                "processing_ms": 1e3 * self._processing_s,
                "tracker_ms": 1e3 * self._last_timings.get("total", math.nan),
            }
            values.update(self._stages_ms)
            values.update({f"dropped_{reason.replace(' ', '_')}": n for reason, n in self.dropped.items()})
            values.update(self._errors.values())
            values.update({"size_error_log": len(self._logged), "size_drop_times": len(self._drop_times)})
        return values
