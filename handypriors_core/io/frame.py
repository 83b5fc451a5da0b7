"""``Frame``: the typed record of one camera image and the synchronised hand state (no ROS types).

Loaders (development sequences, rosbags, the ROS node) build Frames; the tracker consumes them. A Frame is
a frozen dataclass validated on construction, so a consumer can rely on every field's shape and units:

- images stay as the sensor gives them, on the CPU: ``rgb`` is ``uint8``; consumers convert once on their
  device (:meth:`Frame.rgb_float`).
- ``depth`` is float32 metres along the optical axis (z-depth, aligned to colour) with **NaN for invalid
  pixels** (no return / 0 in the sensor's encoding), so invalid depth can never pass as a real distance; use
  :attr:`Frame.depth_valid` as the mask.
- ``object_mask`` / ``hand_mask`` are soft masks in [0, 1] from a segmenter (or an explicitly labelled oracle).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError, ShapeError
from ..geometry.camera import PinholeCamera

__all__ = ["Frame"]


def _as_tensor(value, name: str):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if value is not None and not isinstance(value, torch.Tensor):
        raise ShapeError(f"Expected {name} to be a torch.Tensor or numpy array; got {type(value).__name__}")
    return value


@dataclass(frozen=True, eq=False)
class Frame:
    """One RGB(-D) image with the hand state at its stamp.

    Attributes:
        index: frame number in its sequence (>= 0).
        stamp: capture time [s] (e.g. ROS header stamp as float seconds).
        rgb: ``(H, W, 3)`` uint8 RGB, CPU, ``H, W = camera.height, camera.width``.
        camera: intrinsics of ``rgb`` (and of ``depth``, which is aligned to colour).
        joint_angles: ``(J,)`` float joint positions [rad] in the hand model's joint order.
        hand2camera: ``(4, 4)`` float pose of the hand root link in the camera optical frame [m].
        depth: ``(H, W)`` float32 z-depth [m], NaN = invalid; or None (RGB only).
        object_mask: ``(H, W)`` float in [0, 1], object probability; or None.
        hand_mask: ``(H, W)`` float in [0, 1], hand probability; or None.
        joint_names: names of the ``J`` joints in ``joint_angles`` order, or None (then the order is the
            hand model's by contract).
    Numpy arrays are accepted and converted to tensors (sharing memory).
    """

    index: int
    stamp: float
    rgb: torch.Tensor
    camera: PinholeCamera
    joint_angles: torch.Tensor
    hand2camera: torch.Tensor
    depth: torch.Tensor | None = None
    object_mask: torch.Tensor | None = None
    hand_mask: torch.Tensor | None = None
    joint_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("rgb", "joint_angles", "hand2camera", "depth", "object_mask", "hand_mask"):
            object.__setattr__(self, name, _as_tensor(getattr(self, name), name))
        if isinstance(self.index, bool) or not isinstance(self.index, (int, np.integer)) or self.index < 0:
            raise InvalidValueError(f"index must be an int >= 0; got {self.index!r}")
        object.__setattr__(self, "index", int(self.index))
        if isinstance(self.stamp, bool) or not isinstance(self.stamp, (int, float)) or not math.isfinite(self.stamp):
            raise InvalidValueError(f"stamp must be a finite number of seconds; got {self.stamp!r}")
        object.__setattr__(self, "stamp", float(self.stamp))
        if not isinstance(self.camera, PinholeCamera):
            raise InvalidValueError(f"camera must be a PinholeCamera; got {type(self.camera).__name__}")
        H, W = self.camera.height, self.camera.width

        check_shape(self.rgb, (H, W, 3), "rgb")
        if self.rgb.dtype != torch.uint8:
            raise InvalidValueError(f"rgb must be uint8; got {self.rgb.dtype}")

        check_shape(self.joint_angles, (None,), "joint_angles")
        _check_float(self.joint_angles, "joint_angles")
        check_finite(self.joint_angles, "joint_angles")
        if self.joint_names is not None:
            object.__setattr__(self, "joint_names", tuple(self.joint_names))
            if len(self.joint_names) != self.joint_angles.shape[0]:
                raise ShapeError(
                    f"joint_names has {len(self.joint_names)} names but joint_angles has {self.joint_angles.shape[0]}"
                )

        check_shape(self.hand2camera, (4, 4), "hand2camera")
        _check_float(self.hand2camera, "hand2camera")
        check_finite(self.hand2camera, "hand2camera")
        _check_rigid(self.hand2camera, "hand2camera")

        if self.depth is not None:
            check_shape(self.depth, (H, W), "depth")
            _check_float(self.depth, "depth")
            d = self.depth
            if bool((torch.isinf(d) | (d <= 0)).any()):
                raise InvalidValueError("depth must be > 0 [m] or NaN (invalid); found <= 0 or inf values")
        for name in ("object_mask", "hand_mask"):
            mask = getattr(self, name)
            if mask is None:
                continue
            check_shape(mask, (H, W), name)
            _check_float(mask, name)
            check_finite(mask, name)
            if bool(((mask < 0) | (mask > 1)).any()):
                raise InvalidValueError(f"{name} must lie in [0, 1]")

    # ----------------------------------------------------------------------------------------------
    @property
    def height(self) -> int:
        """Image height [px]."""
        return self.camera.height

    @property
    def width(self) -> int:
        """Image width [px]."""
        return self.camera.width

    @property
    def depth_valid(self) -> torch.Tensor | None:
        """``(H, W)`` bool, True where ``depth`` holds a measurement; None without depth."""
        return None if self.depth is None else torch.isfinite(self.depth)

    def rgb_float(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(H, W, 3)`` RGB in [0, 1] on ``device`` (default: where ``rgb`` is)."""
        return self.rgb.to(device=device).to(dtype) / 255.0

    def with_masks(self, object_mask: torch.Tensor | None, hand_mask: torch.Tensor | None = None) -> Frame:
        """Copy with the given masks (validated)."""
        return dataclasses.replace(self, object_mask=object_mask, hand_mask=hand_mask)


def _check_float(x: torch.Tensor, name: str) -> None:
    if not x.is_floating_point():
        raise InvalidValueError(f"{name} must be a floating-point tensor; got {x.dtype}")


def _check_rigid(T: torch.Tensor, name: str, tol: float = 1e-4) -> None:
    T64 = T.detach().to(torch.float64)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=T64.device)
    R = T64[:3, :3]
    eye = torch.eye(3, dtype=torch.float64, device=T64.device)
    if not torch.allclose(T64[3], bottom, atol=tol, rtol=0):
        raise InvalidValueError(f"{name} must have last row (0, 0, 0, 1); got {T64[3].tolist()}")
    if not torch.allclose(R.T @ R, eye, atol=tol, rtol=0) or float(torch.linalg.det(R)) <= 0:
        raise InvalidValueError(f"{name} rotation block is not a rotation (R^T R != I or det <= 0)")
