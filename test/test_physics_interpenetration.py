"""Interpenetration volume (cm^3) and maximum penetration depth (mm) against analytic answers."""

import math

import pytest
import torch
import trimesh

from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform, transform_points
from handypriors_core.physics import (
    InterpenetrationSettings,
    ObjectSDF,
    interpenetration_volume,
    max_penetration_depth,
    overlap_volume,
)

F64 = torch.float64


def _interval_overlap(c1, h1, c2, h2):
    return max(0.0, min(c1 + h1, c2 + h2) - max(c1 - h1, c2 - h2))


def test_two_overlapping_boxes_match_analytic_volume():
    half_obj = (0.02, 0.03, 0.04)
    half_hand = (0.015, 0.025, 0.01)
    object_sdf = ObjectSDF.from_trimesh(trimesh.creation.box(extents=[2 * h for h in half_obj]))
    hand_box = trimesh.creation.box(extents=[2 * h for h in half_hand])
    # Both boxes share a rotation (so the overlap is a box); centres offset by a non-grid-aligned amount.
    R = axis_angle_to_matrix(torch.tensor([0.3, -0.5, 0.2], dtype=F64))
    centre_obj = torch.tensor([0.01, -0.02, 0.5], dtype=F64)
    offsets = [(0.0213, 0.0117, 0.0371), (0.1, 0.0, 0.0)]  # overlapping, separated
    object2camera = make_transform(R, centre_obj).expand(2, 4, 4)
    hand_verts = torch.stack([
        transform_points(make_transform(R, centre_obj + R @ torch.tensor(o, dtype=F64)),
                         torch.as_tensor(hand_box.vertices, dtype=F64)) for o in offsets])
    volume = interpenetration_volume(object_sdf, object2camera, hand_verts, torch.as_tensor(hand_box.faces))
    expected = math.prod(_interval_overlap(0.0, a, o, b) for a, o, b in zip(half_obj, offsets[0], half_hand)) * 1e6
    assert expected == pytest.approx(0.0137 * 0.0433 * 0.0129 * 1e6)  # 7.65 cm^3
    assert volume[0].item() == pytest.approx(expected, rel=0.05)
    assert volume[1].item() == 0.0


def test_overlap_of_two_spheres_matches_lens_volume():
    r, d = 0.02, 0.02
    centre_b = torch.tensor([d, 0.0, 0.0], dtype=F64)

    def sphere_a(p):
        return p.norm(dim=-1) - r

    def sphere_b(p):
        return (p - centre_b).norm(dim=-1) - r

    lower = torch.tensor([d - r, -r, -r], dtype=F64)
    upper = torch.tensor([r, r, r], dtype=F64)
    lens = math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12 * 1e6  # cm^3
    for voxel, rel in ((0.001, 0.03), (0.0005, 0.01)):
        volume = overlap_volume(sphere_a, sphere_b, lower, upper, InterpenetrationSettings(voxel_size=voxel))
        assert volume.item() == pytest.approx(lens, rel=rel)
    # Coarse pruning does not change the count: the same answer without it.
    no_pruning = overlap_volume(sphere_a, sphere_b, lower, upper, InterpenetrationSettings(coarse_factor=1))
    pruned = overlap_volume(sphere_a, sphere_b, lower, upper, InterpenetrationSettings(coarse_factor=5))
    assert pruned.item() == pytest.approx(no_pruning.item(), rel=0.03)
    empty = overlap_volume(sphere_a, sphere_b, upper, lower)
    assert empty.item() == 0.0


def test_max_penetration_depth_in_millimetres():
    sd = torch.tensor([[0.01, -0.0025, -0.001], [0.002, 0.003, 0.004]])
    torch.testing.assert_close(max_penetration_depth(sd), torch.tensor([2.5, 0.0]))
    assert max_penetration_depth(torch.zeros(3, 0)).tolist() == [0.0, 0.0, 0.0]
