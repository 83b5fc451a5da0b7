"""Pure-torch geometry: rotations, rigid transforms, Kabsch/Procrustes alignment, the pinhole camera and mesh
vertex normals.

Everything is batched over leading dims, differentiable and follows its inputs' device and dtype (``small_linalg``:
numpy's 3 x 3 / 6 x 6 decompositions without their per-call wrapper, for the filter step's CPU path).
May import only errors/checks/config (the bottom layer of the core).
"""

from .camera import MIN_DEPTH, PinholeCamera, crop_and_resize_image
from .kabsch import kabsch_is_well_conditioned, similarity_procrustes, weighted_kabsch
from .rotations import (
    axis_angle_to_matrix,
    euler_xyz_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler_xyz,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
    rpy_to_matrix,
    skew,
)
from .transforms import (
    compose_transforms,
    invert_transform,
    make_transform,
    pose_from_transform,
    rotation_angle_between,
    se3_exp,
    se3_log,
    transform_from_pose,
    transform_points,
)

__all__ = [
    "MIN_DEPTH",
    "PinholeCamera",
    "axis_angle_to_matrix",
    "compose_transforms",
    "crop_and_resize_image",
    "euler_xyz_to_matrix",
    "invert_transform",
    "kabsch_is_well_conditioned",
    "make_transform",
    "matrix_to_axis_angle",
    "matrix_to_euler_xyz",
    "matrix_to_quaternion",
    "matrix_to_rotation_6d",
    "pose_from_transform",
    "quaternion_to_matrix",
    "rotation_6d_to_matrix",
    "rotation_angle_between",
    "rpy_to_matrix",
    "se3_exp",
    "se3_log",
    "similarity_procrustes",
    "skew",
    "transform_from_pose",
    "transform_points",
    "weighted_kabsch",
]
