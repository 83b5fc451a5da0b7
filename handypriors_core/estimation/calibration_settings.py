"""Settings of the hand self-calibration (``tracking.calibration`` in ``config/allegro_tracking.yaml``).

The estimator (:mod:`.calibration`) treats a hand-camera correction (6 DoF) and 16 joint-encoder offsets as
slow states observed through the hand's depth (:mod:`.hand_depth`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import check_ranges, ranged

__all__ = ["CalibrationSettings"]


@dataclass
class CalibrationSettings:
    """Hand-camera correction + joint offsets, estimated from the hand's depth (off by default).

    Attributes:
        enabled: estimate them while tracking and feed the corrected hand to the object estimation (a loaded
            calibration file is applied either way).
        estimate_hand_camera: estimate the 6-DoF hand-camera correction (else it stays at its prior).
        estimate_joint_offsets: estimate the joint-encoder offsets (else they stay at their prior).
        prior_std_translation: prior standard deviation [m] of the correction's translation around the loaded
            calibration (or zero).
        prior_std_rotation: prior standard deviation [rad] of the correction's rotation.
        prior_std_offset: prior standard deviation [rad] of each joint offset.
        process_std_translation: random-walk noise [m] added per used frame (the long time constant of drift).
        process_std_rotation: random-walk noise [rad] of the rotation per used frame.
        process_std_offset: random-walk noise [rad] of each offset per used frame.
        point_std: standard deviation [m] of one point-to-plane residual (times sqrt of correlation_inflation).
        correlation_inflation: variance factor for neighbouring depth pixels being correlated.
        robust_scale: Cauchy scale [m] of the residuals.
        association_gate: residuals and depth gaps beyond this [m] are not associated.
        occlusion_margin: observed depth nearer than a model point by more than this [m] is an occluder (the
            object, another finger) and is skipped.
        min_points: fewer associated hand points freeze the estimate for the frame (hand not seen well).
        min_joint_motion: a frame is used only when some joint moved this much [rad] since the last used frame
            (or the hand root moved min_hand_motion): a still hand adds no information.
        min_hand_motion: hand-root motion [m] (rotation counts at 0.1 m per rad) that makes a frame new.
        iterations: Gauss-Newton iterations per used frame (re-associating each time).
        update_every: the tracker offers every n-th frame to the estimator (bounds the per-frame cost).
        max_points: hand surface points considered per frame (evenly subsampled).
        render_size: edge [px] of the hand z-buffer used for self-occlusion.
        smoothing_frames: used frames that :meth:`~.calibration.HandCalibrator.smooth` (the batch re-solve of
            ``handypriors calibrate``) re-solves over; beyond it every other kept frame is dropped. 0: none kept.
        smoothing_iterations: Gauss-Newton iterations of the re-solve over all kept frames (re-associating each).
        smoothing_robust_scale: final Cauchy scale [m] of the re-solve; it starts at robust_scale and halves per
            iteration down to this (wide while far off, then as tight as the depth's own noise allows).
        smoothing_prior_std_offset: prior standard deviation [rad] of each joint offset in the re-solve (it
            re-linearises every frame, so it can take the wide prior the fault model calls for; the recursive
            update keeps prior_std_offset, as a wide prior there lets its first frames throw the offsets around).
        smoothing_excluded_links: hand links left out of the re-solve because their model shape differs from the
            real hand: the Allegro URDF's palm box, whose depth residuals at the true calibration of the MuJoCo
            dev recordings are biased (mean +0.6 / +1.7 mm, 9-28 % of its points beyond 4 mm) and tilt the
            hand-camera rotation, which the finger offsets then absorb (docs/benchmarks.md). The recursive update
            keeps them: while far off, their millimetre bias does not matter and the palm anchors the rotation.
        warn_translation: estimated hand-camera translation [m] beyond which the robot needs recalibration.
        warn_rotation: estimated hand-camera rotation [rad] beyond which the robot needs recalibration.
        warn_offset: estimated joint offset [rad] beyond which the robot needs recalibration.
    """

    enabled: bool = False
    estimate_hand_camera: bool = True
    estimate_joint_offsets: bool = True
    prior_std_translation: float = ranged(0.01, 0.0, 0.1, low_open=True)
    prior_std_rotation: float = ranged(0.035, 0.0, math.pi, low_open=True)
    prior_std_offset: float = ranged(0.06, 0.0, math.pi, low_open=True)
    process_std_translation: float = ranged(2.0e-5, 0.0, 0.01)
    process_std_rotation: float = ranged(5.0e-5, 0.0, 0.1)
    process_std_offset: float = ranged(5.0e-5, 0.0, 0.1)
    point_std: float = ranged(0.003, 0.0, 0.1, low_open=True)
    correlation_inflation: float = ranged(3.0, 0.0, 1e6, low_open=True)
    robust_scale: float = ranged(0.004, 0.0, 0.1, low_open=True)
    association_gate: float = ranged(0.025, 0.0, 0.2, low_open=True)
    occlusion_margin: float = ranged(0.012, 0.0, 0.2, low_open=True)
    min_points: int = ranged(60, 6, 1_000_000)
    min_joint_motion: float = ranged(0.01, 0.0, math.pi)
    min_hand_motion: float = ranged(0.002, 0.0, 1.0)
    iterations: int = ranged(3, 1, 20)
    update_every: int = ranged(1, 1, 10_000)
    max_points: int = ranged(1400, 50, 1_000_000)
    render_size: int = ranged(160, 32, 1024)
    smoothing_frames: int = ranged(120, 0, 100_000)
    smoothing_iterations: int = ranged(6, 1, 50)
    smoothing_robust_scale: float = ranged(0.001, 0.0, 0.1, low_open=True)
    smoothing_prior_std_offset: float = ranged(0.15, 0.0, math.pi, low_open=True)
    smoothing_excluded_links: list[str] = field(default_factory=lambda: ["base_link"])
    warn_translation: float = ranged(0.004, 0.0, 0.1, low_open=True)
    warn_rotation: float = ranged(0.0175, 0.0, math.pi, low_open=True)
    warn_offset: float = ranged(0.035, 0.0, math.pi, low_open=True)

    def __post_init__(self) -> None:
        check_ranges(self, "calibration")
