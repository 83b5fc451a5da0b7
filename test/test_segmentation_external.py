"""External masks, mask validation, segmentation settings and the mask-source factory (no rendering)."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from handypriors_core.config import settings_from_dict
from handypriors_core.errors import ConfigError, InvalidValueError, ModelFileError, ShapeError
from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.io.frame import Frame
from handypriors_core.segmentation import (
    ColourModelSettings,
    ExternalMask,
    ExternalMaskSettings,
    SegmentationSettings,
    as_mask,
    load_segmentation_settings,
    make_mask_source,
)
from handypriors_core.segmentation.external import read_mask_file

H, W = 24, 32


def _frame(index: int = 0, stamp: float = 0.0, object_mask=None) -> Frame:
    K = torch.tensor([[30.0, 0.0, W / 2], [0.0, 30.0, H / 2], [0.0, 0.0, 1.0]])
    return Frame(index=index, stamp=stamp, rgb=torch.zeros(H, W, 3, dtype=torch.uint8),
                 camera=PinholeCamera(K, W, H), joint_angles=torch.zeros(16), hand2camera=torch.eye(4),
                 object_mask=object_mask)


def _blob(h: int = H, w: int = W) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[h // 4: h // 2, w // 4: w // 2] = 1.0
    return m


# ------------------------------------------------------------------------------------------------ as_mask
def test_as_mask_converts_encodings():
    blob = _blob()
    mono8 = (blob * 255).to(torch.uint8)
    assert torch.equal(as_mask(mono8, H, W), blob)
    assert torch.equal(as_mask(mono8.numpy(), H, W), blob)  # numpy input
    assert torch.equal(as_mask(blob.bool(), H, W), blob)
    assert torch.equal(as_mask(blob.to(torch.uint8), H, W), blob)  # label image with values {0, 1}
    assert torch.equal(as_mask(mono8[..., None], H, W), blob)  # (H, W, 1)
    assert torch.equal(as_mask((blob * 7).to(torch.int32), H, W), blob)  # integer labels
    soft = torch.full((H, W), 0.4)
    assert torch.allclose(as_mask(soft, H, W), soft)
    assert torch.equal(as_mask(soft, H, W, threshold=0.3), torch.ones(H, W))


def test_as_mask_rejects_bad_masks_with_clear_errors():
    with pytest.raises(ShapeError, match=r"12x32 \(HxW\) but the image is 24x32"):
        as_mask(torch.zeros(12, 32), H, W)
    with pytest.raises(ShapeError, match="different aspect ratio"):
        as_mask(torch.zeros(12, 32), H, W, resize=True)
    with pytest.raises(ShapeError, match=r"\(H, W\) image"):
        as_mask(torch.zeros(2, H, W), H, W)
    bad = _blob()
    bad[0, 0] = float("nan")
    with pytest.raises(InvalidValueError, match="NaN"):
        as_mask(bad, H, W)
    with pytest.raises(InvalidValueError, match=r"\[0, 1\]"):
        as_mask(_blob() * 2, H, W)
    with pytest.raises(ShapeError, match="torch.Tensor or numpy"):
        as_mask([[0, 1]], H, W)


def test_as_mask_resizes_same_aspect_masks():
    half = as_mask((_blob(H // 2, W // 2) * 255).to(torch.uint8), H, W, resize=True)
    assert half.shape == (H, W)
    inter = ((half > 0.5) & (_blob() > 0.5)).sum()
    union = ((half > 0.5) | (_blob() > 0.5)).sum()
    assert float(inter) / float(union) > 0.7


# ------------------------------------------------------------------------------------------- ExternalMask
def test_external_mask_from_frame_and_bad_inputs(caplog):
    source = ExternalMask()
    assert source(_frame()) is None and source.status == "no mask given" and not source.ok
    mask = source(_frame(object_mask=_blob()), torch.eye(4), None)
    assert torch.equal(mask, _blob()) and source.ok and source.status == "ok"
    with caplog.at_level(logging.WARNING, logger="handypriors.segmentation"):
        assert source(_frame(object_mask=torch.zeros(H, W))) is None
    assert source.status.startswith("empty mask (0 object pixels") and not source.ok
    assert "empty mask" in caplog.text  # status changes are logged
    # a pushed mask of the wrong size: no crash, None, a status naming both sizes
    source.push(torch.zeros(10, 10), stamp=0.0)
    assert source(_frame()) is None
    assert "10x10 (HxW) but the image is 24x32" in source.status
    strict = ExternalMask(ExternalMaskSettings(strict=True))
    strict.push(torch.zeros(10, 10), stamp=0.0)
    with pytest.raises(ShapeError):
        strict(_frame())
    strict.reset()
    with pytest.raises(InvalidValueError, match="empty mask"):
        strict(_frame(object_mask=torch.zeros(H, W)))


def test_external_mask_pushed_by_stamp():
    source = ExternalMask(ExternalMaskSettings(max_age=0.02))
    first, second = _blob(), torch.flip(_blob(), (0, 1))
    source.push((first * 255).to(torch.uint8).numpy(), stamp=1.00)
    source.push(second, stamp=1.10)
    assert torch.equal(source(_frame(stamp=1.01)), first)
    assert torch.equal(source(_frame(stamp=1.11)), second)
    assert source(_frame(stamp=1.05)) is None and "no mask within 0.02 s" in source.status
    # a stale pushed mask falls back to the frame's own mask
    assert torch.equal(source(_frame(stamp=1.05, object_mask=first)), first)
    source.reset()
    assert source(_frame(stamp=1.01)) is None


def test_external_mask_files(tmp_path):
    cv2.imwrite(str(tmp_path / "000003.png"), (_blob().numpy() * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "000004.png"), np.zeros((H // 2, W // 2), np.uint8) + 255)  # half size
    cv2.imwrite(str(tmp_path / "000005.png"), np.zeros((5, 40), np.uint8))  # other aspect ratio
    source = ExternalMask(ExternalMaskSettings(directory=str(tmp_path)))
    assert torch.equal(source(_frame(index=3)), _blob())
    assert torch.equal(source(_frame(index=4)), torch.ones(H, W))  # resized
    assert source(_frame(index=5)) is None and "different aspect ratio" in source.status
    assert source(_frame(index=6)) is None and "no mask file" in source.status
    assert torch.equal(read_mask_file(tmp_path / "000003.png"), (_blob() * 255).to(torch.uint8))
    with pytest.raises(ModelFileError, match="not found"):
        read_mask_file(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ModelFileError, match="cannot read"):
        read_mask_file(tmp_path / "junk.png")


# ---------------------------------------------------------------------------------------- settings, factory
def test_settings_validation_and_yaml():
    assert load_segmentation_settings() == SegmentationSettings()  # shipped yaml == documented defaults
    s = settings_from_dict(SegmentationSettings, {"source": "external", "external": {"directory": "/tmp/x"}})
    assert s.source == "external" and s.external.directory == "/tmp/x"
    with pytest.raises(ConfigError):
        settings_from_dict(SegmentationSettings, {"source": "pointrend"})
    with pytest.raises(ConfigError, match="bins"):
        ColourModelSettings(bins=1)
    with pytest.raises(ConfigError, match="learning_rate"):
        ColourModelSettings(learning_rate=0.0)
    with pytest.raises(ConfigError):
        settings_from_dict(SegmentationSettings, {"colour": {"colour_space": "lab"}})


def test_factory():
    assert make_mask_source(SegmentationSettings(source="none")) is None
    assert isinstance(make_mask_source(SegmentationSettings(source="external")), ExternalMask)
    with pytest.raises(ConfigError, match="needs the tracker's scene"):
        make_mask_source(SegmentationSettings(source="colour"))
