"""``poses.json``: the tracker's output trajectory (one object pose per frame), read and written here only.

Format (every key required, no others allowed; numbers are JSON numbers, never NaN)::

    {
      "frame_id": "camera_color_optical_frame",      # parent frame: the camera optical frame
      "child_frame_id": "object",                     # the object frame (coordinates of the mesh)
      "object_mesh": "object/model.obj",              # mesh path as given to the tracker
      "poses": [
        {"frame": 0,                                  # int >= 0, strictly increasing
         "stamp": 1700000000.0,                       # seconds
         "position": [x, y, z],                       # object origin in the camera frame [m]
         "orientation": [qx, qy, qz, qw],             # unit quaternion (x, y, z, w), object2camera rotation
         "covariance": [36 floats] | null,            # row-major 6x6 over (x, y, z, rot_x, rot_y, rot_z):
                                                      #   ROS PoseWithCovariance, parent-frame axes, [m^2, rad^2]
         "quality": 0.93,                             # tracker's confidence score (finite float)
         "status": "tracking"}                        # "tracking" | "lost" | "initialising"
      ]
    }

``position``/``orientation`` form ``object2camera``: ``p_cam = R(q) @ p_obj + position``. When ``status`` is
``"lost"`` the pose is the last estimate (still finite); scorers decide how to count such frames.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..checks import check_shape
from ..errors import InvalidValueError, ShapeError
from ..geometry.transforms import pose_from_transform, transform_from_pose
from .json_file import read_json

__all__ = ["POSE_STATUSES", "PoseRecord", "PosesFile", "read_poses", "validate_poses", "write_poses"]

PoseStatus = Literal["tracking", "lost", "initialising"]
#: Allowed values of ``status``.
POSE_STATUSES: tuple[str, ...] = ("tracking", "lost", "initialising")

_TOP_KEYS = ("frame_id", "child_frame_id", "object_mesh", "poses")
_ENTRY_KEYS = ("frame", "stamp", "position", "orientation", "covariance", "quality", "status")


@dataclass(frozen=True)
class PoseRecord:
    """One entry of ``poses``.

    Attributes:
        frame: frame index (>= 0). ``stamp``: [s].
        position: ``(x, y, z)`` [m]. ``orientation``: ``(qx, qy, qz, qw)`` unit quaternion.
        covariance: 36 floats row-major (ROS ``PoseWithCovariance`` order and frame) or None.
        quality: tracker confidence. ``status``: one of :data:`POSE_STATUSES`.
    """

    frame: int
    stamp: float
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    covariance: tuple[float, ...] | None
    quality: float
    status: PoseStatus

    def __post_init__(self) -> None:
        _validate_entry(self.to_dict(), "PoseRecord")

    @classmethod
    def from_transform(
        cls,
        frame: int,
        stamp: float,
        object2camera: torch.Tensor,
        covariance: torch.Tensor | None = None,
        quality: float = 1.0,
        status: PoseStatus = "tracking",
    ) -> PoseRecord:
        """Build from ``object2camera (4, 4)`` [m] and an optional ``covariance (6, 6)`` (ROS convention)."""
        check_shape(object2camera, (4, 4), "object2camera")
        position, quaternion = pose_from_transform(object2camera.detach().to("cpu", torch.float64))
        cov = None
        if covariance is not None:
            check_shape(covariance, (6, 6), "covariance")
            cov = tuple(float(v) for v in covariance.detach().to("cpu", torch.float64).reshape(-1))
        return cls(
            frame=int(frame),
            stamp=float(stamp),
            position=tuple(float(v) for v in position),
            orientation=tuple(float(v) for v in quaternion),
            covariance=cov,
            quality=float(quality),
            status=status,
        )

    def transform(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``object2camera (4, 4)``."""
        return transform_from_pose(
            torch.tensor(self.position, dtype=dtype), torch.tensor(self.orientation, dtype=dtype)
        )

    def covariance_matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor | None:
        """``(6, 6)`` covariance or None."""
        return None if self.covariance is None else torch.tensor(self.covariance, dtype=dtype).reshape(6, 6)

    def to_dict(self) -> dict:
        """JSON-ready dict of this entry."""
        return {
            "frame": self.frame,
            "stamp": self.stamp,
            "position": list(self.position),
            "orientation": list(self.orientation),
            "covariance": None if self.covariance is None else list(self.covariance),
            "quality": self.quality,
            "status": self.status,
        }


@dataclass
class PosesFile:
    """A whole ``poses.json``: parent/child frame names, mesh path and the per-frame :class:`PoseRecord` s."""

    frame_id: str
    child_frame_id: str
    object_mesh: str
    poses: list[PoseRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict (validated)."""
        data = {
            "frame_id": self.frame_id,
            "child_frame_id": self.child_frame_id,
            "object_mesh": self.object_mesh,
            "poses": [p.to_dict() for p in self.poses],
        }
        validate_poses(data)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "poses") -> PosesFile:
        """Validate and convert a parsed ``poses.json``; errors name ``source``, entry and field."""
        validate_poses(data, source)
        poses = [
            PoseRecord(
                frame=int(p["frame"]),
                stamp=float(p["stamp"]),
                position=tuple(float(v) for v in p["position"]),
                orientation=tuple(float(v) for v in p["orientation"]),
                covariance=None if p["covariance"] is None else tuple(float(v) for v in p["covariance"]),
                quality=float(p["quality"]),
                status=p["status"],
            )
            for p in data["poses"]
        ]
        return cls(str(data["frame_id"]), str(data["child_frame_id"]), str(data["object_mesh"]), poses)

    def object2camera(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``(N, 4, 4)`` poses in file order (``(0, 4, 4)`` when empty)."""
        if not self.poses:
            return torch.zeros(0, 4, 4, dtype=dtype)
        positions = torch.tensor([p.position for p in self.poses], dtype=dtype)
        quaternions = torch.tensor([p.orientation for p in self.poses], dtype=dtype)
        return transform_from_pose(positions, quaternions)

    def frames(self) -> torch.Tensor:
        """``(N,)`` int64 frame indices."""
        return torch.tensor([p.frame for p in self.poses], dtype=torch.int64)

    def stamps(self) -> torch.Tensor:
        """``(N,)`` float64 stamps [s]."""
        return torch.tensor([p.stamp for p in self.poses], dtype=torch.float64)

    def statuses(self) -> list[str]:
        """``N`` status strings."""
        return [p.status for p in self.poses]


def read_poses(path: str | os.PathLike) -> PosesFile:
    """Read and validate ``poses.json``; InvalidValueError/ShapeError name the file, entry and field."""
    path = Path(path)
    return PosesFile.from_dict(read_json(path, "poses file"), str(path))


def write_poses(path: str | os.PathLike, poses: PosesFile) -> None:
    """Validate and write ``poses`` as JSON (float64 values round-trip exactly). The file is replaced atomically
    (written next to it, then renamed): an interrupted write leaves the previous file or none, never half."""
    data = poses.to_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    os.replace(partial, path)


# ----------------------------------------------------------------------------------------------- validation
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: Any, count: int, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)):
        raise InvalidValueError(f"{where} must be a list of {count} numbers; got {value!r}")
    if len(value) != count:
        raise ShapeError(f"{where} must hold {count} numbers; got {len(value)}")
    for i, v in enumerate(value):
        if not _is_number(v):
            raise InvalidValueError(f"{where}[{i}] must be a finite number; got {v!r}")
    return [float(v) for v in value]


def _validate_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise InvalidValueError(f"{where} must be an object; got {type(entry).__name__}")
    missing = [k for k in _ENTRY_KEYS if k not in entry]
    unknown = sorted(set(entry) - set(_ENTRY_KEYS))
    if missing or unknown:
        raise InvalidValueError(f"{where}: missing field(s) {missing}, unknown field(s) {unknown}")
    frame = entry["frame"]
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise InvalidValueError(f"{where}.frame must be an int >= 0; got {frame!r}")
    if not _is_number(entry["stamp"]):
        raise InvalidValueError(f"{where}.stamp must be a finite number [s]; got {entry['stamp']!r}")
    _numbers(entry["position"], 3, f"{where}.position")
    q = _numbers(entry["orientation"], 4, f"{where}.orientation")
    norm = math.sqrt(sum(v * v for v in q))
    if abs(norm - 1.0) > 1e-3:
        raise InvalidValueError(f"{where}.orientation must be a unit quaternion (x, y, z, w); |q| = {norm:.6g}")
    if entry["covariance"] is not None:
        c = _numbers(entry["covariance"], 36, f"{where}.covariance")
        scale = max(abs(v) for v in c) or 1.0
        for i in range(6):
            if c[7 * i] < 0:
                raise InvalidValueError(f"{where}.covariance diagonal [{i},{i}] must be >= 0; got {c[7 * i]}")
            for j in range(i + 1, 6):
                if abs(c[6 * i + j] - c[6 * j + i]) > 1e-9 * scale:
                    raise InvalidValueError(f"{where}.covariance must be symmetric; [{i},{j}] != [{j},{i}]")
    if not _is_number(entry["quality"]):
        raise InvalidValueError(f"{where}.quality must be a finite number; got {entry['quality']!r}")
    if entry["status"] not in POSE_STATUSES:
        raise InvalidValueError(f"{where}.status must be one of {list(POSE_STATUSES)}; got {entry['status']!r}")


def validate_poses(data: Any, source: str = "poses") -> None:
    """Check a parsed ``poses.json`` against the format above; raise naming ``source``, entry and field."""
    if not isinstance(data, dict):
        raise InvalidValueError(f"{source} must hold a JSON object at top level; got {type(data).__name__}")
    missing = [k for k in _TOP_KEYS if k not in data]
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if missing or unknown:
        raise InvalidValueError(f"{source}: missing field(s) {missing}, unknown field(s) {unknown}")
    for key in ("frame_id", "child_frame_id"):
        if not isinstance(data[key], str) or not data[key]:
            raise InvalidValueError(f"{source}.{key} must be a non-empty string; got {data[key]!r}")
    if not isinstance(data["object_mesh"], str):
        raise InvalidValueError(f"{source}.object_mesh must be a string; got {data['object_mesh']!r}")
    if not isinstance(data["poses"], list):
        raise InvalidValueError(f"{source}.poses must be a list; got {type(data['poses']).__name__}")
    previous = -1
    for i, entry in enumerate(data["poses"]):
        where = f"{source}: poses[{i}]"
        _validate_entry(entry, where)
        if entry["frame"] <= previous:
            raise InvalidValueError(f"{where}.frame must be > {previous} (strictly increasing); got {entry['frame']}")
        previous = entry["frame"]
