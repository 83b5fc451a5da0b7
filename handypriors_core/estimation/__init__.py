"""Pose estimation: filter state on SE(3), a generic error-state EKF (and, later, modalities, optimizer, tracker).

See ``pose_state`` for the retraction ``x [+] delta`` / local difference convention used everywhere here and
``ekf`` for the filter's math.
"""

from .ekf import EKFSettings, ErrorStateEKF, StepResult, chi2_threshold, linearize, linearize_rowwise, tangent_jacobian
from .pose_state import (
    POSE_DIM,
    PoseState,
    covariance_to_body_frame,
    covariance_to_se3_left,
    local_difference,
    retract,
    ros_covariance_list,
    ros_pose_covariance,
)

__all__ = [
    "POSE_DIM",
    "EKFSettings",
    "ErrorStateEKF",
    "PoseState",
    "StepResult",
    "chi2_threshold",
    "covariance_to_body_frame",
    "covariance_to_se3_left",
    "linearize",
    "linearize_rowwise",
    "local_difference",
    "retract",
    "ros_covariance_list",
    "ros_pose_covariance",
    "tangent_jacobian",
]
