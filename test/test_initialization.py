"""Automatic initial pose: SO(3) sampling, the global search on generated frames, bad inputs.

Generated frames show the Allegro hand holding a textured box or cylinder against clutter. The automatic path
uses no ground truth: the mask comes from aligned depth near the hand (``bootstrap_mask``). The RGB-only case
stands in for an external segmenter by passing the true visible mask as the external mask. Success = ADD-S
below 10% of the object diameter.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from handypriors_core.config import settings_from_dict
from handypriors_core.errors import ConfigError
from handypriors_core.estimation.initialization import (
    GlobalPoseSearch,
    InitializationSettings,
    automatic_mask,
    bootstrap_mask,
    global_search,
    load_initialization_settings,
    so3_samples,
)
from handypriors_core.geometry.rotations import axis_angle_to_matrix, quaternion_to_matrix
from handypriors_core.geometry.transforms import make_transform, rotation_angle_between
from handypriors_core.metrics.pose_errors import add_s
from handypriors_core.segmentation import ColourModelMask
from handypriors_core.segmentation.testing import make_scene, random_view

F64 = torch.float64
FAST = InitializationSettings(rotations=1200)


@pytest.fixture(scope="module")
def box_scene():
    return make_scene("box")


@pytest.fixture(scope="module")
def cylinder_scene():
    return make_scene("cylinder")


def _adds(scene, pose: torch.Tensor, truth: torch.Tensor) -> float:
    return float(add_s(scene.object.samples.double().cpu(), pose[None].double(), truth[None].double())[0])


# --------------------------------------------------------------------------------------------------- SO(3)
def test_so3_samples_cover_the_rotation_group():
    R = so3_samples(2500)
    eye = torch.eye(3, dtype=F64).expand_as(R)
    assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-10)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2500, dtype=F64), atol=1e-10)
    assert float(R.mean(0).abs().max()) < 0.02  # E[R] = 0 under the uniform (Haar) distribution
    g = torch.Generator().manual_seed(0)
    q = torch.randn(400, 4, generator=g, dtype=F64)
    probes = quaternion_to_matrix(q / q.norm(dim=-1, keepdim=True))
    nearest = rotation_angle_between(probes[:, None], R[None]).min(1).values
    # a ball of radius r covers (r - sin r) / pi of SO(3): r ~ 0.2 rad for 2500 evenly spread samples
    assert float(nearest.max()) < 0.3 and float(nearest.mean()) < 0.16
    q = torch.randn(2500, 4, generator=g, dtype=F64)
    randoms = quaternion_to_matrix(q / q.norm(dim=-1, keepdim=True))
    worst_random = rotation_angle_between(probes[:, None], randoms[None]).min(1).values.max()
    assert float(nearest.max()) < float(worst_random)  # better spread than as many random rotations
    assert not torch.allclose(so3_samples(50, seed=1), so3_samples(50, seed=0))


def test_settings():
    assert load_initialization_settings() == InitializationSettings()
    assert settings_from_dict(InitializationSettings, {"rotations": 100}).rotations == 100
    with pytest.raises(ConfigError, match="rotations"):
        InitializationSettings(rotations=0)
    with pytest.raises(ConfigError, match="coarse_mesh"):
        InitializationSettings(coarse_mesh="voxels")


# ------------------------------------------------------------------------------------------ global search
@pytest.mark.parametrize("kind", ["box", "cylinder"])
def test_automatic_initialisation_with_depth(kind, box_scene, cylinder_scene):
    """No pose, no mask: depth near the hand -> mask -> global search; ADD-S < 10% of the diameter in 3 of 3."""
    scene = box_scene if kind == "box" else cylinder_scene
    search = GlobalPoseSearch(scene, FAST)
    g = torch.Generator().manual_seed(100 if kind == "box" else 200)
    for _ in range(3):
        view = random_view(scene, g)
        hand = scene.pose_hand(view.frame.joint_angles, view.frame.hand2camera)
        mask, origin = automatic_mask(scene, view.frame, hand)
        assert origin == "depth near the hand" and mask is not None
        result = search.search(view.frame, mask, hand)
        assert result.ok and result.status == "ok" and 0 <= result.score <= 1
        error = _adds(scene, result.object2camera, view.object2camera)
        assert error < 0.1 * scene.object.diameter, (error, result.score)
        assert result.score > 0.6 and result.candidates.shape[0] == FAST.top_k
        assert set(result.timings) >= {"coarse", "penetration", "local"}


def test_rgb_only_with_an_external_mask(box_scene):
    """Without depth the translation comes from the mask's size; the external mask is the true visible one."""
    g = torch.Generator().manual_seed(300)
    for _ in range(2):
        view = random_view(box_scene, g, with_depth=False)
        assert bootstrap_mask(box_scene, view.frame) is None  # nothing to bootstrap from without depth
        frame = view.frame.with_masks(view.object_mask)  # as delivered by an external segmenter
        mask, origin = automatic_mask(box_scene, frame)
        assert origin == "frame"
        pose, score = global_search(box_scene, frame, mask, settings=FAST)
        error = _adds(box_scene, pose, view.object2camera)
        assert error < 0.1 * box_scene.object.diameter, (error, score)


def test_search_near_a_pose_recovers_a_perturbed_track(box_scene):
    g = torch.Generator().manual_seed(400)
    view = random_view(box_scene, g)
    hand = box_scene.pose_hand(view.frame.joint_angles, view.frame.hand2camera)
    truth = view.object2camera
    wrong = make_transform(axis_angle_to_matrix(torch.tensor([0.0, 0.5, 0.0], dtype=F64)) @ truth[:3, :3],
                           truth[:3, 3] + torch.tensor([0.02, -0.01, 0.0], dtype=F64))
    assert _adds(box_scene, wrong, truth) > 0.1 * box_scene.object.diameter
    mask = bootstrap_mask(box_scene, view.frame, hand)
    result = GlobalPoseSearch(box_scene, dataclasses.replace(FAST, rotations=300)).search(view.frame, mask, hand,
                                                                                           near=wrong)
    assert _adds(box_scene, result.object2camera, truth) < 0.1 * box_scene.object.diameter
    angle = float(rotation_angle_between(result.object2camera[:3, :3], wrong[:3, :3]))
    assert angle < FAST.near_rotation + 0.3  # candidates stay around the given pose


def test_bad_inputs_give_a_status_not_an_exception(box_scene):
    g = torch.Generator().manual_seed(500)
    view = random_view(box_scene, g)
    frame = view.frame
    hand = box_scene.pose_hand(frame.joint_angles, frame.hand2camera)
    search = GlobalPoseSearch(box_scene, dataclasses.replace(FAST, rotations=50, local_rounds=1))
    cases = {
        "no object mask": None,
        "mask has 0 object pixels": torch.zeros(120, 160),
        "differs from the image": torch.ones(60, 80),
    }
    for status, mask in cases.items():
        result = search.search(frame, mask, hand)
        assert not result.ok and result.object2camera is None and result.score == 0.0 and status in result.status
    nan_mask = view.object_mask.clone()
    nan_mask[0, 0] = float("nan")
    result = search.search(frame, nan_mask, hand)  # NaN pixels are treated as background
    assert result.ok and bool(torch.isfinite(result.object2camera).all())
    bad_near = torch.full((4, 4), float("nan"))
    assert "near pose" in search.search(frame, view.object_mask, hand, near=bad_near).status
    assert global_search(box_scene, frame, None, hand) == (None, 0.0)
    # depth with no valid pixel and an all-black image: no bootstrap mask, a clear reason
    dark = dataclasses.replace(frame, rgb=torch.zeros_like(frame.rgb), depth=torch.full_like(frame.depth, math.nan))
    assert bootstrap_mask(box_scene, dark, hand) is None
    mask, reason = automatic_mask(box_scene, dark, hand)
    assert mask is None and "no mask" in reason


def test_automatic_mask_prefers_the_learned_colour_model(box_scene):
    g = torch.Generator().manual_seed(600)
    view = random_view(box_scene, g, with_depth=False)
    hand = box_scene.pose_hand(view.frame.joint_angles, view.frame.hand2camera)
    model = ColourModelMask(box_scene)
    assert model.global_mask(view.frame, hand) is None  # nothing learned yet
    model.learn(view.frame, view.object2camera.float(), hand)
    mask, origin = automatic_mask(box_scene, view.frame, hand, mask_source=model)
    assert origin == "colour model (global)"
    inter = float(((mask > 0.5) & (view.object_mask > 0.5)).sum())
    union = float(((mask > 0.5) | (view.object_mask > 0.5)).sum())
    assert inter / union > 0.6
