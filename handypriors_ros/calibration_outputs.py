"""ROS outputs of the hand self-calibration: the current hand-camera correction and joint offsets as messages and
as a ``/diagnostics`` status (WARN when the estimated errors mean the robot needs recalibration).

- ``~/hand_camera_correction`` (``geometry_msgs/TransformStamped``): parent = the hand root frame as measured
  (TF / joint states), child = ``<hand root>_corrected``: ``hand2camera_true = hand2camera_measured @ correction``.
- ``~/joint_offsets`` (``sensor_msgs/JointState``): ``position`` = the offsets [rad] in URDF joint order
  (``q_true = q_measured - offset``), ``velocity`` = their 1-sigma [rad].
"""

from __future__ import annotations

from typing import Any

from . import conversions

__all__ = ["calibration_messages", "calibration_status"]


def calibration_messages(calibrator: Any, hand_frame: str, stamp_ns: int) -> tuple[Any, Any]:
    """``(TransformStamped, JointState)`` of a :class:`~handypriors_core.estimation.calibration.HandCalibrator`."""
    from sensor_msgs.msg import JointState

    correction = calibrator.state.correction
    transform = conversions.matrix_to_transform_stamped(correction.numpy(), hand_frame, f"{hand_frame}_corrected",
                                                        stamp_ns)
    sigma = calibrator.covariance.diag()[6:].clamp_min(0).sqrt()
    joints = JointState(header=conversions.make_header(stamp_ns), name=list(calibrator.joint_names),
                        position=[float(v) for v in calibrator.state.offsets],
                        velocity=[float(v) for v in sigma])
    return transform, joints


def calibration_status(calibrator: Any, name: str, source: str) -> Any:
    """A ``DiagnosticStatus``: OK with the estimate's key values, WARN when it exceeds the recalibration
    thresholds (``tracking.calibration.warn_*``)."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    summary = calibrator.summary()
    warning = calibrator.needs_recalibration()
    status = DiagnosticStatus(name=name, hardware_id=source or "no calibration file")
    status.level = DiagnosticStatus.WARN if warning else DiagnosticStatus.OK
    status.message = (f"recalibration needed: {warning}" if warning else
                      f"hand calibration within thresholds ({summary['calibration_status']})")
    values = {**summary, "calibration_file": source}
    status.values = [KeyValue(key=k, value=f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    return status
