"""``handypriors calibrate BAG``: estimate the hand-camera correction and the joint-encoder offsets from a
recording and write the calibration YAML that the node (parameter ``calibration_file``) and ``handypriors track
--calibration`` load.

Only the hand is used (its depth against the model posed by the recorded joint states and hand pose, see
:mod:`handypriors_core.estimation.calibration`: the recursive update over every frame, then one batch re-solve
over the used frames), so no object model or initial pose is needed; the hand should
move (fingers and/or wrist) for the estimate to be informative: frames of a still hand add nothing.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CalibrateOptions", "CalibrateSummary", "describe_calibration", "run_calibrate"]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class CalibrateOptions:
    """Everything ``handypriors calibrate`` needs.

    Attributes:
        bag: rosbag2 folder or ``.mcap`` / ``.db3`` file. out: the calibration YAML to write (None: not written).
        config: tracking config whose ``tracking.calibration`` block is used (default: the shipped one).
        initial: a calibration YAML to start from (its values are the prior mean).
        topics: overrides of :class:`~handypriors_core.io.bag_settings.BagTopics` fields (None = config value).
        max_frames: stop after this many image messages. report: where informational lines go.
    """

    bag: Path
    out: Path | None = Path("hand_calibration.yaml")
    config: Path | None = None
    initial: Path | None = None
    topics: dict[str, Any] = field(default_factory=dict)
    max_frames: int | None = None
    report: Callable[[str], None] = _say


@dataclass
class CalibrateSummary:
    """Result of a calibration run: the estimate, how many frames were seen / used, the per-frame statuses,
    the recalibration warning (empty when within the thresholds) and the written file."""

    calibration: Any
    frames_seen: int
    frames_used: int
    statuses: dict[str, int]
    warning: str
    out: Path | None
    seconds: float


def describe_calibration(calibration) -> str:
    """One-paragraph human summary of a :class:`~handypriors_core.io.calibration_file.HandCalibration`."""
    t = calibration.translation * 1e3
    a = calibration.rotation_vector
    lines = [(f"hand-camera correction: translation [{t[0]:+.2f}, {t[1]:+.2f}, {t[2]:+.2f}] mm "
             f"(|t| {float(t.norm()):.2f} mm), rotation {math.degrees(float(a.norm())):.3f} deg")]
    if calibration.covariance is not None:
        sd = calibration.covariance.diag().clamp_min(0).sqrt()
        lines[0] += f" (1-sigma {float(sd[:3].max()) * 1e3:.2f} mm, {math.degrees(float(sd[3:6].max())):.3f} deg)"
    offs = ", ".join(f"{n} {math.degrees(float(v)):+.2f}" for n, v in zip(calibration.joint_names,
                                                                          calibration.joint_offsets, strict=True))
    lines.append(f"joint offsets [deg]: {offs}")
    return "\n".join(lines)


def run_calibrate(opts: CalibrateOptions) -> CalibrateSummary:
    """Estimate the calibration from ``opts.bag`` (see the module docstring) and write ``opts.out``."""
    from ..estimation.calibration import HandCalibrator
    from ..estimation.settings import load_tracking_settings
    from ..io.bag_reader import BagReader
    from ..io.bag_settings import load_bag_settings
    from ..io.calibration_file import load_calibration, save_calibration
    from ..models import URDFHand, allegro_urdf
    from .track import _shipped_config

    t0 = time.perf_counter()
    report = opts.report
    settings = load_tracking_settings(opts.config).calibration
    settings.enabled = True
    hand = URDFHand.from_urdf(allegro_urdf())
    initial = load_calibration(opts.initial, hand.joint_names) if opts.initial is not None else None
    bag_settings = load_bag_settings(opts.config if opts.config is not None else _shipped_config())
    bag_settings = bag_settings.override(**{k: v for k, v in opts.topics.items() if v is not None})
    calibrator = HandCalibrator(hand, settings, initial=initial, keep_frames=True)
    statuses: Counter[str] = Counter()
    with BagReader(opts.bag, hand.joint_names, bag_settings, report=report) as reader:
        report(f"{reader.describe()}; calibrating the hand")
        for bf in reader.frames():
            if opts.max_frames is not None and bf.index >= opts.max_frames:
                break
            if bf.frame is None:
                statuses["skipped"] += 1
                continue
            update = calibrator.update(bf.frame)
            statuses[update.status.split(":")[0]] += 1
    if calibrator.kept_frames:  # the batch re-solve over the used frames (see HandCalibrator.smooth)
        smoothed = calibrator.smooth()
        report(f"re-solved over {len(calibrator.kept_frames)} used frames ({smoothed.status}, change "
               f"{smoothed.step:.2e})")
    result = calibrator.result()
    seen = sum(statuses.values())
    warning = calibrator.needs_recalibration()
    if calibrator.frames_used == 0:
        warning = (warning + "; " if warning else "") + "no frame was usable (no depth, hand not seen or never moved)"
    out = None
    if opts.out is not None:
        out = save_calibration(result, opts.out, comment=f"from {opts.bag}: {calibrator.frames_used} of {seen} "
                                                         f"frames used")
    return CalibrateSummary(calibration=result, frames_seen=seen, frames_used=calibrator.frames_used,
                            statuses=dict(statuses), warning=warning, out=out, seconds=time.perf_counter() - t0)
