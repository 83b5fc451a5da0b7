"""Poses, transforms and pose covariances: geometry_msgs <-> ``(4, 4)`` float64 torch tensors (column vectors).

A ``geometry_msgs/TransformStamped`` with ``header.frame_id = parent`` and ``child_frame_id = child`` holds the
pose of the child in the parent, i.e. ``child2parent`` (``p_parent = T @ p_child``). A ``Pose`` in a
``PoseStamped`` with ``frame_id = camera`` is ``<thing>2camera``. Quaternions go through
:mod:`handypriors_core.geometry.transforms` (x, y, z, w order). Pose covariances are 6x6 row-major over
``(x, y, z, rotation about X, rotation about Y, rotation about Z)`` as in geometry_msgs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry.transforms import pose_from_transform, transform_from_pose

from .stamps import make_header, stamp_ns

__all__ = [
    "covariance_from_msg",
    "matrix_to_pose",
    "matrix_to_pose_stamped",
    "matrix_to_pose_with_covariance_stamped",
    "matrix_to_transform",
    "matrix_to_transform_stamped",
    "pose_to_matrix",
    "transform_to_matrix",
    "transforms_to_matrices",
]


def _as_matrix(T: Any, name: str) -> torch.Tensor:
    if isinstance(T, torch.Tensor):
        matrix = T.detach().to("cpu", torch.float64)
    else:
        matrix = torch.as_tensor(np.asarray(T, dtype=np.float64))
    if matrix.shape != (4, 4):
        raise ShapeError(f"Expected {name} to have shape (4, 4); got {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise InvalidValueError(f"{name} contains non-finite values")
    return matrix


def _quaternion_tensor(q: Any, name: str) -> torch.Tensor:
    values = torch.tensor([float(q.x), float(q.y), float(q.z), float(q.w)], dtype=torch.float64)
    norm = float(values.norm())
    if not math.isfinite(norm) or norm < 1e-9:
        raise InvalidValueError(f"{name} must be a finite non-zero quaternion; got {values.tolist()}")
    return values


def pose_to_matrix(msg: Any) -> torch.Tensor:
    """``Pose`` / ``PoseStamped`` / ``PoseWithCovariance(Stamped)`` -> ``(4, 4)`` float64 (quaternion normalised)."""
    pose = msg
    while not hasattr(pose, "orientation"):  # unwrap .pose layers
        pose = pose.pose
    p = pose.position
    position = torch.tensor([float(p.x), float(p.y), float(p.z)], dtype=torch.float64)
    return transform_from_pose(position, _quaternion_tensor(pose.orientation, "Pose.orientation"))


def transform_to_matrix(msg: Any) -> torch.Tensor:
    """``Transform`` / ``TransformStamped`` -> ``(4, 4)`` float64 (``child2parent`` for a stamped one)."""
    transform = msg.transform if hasattr(msg, "transform") else msg
    t = transform.translation
    translation = torch.tensor([float(t.x), float(t.y), float(t.z)], dtype=torch.float64)
    return transform_from_pose(translation, _quaternion_tensor(transform.rotation, "Transform.rotation"))


#: ``(matrix bytes, (position, quaternion))`` of the last conversion: the node turns each estimate into a TF and a
#: pose message, and the quaternion's torch ops (about 0.3 ms) then run once per frame.
_last_conversion: tuple[bytes, tuple[list[float], list[float]]] = (b"", ([], []))


def _position_quaternion(T: Any, name: str) -> tuple[list[float], list[float]]:
    global _last_conversion
    matrix = _as_matrix(T, name)
    key = matrix.numpy().tobytes()
    cached_key, cached = _last_conversion
    if key == cached_key:
        return list(cached[0]), list(cached[1])
    position, quaternion = pose_from_transform(matrix)
    result = (position.tolist(), quaternion.tolist())
    _last_conversion = (key, result)
    return list(result[0]), list(result[1])


def matrix_to_pose(T: Any) -> Any:
    """``(4, 4)`` (torch or numpy) -> ``geometry_msgs/Pose``."""
    from geometry_msgs.msg import Point, Pose, Quaternion

    (x, y, z), (qx, qy, qz, qw) = _position_quaternion(T, "T")
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def matrix_to_transform(T: Any) -> Any:
    """``(4, 4)`` (torch or numpy) -> ``geometry_msgs/Transform``."""
    from geometry_msgs.msg import Quaternion, Transform, Vector3

    (x, y, z), (qx, qy, qz, qw) = _position_quaternion(T, "T")
    return Transform(translation=Vector3(x=x, y=y, z=z), rotation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def matrix_to_transform_stamped(child2parent: Any, parent_frame: str, child_frame: str, stamp: int | Any = 0) -> Any:
    """``child2parent (4, 4)`` -> ``geometry_msgs/TransformStamped`` (``frame_id = parent``)."""
    from geometry_msgs.msg import TransformStamped

    if not parent_frame or not child_frame:
        raise InvalidValueError(
            f"parent_frame and child_frame must be non-empty; got {parent_frame!r} and {child_frame!r}"
        )
    return TransformStamped(
        header=make_header(stamp, parent_frame),
        child_frame_id=str(child_frame),
        transform=matrix_to_transform(child2parent),
    )


def matrix_to_pose_stamped(T: Any, frame_id: str, stamp: int | Any = 0) -> Any:
    """``thing2frame (4, 4)`` -> ``geometry_msgs/PoseStamped``."""
    from geometry_msgs.msg import PoseStamped

    return PoseStamped(header=make_header(stamp, frame_id), pose=matrix_to_pose(T))


def matrix_to_pose_with_covariance_stamped(T: Any, covariance: Any, frame_id: str, stamp: int | Any = 0) -> Any:
    """``thing2frame (4, 4)`` and a ``(6, 6)`` covariance -> ``geometry_msgs/PoseWithCovarianceStamped``.

    Covariance order ``(x, y, z, rot X, rot Y, rot Z)`` [m^2, rad^2], stored row-major; it must be symmetric
    and finite.
    """
    from geometry_msgs.msg import PoseWithCovariance, PoseWithCovarianceStamped

    if isinstance(covariance, torch.Tensor):
        covariance = covariance.detach().cpu().numpy()
    cov = np.asarray(covariance, dtype=np.float64)
    if cov.shape != (6, 6):
        raise ShapeError(f"Expected covariance to have shape (6, 6); got {cov.shape}")
    if not np.isfinite(cov).all():
        raise InvalidValueError("covariance contains non-finite values")
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12):
        raise InvalidValueError("covariance must be symmetric")
    inner = PoseWithCovariance(pose=matrix_to_pose(T), covariance=cov.reshape(-1).tolist())
    return PoseWithCovarianceStamped(header=make_header(stamp, frame_id), pose=inner)


def covariance_from_msg(msg: Any) -> np.ndarray:
    """``PoseWithCovariance(Stamped)`` -> ``(6, 6)`` float64 covariance (row-major in the message)."""
    inner = msg.pose if hasattr(msg, "header") else msg
    values = np.asarray(inner.covariance, dtype=np.float64)
    if values.size != 36:
        raise InvalidValueError(f"PoseWithCovariance.covariance must hold 36 values; got {values.size}")
    return values.reshape(6, 6).copy()


def transforms_to_matrices(transforms: Sequence[Any]) -> list[tuple[str, str, int, torch.Tensor]]:
    """TransformStamped list -> ``[(parent, child, stamp_ns, child2parent (4, 4))]``.

    Frame ids lose a leading '/'.
    """
    return [
        (t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"), stamp_ns(t), transform_to_matrix(t))
        for t in transforms
    ]
