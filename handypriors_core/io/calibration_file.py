"""The hand calibration file: hand-camera correction + joint offsets (+ covariance), written by ``handypriors
calibrate`` and loaded by the node (parameter ``calibration_file``) and ``handypriors track --calibration``.

YAML layout (metres, radians)::

    format: handypriors_hand_calibration
    version: 1
    hand_camera_correction:        # hand2camera_true = hand2camera_measured @ correction (hand-root frame)
      translation: [x, y, z]
      rotation_xyzw: [qx, qy, qz, qw]
    joint_offsets:                 # q_true = q_measured - offset, per URDF joint name
      joint_0.0: 0.0123
      ...
    covariance: [[...], ...]       # optional, (6 + J) x (6 + J): dx dy dz, rot x y z (hand-root frame), offsets
    frames_used: 57                # optional, informational

A wrong file (missing keys, wrong lengths, non-finite or implausible values, unknown joints) raises
:class:`CalibrationFileError` naming the file and the key.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError
from ..geometry.rotations import matrix_to_axis_angle, matrix_to_quaternion, quaternion_to_matrix
from ..geometry.transforms import make_transform

__all__ = ["FORMAT", "CalibrationFileError", "HandCalibration", "load_calibration", "save_calibration"]

FORMAT = "handypriors_hand_calibration"
#: Values beyond these are not a calibration correction but a wrong file (or a wrong frame convention).
MAX_TRANSLATION = 0.05  # m
MAX_ROTATION = math.radians(20.0)
MAX_OFFSET = math.radians(30.0)


class CalibrationFileError(ConfigError):
    """A calibration YAML is missing, malformed or implausible (the message names the file and key)."""


@dataclass
class HandCalibration:
    """A hand calibration (float64).

    Attributes:
        correction: ``(4, 4)``: ``hand2camera_true = hand2camera_measured @ correction``.
        joint_offsets: ``(J,)`` [rad]: ``q_true = q_measured - joint_offsets``, in ``joint_names`` order.
        joint_names: URDF joint names.
        covariance: ``(6 + J, 6 + J)`` or None.
        frames_used: frames that contributed to the estimate.
    """

    correction: torch.Tensor
    joint_offsets: torch.Tensor
    joint_names: list[str]
    covariance: torch.Tensor | None = None
    frames_used: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def translation(self) -> torch.Tensor:
        return self.correction[:3, 3]

    @property
    def rotation_vector(self) -> torch.Tensor:
        """``(3,)`` axis-angle [rad] of the correction's rotation."""
        return matrix_to_axis_angle(self.correction[:3, :3])

    def check_joint_names(self, hand_joint_names, where: str = "calibration") -> None:
        """Raise unless ``joint_names`` equals the hand model's joints (same set; order is remapped by load)."""
        if list(self.joint_names) != list(hand_joint_names):
            missing = sorted(set(hand_joint_names) - set(self.joint_names))
            unknown = sorted(set(self.joint_names) - set(hand_joint_names))
            raise CalibrationFileError(f"{where}: joint_offsets do not match the hand's joints (missing "
                                       f"{missing}, unknown {unknown})")

    def to_dict(self) -> dict:
        quat = matrix_to_quaternion(self.correction[:3, :3].to(torch.float64))
        out = {
            "format": FORMAT,
            "version": 1,
            "hand_camera_correction": {"translation": [float(v) for v in self.correction[:3, 3]],
                                       "rotation_xyzw": [float(v) for v in quat]},
            "joint_offsets": {n: float(v) for n, v in zip(self.joint_names, self.joint_offsets.tolist(), strict=True)},
        }
        if self.covariance is not None:
            out["covariance"] = [[float(v) for v in row] for row in self.covariance.tolist()]
        out["frames_used"] = int(self.frames_used)
        out.update(self.extra)
        return out


def save_calibration(calibration: HandCalibration, path: str | os.PathLike, comment: str = "") -> Path:
    """Write ``calibration`` as YAML (see the module docstring); returns the path."""
    import yaml

    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    header = "# HandyPriors hand calibration (handypriors calibrate). hand2camera_true = hand2camera_measured @ " \
             "correction; q_true = q_measured - joint_offsets. Metres, radians.\n"
    if comment:
        header += "".join(f"# {line}\n" for line in comment.splitlines())
    path.write_text(header + yaml.safe_dump(calibration.to_dict(), sort_keys=False, default_flow_style=None))
    return path


def _numbers(value, n: int, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise CalibrationFileError(f"{where} must be a list of {n} numbers; got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CalibrationFileError(f"{where} must hold finite numbers; got {value!r}")
        out.append(float(v))
    return out


def load_calibration(path: str | os.PathLike, joint_names: list[str] | tuple[str, ...] | None = None
                     ) -> HandCalibration:
    """Read and validate a calibration YAML; with ``joint_names`` (the hand model's), the offsets are put in that
    order and every joint must be present. Raises :class:`CalibrationFileError` for a wrong file."""
    import yaml

    where = str(path)
    p = Path(path)
    if not p.is_file():
        raise CalibrationFileError(f"calibration file {where} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CalibrationFileError(f"{where}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise CalibrationFileError(f"{where}: expected a mapping with hand_camera_correction and joint_offsets")
    if data.get("format", FORMAT) != FORMAT:
        raise CalibrationFileError(f"{where}: format must be {FORMAT!r}; got {data.get('format')!r}")
    for key in ("hand_camera_correction", "joint_offsets"):
        if key not in data:
            raise CalibrationFileError(f"{where}: missing key {key!r} (has: {sorted(data)})")
    hc = data["hand_camera_correction"]
    if not isinstance(hc, dict) or "translation" not in hc or "rotation_xyzw" not in hc:
        raise CalibrationFileError(f"{where}: hand_camera_correction needs translation [x, y, z] and "
                                   f"rotation_xyzw [qx, qy, qz, qw]")
    t = torch.tensor(_numbers(hc["translation"], 3, f"{where}: hand_camera_correction.translation"),
                     dtype=torch.float64)
    quat = torch.tensor(_numbers(hc["rotation_xyzw"], 4, f"{where}: hand_camera_correction.rotation_xyzw"),
                        dtype=torch.float64)
    if abs(float(quat.norm()) - 1.0) > 1e-3:
        raise CalibrationFileError(f"{where}: hand_camera_correction.rotation_xyzw must be a unit quaternion "
                                   f"(norm {float(quat.norm()):.4f})")
    R = quaternion_to_matrix(quat / quat.norm())
    angle = float(matrix_to_axis_angle(R).norm())
    if float(t.norm()) > MAX_TRANSLATION or angle > MAX_ROTATION:
        raise CalibrationFileError(
            f"{where}: hand_camera_correction of {float(t.norm()) * 1e3:.1f} mm / {math.degrees(angle):.1f} deg is "
            f"implausible (limits {MAX_TRANSLATION * 1e3:.0f} mm / {math.degrees(MAX_ROTATION):.0f} deg): is it a "
            f"full hand-eye transform instead of a correction?")
    offsets = data["joint_offsets"]
    if not isinstance(offsets, dict) or not offsets:
        raise CalibrationFileError(f"{where}: joint_offsets must map joint names to offsets [rad]")
    names = [str(n) for n in offsets]
    values = _numbers([offsets[n] for n in offsets], len(names), f"{where}: joint_offsets")
    for n, v in zip(names, values, strict=True):
        if abs(v) > MAX_OFFSET:
            raise CalibrationFileError(f"{where}: joint_offsets.{n} = {math.degrees(v):.1f} deg is implausible "
                                       f"(limit {math.degrees(MAX_OFFSET):.0f} deg; radians expected)")
    if joint_names is not None:
        missing = [n for n in joint_names if n not in offsets]
        unknown = [n for n in names if n not in joint_names]
        if missing or unknown:
            raise CalibrationFileError(f"{where}: joint_offsets do not match the hand's joints (missing {missing}, "
                                       f"unknown {unknown})")
        values = [float(offsets[n]) for n in joint_names]
        names = list(joint_names)
    cov = None
    if data.get("covariance") is not None:
        D = 6 + len(names)
        rows = data["covariance"]
        if not isinstance(rows, list) or len(rows) != D:
            raise CalibrationFileError(f"{where}: covariance must be a {D}x{D} matrix")
        cov = torch.tensor([_numbers(r, D, f"{where}: covariance row") for r in rows], dtype=torch.float64)
    return HandCalibration(correction=make_transform(R, t), joint_offsets=torch.tensor(values, dtype=torch.float64),
                           joint_names=names, covariance=cov, frames_used=int(data.get("frames_used", 0) or 0))
