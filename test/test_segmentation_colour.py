"""The built-in region-based colour model on generated frames (Allegro hand, textured box, cluttered background).

Ground-truth masks and poses of the generated frames are used for scoring and, as a stand-in for a tracker's
previous estimate, to make the predicted pose (the previous frame's true pose plus noise).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from handypriors_core.geometry.camera import crop_and_resize_image
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform
from handypriors_core.segmentation import ColourModelMask, ColourModelSettings, SegmentationSettings, make_mask_source
from handypriors_core.segmentation.colour_model import colour_bins, convert_colour, paste_roi
from handypriors_core.segmentation.testing import make_scene, move_object, random_view

F64 = torch.float64


@pytest.fixture(scope="module")
def scene():
    return make_scene("box")


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.cpu() > 0.5, b.cpu() > 0.5
    return float((a & b).sum()) / max(1.0, float((a | b).sum()))


def _about_centre(pose: torch.Tensor, R: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """Rotate the object (centred at its origin) by ``R`` in the camera frame and shift it by ``dt``."""
    return make_transform(R @ pose[:3, :3], pose[:3, 3] + dt)


# ------------------------------------------------------------------------------------------- pure functions
def test_convert_colour_matches_opencv():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 8, 9, generator=g)
    rgb[:, 0, 0] = 0.5  # grey: hue undefined -> 0
    img = rgb.permute(1, 2, 0).numpy().astype(np.float32)
    hsv = convert_colour(rgb, "hsv")
    ref = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    assert np.allclose(hsv[0].numpy(), ref[..., 0] / 360.0, atol=1e-4)
    assert np.allclose(hsv[1:].permute(1, 2, 0).numpy(), ref[..., 1:], atol=1e-5)
    ycc = convert_colour(rgb, "ycrcb")
    ref = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    assert np.allclose(ycc.permute(1, 2, 0).numpy(), ref, atol=2e-3)
    assert torch.equal(convert_colour(rgb, "rgb"), rgb)


def test_colour_bins():
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.99, 0.0, 0.51]]).T[:, :, None]  # (3, 3, 1)
    bins = colour_bins(colours, 4)[:, 0]
    assert bins.tolist() == [0, 63, (3 * 4 + 0) * 4 + 2]


def test_paste_roi_inverts_the_crop():
    H, W, S = 40, 50, 32
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    image = 0.01 * xs + 0.02 * ys  # linear ramp: bilinear resampling is exact on it
    box = (10.3, 5.7, 30.3, 25.7)
    crop = crop_and_resize_image(image[None, None], box, S, S)[0, 0]
    back = paste_roi(crop, box, H, W)
    inner = (slice(8, 23), slice(13, 28))
    assert torch.allclose(back[inner], image[inner], atol=1e-4)
    assert float(back[:4].abs().max()) == 0.0 and float(back[:, :9].abs().max()) == 0.0  # outside the box


# ------------------------------------------------------------------------------------------ generated frames
@pytest.mark.parametrize("with_depth", [True, False])
def test_colour_model_iou_on_generated_sequences(scene, with_depth):
    """After a few frames the soft mask matches the true visible silhouette: with depth IoU > 0.8 in every
    sequence (mean > 0.85); RGB only IoU > 0.7 in every sequence (mean > 0.8)."""
    g = torch.Generator().manual_seed(11 if with_depth else 12)
    finals = []
    for _ in range(3):
        view = random_view(scene, g, with_depth=with_depth)
        model = ColourModelMask(scene)
        pose = view.object2camera
        for k in range(4):
            # the object moves a little; the prediction is the last pose plus tracker-like noise
            true = _about_centre(pose, axis_angle_to_matrix(0.04 * torch.randn(3, generator=g, dtype=F64)),
                                 0.003 * torch.randn(3, generator=g, dtype=F64)) if k else pose
            frame_view = move_object(scene, view, true, g, index=k) if k else view
            predicted = _about_centre(pose, axis_angle_to_matrix(0.03 * torch.randn(3, generator=g, dtype=F64)),
                                      0.002 * torch.randn(3, generator=g, dtype=F64)) if k else pose
            hand = scene.pose_hand(frame_view.frame.joint_angles, frame_view.frame.hand2camera)
            mask = model(frame_view.frame, predicted.float(), hand)
            assert mask is not None and mask.shape == (120, 160) and model.status == "ok"
            assert bool(torch.isfinite(mask).all()) and float(mask.min()) >= 0 and float(mask.max()) <= 1
            pose = true
        finals.append(_iou(mask, frame_view.object_mask))
        assert model.frames_learned == 4  # learned at each prediction (no tracker update calls)
    assert min(finals) > (0.8 if with_depth else 0.7), finals
    assert float(np.mean(finals)) > (0.85 if with_depth else 0.8), finals


def test_colour_model_corrects_an_offset_prediction(scene):
    """With the prediction 1 cm off, the colour posterior is closer to the truth than the predicted silhouette."""
    g = torch.Generator().manual_seed(21)
    gains = []
    for _ in range(3):
        view = random_view(scene, g)
        model = ColourModelMask(scene, ColourModelSettings(learn_from="update"))
        hand = scene.pose_hand(view.frame.joint_angles, view.frame.hand2camera)
        assert model.learn(view.frame, view.object2camera.float(), hand)  # learned at the previous estimate
        offset = view.object2camera.clone()
        offset[0, 3] += 0.01
        moved = move_object(scene, view, offset, g, index=1)  # the object moved 1 cm, the prediction did not
        mask = model(moved.frame, view.object2camera.float(), hand)
        verts, faces, inst = scene.scene_mesh(view.object2camera[None].float(), hand)
        with torch.no_grad():
            predicted = (scene.renderer.hard(verts, faces, moved.frame.camera, inst).instance[0] == 1).float()
        gains.append(_iou(mask, moved.object_mask) - _iou(predicted, moved.object_mask))
        assert model.frames_learned == 1  # learn_from="update": calls do not learn
    assert min(gains) > 0.03 and float(np.mean(gains)) > 0.1, gains


def test_learning_switch_and_update(scene):
    g = torch.Generator().manual_seed(31)
    view = random_view(scene, g)
    hand = scene.pose_hand(view.frame.joint_angles, view.frame.hand2camera)
    model = make_mask_source(SegmentationSettings(source="colour"), scene)
    assert isinstance(model, ColourModelMask) and not model.initialized
    model(view.frame, view.object2camera.float(), hand)
    fg = model.foreground.clone()
    model.learning = False
    other = dataclasses.replace(view.frame, rgb=torch.flip(view.frame.rgb, (0,)))
    model(other, view.object2camera.float(), hand)
    model.update(other, view.object2camera.float(), hand)
    assert torch.equal(model.foreground, fg)  # nothing learned while learning is off
    model.learning = True
    model.update(other, view.object2camera.float(), hand)
    assert not torch.equal(model.foreground, fg) and model._tracker_updates
    model.reset()
    assert not model.initialized and model.frames_learned == 0


def test_bad_inputs_never_give_nan(scene):
    g = torch.Generator().manual_seed(41)
    view = random_view(scene, g)
    frame = view.frame
    hand = scene.pose_hand(frame.joint_angles, frame.hand2camera)
    pose = view.object2camera.float()
    model = ColourModelMask(scene)
    # all-black image: no crash, no NaN; whatever comes back is a valid mask or None with a status
    black = dataclasses.replace(frame, rgb=torch.zeros_like(frame.rgb))
    mask = model(black, pose, hand)
    assert mask is None or (bool(torch.isfinite(mask).all()) and mask.shape == (120, 160))
    assert isinstance(model.status, str) and model.status
    # depth without any valid pixel (a sensor returning all zeros, NaN in a Frame) behaves as RGB only
    model.reset()
    no_depth = dataclasses.replace(frame, depth=torch.full_like(frame.depth, float("nan")))
    a = model(no_depth, pose, hand)
    model.reset()
    b = model(dataclasses.replace(frame, depth=None), pose, hand)
    assert a is not None and torch.allclose(a, b)
    # the predicted object outside the image, or a non-finite prediction: None with a status
    far = pose.clone()
    far[0, 3] += 5.0
    assert model(frame, far, hand) is None and "outside the image" in model.status
    bad = pose.clone()
    bad[0, 0] = float("nan")
    assert model(frame, bad, hand) is None and not model.ok
