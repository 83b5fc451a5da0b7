"""Observation preparation: the colour crop converts only the pixels under the ROI and equals the crop of the
whole converted image (boxes inside, across the border and outside the image)."""

import pytest
import torch

from handypriors_core.estimation.observation import _crop_rgb
from handypriors_core.geometry.camera import crop_and_resize_image


@pytest.mark.parametrize("box", [(100.3, 50.7, 180.9, 131.3), (-20.5, -10.2, 40.0, 50.3), (600.2, 420.1, 700.6, 520.5),
                                 (0.0, 0.0, 640.0, 480.0), (250.5, 100.5, 251.7, 101.7), (700.0, 500.0, 760.0, 560.0)])
def test_roi_colour_crop_equals_the_crop_of_the_whole_image(box):
    gen = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (480, 640, 3), generator=gen, dtype=torch.uint8)
    whole = rgb.permute(2, 0, 1)[None].float() / 255.0
    expected = crop_and_resize_image(whole, box, 48, 48)[0].permute(1, 2, 0)[None]
    got = _crop_rgb(rgb, box, 48)
    assert got.shape == (1, 48, 48, 3)
    # float32 grid coordinates differ in rounding (1e-4 px); a shift of 0.1 px would differ by ~0.05 here
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
