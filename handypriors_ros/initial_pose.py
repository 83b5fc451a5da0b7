"""Where the tracker node's initial pose comes from, in this order: a pose received on ``~/initial_pose`` (in any
TF frame, moved into the camera frame), the ``initial_pose`` parameter, the tracker's global pose search on the
frame (at most once per :data:`SEARCH_RETRY_S`). Until one of them gives a pose, frames are skipped
(:class:`WaitingForPose`).

No rclpy: the node hands in the received message, its TF lookup and its report / log callbacks, so this is
unit-tested without DDS. A bad ``~/initial_pose`` (unknown frame, NaN) is reported and ignored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from handypriors_core.errors import HandyPriorsError, InvalidValueError
from handypriors_core.io.transform_buffer import TransformLookupError

from . import conversions

__all__ = ["SEARCH_RETRY_S", "InitialPoseSource", "WaitingForPose"]

#: Least time between two global pose searches [s].
SEARCH_RETRY_S = 2.0


class WaitingForPose(Exception):
    """No initial pose yet: the frame is not tracked (a state, not an input error)."""


class InitialPoseSource:
    """The node's initial pose (see the module docstring).

    Args:
        lookup: ``(target_frame, source_frame, stamp_ns | None) -> (4, 4)`` source2target (the node's TF).
        report: ``(message, warn) -> logged?``, the node's throttled error report.
        log: info lines (what initialised the track).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, lookup: Callable[[str, str, int | None], torch.Tensor],
                 report: Callable[..., bool], log: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._report = report
        self._log = log
        self._clock = clock
        #: The newest ``~/initial_pose`` message not applied yet (applied at the next frame).
        self.pending: Any = None
        self._last_search = -math.inf

    def received(self, msg: Any) -> None:
        """A ``geometry_msgs/PoseStamped`` arrived on ``~/initial_pose`` (callback thread; never waits)."""
        self.pending = msg

    def ensure(self, tracker: Any, frame: Any, camera_frame: str, parameter_pose: torch.Tensor | None,
               global_search: bool) -> None:
        """Initialise ``tracker`` (``initialized``, ``initialize``, ``reset``, ``initialize_from_frame``) for
        ``frame`` if it is not; a pending ``~/initial_pose`` re-initialises it. ``parameter_pose``: ``(4, 4)``
        of the ``initial_pose`` parameter or None. Raises :class:`WaitingForPose` while there is no pose."""
        pose_msg, self.pending = self.pending, None
        if pose_msg is not None:
            try:  # a bad pose is reported and ignored; the frame is still tracked
                source = pose_msg.header.frame_id.lstrip("/")
                pose = conversions.pose_to_matrix(pose_msg)
                if source and source != camera_frame:
                    pose = self._lookup(camera_frame, source, conversions.stamp_ns(pose_msg) or None) @ pose
                if not bool(torch.isfinite(pose).all()):
                    raise InvalidValueError(f"pose is not finite: {pose[:3].tolist()}")
            except (HandyPriorsError, TransformLookupError) as exc:
                self._report(f"~/initial_pose in frame {pose_msg.header.frame_id!r} ignored: {exc}")
            else:
                tracker.reset(pose)
                self._log("track (re-)initialised from ~/initial_pose")
        if tracker.initialized:
            return
        if parameter_pose is not None:
            tracker.initialize(parameter_pose)
            return
        if global_search and self._clock() - self._last_search >= SEARCH_RETRY_S:
            self._last_search = self._clock()
            try:
                result = tracker.initialize_from_frame(frame)  # initialises the tracker on success
            except HandyPriorsError as exc:
                self._report(f"global pose search failed: {exc}", warn=True)
            else:
                if result.ok:
                    self._log(f"initial pose from the global search (score {result.score:.2f}, "
                              f"{self._clock() - self._last_search:.1f} s)")
                    return
                self._report(f"global pose search found no pose ({result.status})", warn=True)
        raise WaitingForPose("waiting for an initial pose (initial_pose parameter or ~/initial_pose)")
