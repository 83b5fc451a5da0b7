"""Pose estimation: the scene, observations, modalities, the Adam refiner, the EKF filter and the tracker.

See ``pose_state`` for the retraction ``x [+] delta`` / local difference convention used everywhere here and
``ekf`` for the filter's math (Jacobians in ``linearization``, gate statistics in ``gating``); ``settings``
holds every estimator's settings (it imports nothing of this package).
May import geometry, models, render, physics, priors, io (and errors/checks/config); never segmentation or app.
"""

from .ekf import EKFSettings, ErrorStateEKF, StepResult
from .gating import chi2_threshold
from .linearization import linearize, linearize_rowwise, tangent_jacobian
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
