"""Contact values (ContactOpt / paper Sec. IV-D), contact selection, settings from config."""

import pytest
import torch
import trimesh

from handypriors_core.config import find_config, settings_from_dict
from handypriors_core.errors import ConfigError, InvalidValueError
from handypriors_core.physics import (
    ContactSettings,
    ObjectSDF,
    PhysicsSettings,
    compute_contacts,
    contact_value,
    contact_value_smooth,
    load_physics_settings,
    persistent_contact_weights,
    select_contacts,
)

F64 = torch.float64


def test_contact_value_known_values():
    s = torch.tensor([-0.01, 0.0, 0.0005, 0.001, 0.002, 0.004, 0.1], dtype=F64)  # metres
    expected = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.01], dtype=F64)
    torch.testing.assert_close(contact_value(s), expected)


def test_contact_value_gradient():
    s = torch.tensor([0.0005, 0.002], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(contact_value(s).sum(), s)
    # d/ds (1 / (1000 s)) = -1 / (1000 s^2); zero inside 1 mm.
    torch.testing.assert_close(grad, torch.tensor([0.0, -1.0 / (1000 * 0.002 ** 2)], dtype=F64))


def test_smooth_contact_value_has_the_same_limits_and_is_monotone():
    s = torch.linspace(-0.01, 0.05, 2001, dtype=F64, requires_grad=True)
    smooth = contact_value_smooth(s, 4.0)
    (grad,) = torch.autograd.grad(smooth.sum(), s)
    assert (grad < 0).all()  # strictly decreasing: a useful gradient everywhere
    assert smooth[0].item() == pytest.approx(1.0, abs=1e-12)  # deep inside
    assert smooth[-1].item() == pytest.approx(1 / 50, rel=1e-3)  # 5 cm: 1/s_mm
    at_1mm = contact_value_smooth(torch.tensor(0.001, dtype=F64), 4.0).item()
    assert at_1mm == pytest.approx(1 / (1 + 0.25 * 0.6931471805599453))  # 1 / (1 + ln 2 / k)
    hard = contact_value(s.detach())
    assert (contact_value_smooth(s.detach(), 50.0) - hard).abs().max() < 0.02  # sharp: follows the hard value
    with pytest.raises(InvalidValueError):
        contact_value_smooth(s, 0.0)


def test_select_contacts_and_persistent_weights():
    sd = torch.tensor([[-0.002, 0.0009, 0.0011, 0.05]])
    assert select_contacts(sd, 0.001).tolist() == [[True, True, False, False]]
    prev = torch.tensor([[True, True, False, False]])
    cur = torch.tensor([[True, False, True, False]])
    assert persistent_contact_weights(prev, cur).tolist() == [[1.0, 0.0, 0.0, 0.0]]
    w = torch.tensor([[0.5, 0.7, 0.9, 1.0]], requires_grad=True)
    held = persistent_contact_weights(prev, cur, w)
    assert held.tolist() == [[0.5, 0.0, 0.0, 0.0]] and held.requires_grad
    with pytest.raises(InvalidValueError):
        select_contacts(sd, 0.0)


def test_compute_contacts_on_a_box():
    sdf = ObjectSDF.from_trimesh(trimesh.creation.box(extents=(0.04, 0.04, 0.04)))
    T = torch.eye(4, dtype=F64)[None].clone()
    T[0, :3, 3] = torch.tensor([0.0, 0.0, 0.5], dtype=F64)
    points = torch.tensor([[[0.0205, 0.0, 0.5], [0.0, 0.022, 0.5], [0.0, 0.0, 0.5 - 0.03], [0.0, 0.0, 0.519]]],
                          dtype=F64)
    result = compute_contacts(sdf, points, T)
    torch.testing.assert_close(result.signed_distance, torch.tensor([[0.0005, 0.002, 0.01, -0.001]], dtype=F64))
    assert result.contact_mask.tolist() == [[True, False, False, True]]
    torch.testing.assert_close(result.normal[0, 2], torch.tensor([0.0, 0.0, -1.0], dtype=F64))
    torch.testing.assert_close(result.closest_point[0, 1], torch.tensor([0.0, 0.02, 0.5], dtype=F64))
    assert result.contact_value[0, 0] > 0.9 and result.contact_value[0, 2] < 0.11


def test_settings_load_from_shipped_config_and_reject_bad_values(tmp_path):
    settings = load_physics_settings()
    assert isinstance(settings, PhysicsSettings)
    assert settings.contact.contact_threshold == 0.001
    assert settings.quasistatic.fallback == "constant_pose"
    assert find_config("physics.yaml").is_file()
    with pytest.raises(ConfigError, match="contact_treshold"):
        settings_from_dict(PhysicsSettings, {"contact": {"contact_treshold": 0.002}})
    with pytest.raises(ConfigError):
        ContactSettings(sign_method="parity")
    with pytest.raises(ConfigError, match="winding_accuracy"):
        ContactSettings(winding_accuracy=0.5)  # below 1 the fast winding number breaks near the surface
    with pytest.raises(ConfigError):
        settings_from_dict(PhysicsSettings, {"quasistatic": {"fallback": "teleport"}})
    path = tmp_path / "p.yaml"
    path.write_text("physics:\n  interpenetration:\n    voxel_size: 0.002\n")
    assert load_physics_settings(path).interpenetration.voxel_size == 0.002


def test_contact_value_array_equals_contact_value_bit_for_bit():
    """The numpy contact value (the tracker's published contacts) equals the torch one bit for bit in float32 and
    float64: inside, on the surface, around 1 mm and far out."""
    import numpy as np

    from handypriors_core.physics.contact import contact_value_array

    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        d = torch.cat((torch.randn(500, generator=g, dtype=torch.float64) * 0.004,
                       torch.tensor([-0.01, 0.0, 0.001, 0.00099999, 0.05], dtype=torch.float64))).to(dtype)
        value = contact_value_array(d.numpy())
        assert value.dtype == d.numpy().dtype and np.array_equal(value, contact_value(d).numpy())
        assert value.max() == 1.0 and value.min() < 0.1
