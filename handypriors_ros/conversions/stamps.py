"""``builtin_interfaces/Time`` <-> integer nanoseconds (exact) and float seconds; ``std_msgs/Header``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handypriors_core.errors import InvalidValueError

__all__ = [
    "NANOSECONDS_PER_SECOND",
    "make_header",
    "stamp_ns",
    "time_from_ns",
    "time_from_seconds",
    "time_to_ns",
    "time_to_seconds",
]

NANOSECONDS_PER_SECOND = 1_000_000_000


def time_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (or anything with ``sec`` and ``nanosec``) -> integer nanoseconds (exact)."""
    return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)


def time_from_ns(ns: int) -> Any:
    """Integer nanoseconds -> ``builtin_interfaces/Time`` (exact; ``nanosec`` in ``[0, 1e9)``)."""
    from builtin_interfaces.msg import Time

    if isinstance(ns, bool) or not isinstance(ns, (int, np.integer)):
        raise InvalidValueError(f"stamp_ns must be an int [ns]; got {ns!r}")
    sec, nanosec = divmod(int(ns), NANOSECONDS_PER_SECOND)
    if not -(2**31) <= sec < 2**31:
        raise InvalidValueError(f"stamp_ns {ns} does not fit builtin_interfaces/Time (int32 seconds)")
    return Time(sec=sec, nanosec=nanosec)


def time_to_seconds(stamp: Any) -> float:
    """``builtin_interfaces/Time`` -> float seconds (double precision: ~0.2 us resolution at 2023 epochs)."""
    return time_to_ns(stamp) / NANOSECONDS_PER_SECOND


def time_from_seconds(seconds: float) -> Any:
    """Float seconds -> ``builtin_interfaces/Time``, rounded to the nearest nanosecond."""
    if not math.isfinite(seconds):
        raise InvalidValueError(f"seconds must be finite; got {seconds}")
    return time_from_ns(round(seconds * NANOSECONDS_PER_SECOND))


def stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` in integer nanoseconds."""
    return time_to_ns(msg.header.stamp)


def make_header(stamp: int | Any = 0, frame_id: str = "") -> Any:
    """``std_msgs/Header`` from a stamp (int ns or ``Time``) and a frame id."""
    from std_msgs.msg import Header

    time = stamp if hasattr(stamp, "nanosec") else time_from_ns(stamp)
    return Header(stamp=time, frame_id=str(frame_id))
