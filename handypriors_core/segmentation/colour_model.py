"""Built-in object segmentation without trained weights: a region-based colour model (PWP3D / RBOT / SRT3D style).

The object's appearance is learned online from the image itself, using the projected silhouette of the
current pose estimate as the (noisy) label:

1. Region of interest: a square crop around the predicted object (``resolution`` px, ``margin`` of the
   projected box on each side), resampled once; pixels outside the image are ignored.
2. Render (z-buffer) the hand + object at the predicted pose in that crop: the visible object silhouette, the
   full object silhouette and its depth range, and the visible hand (forward kinematics + hand2camera; the hand
   is never segmented).
3. Learn: colour histograms (``bins^3`` cells of the quantised colour in ``colour_space``, smoothed by a small
   box filter) of the foreground (visible silhouette, eroded; with depth, only pixels whose depth agrees with
   the render) and the background (the crop outside the dilated silhouette, without the dilated hand). They are
   blended into the running model with ``learning_rate``.
4. Segment: per-pixel log-odds ``log h_f(c) - log h_b(c)`` plus a spatial prior from the predicted silhouette
   (uninformative within ``spatial_margin`` of it, falling to ``spatial_floor`` farther out) plus, with aligned
   depth, ``-depth_strength`` where the observed depth is outside the object's predicted depth range (+-
   ``depth_tolerance``). The posterior ``sigmoid(log-odds)`` is zero on the rendered hand and outside the image,
   box-filtered, and pasted into a full-size ``(H, W)`` mask (0 outside the crop).

The soft mask is what the silhouette modality consumes. The model starts from the first pose it is given
(the initial pose's projection) and keeps learning from the tracker's estimates (:meth:`ColourModelMask.update`,
or the predictions when the tracker does not call it). Set :attr:`ColourModelMask.learning` to False while the
track is lost, so a wrong pose does not teach the model wrong colours.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..geometry.camera import crop_and_resize_image
from ..io.frame import Frame
from .base import ColourModelSettings, MaskSourceBase

if TYPE_CHECKING:  # the scene is passed in (duck-typed): segmentation does not import estimation
    from ..estimation.scene import HandObjectScene, PosedHand

__all__ = ["ColourModelMask", "RegionData", "colour_bins", "convert_colour", "paste_roi"]


def convert_colour(rgb: torch.Tensor, space: str) -> torch.Tensor:
    """``rgb (..., 3, H, W)`` in [0, 1] to ``space`` (``"rgb"``, ``"ycrcb"``, ``"hsv"``), channels in [0, 1]."""
    if space == "rgb":
        return rgb
    r, g, b = rgb.unbind(-3)
    if space == "ycrcb":
        y = 0.299 * r + 0.587 * g + 0.114 * b
        return torch.stack((y, (0.713 * (r - y) + 0.5).clamp(0, 1), (0.564 * (b - y) + 0.5).clamp(0, 1)), -3)
    if space == "hsv":
        v, arg = rgb.max(-3)
        mn = rgb.min(-3).values
        c = v - mn
        safe = c.clamp_min(1e-6)
        h = torch.where(arg == 0, ((g - b) / safe) % 6, torch.where(arg == 1, (b - r) / safe + 2, (r - g) / safe + 4))
        h = torch.where(c > 1e-6, h / 6.0, torch.zeros_like(h))
        s = torch.where(v > 1e-6, c / v.clamp_min(1e-6), torch.zeros_like(v))
        return torch.stack((h, s, v), -3)
    raise ValueError(f"unknown colour space {space!r}")


def colour_bins(colour: torch.Tensor, bins: int) -> torch.Tensor:
    """Histogram cell ``(..., H, W)`` long in ``[0, bins^3)`` of colours ``(..., 3, H, W)`` in [0, 1]."""
    q = (colour * bins).long().clamp(0, bins - 1)
    return (q[..., 0, :, :] * bins + q[..., 1, :, :]) * bins + q[..., 2, :, :]


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of ``(H, W)`` bool by a square of half-size ``radius``."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask.float()[None, None], 2 * radius + 1, 1, radius)[0, 0] > 0.5


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    return ~_dilate(~mask, radius)


def _box_blur(image: torch.Tensor, size: int) -> torch.Tensor:
    """Box filter (odd ``size``) of ``(H, W)`` float, border pixels averaged over the inside only."""
    if size <= 1:
        return image
    return F.avg_pool2d(image[None, None], size, 1, size // 2, count_include_pad=False)[0, 0]


def paste_roi(roi_image: torch.Tensor, box, height: int, width: int) -> torch.Tensor:
    """Resample a square ROI image ``(S, S)`` (crop ``box = (x0, y0, x1, y1)`` [px]) into a ``(height, width)``
    image, zero outside the box (bilinear, consistent with :func:`~..geometry.camera.crop_and_resize_image`)."""
    x0, y0, x1, y1 = (float(b) for b in box)
    out = roi_image.new_zeros(height, width)
    u0, u1 = max(0, math.ceil(x0 - 0.5)), min(width, math.floor(x1 - 0.5) + 1)
    v0, v1 = max(0, math.ceil(y0 - 0.5)), min(height, math.floor(y1 - 0.5) + 1)
    if u1 <= u0 or v1 <= v0:
        return out
    us = torch.arange(u0, u1, device=roi_image.device, dtype=roi_image.dtype)
    vs = torch.arange(v0, v1, device=roi_image.device, dtype=roi_image.dtype)
    gu = 2 * ((us - x0 + 0.5) / (x1 - x0)) - 1  # normalised ROI coordinate (align_corners=False)
    gv = 2 * ((vs - y0 + 0.5) / (y1 - y0)) - 1
    grid = torch.stack(torch.broadcast_tensors(gu[None, :], gv[:, None]), -1)[None]
    out[v0:v1, u0:u1] = F.grid_sample(roi_image[None, None], grid, mode="bilinear", padding_mode="border",
                                      align_corners=False)[0, 0]
    return out


def paste_full(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resample a whole-image map ``(h, w)`` to ``(height, width)`` (nearest)."""
    if image.shape == (height, width):
        return image
    return F.interpolate(image[None, None], size=(height, width), mode="nearest")[0, 0]


def _crop_depth_nearest(depth: torch.Tensor, box, size: int) -> torch.Tensor:
    """Nearest-neighbour crop of ``depth (H, W)`` [m, NaN invalid] to ``(size, size)``, 0 where invalid/outside."""
    d = torch.nan_to_num(depth.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    H, W = d.shape
    x0, y0, x1, y1 = (float(b) for b in box)
    c = torch.arange(size, device=d.device, dtype=torch.float32) + 0.5
    xs = (x0 + c * (x1 - x0) / size - 0.5).round().long()
    ys = (y0 + c * (y1 - y0) / size - 0.5).round().long()
    inside = ((ys >= 0) & (ys < H))[:, None] & ((xs >= 0) & (xs < W))[None, :]
    crop = d[ys.clamp(0, H - 1)][:, xs.clamp(0, W - 1)]
    return torch.where(inside, crop, torch.zeros_like(crop))


class RegionData:
    """What one frame at one pose gives the colour model (ROI tensors on the scene's device).

    Attributes:
        box: ROI ``(x0, y0, x1, y1)`` [px, full image]; size: ``S``.
        bins: ``(S, S)`` long colour cell of each pixel; valid: ``(S, S)`` bool, inside the image.
        object_visible, object_full, hand_visible: ``(S, S)`` bool renders at the pose.
        object_depth: ``(S, S)`` rendered object depth [m] (0 off the object); depth: observed ``(S, S)`` [m]
            (0 invalid) or None.
        object_size: projected object size [ROI px] (the larger side of its silhouette's bounding box).
    """

    def __init__(self, **values) -> None:
        self.__dict__.update(values)


class ColourModelMask(MaskSourceBase):
    """Region-based colour segmentation of the tracked object (see the module docstring).

    Args:
        scene: the tracker's scene (object mesh, renderer, camera device).
        settings: :class:`~.base.ColourModelSettings`.

    Attributes:
        learning: when False, frames are segmented but not learned from (set while the track is lost).
        frames_learned: frames the histograms learned from.
        separation: mean posterior inside the predicted visible silhouette minus outside it (last frame), a
            segmentation-confidence cue in [-1, 1] (NaN before the first mask).
        posterior_roi: last ``(S, S)`` posterior over the ROI (for overlays), or None.
    """

    name = "colour model"

    def __init__(self, scene: HandObjectScene, settings: ColourModelSettings | None = None) -> None:
        super().__init__()
        self.scene = scene
        self.settings = settings if settings is not None else ColourModelSettings()
        self.learning = True
        self._tracker_updates = False
        self.reset()

    # ----------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget the learned colours (a new object or a new track)."""
        self.foreground: torch.Tensor | None = None
        self.background: torch.Tensor | None = None
        self.hand: torch.Tensor | None = None  # colours of the visible hand (used by the global mask)
        self.frames_learned = 0
        self.separation = float("nan")
        self.posterior_roi: torch.Tensor | None = None

    @property
    def initialized(self) -> bool:
        """Whether the histograms have learned from at least one frame."""
        return self.foreground is not None

    # --------------------------------------------------------------------------------------- regions
    def regions(self, frame: Frame, object2camera: torch.Tensor, hand: PosedHand) -> RegionData | None:
        """Crop ``frame`` around ``object2camera (4, 4)`` and render the silhouettes there (None if off-image)."""
        s = self.settings
        scene = self.scene
        device = scene.device
        S = s.resolution
        camera = frame.camera.to(device, torch.float32)
        pose = object2camera.detach().to(device, torch.float32)
        if pose.shape != (4, 4) or not bool(torch.isfinite(pose).all()):
            return None
        box = scene.object_box(camera, pose, s.margin, 16.0)
        if not all(math.isfinite(b) for b in box):
            return None
        H, W = frame.height, frame.width
        if box[2] <= -0.5 or box[0] >= W - 0.5 or box[3] <= -0.5 or box[1] >= H - 0.5:
            return None
        roi_camera = camera.crop_and_resize(box, S, S)
        shrink = (box[2] - box[0]) / S
        k = round(shrink) | 1 if shrink > 1.5 else 1
        # only the part of the image under the box (plus the filter's reach) is converted and filtered
        x_lo, y_lo = max(0, math.floor(box[0]) - k), max(0, math.floor(box[1]) - k)
        x_hi, y_hi = min(W, math.ceil(box[2]) + k + 1), min(H, math.ceil(box[3]) + k + 1)
        rgb = frame.rgb[y_lo:y_hi, x_lo:x_hi].to(device).permute(2, 0, 1)[None].float() / 255.0
        image = torch.cat((rgb, torch.ones_like(rgb[:, :1])), 1)
        if k > 1:  # area-style anti-aliasing before bilinear resampling
            image = F.avg_pool2d(image, k, 1, k // 2, count_include_pad=False)
        crop = crop_and_resize_image(image, (box[0] - x_lo, box[1] - y_lo, box[2] - x_lo, box[3] - y_lo), S, S)[0]
        valid = crop[3] > 0.99
        colour = (crop[:3] / crop[3:].clamp_min(1e-6)).clamp(0, 1)
        bins = colour_bins(convert_colour(colour, s.colour_space), s.bins)
        rendered = scene.silhouettes(roi_camera, pose, hand)
        object_full = rendered.object_full
        if bool(object_full.any()):
            ys, xs = torch.nonzero(object_full, as_tuple=True)
            size = float(max(int(xs.max() - xs.min()), int(ys.max() - ys.min())) + 1)
        else:
            size = S / (1 + 2 * s.margin)
        depth = None
        if frame.depth is not None:
            depth = _crop_depth_nearest(frame.depth.to(device), box, S)
            if not bool((depth > 0).any()):
                depth = None
        return RegionData(box=box, size=S, bins=bins, valid=valid, object_visible=rendered.object_visible,
                          object_full=object_full, hand_visible=rendered.hand_visible,
                          object_depth=rendered.object_depth, depth=depth, object_size=size)

    # -------------------------------------------------------------------------------------- learning
    def _histogram(self, bins: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        s = self.settings
        nb = s.bins ** 3
        counts = torch.bincount(bins[region], minlength=nb).float()
        if s.histogram_blur > 1:
            k = s.histogram_blur
            counts = F.avg_pool3d(counts.view(1, 1, s.bins, s.bins, s.bins), k, 1, k // 2,
                                  count_include_pad=False).reshape(-1)
        return counts / counts.sum().clamp_min(1e-12)

    def learn_regions(self, data: RegionData, rate: float | None = None) -> bool:
        """Update the histograms from ``data`` with ``rate`` (the learning rate; 1 the first time). False if the
        regions are too small to learn from."""
        s = self.settings
        fg = _erode(data.object_visible, s.erosion) & data.valid
        if data.depth is not None:  # drop foreground pixels whose depth contradicts the render (occluders)
            observed = data.depth > 0
            agree = (data.depth - data.object_depth).abs() < s.depth_tolerance
            fg = fg & (~observed | agree)
        hand_zone = _dilate(data.hand_visible, s.hand_dilation)
        bg = ~_dilate(data.object_full | data.object_visible, s.erosion) & ~hand_zone & data.valid
        if s.hand_as_background:
            bg = bg | (_erode(data.hand_visible, s.hand_dilation) & data.valid)
        n_fg, n_bg = int(fg.sum()), int(bg.sum())
        if n_fg < s.min_pixels or n_bg < s.min_pixels:
            self._report(self.ok, f"not learning: {n_fg} object and {n_bg} background pixels (need "
                                  f"{s.min_pixels})")
            return False
        hf, hb = self._histogram(data.bins, fg), self._histogram(data.bins, bg)
        hand_px = _erode(data.hand_visible, s.hand_dilation) & data.valid
        hh = self._histogram(data.bins, hand_px) if int(hand_px.sum()) >= s.min_pixels else None
        if self.foreground is None:
            self.foreground, self.background, self.hand = hf, hb, hh
        else:
            a = s.learning_rate if rate is None else float(rate)
            self.foreground = (1 - a) * self.foreground + a * hf
            self.background = (1 - a) * self.background + a * hb
            if hh is not None:
                self.hand = hh if self.hand is None else (1 - a) * self.hand + a * hh
        self.frames_learned += 1
        return True

    def learn(self, frame: Frame, object2camera: torch.Tensor, hand: PosedHand, rate: float | None = None) -> bool:
        """Learn the colours of ``frame`` at pose ``object2camera (4, 4)`` (e.g. the initial pose)."""
        data = self.regions(frame, object2camera, hand)
        return data is not None and self.learn_regions(data, rate)

    def update(self, frame: Frame, object2camera: torch.Tensor, hand: PosedHand, weight: float = 1.0) -> None:
        """Tracker hook after a frame: learn at the final estimate (rate ``learning_rate * weight``)."""
        self._tracker_updates = True
        if not self.learning or self.settings.learn_from == "prediction" or weight <= 0:
            return
        self.learn(frame, object2camera, hand, rate=min(1.0, self.settings.learning_rate * weight))

    # ------------------------------------------------------------------------------------ segmenting
    def log_odds(self, data: RegionData) -> torch.Tensor:
        """``(S, S)`` object log-odds over the ROI from colour, spatial prior and depth (needs a learned model)."""
        s = self.settings
        nb = s.bins ** 3
        eps = 0.1 / nb
        L = torch.log(self.foreground[data.bins] + eps) - torch.log(self.background[data.bins] + eps)
        # spatial prior: neutral near the predicted silhouette, falling to spatial_floor far from it
        margin = round(s.spatial_margin * data.object_size)
        falloff = max(1, round(s.spatial_falloff * data.object_size))
        near = _dilate(data.object_full | data.object_visible, margin + falloff).float()
        width = falloff | 1
        soft = _box_blur(_box_blur(near, width), width).clamp(0, 1)
        prior = s.spatial_floor + (0.5 - s.spatial_floor) * soft
        L = L + torch.log(prior) - torch.log1p(-prior)
        if data.depth is not None and s.depth_strength > 0 and bool(data.object_full.any()):
            z = data.object_depth[data.object_full]
            lo, hi = float(z.min()) - s.depth_tolerance, float(z.max()) + s.depth_tolerance
            off = (data.depth > 0) & ((data.depth < lo) | (data.depth > hi))
            L = L - s.depth_strength * off.float()
        return L.clamp(-s.max_log_odds, s.max_log_odds)

    def posterior(self, data: RegionData) -> torch.Tensor:
        """``(S, S)`` object probability over the ROI (0 on the rendered hand and outside the image)."""
        p = torch.sigmoid(self.log_odds(data))
        p = torch.where(data.hand_visible | ~data.valid, torch.zeros_like(p), p)
        return _box_blur(p, self.settings.smoothing).clamp(0, 1)

    def global_mask(self, frame: Frame, hand: PosedHand, max_size: int = 160, min_pixels: int = 20
                    ) -> torch.Tensor | None:
        """Object mask ``(H, W)`` over the whole image from the learned colours alone (no pose needed).

        For re-initialisation after a loss of track: the colour posterior over the image (resampled to at most
        ``max_size`` px wide) with the learned hand colours counted as background, and, with depth, pixels
        farther than the object's diameter from the hand's depth range suppressed; the largest connected region
        above 0.5 is returned (None before any learning or when nothing is found).
        """
        import cv2
        import numpy as np

        if not self.initialized:
            return None
        s = self.settings
        device = self.scene.device
        H, W = frame.height, frame.width
        factor = min(1.0, max_size / W)
        w, h = max(1, round(W * factor)), max(1, round(H * factor))
        box = (0.0, 0.0, float(W), float(H))
        rgb = frame.rgb.to(device).permute(2, 0, 1)[None].float() / 255.0
        if 1 / factor > 1.5:
            k = round(1 / factor) | 1
            rgb = F.avg_pool2d(rgb, k, 1, k // 2, count_include_pad=False)
        colour = crop_and_resize_image(rgb, box, w, h)[0].clamp(0, 1)
        bins = colour_bins(convert_colour(colour, s.colour_space), s.bins)
        eps = 0.1 / s.bins ** 3
        back = self.background if self.hand is None else torch.maximum(self.background, self.hand)
        L = torch.log(self.foreground[bins] + eps) - torch.log(back[bins] + eps)
        if frame.depth is not None:  # the object is in the hand: far from the hand's depth range is background
            ys = ((torch.arange(h, device=device) + 0.5) * (H / h) - 0.5).round().long().clamp(0, H - 1)
            xs = ((torch.arange(w, device=device) + 0.5) * (W / w) - 0.5).round().long().clamp(0, W - 1)
            depth = torch.nan_to_num(frame.depth.to(device).float(), nan=0.0)[ys][:, xs]
            z = hand.verts[0, :, 2]
            reach = self.scene.object.diameter
            off = (depth > 0) & ((depth < float(z.min()) - reach) | (depth > float(z.max()) + reach))
            L = L - s.depth_strength * off.float()
        p = torch.sigmoid(L.clamp(-s.max_log_odds, s.max_log_odds))
        p = _box_blur(p, s.smoothing)
        binary = (p > 0.5).cpu().numpy().astype(np.uint8)
        count, labels = cv2.connectedComponents(binary, connectivity=8)
        if count <= 1:
            return None
        sizes = np.bincount(labels.ravel())[1:]
        if int(sizes.max()) < max(1, round(min_pixels * factor * factor)):
            return None
        region = torch.from_numpy(labels == 1 + int(sizes.argmax())).to(device).float()
        return paste_full(region, H, W)

    def __call__(self, frame: Frame, object2camera_pred: torch.Tensor, hand: PosedHand) -> torch.Tensor | None:
        data = self.regions(frame, object2camera_pred, hand)
        if data is None or not bool((data.object_full & data.valid).any()):
            self._report(False, "predicted object outside the image" if data is not None or bool(
                torch.isfinite(torch.as_tensor(object2camera_pred)).all()) else "non-finite predicted pose")
            return None
        first = not self.initialized
        if first and not (self.learning and self.learn_regions(data, 1.0)):
            self._report(False, "no colour model yet (the first pose shows too few object pixels)")
            return None
        p = self.posterior(data)
        if not bool(torch.isfinite(p).all()):  # defensive: never hand NaN to the tracker
            self._report(False, "non-finite posterior")
            return None
        self.posterior_roi = p
        fg = data.object_visible & data.valid
        bg = ~data.object_full & ~data.hand_visible & data.valid
        if bool(fg.any()) and bool(bg.any()):
            self.separation = float(p[fg].mean() - p[bg].mean())
        s = self.settings
        if not first and self.learning and (s.learn_from == "prediction" or
                                            (s.learn_from == "auto" and not self._tracker_updates)):
            self.learn_regions(data)
        mask = paste_roi(p, data.box, frame.height, frame.width)
        if not bool((mask > 0.5).any()):
            self._report(False, "no object pixels in the colour posterior")
            return None
        self._report(True, "ok")
        return mask
