"""The optional detectron2 backend: lazy import with a clear error, instance selection with a stand-in predictor."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from handypriors_core.errors import ConfigError
from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.io.frame import Frame
from handypriors_core.segmentation import Detectron2Settings, SegmentationSettings, make_mask_source
from handypriors_core.segmentation.detectron2_backend import Detectron2Mask, build_predictor, select_instance

H, W = 20, 30


def _frame() -> Frame:
    K = torch.tensor([[30.0, 0.0, W / 2], [0.0, 30.0, H / 2], [0.0, 0.0, 1.0]])
    rgb = torch.zeros(H, W, 3, dtype=torch.uint8)
    rgb[..., 0] = 200  # red: the stand-in predictor checks it receives BGR
    return Frame(index=0, stamp=0.0, rgb=rgb, camera=PinholeCamera(K, W, H), joint_angles=torch.zeros(16),
                 hand2camera=torch.eye(4))


def _box_mask(x0, y0, x1, y1) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


class _Instances:
    def __init__(self, masks, scores, classes):
        self.pred_masks, self.scores, self.pred_classes = masks, scores, classes

    def to(self, device):
        return self


class _Predictor:
    """Stand-in for detectron2's DefaultPredictor (same call and output interface)."""

    def __init__(self, masks, scores, classes):
        self.out = {"instances": _Instances(masks, scores, classes)}
        self.seen = None

    def __call__(self, bgr: np.ndarray):
        self.seen = bgr
        return self.out


def test_missing_detectron2_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "detectron2", None)  # import detectron2 -> ImportError
    monkeypatch.setitem(sys.modules, "detectron2.config", None)
    with pytest.raises(ConfigError, match="needs the detectron2 package.*install detectron2.*'colour'"):
        build_predictor(Detectron2Settings(config_file="x.yaml", weights="w.pkl"))
    with pytest.raises(ConfigError, match="detectron2"):
        make_mask_source(SegmentationSettings(source="detectron2"))


def test_the_module_imports_without_detectron2():
    import handypriors_core.segmentation  # noqa: F401

    assert "detectron2" not in sys.modules or sys.modules["detectron2"] is None


def test_select_instance():
    masks = torch.stack((_box_mask(0, 0, 5, 5), _box_mask(10, 5, 20, 15), _box_mask(22, 2, 28, 8),
                         torch.zeros(H, W, dtype=torch.bool))).float()
    scores = torch.tensor([0.9, 0.7, 0.95, 0.99])
    classes = torch.tensor([3, 3, 5, 3])
    assert select_instance(masks, scores, classes, 3, 0.5) == 0  # best score of class 3 (empty mask skipped)
    assert select_instance(masks, scores, classes, -1, 0.5) == 2  # any class
    assert select_instance(masks, scores, classes, 3, 0.95) is None  # all below threshold
    assert select_instance(masks[:0], scores[:0], classes[:0], -1, 0.5) is None
    near_second = torch.tensor([11.0, 6.0, 19.0, 14.0])
    assert select_instance(masks, scores, classes, 3, 0.5, near_second, 0.3) == 1  # overlap beats score
    far = torch.tensor([0.0, 15.0, 3.0, 19.0])
    assert select_instance(masks, scores, classes, 3, 0.5, far, 0.3) is None


def test_detectron2_mask_with_a_stand_in_predictor():
    masks = torch.stack((_box_mask(2, 2, 8, 8), _box_mask(12, 4, 20, 12)))
    predictor = _Predictor(masks, torch.tensor([0.6, 0.9]), torch.tensor([1, 1]))
    source = Detectron2Mask(Detectron2Settings(class_id=1), predictor=predictor)
    mask = source(_frame())
    assert torch.equal(mask, masks[1].float()) and source.ok
    assert predictor.seen[0, 0].tolist() == [0, 0, 200]  # BGR, as DefaultPredictor expects
    bad = Detectron2Mask(Detectron2Settings(), predictor=_Predictor(torch.zeros(1, 5, 5, dtype=torch.bool),
                                                                     torch.ones(1), torch.zeros(1)))
    assert bad(_frame()) is None and "expected (N, 20, 30)" in bad.status
    none = Detectron2Mask(Detectron2Settings(class_id=7), predictor=predictor)
    assert none(_frame()) is None and "no instance of class 7" in none.status

    def broken(_):
        raise RuntimeError("CUDA out of memory")

    failing = Detectron2Mask(Detectron2Settings(), predictor=broken)
    assert failing(_frame()) is None and "CUDA out of memory" in failing.status
