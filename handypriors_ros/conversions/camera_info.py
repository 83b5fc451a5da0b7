"""``sensor_msgs/CameraInfo`` <-> :class:`handypriors_core.geometry.camera.PinholeCamera`."""

from __future__ import annotations

from typing import Any

import torch

from handypriors_core.errors import InvalidValueError
from handypriors_core.geometry.camera import DISTORTION_COEFFICIENTS, PinholeCamera

from .stamps import make_header

__all__ = [
    "camera_info_to_camera",
    "camera_to_camera_info",
]


def camera_info_to_camera(
    msg: Any, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> PinholeCamera:
    """``sensor_msgs/CameraInfo`` -> :class:`PinholeCamera` (``k``, ``d``, ``distortion_model``, size).

    An all-zero ``k`` (an uncalibrated camera per REP 104) and a zero-sized image are rejected.
    """
    k = [float(v) for v in msg.k]
    if len(k) == 9 and all(v == 0.0 for v in k):
        raise InvalidValueError(
            "CameraInfo.k is all zeros: the camera is uncalibrated (REP 104); cannot build the pinhole model"
        )
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise InvalidValueError(f"CameraInfo width and height must be > 0; got {msg.width} x {msg.height}")
    try:
        return PinholeCamera.from_camera_info(
            k, [float(v) for v in msg.d], int(msg.width), int(msg.height), str(msg.distortion_model),
            device=device, dtype=dtype,
        )
    except InvalidValueError as exc:
        raise InvalidValueError(f"CameraInfo: {exc}") from exc


def camera_to_camera_info(camera: PinholeCamera, stamp: int | Any = 0, frame_id: str = "") -> Any:
    """:class:`PinholeCamera` -> ``sensor_msgs/CameraInfo`` with ``R = I`` and ``P = [K | 0]``."""
    from sensor_msgs.msg import CameraInfo

    K = camera.K.detach().to("cpu", torch.float64).reshape(-1).tolist()
    msg = CameraInfo()
    msg.header = make_header(stamp, frame_id)
    msg.width, msg.height = int(camera.width), int(camera.height)
    msg.distortion_model = camera.distortion_model
    if camera.D is None:
        msg.d = [0.0] * DISTORTION_COEFFICIENTS[camera.distortion_model]
    else:
        msg.d = camera.D.detach().to("cpu", torch.float64).tolist()
    msg.k = K
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [K[0], K[1], K[2], 0.0, K[3], K[4], K[5], 0.0, K[6], K[7], K[8], 0.0]
    return msg
