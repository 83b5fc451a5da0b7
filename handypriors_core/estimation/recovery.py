"""Loss of track and recovery: a per-frame monitor of the tracking quality that decides what to do.

The tracker calls :meth:`TrackingMonitor.observe` once per frame with its quality score in [0, 1] (silhouette IoU
and depth agreement, see ``ObjectTracker.quality``) and, optionally, the filter's normalised innovation (NIS per
degree of freedom) and the mask source's status. The monitor owns the states ``initialising`` -> ``tracking``
-> ``lost`` -> ``tracking``:

- a frame is *bad* when its quality is below ``lost_threshold`` (non-finite counts as 0) or below
  ``relative_threshold`` times the track's typical quality (a running mean over good frames: a sudden drop, e.g.
  a teleported object whose silhouette still half overlaps), when the innovation exceeds
  ``innovation_threshold``, or when there was no usable observation;
- ``lost_after`` consecutive bad frames flag the track ``lost``: the decision asks once for covariance inflation
  (``covariance_inflation``) and, every ``reinit_every`` lost frames, for re-initialisation: a global search
  around the last good pose (``near``) for the first ``search_near_attempts`` attempts, then over the whole
  rotation space (``near = None``);
- a re-initialised pose is accepted when its search score reaches ``reinit_min_score`` and ``reinit_relative``
  times the track's typical quality (:meth:`TrackingMonitor.accept_reinitialization`); :func:`reinitialize`
  runs the search (around the last good pose, then, if rejected, over all rotations) and applies this;
  ``recovered_after`` consecutive good frames make a lost track ``tracking`` again;
- learning mask sources (the colour model) may learn only from good frames with quality >= ``learn_threshold``
  (``decision.learn``), so a wrong pose never teaches them wrong colours.

Every decision carries a human-readable ``reason`` (logged on state changes, for ROS diagnostics).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..config import find_config, load_settings
from .settings import RecoverySettings

__all__ = ["MonitorDecision", "RecoverySettings", "TrackingMonitor", "load_recovery_settings", "reinitialize"]

log = logging.getLogger("handypriors.tracking")

TrackStatus = Literal["initialising", "tracking", "lost"]


def load_recovery_settings(path=None, section: str = "recovery") -> RecoverySettings:
    """:class:`RecoverySettings` from ``path`` (default: the shipped ``config/segmentation.yaml``)."""
    return load_settings(RecoverySettings, path if path is not None else find_config("segmentation.yaml"),
                         section=section)


@dataclass
class MonitorDecision:
    """What the tracker should do after a frame.

    Attributes:
        status: the track's state after this frame.
        good: whether this frame counted as good.
        inflate: factor to multiply the pose covariance by now (1 = leave it).
        reinitialize: run the global search on this frame (and :meth:`TrackingMonitor.accept_reinitialization`).
        near: ``(4, 4)`` pose to search around, or None for a search over all rotations.
        learn: whether learning mask sources may learn from this frame's estimate.
        reason: human-readable explanation (logs, diagnostics).
    """

    status: TrackStatus
    good: bool
    inflate: float
    reinitialize: bool
    near: torch.Tensor | None
    learn: bool
    reason: str


class TrackingMonitor:
    """Per-frame quality bookkeeping and the loss-of-track / recovery policy (see the module docstring)."""

    def __init__(self, settings: RecoverySettings | None = None) -> None:
        self.settings = settings if settings is not None else RecoverySettings()
        self.reset()

    def reset(self) -> None:
        """Start a new track (state ``initialising``)."""
        self.status: TrackStatus = "initialising"
        self.bad_frames = 0
        self.good_frames = 0
        self.lost_frames = 0
        self.reinit_attempts = 0
        self.frames = 0
        self.last_quality = math.nan
        self.reference_quality = math.nan
        self.last_good_pose: torch.Tensor | None = None
        self.reason = "waiting for the first frame"

    # ------------------------------------------------------------------------------------------------
    def observe(self, quality: float, pose: torch.Tensor | None = None, innovation: float | None = None,
                observation: str = "ok") -> MonitorDecision:
        """Account for one tracked frame.

        Args:
            quality: tracking-quality score in [0, 1] of the frame's estimate (NaN/inf count as 0).
            pose: ``(4, 4)`` the estimate (kept as the last good pose on good frames).
            innovation: normalised innovation squared per degree of freedom of the filter updates, or None.
            observation: ``"ok"`` or why the frame had no usable observation (e.g. the mask source's status);
                anything but ``"ok"`` makes the frame bad.
        """
        s = self.settings
        self.frames += 1
        q = float(quality) if quality is not None and math.isfinite(float(quality)) else 0.0
        q = min(max(q, 0.0), 1.0)
        self.last_quality = q
        problems = []
        if quality is None or not math.isfinite(float(quality)):
            problems.append("non-finite quality")
        elif q < s.lost_threshold:
            problems.append(f"quality {q:.2f} < {s.lost_threshold:.2f}")
        elif s.relative_threshold > 0 and math.isfinite(self.reference_quality) and \
                q < s.relative_threshold * self.reference_quality:
            problems.append(f"quality {q:.2f} dropped below {s.relative_threshold:.2f} x the track's "
                            f"{self.reference_quality:.2f}")
        if innovation is not None and s.innovation_threshold > 0:
            nis = float(innovation)
            if not math.isfinite(nis) or nis > s.innovation_threshold:
                problems.append(f"innovation {nis:.3g} > {s.innovation_threshold:.3g}")
        if observation != "ok":
            problems.append(f"no observation ({observation})")
        pose_ok = pose is not None and bool(torch.isfinite(torch.as_tensor(pose)).all())
        if pose is not None and not pose_ok:
            problems.append("non-finite pose")
        good = not problems
        if good:
            self.good_frames += 1
            self.bad_frames = 0
            r = s.reference_rate
            self.reference_quality = q if not math.isfinite(self.reference_quality) else \
                (1 - r) * self.reference_quality + r * q
        else:
            self.bad_frames += 1
            self.good_frames = 0
        previous = self.status
        inflate = 1.0
        reinit = False
        near = None
        if self.status != "lost":
            if good:
                self.status = "tracking"
                if pose_ok:
                    self.last_good_pose = torch.as_tensor(pose).detach().double().cpu().clone()
                self.reason = f"tracking: quality {q:.2f}"
            elif self.bad_frames >= s.lost_after:
                self.status = "lost"
                self.lost_frames = 0
                self.reinit_attempts = 0
                inflate = s.covariance_inflation
                self.reason = f"lost: {', '.join(problems)} for {self.bad_frames} frames"
            else:
                self.reason = f"{self.status}: bad frame {self.bad_frames}/{s.lost_after} ({', '.join(problems)})"
        if self.status == "lost" and previous == "lost":
            self.lost_frames += 1
            if good and self.good_frames >= s.recovered_after:
                self.status = "tracking"
                if pose_ok:
                    self.last_good_pose = torch.as_tensor(pose).detach().double().cpu().clone()
                self.reason = f"recovered: {self.good_frames} good frames (quality {q:.2f})"
            elif good:
                self.reason = f"lost: recovering, good frame {self.good_frames}/{s.recovered_after}"
            else:
                self.reason = f"lost for {self.lost_frames} frames: {', '.join(problems)}"
        if self.status == "lost" and not good and self.lost_frames % s.reinit_every == 0:
            reinit = True
            if self.reinit_attempts < s.search_near_attempts and self.last_good_pose is not None:
                near = self.last_good_pose.clone()
        learn = good and self.status == "tracking" and q >= s.learn_threshold
        if self.status != previous:
            (log.warning if self.status == "lost" else log.info)("track %s -> %s: %s", previous, self.status,
                                                                 self.reason)
        return MonitorDecision(status=self.status, good=good, inflate=inflate, reinitialize=reinit, near=near,
                               learn=learn, reason=self.reason)

    def accept_reinitialization(self, score: float, pose: torch.Tensor | None) -> bool:
        """Report a re-initialisation's result; True when its pose should replace the estimate.

        An accepted pose starts the recovery count (``recovered_after`` good frames make the track
        ``tracking``); a rejected one keeps the track lost and the next attempt follows the policy.
        """
        self.reinit_attempts += 1
        s = self.settings
        needed = s.reinit_min_score
        if math.isfinite(self.reference_quality):
            needed = max(needed, s.reinit_relative * self.reference_quality)
        ok = pose is not None and score is not None and math.isfinite(float(score)) and \
            float(score) >= needed and bool(torch.isfinite(torch.as_tensor(pose)).all())
        if ok:
            self.reason = f"lost: re-initialised (search score {float(score):.2f}), confirming"
            log.info("re-initialised the object pose (search score %.2f)", float(score))
        else:
            shown = "none" if score is None or pose is None else f"{float(score):.2f}"
            self.reason = f"lost: re-initialisation rejected (search score {shown} < {needed:.2f})"
        return ok

    def diagnostics(self) -> dict[str, str]:
        """Key-value pairs for ``diagnostic_msgs/DiagnosticStatus`` (all strings)."""
        return {"status": self.status, "reason": self.reason, "quality": f"{self.last_quality:.3f}",
                "typical_quality": f"{self.reference_quality:.3f}",
                "bad_frames": str(self.bad_frames), "good_frames": str(self.good_frames),
                "lost_frames": str(self.lost_frames), "reinit_attempts": str(self.reinit_attempts),
                "frames": str(self.frames)}


def reinitialize(search, frame, hand, decision: MonitorDecision, monitor: TrackingMonitor, mask_source=None):
    """Run the re-initialisation a decision asks for; returns ``(SearchResult, accepted)``.

    The mask comes from :func:`~.initialization.automatic_mask` (frame mask, pose-free mask source, depth near
    the hand, the colour model's global mask). The search runs around ``decision.near`` and, when that pose is
    rejected, once more over all rotations; each result is reported to ``monitor``.

    Args:
        search: a :class:`~.initialization.GlobalPoseSearch` (built once, it caches its rotations).
        frame, hand: the frame and its posed hand.
        decision: the monitor's decision for this frame (``decision.reinitialize`` is True).
        monitor: the :class:`TrackingMonitor` that made it.
        mask_source: the tracker's mask source, or None.
    """
    from .initialization import automatic_mask

    mask, origin = automatic_mask(search.scene, frame, hand, mask_source)
    result = search.search(frame, mask, hand, near=decision.near)
    accepted = monitor.accept_reinitialization(result.score, result.object2camera)
    if not accepted and decision.near is not None and mask is not None:
        result = search.search(frame, mask, hand, near=None)
        accepted = monitor.accept_reinitialization(result.score, result.object2camera)
    result.status = f"{result.status} (mask: {origin})"
    return result, accepted
