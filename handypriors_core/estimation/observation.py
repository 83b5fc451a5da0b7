"""One frame's observation, prepared once for every modality: region of interest, crops, depth points.

``prepare_observation(frame, scene, object2camera_pred, settings)`` crops the image, mask and depth to a
square region of interest around the predicted object (resampled to ``roi.size`` px, with a camera whose
intrinsics match the crop), poses the known hand, and back-projects the depth pixels that are not hand.
Modalities then compare renders at ROI resolution with these crops, so their cost does not depend on the
camera resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from ..geometry.camera import PinholeCamera, crop_and_resize_image
from ..io.frame import Frame
from .scene import HandObjectScene, MadeOnFirstRead, PosedHand
from .settings import DepthSettings, ROISettings

__all__ = ["Observation", "crop_mask", "prepare_observation", "roi_box"]


@dataclass(frozen=True)
class Observation:
    """A frame prepared for the modalities (device tensors).

    Attributes:
        frame: the source frame (CPU).
        hand: the posed hand (camera frame).
        box: ``(x0, y0, x1, y1)`` ROI in full-image pixels.
        camera: full-image camera on the device; roi_camera: the ROI's camera (``roi.size`` square).
        mask: ``(1, S, S)`` object mask in [0, 1] over the ROI, or None.
        rgb: ``(1, S, S, 3)`` colour in [0, 1] over the ROI (cropped on first read).
        depth: ``(1, S, S)`` depth [m] over the ROI, 0 where invalid; None without depth (cropped on first read).
        depth_points: ``(1, N, 3)`` back-projected valid depth pixels of the ROI that are not hand [m, camera
            frame], or None.
        mask_full: ``(H, W)`` full-resolution object mask on the device, or None.
    """

    frame: Frame
    hand: PosedHand
    box: tuple[float, float, float, float]
    camera: PinholeCamera
    roi_camera: PinholeCamera
    mask: torch.Tensor | None
    rgb: torch.Tensor = MadeOnFirstRead()  # noqa: RUF009 - a descriptor (scene.MadeOnFirstRead), no shared value
    depth: torch.Tensor | None = MadeOnFirstRead()  # noqa: RUF009 - as rgb
    depth_points: torch.Tensor | None
    mask_full: torch.Tensor | None


def roi_box(scene: HandObjectScene, camera: PinholeCamera, object2camera: torch.Tensor,
            settings: ROISettings) -> tuple[float, float, float, float]:
    """Square crop box ``(x0, y0, x1, y1)`` [px] around the projected bounding box of the object.

    The box is the projection of the object's 3D bounding box, grown by ``settings.margin`` on each side and
    to at least ``settings.min_box`` px; it may extend past the image border (padding renders as empty).
    """
    return scene.object_box(camera, object2camera, settings.margin, settings.min_box)


def crop_mask(mask: torch.Tensor, box, size: int) -> torch.Tensor:
    """``mask (H, W)`` float in [0, 1] resampled into the square ``box = (x0, y0, x1, y1)`` [px] -> ``(1, size,
    size)``: area-style (blurred before the bilinear sampling) when the crop shrinks it a lot."""
    shrink = (box[2] - box[0]) / size
    m = mask[None, None]
    if shrink > 1.5:
        k = round(shrink) | 1
        m = F.avg_pool2d(m, k, stride=1, padding=k // 2, count_include_pad=False)
    return crop_and_resize_image(m, box, size, size)[0].clamp(0, 1)


def _crop_depth(depth: torch.Tensor, box, size: int) -> torch.Tensor:
    """Nearest-neighbour crop of ``depth (H, W)`` [m, NaN invalid] to ``(1, size, size)``, 0 where invalid."""
    H, W = depth.shape
    x0, y0, x1, y1 = box
    s = (x1 - x0) / size
    centres = torch.arange(size, device=depth.device, dtype=torch.float32) + 0.5
    xs = (x0 + centres * s - 0.5).round().long()
    ys = (y0 + centres * (y1 - y0) / size - 0.5).round().long()
    inside_x = (xs >= 0) & (xs < W)
    inside_y = (ys >= 0) & (ys < H)
    crop = depth[ys.clamp(0, H - 1)][:, xs.clamp(0, W - 1)]
    crop = torch.where(inside_y[:, None] & inside_x[None, :], crop, torch.full_like(crop, float("nan")))
    return torch.nan_to_num(crop, nan=0.0)[None]


def _crop_rgb(rgb: torch.Tensor, box, size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bilinear crop of ``rgb (H, W, 3)`` uint8 to ``(1, size, size, 3)`` in [0, 1] on ``device`` (default: rgb's).

    Only the pixels under the box (plus a 2 px border for the bilinear taps) are copied to the device and
    converted to float, so the cost does not grow with the camera resolution; the result equals cropping the
    whole converted image.
    """
    device = rgb.device if device is None else device
    H, W = rgb.shape[:2]
    x0, y0 = max(0, min(W, int(box[0]) - 2)), max(0, min(H, int(box[1]) - 2))
    x1, y1 = max(x0, min(W, int(box[2]) + 3)), max(y0, min(H, int(box[3]) + 3))
    if x1 - x0 < 2 or y1 - y0 < 2:  # the box lies outside the image: nothing but padding
        return torch.zeros(1, size, size, 3, device=device)
    patch = rgb[y0:y1, x0:x1].to(device).permute(2, 0, 1)[None].float() / 255.0
    shifted = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    # grid_sample pads with zeros outside the patch; inside the image the 2 px border keeps every tap real
    return crop_and_resize_image(patch, shifted, size, size)[0].permute(1, 2, 0)[None]


def _depth_points(frame_depth: torch.Tensor, camera: PinholeCamera, box, max_points: int) -> torch.Tensor | None:
    """Valid depth pixels inside ``box`` back-projected to ``(1, N, 3)`` [m], evenly subsampled to ``max_points``."""
    H, W = frame_depth.shape
    x0, y0, x1, y1 = (int(max(0, min(W, round(box[0])))), int(max(0, min(H, round(box[1])))),
                      int(max(0, min(W, round(box[2])))), int(max(0, min(H, round(box[3])))))
    if x1 <= x0 or y1 <= y0:
        return None
    patch = frame_depth[y0:y1, x0:x1]
    valid = torch.isfinite(patch) & (patch > 0)
    count = int(valid.sum())
    if count < 10:
        return None
    stride = max(1, int((count / max_points) ** 0.5))
    sub = torch.zeros_like(valid)
    sub[::stride, ::stride] = True
    ys, xs = torch.nonzero(valid & sub, as_tuple=True)
    if ys.numel() > max_points:
        keep = torch.linspace(0, ys.numel() - 1, max_points, device=ys.device).round().long()
        ys, xs = ys[keep], xs[keep]
    pixels = torch.stack(((xs + x0).float(), (ys + y0).float()), -1)[None]
    z = patch[ys, xs][None]
    return camera.unproject(pixels, z)


def prepare_observation(
    frame: Frame,
    scene: HandObjectScene,
    object2camera_pred: torch.Tensor,
    roi: ROISettings,
    depth_settings: DepthSettings,
    object_mask: torch.Tensor | None = None,
    hand: PosedHand | None = None,
    depth_points: bool = True,
) -> Observation:
    """Crop ``frame`` around the predicted object pose ``object2camera_pred (4, 4)`` and pose the hand.

    Args:
        frame: the frame (CPU tensors).
        scene: bodies, renderer and contact queries (its device is used).
        object2camera_pred: predicted object pose (the crop is centred on it).
        roi, depth_settings: region-of-interest and depth-association settings.
        object_mask: ``(H, W)`` object mask in [0, 1] from a segmenter; defaults to ``frame.object_mask``.
        hand: the hand already posed for this frame (posed here when None).
        depth_points: back-project the ROI's depth pixels that are not hand (``Observation.depth_points``; a
            hand signed-distance query, skipped when no modality needs them).
    """
    device = scene.device
    camera = frame.camera.to(device, torch.float32)
    pose = object2camera_pred.to(device, torch.float32)
    box = roi_box(scene, camera, pose, roi)
    size = roi.size
    roi_camera = camera.crop_and_resize(box, size, size)
    hand = hand if hand is not None else scene.pose_hand(frame.joint_angles, frame.hand2camera)
    rgb_roi = partial(_crop_rgb, frame.rgb, box, size, device)  # cropped on first read
    mask_src = object_mask if object_mask is not None else frame.object_mask
    mask_full = mask_roi = None
    if mask_src is not None:
        mask_full = mask_src.to(device, torch.float32)
        mask_roi = crop_mask(mask_full, box, size)
    depth_roi = points = None
    if frame.depth is not None:
        depth_full = frame.depth.to(device, torch.float32)
        depth_roi = partial(_crop_depth, depth_full, box, size)
        points = _depth_points(depth_full, camera, box, depth_settings.max_points) if depth_points else None
        if points is not None:
            # drop finger pixels: depth points on or inside the known hand surface
            sd = scene.hand_geometry.signed_distance(points, hand.verts)
            keep = sd.distance[0] > depth_settings.hand_clearance
            points = points[:, keep] if int(keep.sum()) >= 10 else None
    return Observation(frame=frame, hand=hand, box=box, camera=camera, roi_camera=roi_camera, mask=mask_roi,
                       rgb=rgb_roi, depth=depth_roi, depth_points=points, mask_full=mask_full)
