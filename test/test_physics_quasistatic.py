"""Quasistatic dynamics (Eq. 9): exact recovery, fallbacks per batch element, Jacobian vs finite differences."""

import pytest
import torch

from handypriors_core.errors import InvalidValueError
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import invert_transform, se3_exp, transform_points
from handypriors_core.physics import QuasistaticSettings, persistent_contact_weights, quasistatic_step
from handypriors_core.physics.quasistatic import contact_motion

F64 = torch.float64


def _scene(batch: int, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    prev = torch.randn(batch, n, 3, generator=gen, dtype=F64) * 0.03 + torch.tensor([0.0, 0.0, 0.5], dtype=F64)
    motion = se3_exp(torch.randn(batch, 6, generator=gen, dtype=F64) * 0.1)
    pose_prev = se3_exp(torch.randn(batch, 6, generator=gen, dtype=F64) * 0.5)
    return prev, transform_points(motion, prev), motion, pose_prev


def test_recovers_known_rigid_motion_exactly():
    prev, cur, motion, pose_prev = _scene(3, 6, 0)
    pred, used = quasistatic_step(prev, cur, torch.ones(3, 6, dtype=F64), pose_prev)
    assert used.all()
    torch.testing.assert_close(pred, motion @ pose_prev, atol=1e-12, rtol=0)
    # Eq. 9's rotation: R_t = R_M R_{t-1}; the object moves rigidly with the contacts.
    torch.testing.assert_close(pred[:, :3, :3], motion[:, :3, :3] @ pose_prev[:, :3, :3], atol=1e-12, rtol=0)


def test_zero_weight_points_are_ignored():
    prev, cur, motion, pose_prev = _scene(1, 8, 1)
    cur = cur.clone()
    cur[0, 5:] += 0.3  # points that slid or lost contact, weighted 0
    weights = torch.tensor([[1.0, 2.0, 0.5, 1.0, 1.0, 0.0, 0.0, 0.0]], dtype=F64)
    pred, used = quasistatic_step(prev, cur, weights, pose_prev)
    assert used.all()
    torch.testing.assert_close(pred, motion @ pose_prev, atol=1e-12, rtol=0)


def test_fallbacks_per_batch_element_constant_pose():
    prev, cur, motion, pose_prev = _scene(4, 5, 2)
    weights = torch.ones(4, 5, dtype=F64)
    weights[1, 2:] = 0  # two contacts only
    prev = prev.clone()
    prev[2] = torch.linspace(0, 1, 5, dtype=F64)[:, None] * torch.tensor([0.01, 0.02, 0.03], dtype=F64)
    cur = cur.clone()
    cur[2] = prev[2] + 0.01  # collinear contacts: the rotation about their line is undetermined
    mask_prev = torch.ones(4, 5, dtype=torch.bool)
    mask_cur = torch.ones(4, 5, dtype=torch.bool)
    mask_cur[3, 1:] = False  # contacts lost between the frames
    weights = weights * persistent_contact_weights(mask_prev, mask_cur).to(F64)
    pred, used = quasistatic_step(prev, cur, weights, pose_prev)
    assert used.tolist() == [True, False, False, False]
    torch.testing.assert_close(pred[0], motion[0] @ pose_prev[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(pred[1:], pose_prev[1:], atol=0, rtol=0)


def test_constant_velocity_fallback():
    prev, cur, motion, pose_prev = _scene(2, 4, 3)
    pose_prevprev = se3_exp(torch.randn(2, 6, generator=torch.Generator().manual_seed(9), dtype=F64) * 0.5)
    weights = torch.ones(2, 4, dtype=F64)
    weights[1] = 0  # no contact at all in element 1
    settings = QuasistaticSettings(fallback="constant_velocity")
    pred, used = quasistatic_step(prev, cur, weights, pose_prev, pose_prevprev, settings)
    assert used.tolist() == [True, False]
    torch.testing.assert_close(pred[0], motion[0] @ pose_prev[0], atol=1e-12, rtol=0)
    expected = pose_prev[1] @ invert_transform(pose_prevprev[1]) @ pose_prev[1]
    torch.testing.assert_close(pred[1], expected, atol=1e-12, rtol=0)
    with pytest.raises(InvalidValueError, match="object2camera_prevprev"):
        quasistatic_step(prev, cur, weights, pose_prev, None, settings)
    with pytest.raises(InvalidValueError, match="non-negative"):
        quasistatic_step(prev, cur, -weights, pose_prev)


def test_jacobian_matches_central_differences():
    prev, cur, _, pose_prev = _scene(2, 5, 4)
    cur = cur + 1e-3 * torch.randn(cur.shape, generator=torch.Generator().manual_seed(5), dtype=F64)  # not exact
    weights = torch.tensor([[1.0, 0.5, 2.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]], dtype=F64)  # 2nd: fallback
    xi_prev = torch.zeros(2, 6, dtype=F64)

    def f(cur_, prev_, xi):
        return quasistatic_step(prev_, cur_, weights, se3_exp(xi) @ pose_prev)[0]

    inputs = (cur, prev, xi_prev)
    jac = torch.autograd.functional.jacobian(f, inputs)
    eps = 1e-6
    for k, x in enumerate(inputs):
        flat = x.reshape(-1)
        for i in range(0, flat.numel(), 3):  # every third coordinate keeps the test fast
            plus = [t.clone() for t in inputs]
            minus = [t.clone() for t in inputs]
            plus[k].view(-1)[i] += eps
            minus[k].view(-1)[i] -= eps
            fd = (f(*plus) - f(*minus)) / (2 * eps)
            analytic = jac[k].reshape(2, 4, 4, -1)[..., i]
            torch.testing.assert_close(analytic, fd, atol=1e-7, rtol=1e-5)
    # The fallback element does not depend on the contacts, but follows the previous pose.
    assert jac[0][1].abs().max() == 0
    assert jac[2][1, :, :, 1].abs().max() > 0


def test_contact_motion_fit_tells_carrying_contacts_from_a_closing_finger():
    """Contacts moved by one rigid motion: zero misfit, displacement = their RMS motion. A static palm with a
    closing finger: Kabsch splits the difference, the misfit is of the order of the displacement."""
    from handypriors_core.physics.quasistatic import contact_motion_fit

    g = torch.Generator().manual_seed(2)
    prev = torch.randn(1, 12, 3, generator=g, dtype=torch.float64) * 0.03
    w = torch.ones(1, 12, dtype=torch.float64)
    R = axis_angle_to_matrix(torch.tensor([0.02, -0.03, 0.01], dtype=torch.float64))
    t = torch.tensor([0.002, -0.001, 0.003], dtype=torch.float64)
    cur = prev @ R.T + t
    motion, valid = contact_motion(prev, cur, w)
    misfit, disp = contact_motion_fit(prev, cur, w, motion)
    assert bool(valid[0]) and float(misfit[0]) < 1e-9
    expected = float(((cur - prev) ** 2).sum(-1).mean().sqrt())
    assert abs(float(disp[0]) - expected) < 1e-12 and expected > 1e-3
    closing = prev.clone()
    closing[0, 8:] += torch.tensor([0.0, 0.0, 0.002], dtype=torch.float64)  # 4 of 12 points: one finger moves 2 mm
    motion, valid = contact_motion(prev, closing, w)
    misfit, disp = contact_motion_fit(prev, closing, w, motion)
    assert bool(valid[0]) and float(misfit[0]) > 0.3 * float(disp[0]) > 0
