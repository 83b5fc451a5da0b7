"""An object mask for the first frame without a pose: from the frame, a pose-free mask source, or bootstrapped
from aligned depth near the hand (what the global pose search of :mod:`.initialization` matches against).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..io.frame import Frame
from .scene import HandObjectScene, PosedHand

__all__ = ["automatic_mask", "bootstrap_mask"]

_F32 = torch.float32


def automatic_mask(scene: HandObjectScene, frame: Frame, hand: PosedHand | None = None, mask_source=None
                   ) -> tuple[torch.Tensor | None, str]:
    """An object mask for a search without a pose: ``(mask (H, W) or None, where it came from)``.

    In order: the frame's own ``object_mask`` (external segmenter), a mask source that needs no pose (external
    masks, detectron2), :func:`bootstrap_mask` (aligned depth near the hand), then the colour model's pose-free
    ``global_mask(frame, hand)`` once it has learned the object (RGB only).
    """
    hand = hand if hand is not None else scene.pose_hand(frame.joint_angles, frame.hand2camera)
    if frame.object_mask is not None and bool((frame.object_mask > 0.5).any()):
        return frame.object_mask.float(), "frame"
    if mask_source is not None and not getattr(mask_source, "needs_pose", True):
        mask = mask_source(frame, None, hand)
        if mask is not None:
            return mask, getattr(mask_source, "name", "mask source")
    mask = bootstrap_mask(scene, frame, hand)
    if mask is not None:
        return mask, "depth near the hand"
    if mask_source is not None and hasattr(mask_source, "global_mask"):
        mask = mask_source.global_mask(frame, hand)
        if mask is not None:
            return mask, "colour model (global)"
    return None, "no mask: give an initial pose, an external mask or aligned depth"


def bootstrap_mask(scene: HandObjectScene, frame: Frame, hand: PosedHand | None = None,
                   max_points: int = 20000, clearance: float = 0.004) -> torch.Tensor | None:
    """A first object mask ``(H, W)`` from what the robot knows, for the first frame without any mask or pose.

    With aligned depth: the pixels whose 3D point lies outside the hand (by ``clearance`` [m]) but within the
    object's diameter of the hand's grasp surfaces (its contact candidates); the largest connected region is
    kept. Without depth, or when no such pixel exists, None.
    """
    import cv2
    import numpy as np

    if frame.depth is None:
        return None
    device = scene.device
    hand = hand if hand is not None else scene.pose_hand(frame.joint_angles, frame.hand2camera)
    H, W = frame.height, frame.width
    stride = max(1, math.ceil(math.sqrt(H * W / max_points)))
    depth = frame.depth.to(device, _F32)[::stride, ::stride]
    h, w = depth.shape
    valid = torch.isfinite(depth) & (depth > 0)
    if int(valid.sum()) < 10:
        return None
    ys, xs = torch.nonzero(valid, as_tuple=True)
    camera = frame.camera.to(device, _F32)
    pixels = torch.stack(((xs * stride).float(), (ys * stride).float()), -1)[None]
    points = camera.unproject(pixels, depth[ys, xs][None])
    with torch.no_grad():
        sd = scene.hand_geometry.signed_distance(points, hand.verts).distance[0]
        d_contact = torch.cdist(points[0], hand.contact_points[0]).min(-1).values
    diameter = scene.object.diameter
    keep = (sd > clearance) & (d_contact < diameter)
    small = torch.zeros(h, w, dtype=torch.bool, device=device)
    small[ys[keep], xs[keep]] = True  # the hand's own pixels fail the clearance test: it is never segmented
    if int(small.sum()) < 5:
        return None
    count, labels = cv2.connectedComponents(small.cpu().numpy().astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    largest = torch.from_numpy(labels == (1 + int(sizes.argmax()))).to(device)
    full = largest.float()[None, None]
    if stride > 1:
        full = F.interpolate(full, scale_factor=stride, mode="nearest")
    return full[0, 0, :H, :W].contiguous()
