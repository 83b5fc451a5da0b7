"""Driver joint-name maps: the three shipped Allegro schemes give the same URDF joint vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handypriors_core.errors import ConfigError, InvalidValueError, JointNameError, ShapeError
from handypriors_core.models import JointMap, URDFHand, allegro_urdf

URDF_JOINTS = [f"joint_{i}.0" for i in range(16)]
# finger-major order index, middle, ring, thumb, written independently of the YAML files
ROS1 = URDF_JOINTS
WONIK = [f"ah_joint{f}{j}" for f in (1, 2, 3, 0) for j in range(4)]  # finger 0 is the thumb
MENAGERIE = [f"{p}j{j}" for p in ("ff", "mf", "rf", "th") for j in range(4)]


@pytest.fixture(scope="module")
def hand_joint_names():
    return URDFHand.from_urdf(allegro_urdf(), points_per_link=0, contact_points_per_link=0).joint_names


def test_available_and_shipped():
    assert {"ros1_allegro", "wonik_ros2", "menagerie"} <= set(JointMap.available())
    for name in ("ros1_allegro", "wonik_ros2", "menagerie"):
        m = JointMap.shipped(name)
        assert m.name == name and sorted(m.urdf_names) == sorted(URDF_JOINTS) and len(m.driver_names) == 16
    with pytest.raises(ConfigError, match="wonik_ros3"):
        JointMap.shipped("wonik_ros3")


@pytest.mark.parametrize("name, driver", [("ros1_allegro", ROS1), ("wonik_ros2", WONIK), ("menagerie", MENAGERIE)])
def test_all_schemes_map_to_the_same_urdf_vector(hand_joint_names, name, driver):
    values = np.linspace(-0.4, 1.1, 16)  # value k belongs to URDF joint k
    perm = np.random.default_rng(len(name)).permutation(16)  # JointState order is arbitrary
    names = [driver[k] for k in perm]
    m = JointMap.shipped(name)
    out = m.to_joint_vector(names, values[perm], hand_joint_names)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, values)
    t = m.to_joint_vector(names, torch.tensor(values[perm], requires_grad=True), hand_joint_names)
    assert isinstance(t, torch.Tensor) and t.requires_grad
    np.testing.assert_array_equal(t.detach().numpy(), values)
    assert JointMap.best_match(names).name == name
    # the thumb of the Wonik driver is finger 0
    if name == "wonik_ros2":
        assert m.urdf_name("ah_joint00") == "joint_12.0" and m.driver_name("joint_0.0") == "ah_joint10"


def test_batched_positions_and_identity(hand_joint_names):
    m = JointMap.identity(hand_joint_names)
    pos = np.arange(32.0).reshape(2, 16)
    np.testing.assert_array_equal(m.to_joint_vector(hand_joint_names, pos, hand_joint_names), pos)
    assert JointMap.best_match(hand_joint_names, hand_joint_names).name in ("ros1_allegro", "identity")


def test_sign_and_offset(tmp_path):
    path = tmp_path / "flipped.yaml"
    path.write_text("name: flipped\nmapping: {a: joint_a, b: joint_b}\nsign: {b: -1}\noffset: {a: 0.5}\n")
    m = JointMap.from_yaml(path)
    out = m.to_joint_vector(["b", "a"], [0.2, 0.1], ["joint_a", "joint_b"])
    np.testing.assert_allclose(out, [0.6, -0.2])


def test_errors(hand_joint_names, tmp_path):
    m = JointMap.shipped("wonik_ros2")
    with pytest.raises(JointNameError, match="bogus_joint"):
        m.to_joint_vector(WONIK + ["bogus_joint"], np.zeros(17), hand_joint_names)
    out = m.to_joint_vector(WONIK + ["arm_joint"], np.zeros(17), hand_joint_names, ignore_unknown=True)
    assert out.shape == (16,)
    with pytest.raises(JointNameError, match=r"joint_12\.0"):  # thumb missing
        m.to_joint_vector(WONIK[:12], np.zeros(12), hand_joint_names)
    bad = np.zeros(16)
    bad[WONIK.index("ah_joint31")] = np.nan
    with pytest.raises(InvalidValueError, match="ah_joint31"):
        m.to_joint_vector(WONIK, bad, hand_joint_names)
    with pytest.raises(InvalidValueError, match="ah_joint31"):
        m.to_joint_vector(WONIK, torch.from_numpy(bad), hand_joint_names)
    with pytest.raises(ShapeError, match="positions"):
        m.to_joint_vector(WONIK, np.zeros(15), hand_joint_names)
    with pytest.raises(JointNameError):
        JointMap.best_match(["foo", "bar"])
    with pytest.raises(JointNameError, match="missing"):
        JointMap.best_match(WONIK[:8])  # no map gets all 16 joints from these names
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nmapping: [a, b]\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        JointMap.from_yaml(broken)
    broken.write_text("name: dup\nmapping: {a: j, b: j}\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        JointMap.from_yaml(broken)
    broken.write_text("name: typo\nmaping: {a: j}\n")
    with pytest.raises(ConfigError, match="maping"):
        JointMap.from_yaml(broken)
