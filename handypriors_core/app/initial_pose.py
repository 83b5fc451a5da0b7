"""The object's initial pose as the user gives it (``--initial-pose``): seven numbers or a file."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["parse_initial_pose"]


def parse_initial_pose(text: str):
    """``(4, 4)`` float64 object2camera from ``x,y,z,qx,qy,qz,qw`` [m, unit quaternion] or from a file.

    Files: a ``poses.json`` (its first entry), JSON ``{"position": [3], "orientation": [4]}`` or ``{"R", "t"}``
    or a 4x4 list, or text holding 7 (pose) or 16 (row-major matrix) numbers.
    """
    import json

    import torch

    from ..errors import InvalidValueError
    from ..geometry.transforms import transform_from_pose

    def from_pose(values, where: str):
        v = [float(x) for x in values]
        if len(v) != 7 or not all(math.isfinite(x) for x in v):
            raise InvalidValueError(f"{where}: expected 7 finite numbers x,y,z,qx,qy,qz,qw; got {values!r}")
        q = torch.tensor(v[3:], dtype=torch.float64)
        if float(q.norm()) < 1e-6:
            raise InvalidValueError(f"{where}: the quaternion (qx, qy, qz, qw) is zero")
        return transform_from_pose(torch.tensor(v[:3], dtype=torch.float64), q / q.norm())

    def from_matrix(values, where: str):
        T = torch.tensor(values, dtype=torch.float64).reshape(4, 4)
        R = T[:3, :3]
        if not torch.isfinite(T).all() or not torch.allclose(R.T @ R, torch.eye(3, dtype=torch.float64), atol=1e-4) \
                or float(torch.linalg.det(R)) <= 0:
            raise InvalidValueError(f"{where}: not a rigid 4x4 transform")
        return T

    path = Path(text)
    if path.is_file():
        where = str(path)
        raw = path.read_text()
        try:
            data = json.loads(raw)
        except ValueError:
            numbers = raw.replace(",", " ").split()
            try:
                values = [float(x) for x in numbers]
            except ValueError:
                raise InvalidValueError(f"{where}: not JSON and not a list of numbers") from None
            if len(values) == 16:
                return from_matrix(values, where)
            return from_pose(values, where)
        if isinstance(data, dict) and "poses" in data:
            from ..io.poses_file import PosesFile

            poses = PosesFile.from_dict(data, where)
            if not poses.poses:
                raise InvalidValueError(f"{where}: the poses file holds no pose")
            return poses.poses[0].transform()
        if isinstance(data, dict) and "position" in data and "orientation" in data:
            return from_pose(list(data["position"]) + list(data["orientation"]), where)
        if isinstance(data, dict) and "R" in data and "t" in data:
            R = torch.tensor(data["R"], dtype=torch.float64)
            t = torch.tensor(data["t"], dtype=torch.float64)
            T = torch.eye(4, dtype=torch.float64)
            T[:3, :3], T[:3, 3] = R, t
            return from_matrix(T.reshape(-1).tolist(), where)
        if isinstance(data, list):
            flat = torch.tensor(data, dtype=torch.float64).reshape(-1).tolist()
            return from_matrix(flat, where) if len(flat) == 16 else from_pose(flat, where)
        raise InvalidValueError(f"{where}: unrecognised initial pose file (see docs/cli.md)")
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InvalidValueError(f"--initial-pose must be x,y,z,qx,qy,qz,qw (metres, unit quaternion) or an existing "
                                f"file; got {text!r}") from None
    return from_pose(values, "--initial-pose")
