"""Loss terms of the paper (Eq. 3-5 and L_sliding) on cases with known answers; weights from config."""

import pytest
import torch
import trimesh

from handypriors_core.errors import ConfigError, InvalidValueError, ShapeError
from handypriors_core.geometry.transforms import invert_transform, se3_exp, transform_points
from handypriors_core.physics import ObjectSDF
from handypriors_core.priors import (
    LossWeights,
    consistency_loss,
    load_loss_weights,
    penetration_loss,
    sliding_loss,
    smoothness_loss,
    weighted_sum,
)

F64 = torch.float64


def test_penetration_loss_known_values_and_gradient():
    hand = torch.tensor([[0.01, -0.002, -0.004, 0.0]], dtype=F64, requires_grad=True)
    obj = torch.tensor([[-0.001, 0.002]], dtype=F64)
    assert penetration_loss(hand).item() == pytest.approx(0.0015)
    assert penetration_loss(hand, reduction="sum").item() == pytest.approx(0.006)
    assert penetration_loss(hand, obj, reverse_weight=2.0).item() == pytest.approx(0.0015 + 2 * 0.0005)
    (grad,) = torch.autograd.grad(penetration_loss(hand), hand)
    torch.testing.assert_close(grad, torch.tensor([[0.0, -0.25, -0.25, 0.0]], dtype=F64))
    with pytest.raises(InvalidValueError):
        penetration_loss(hand, reduction="max")
    with pytest.raises(ShapeError):
        penetration_loss(hand, torch.zeros(2, 3, dtype=F64))


def test_penetration_loss_zero_when_separated_positive_for_known_overlap():
    sdf = ObjectSDF.from_trimesh(trimesh.creation.box(extents=(0.04, 0.04, 0.04)))
    # "Hand": a 3x3 grid of points on the plane x = 0, facing the box's +x face.
    yz = torch.stack(torch.meshgrid(torch.linspace(-0.01, 0.01, 3, dtype=F64),
                                    torch.linspace(-0.01, 0.01, 3, dtype=F64), indexing="ij"), -1).reshape(-1, 2)
    hand = torch.cat((torch.zeros(9, 1, dtype=F64), yz), -1)[None]
    for box_x, expected in ((-0.025, 0.0), (-0.017, 0.003)):  # separated by 5 mm; overlapping by 3 mm
        xi = torch.tensor([[box_x, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=F64, requires_grad=True)
        loss = penetration_loss(sdf.signed_distance(hand, se3_exp(xi)).distance)
        assert loss.item() == pytest.approx(expected, abs=1e-9)
        (grad,) = torch.autograd.grad(loss, xi)
        if expected == 0:
            assert grad.abs().max() == 0
        else:  # moving the box away (-x) reduces the penetration one-for-one
            assert grad[0, 0].item() == pytest.approx(1.0)


def test_sliding_loss_known_values():
    gen = torch.Generator().manual_seed(0)
    prev = torch.randn(2, 5, 3, generator=gen, dtype=F64) * 0.02
    shift = torch.tensor([0.003, 0.0, 0.004], dtype=F64)  # |shift| = 5 mm
    cur = prev + shift
    weights = torch.tensor([[1.0, 1.0, 0.5, 0.0, 2.0], [0.0] * 5], dtype=F64)  # batch 1: no contacts -> 0
    assert sliding_loss(prev, cur, weights).item() == pytest.approx(0.005 / 2, abs=1e-8)
    # Only contacts 0 and 1 (weights 1, 3) slide by 3 mm and 0: RMS = sqrt(1 * 9e-6 / 4).
    cur2 = prev.clone()
    cur2[0, 0, 0] += 0.003
    w2 = torch.tensor([[1.0, 3.0, 0.0, 0.0, 0.0]] * 2, dtype=F64)
    expected = ((1 * 0.003 ** 2 / 4) ** 0.5 + 0.0) / 2
    assert sliding_loss(prev, cur2, w2).item() == pytest.approx(expected, abs=1e-8)
    # Finite gradient at zero sliding.
    cur3 = prev.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sliding_loss(prev, cur3, w2), cur3)
    assert torch.isfinite(grad).all() and grad.abs().max() < 1e-6


def test_sliding_loss_zero_when_contacts_move_with_the_object():
    gen = torch.Generator().manual_seed(1)
    contacts_cam_prev = torch.randn(1, 6, 3, generator=gen, dtype=F64) * 0.02 + torch.tensor([0, 0, 0.5], dtype=F64)
    pose_prev = se3_exp(torch.randn(1, 6, generator=gen, dtype=F64) * 0.3)
    motion = se3_exp(torch.randn(1, 6, generator=gen, dtype=F64) * 0.1)
    pose_cur = motion @ pose_prev
    contacts_cam_cur = transform_points(motion, contacts_cam_prev)  # hand and object move together
    obj_prev = transform_points(invert_transform(pose_prev), contacts_cam_prev)
    obj_cur = transform_points(invert_transform(pose_cur), contacts_cam_cur)
    assert sliding_loss(obj_prev, obj_cur, torch.ones(1, 6, dtype=F64)).item() == pytest.approx(0.0, abs=1e-12)
    # If the hand moves but the object does not, the contacts slide by the hand's displacement.
    obj_cur_static = transform_points(invert_transform(pose_prev), contacts_cam_cur)
    rms = ((contacts_cam_cur - contacts_cam_prev) ** 2).sum(-1).mean().sqrt()
    assert sliding_loss(obj_prev, obj_cur_static, torch.ones(1, 6, dtype=F64)).item() == pytest.approx(rms.item())


def test_consistency_and_smoothness_known_values():
    v0 = torch.zeros(2, 4, 3, dtype=F64)
    v1 = v0 + torch.tensor([0.001, 0.002, 0.002], dtype=F64)  # |dv|^2 = 9e-6
    theta0 = torch.zeros(2, 16, dtype=F64)
    theta1 = theta0 + 0.1
    assert consistency_loss(v1, v0, theta1, theta0).item() == pytest.approx(9e-6 + 0.01)
    assert consistency_loss(v1, v0, None, None).item() == pytest.approx(9e-6)
    with pytest.raises(InvalidValueError):
        consistency_loss(v1, v0, theta1, None)
    v2 = 2 * v1  # constant velocity: no oscillation
    assert smoothness_loss(v2, v1, v0).item() == pytest.approx(0.0)
    v2b = v1 + 0.5 * (v1 - v0) + torch.tensor([0.0, 0.0, 0.003], dtype=F64)
    # acceleration = (v2b - v1) - (v1 - v0) = -0.5 (v1 - v0) + (0, 0, 3 mm) = (-0.5, -1, 2) mm.
    assert smoothness_loss(v2b, v1, v0).item() == pytest.approx((0.25 + 1 + 4) * 1e-6)


def test_loss_weights_from_config_and_weighted_sum(tmp_path):
    weights = load_loss_weights()
    assert weights == LossWeights()
    terms = {"penetration": torch.tensor(0.002), "smo": torch.tensor(1e-4), "mask": torch.tensor(0.3)}
    total = weighted_sum(terms, weights)
    assert total.item() == pytest.approx(100 * 0.002 + 100 * 1e-4 + 1.0 * 0.3)
    with pytest.raises(ConfigError, match="unknown loss term"):
        weighted_sum({"penetraton": torch.tensor(1.0)}, weights)
    with pytest.raises(ShapeError):
        weighted_sum({"con": torch.ones(2)}, weights)
    path = tmp_path / "w.yaml"
    path.write_text("loss_weights:\n  lambda_sliding: 5.0\n")
    assert load_loss_weights(path).lambda_sliding == 5.0
    with pytest.raises(ConfigError):
        LossWeights(lambda_con=-1.0)
