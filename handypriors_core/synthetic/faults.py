"""Lab faults of the hand's sensor data: joint-encoder bias and hand-camera (hand-eye) calibration error.

A real Allegro hand reports joint positions with a per-joint encoder bias of a few degrees, and a hand-eye
calibration is good to a few millimetres and about a degree. The generator (and ``bench/inject_faults.py`` for
existing bags) publish the faulty values while the images show the true hand:

    measured joint positions   q_meas = q_true + joint_bias                       (J,) [rad]
    measured hand pose         hand2camera_meas = hand2camera_true @ hand_camera_error     (4, 4)

``hand_camera_error`` is a rigid transform in the hand-root frame (translation of ``translation_mm``, rotation of
``rotation_deg`` about a random axis). The calibration estimator (:mod:`handypriors_core.estimation.calibration`)
estimates the inverse: ``joint_offsets`` = the bias and ``hand_camera_correction`` = the inverse error.
Everything is a deterministic function of the settings and the seed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..config import check_ranges, ranged, require

__all__ = ["FaultSettings", "SensorFaults", "sample_faults"]


@dataclasses.dataclass
class FaultSettings:
    """The fault model (``synthetic.faults`` in ``config/synthetic.yaml``; off by default).

    Attributes:
        enabled: inject faults into the published joint states and hand pose.
        joint_bias_std_deg: standard deviation of the per-joint encoder bias [deg] (normal) ...
        joint_bias_clip_deg: ... clipped to +- this [deg].
        translation_mm: length of the hand-camera translation error [mm] (random direction).
        rotation_deg: angle of the hand-camera rotation error [deg] (random axis).
        scale: factor on all four magnitudes (2.0: the "2x faults" benchmark rows).
        seed: seed of the random draws (bias signs, directions); -1 = the scenario's seed.
    """

    enabled: bool = False
    joint_bias_std_deg: float = ranged(2.0, 0.0, 1e6)
    joint_bias_clip_deg: float = ranged(4.0, 0.0, 1e6)
    translation_mm: float = ranged(5.0, 0.0, 1e6)
    rotation_deg: float = ranged(1.0, 0.0, 1e6)
    scale: float = ranged(1.0, 0.0, 1e6)
    seed: int = -1

    def __post_init__(self) -> None:
        check_ranges(self, "faults")
        require(self.rotation_deg * self.scale < 90, "faults.rotation_deg * scale must be < 90 deg")
        require(isinstance(self.seed, int) and self.seed >= -1, f"faults.seed must be an int >= -1; got {self.seed}")


@dataclasses.dataclass(frozen=True)
class SensorFaults:
    """One draw of the fault model.

    Attributes:
        joint_bias: ``(J,)`` float64 encoder bias [rad] (measured = true + bias), in the hand's joint order.
        hand_camera_error: ``(4, 4)`` float64, hand-root frame: ``hand2camera_meas = hand2camera_true @ error``.
    """

    joint_bias: np.ndarray
    hand_camera_error: np.ndarray

    @staticmethod
    def none(num_joints: int) -> SensorFaults:
        """No fault (zero bias, identity error)."""
        return SensorFaults(np.zeros(num_joints), np.eye(4))

    def measured_joints(self, q_true: np.ndarray) -> np.ndarray:
        """``q (..., J)`` true joint positions -> what the encoders report [rad]."""
        return np.asarray(q_true, np.float64) + self.joint_bias

    def measured_hand2camera(self, hand2camera_true: np.ndarray) -> np.ndarray:
        """``(..., 4, 4)`` true hand root poses -> what TF / the hand-eye calibration reports."""
        return np.asarray(hand2camera_true, np.float64) @ self.hand_camera_error

    def to_json(self, joint_names: list[str] | tuple[str, ...]) -> dict:
        """Ground-truth record (``gt.json`` ``faults``)."""
        import torch

        from ..geometry.rotations import matrix_to_quaternion

        E = self.hand_camera_error
        pose_json = {"R": E[:3, :3].tolist(), "t": E[:3, 3].tolist(),
                     "quat_xyzw": matrix_to_quaternion(torch.as_tensor(E[:3, :3])).tolist()}
        return {"convention": "q_measured = q_true + joint_bias; hand2camera_measured = hand2camera_true @ "
                              "hand_camera_error (hand-root frame)",
                "joint_names": list(joint_names), "joint_bias_rad": self.joint_bias.tolist(),
                "hand_camera_error": pose_json,
                "hand_camera_error_translation_mm": float(np.linalg.norm(self.hand_camera_error[:3, 3]) * 1e3),
                "hand_camera_error_rotation_deg": float(np.degrees(_angle(self.hand_camera_error[:3, :3])))}


def _angle(R: np.ndarray) -> float:
    return float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def sample_faults(settings: FaultSettings, num_joints: int, seed: int = 0) -> SensorFaults:
    """Draw the faults of ``settings`` for ``num_joints`` joints (``settings.seed``, or ``seed`` when it is -1).

    Disabled settings give :meth:`SensorFaults.none`. The bias is normal with ``joint_bias_std_deg``, clipped at
    ``joint_bias_clip_deg`` (both times ``scale``); the hand-camera error has exactly ``translation_mm`` and
    ``rotation_deg`` (times ``scale``) along uniformly random directions.
    """
    if not settings.enabled:
        return SensorFaults.none(num_joints)
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed if settings.seed >= 0 else seed, 18]))
    s = settings.scale
    clip = math.radians(settings.joint_bias_clip_deg * s)
    bias = np.clip(rng.normal(0.0, math.radians(settings.joint_bias_std_deg * s), num_joints), -clip, clip)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    error = np.eye(4)
    error[:3, :3] = _rotation(axis, math.radians(settings.rotation_deg * s))
    error[:3, 3] = direction * settings.translation_mm * s * 1e-3
    return SensorFaults(bias, error)
