"""Pure builders of ``diagnostic_msgs/DiagnosticArray`` for the tracker's health (for ``/diagnostics``).

:class:`TrackerHealth` is what the node knows about itself; :func:`tracker_status` turns it into one
``DiagnosticStatus`` with a level and key-values, :func:`diagnostic_array` stamps a list of statuses.

Level rules (:class:`HealthThresholds`):

- ERROR: state ``lost``; or no frame processed for longer than ``stale_after_s``.
- WARN: state ``initialising``; a non-empty ``last_error``; rate below ``min_rate_hz``; latency above
  ``max_latency_s``; quality below ``min_quality``; frames dropped in the node's recent window
  (``dropped_frames_recent`` > 0; the total ``dropped_frames`` is reported but does not set the level).
- OK otherwise. The message names every reason, most severe first.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from handypriors_core.errors import InvalidValueError

from .conversions import make_header

__all__ = ["ERROR_KINDS", "TRACKER_STATES", "ErrorCounter", "HealthThresholds", "TrackerHealth", "diagnostic_array",
           "error_kind", "key_values", "tracker_status"]

#: States a tracker reports.
TRACKER_STATES = ("initialising", "tracking", "lost")


@dataclasses.dataclass(frozen=True)
class TrackerHealth:
    """What a tracker node knows about its own health.

    Attributes:
        state: one of :data:`TRACKER_STATES`.
        rate_hz: processed frames per second over a recent window (NaN = unknown yet).
        latency_s: image stamp -> result published, recent mean [s] (NaN = unknown).
        quality: tracking quality in [0, 1] (e.g. silhouette IoU; NaN = unknown).
        frames_processed: total frames processed.
        dropped_frames: total frames skipped (tracker busy, missing joint states / TF, bad input).
        dropped_frames_recent: frames dropped in the recent window (drives the WARN level).
        seconds_since_last_frame: wall time since the last processed frame (NaN = none yet).
        last_error: the last error message ('' = none).
    """

    state: str
    rate_hz: float = math.nan
    latency_s: float = math.nan
    quality: float = math.nan
    frames_processed: int = 0
    dropped_frames: int = 0
    dropped_frames_recent: int = 0
    seconds_since_last_frame: float = math.nan
    last_error: str = ""

    def __post_init__(self) -> None:
        if self.state not in TRACKER_STATES:
            raise InvalidValueError(f"state must be one of {TRACKER_STATES}; got {self.state!r}")


@dataclasses.dataclass(frozen=True)
class HealthThresholds:
    """Limits of :func:`tracker_status` (NaN measurements never trigger them)."""

    min_rate_hz: float = 5.0
    max_latency_s: float = 0.2
    min_quality: float = 0.5
    stale_after_s: float = 2.0


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def key_values(values: Mapping[str, Any]) -> list:
    """``{key: value}`` -> ``[diagnostic_msgs/KeyValue]`` (floats with 6 significant digits)."""
    from diagnostic_msgs.msg import KeyValue

    return [KeyValue(key=str(k), value=_format(v)) for k, v in values.items()]


def tracker_status(
    health: TrackerHealth,
    name: str = "handypriors: object tracker",
    hardware_id: str = "",
    thresholds: HealthThresholds = HealthThresholds(),
    extra: Mapping[str, Any] | None = None,
) -> Any:
    """One ``DiagnosticStatus`` for ``health`` (level rules in the module docstring)."""
    from diagnostic_msgs.msg import DiagnosticStatus

    errors: list[str] = []
    warnings: list[str] = []
    if health.state == "lost":
        errors.append("object lost")
    if health.seconds_since_last_frame > thresholds.stale_after_s:
        errors.append(f"no frame for {health.seconds_since_last_frame:.1f} s")
    if health.state == "initialising":
        warnings.append("initialising")
    if health.last_error:
        warnings.append(f"last error: {health.last_error}")
    if health.rate_hz < thresholds.min_rate_hz:
        warnings.append(f"rate {health.rate_hz:.1f} Hz < {thresholds.min_rate_hz:g} Hz")
    if health.latency_s > thresholds.max_latency_s:
        warnings.append(f"latency {health.latency_s * 1e3:.0f} ms > {thresholds.max_latency_s * 1e3:.0f} ms")
    if health.quality < thresholds.min_quality:
        warnings.append(f"quality {health.quality:.2f} < {thresholds.min_quality:g}")
    if health.dropped_frames_recent > 0:
        warnings.append(f"{health.dropped_frames_recent} frame(s) dropped recently")
    if errors:
        level = DiagnosticStatus.ERROR
    elif warnings:
        level = DiagnosticStatus.WARN
    else:
        level = DiagnosticStatus.OK
    message = "; ".join(errors + warnings) if (errors or warnings) else f"{health.state}"
    values = {
        "state": health.state,
        "rate_hz": float(health.rate_hz),
        "latency_ms": float(health.latency_s) * 1e3,
        "quality": float(health.quality),
        "frames_processed": int(health.frames_processed),
        "dropped_frames": int(health.dropped_frames),
        "dropped_frames_recent": int(health.dropped_frames_recent),
        "seconds_since_last_frame": float(health.seconds_since_last_frame),
        "last_error": health.last_error,
    }
    values.update(extra or {})
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=key_values(values))


def diagnostic_array(statuses: Sequence[Any], stamp: int | Any = 0) -> Any:
    """Statuses -> a stamped ``DiagnosticArray``."""
    from diagnostic_msgs.msg import DiagnosticArray

    return DiagnosticArray(header=make_header(stamp, ""), status=list(statuses))


#: Kinds of input error a node counts (``errors_<kind>`` in its diagnostics), with the words that identify each in
#: an error line; the first kind that matches wins (``depth image ...`` is ``depth``, not ``image``).
ERROR_KINDS: tuple[tuple[str, re.Pattern], ...] = tuple((kind, re.compile(words, re.IGNORECASE)) for kind, words in (
    ("internal", r"internal error"),
    ("initial_pose", r"initial.pose"),
    ("mask", r"mask"),
    ("depth", r"depth"),
    ("tf", r"^/tf|transform|hand2camera|\bTF\b|lookup|frame '|frame \"|extrapolat"),
    ("joint_states", r"joint"),
    ("camera_info", r"camera.?info|intrinsic|focal|distortion"),
    ("stamp", r"stamp|backwards|max_image_age"),
    ("image", r"image|encoding|step|bytes|pixel"),
))


def error_kind(message: str) -> str:
    """The kind of an input error line (one of :data:`ERROR_KINDS`' names, else ``"other"``)."""
    for kind, pattern in ERROR_KINDS:
        if pattern.search(message):
            return kind
    return "other"


class ErrorCounter:
    """Thread-safe counts of input errors by kind (:func:`error_kind`), for ``/diagnostics``."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, message: str) -> str:
        """Count one error line; returns its kind."""
        kind = error_kind(message)
        with self._lock:
            self._counts[kind] += 1
        return kind

    def values(self) -> dict[str, int]:
        """``{"errors_<kind>": count}`` of every kind seen, plus ``errors_total``."""
        with self._lock:
            counts = dict(self._counts)
        return {**{f"errors_{kind}": n for kind, n in sorted(counts.items())}, "errors_total": sum(counts.values())}
