"""The one place where ROS messages and core types are converted into each other (import from here).

Core types: images are numpy arrays (colour ``(H, W, 3) uint8`` RGB, depth ``(H, W) float32`` [m]); poses are
``(4, 4)`` float64 torch tensors acting on column vectors; cameras are
:class:`handypriors_core.geometry.camera.PinholeCamera`; stamps are integer nanoseconds. One module a message
family: :mod:`.stamps` (Time, Header), :mod:`.images` (Image; encodings, depth conventions),
:mod:`.camera_info` (CameraInfo), :mod:`.poses` (Pose, Transform, covariances).
"""

from .camera_info import camera_info_to_camera, camera_to_camera_info
from .images import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    SUPPORTED_ENCODINGS,
    WireImage,
    array_to_image,
    decode_image_buffer,
    depth_to_image,
    depth_to_metres,
    image_to_array,
    image_to_depth,
    image_to_rgb,
    image_to_wire,
    rgb_to_color,
    rgb_to_image,
)
from .poses import (
    covariance_from_msg,
    matrix_to_pose,
    matrix_to_pose_stamped,
    matrix_to_pose_with_covariance_stamped,
    matrix_to_transform,
    matrix_to_transform_stamped,
    pose_to_matrix,
    transform_to_matrix,
    transforms_to_matrices,
)
from .stamps import (
    NANOSECONDS_PER_SECOND,
    make_header,
    stamp_ns,
    time_from_ns,
    time_from_seconds,
    time_to_ns,
    time_to_seconds,
)

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "NANOSECONDS_PER_SECOND",
    "SUPPORTED_ENCODINGS",
    "WireImage",
    "array_to_image",
    "camera_info_to_camera",
    "camera_to_camera_info",
    "covariance_from_msg",
    "decode_image_buffer",
    "depth_to_image",
    "depth_to_metres",
    "image_to_array",
    "image_to_depth",
    "image_to_rgb",
    "image_to_wire",
    "make_header",
    "matrix_to_pose",
    "matrix_to_pose_stamped",
    "matrix_to_pose_with_covariance_stamped",
    "matrix_to_transform",
    "matrix_to_transform_stamped",
    "pose_to_matrix",
    "rgb_to_color",
    "rgb_to_image",
    "stamp_ns",
    "time_from_ns",
    "time_from_seconds",
    "time_to_ns",
    "time_to_seconds",
    "transform_to_matrix",
    "transforms_to_matrices",
]
