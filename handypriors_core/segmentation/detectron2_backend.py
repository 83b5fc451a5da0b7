"""Optional detectron2 backend (PointRend / Mask R-CNN instance segmentation, as in the paper).

detectron2 is imported only when this source is built (``segmentation.source: detectron2``); when it is missing,
:func:`build_predictor` raises a :class:`~handypriors_core.errors.ConfigError` saying how to install it or which
built-in source to use instead. The user supplies the model config and the trained weights
(``detectron2.config_file``, ``detectron2.weights``) and the object's class id in that model's label space.

Per frame the instances of that class scoring at least ``score_threshold`` are candidates; when a predicted pose
is known the candidate whose box overlaps the projected object box best (IoU >= ``min_overlap``, ties broken by
score) is taken, otherwise the best-scoring one. The robot hand is not taken from the network: it is rendered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, HandyPriorsError
from .base import Detectron2Settings, MaskSourceBase

__all__ = ["Detectron2Mask", "build_predictor", "select_instance"]

_INSTALL_HINT = (
    "install detectron2 (e.g. `pip install 'git+https://github.com/facebookresearch/detectron2.git'`, "
    "which needs a matching torch and a C++ compiler) or choose segmentation.source 'colour' (built in, no "
    "weights) or 'external' (masks from another node or files)"
)


def build_predictor(settings: Detectron2Settings):
    """A ``detectron2.engine.DefaultPredictor`` for ``settings`` (imports detectron2 here, and only here)."""
    try:
        from detectron2.config import get_cfg  # type: ignore
        from detectron2.engine import DefaultPredictor  # type: ignore
    except ImportError as exc:
        raise ConfigError(f"segmentation.source 'detectron2' needs the detectron2 package, which is not "
                          f"importable ({exc}): {_INSTALL_HINT}") from None
    if not settings.config_file:
        raise ConfigError("segmentation.detectron2.config_file is empty: give the model's detectron2 config (.yaml)")
    if not Path(settings.config_file).is_file():
        raise ConfigError(f"segmentation.detectron2.config_file not found: {settings.config_file}")
    if not settings.weights:
        raise ConfigError("segmentation.detectron2.weights is empty: give the trained weights (.pkl / .pth)")
    if "://" not in settings.weights and not Path(settings.weights).is_file():
        raise ConfigError(f"segmentation.detectron2.weights not found: {settings.weights}")
    cfg = get_cfg()
    if settings.pointrend:
        try:
            from detectron2.projects import point_rend  # type: ignore
        except ImportError:
            try:
                import point_rend  # type: ignore
            except ImportError:
                raise ConfigError("segmentation.detectron2.pointrend is true but the PointRend project is not "
                                  "importable: install detectron2's projects/PointRend or set pointrend: false"
                                  ) from None
        point_rend.add_pointrend_config(cfg)
    cfg.merge_from_file(settings.config_file)
    cfg.MODEL.WEIGHTS = settings.weights
    cfg.MODEL.DEVICE = settings.device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = settings.score_threshold
    return DefaultPredictor(cfg)


def _box_iou(boxes: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """IoU ``(N,)`` of ``boxes (N, 4)`` with ``box (4,)``, ``(x0, y0, x1, y1)``."""
    lo = torch.maximum(boxes[:, :2], box[:2])
    hi = torch.minimum(boxes[:, 2:], box[2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp_min(0).prod(-1)
    union = area + (box[2:] - box[:2]).clamp_min(0).prod() - inter
    return inter / union.clamp_min(1e-9)


def select_instance(masks: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, class_id: int,
                    score_threshold: float, predicted_box: torch.Tensor | None = None,
                    min_overlap: float = 0.0) -> int | None:
    """Index of the instance to use among ``masks (N, H, W)``, ``scores (N,)``, ``classes (N,)``, or None.

    Candidates: class ``class_id`` (any when -1) with score >= ``score_threshold`` and a non-empty mask. With a
    ``predicted_box (4,)`` [px] the one with the best box IoU (>= ``min_overlap``) wins, ties by score.
    """
    if masks.shape[0] == 0:
        return None
    flat = masks.flatten(1) > 0.5
    ok = (scores >= score_threshold) & flat.any(1)
    if class_id >= 0:
        ok = ok & (classes == class_id)
    if not bool(ok.any()):
        return None
    rank = scores.float().clone()
    if predicted_box is not None:
        H, W = masks.shape[-2:]
        ys = torch.arange(H, dtype=torch.float32)
        xs = torch.arange(W, dtype=torch.float32)
        rows, cols = masks.any(-1), masks.any(-2)  # (N, H), (N, W)
        big = 1e9
        x0 = torch.where(cols, xs, torch.full_like(xs, big)).min(-1).values
        x1 = torch.where(cols, xs, torch.full_like(xs, -big)).max(-1).values + 1
        y0 = torch.where(rows, ys, torch.full_like(ys, big)).min(-1).values
        y1 = torch.where(rows, ys, torch.full_like(ys, -big)).max(-1).values + 1
        iou = _box_iou(torch.stack((x0, y0, x1, y1), -1), predicted_box.float())
        ok = ok & (iou >= min_overlap)
        if not bool(ok.any()):
            return None
        rank = iou + 1e-3 * rank
    rank = torch.where(ok, rank, torch.full_like(rank, -1.0))
    return int(rank.argmax())


class Detectron2Mask(MaskSourceBase):
    """Object masks from a detectron2 model (PointRend in the paper).

    Args:
        settings: :class:`~.base.Detectron2Settings`.
        scene: the tracker's scene (projects the predicted object box to pick the instance); optional.
        predictor: a callable ``(bgr (H, W, 3) uint8 numpy) -> {"instances": ...}`` with ``pred_masks``,
            ``scores``, ``pred_classes`` (detectron2's ``DefaultPredictor`` interface); built from the settings
            when None (importing detectron2).
    """

    name = "detectron2"
    needs_pose = False

    def __init__(self, settings: Detectron2Settings | None = None, scene=None, predictor=None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else Detectron2Settings()
        self.scene = scene
        self.predictor = predictor if predictor is not None else build_predictor(self.settings)

    def _predicted_box(self, frame, object2camera: torch.Tensor | None) -> torch.Tensor | None:
        if object2camera is None or self.scene is None:
            return None
        pose = torch.as_tensor(object2camera).to(self.scene.device, torch.float32)
        if pose.shape != (4, 4) or not bool(torch.isfinite(pose).all()):
            return None
        box = self.scene.object_box(frame.camera.to(self.scene.device, torch.float32), pose, 0.0, 4.0)
        return torch.tensor(box, dtype=torch.float32)

    def __call__(self, frame, object2camera_pred: torch.Tensor | None = None, hand=None) -> torch.Tensor | None:
        s = self.settings
        bgr = np.ascontiguousarray(frame.rgb.cpu().numpy()[..., ::-1])
        try:
            outputs = self.predictor(bgr)
        except HandyPriorsError:
            raise
        except Exception as exc:  # noqa: BLE001 - a network failure must not stop the tracker
            self._report(False, f"detectron2 failed: {exc}")
            return None
        inst = outputs["instances"] if isinstance(outputs, dict) else outputs
        if hasattr(inst, "to"):
            inst = inst.to("cpu")
        masks = torch.as_tensor(getattr(inst, "pred_masks", torch.zeros(0, frame.height, frame.width)))
        scores = torch.as_tensor(getattr(inst, "scores", torch.zeros(masks.shape[0])))
        classes = torch.as_tensor(getattr(inst, "pred_classes", torch.zeros(masks.shape[0], dtype=torch.long)))
        if masks.dim() != 3 or masks.shape[-2:] != (frame.height, frame.width):
            self._report(False, f"detectron2 masks have shape {tuple(masks.shape)}, expected (N, {frame.height}, "
                                f"{frame.width})")
            return None
        index = select_instance(masks.float(), scores, classes, s.class_id, s.score_threshold,
                                self._predicted_box(frame, object2camera_pred), s.min_overlap)
        if index is None:
            self._report(False, f"no instance of class {s.class_id} above score {s.score_threshold}"
                                + (" near the predicted pose" if object2camera_pred is not None else ""))
            return None
        self._report(True, "ok")
        return masks[index].float().clamp(0, 1)
