"""URDFHand on a small URDF written here: FK against hand-written transforms, gradients, surface, errors."""

from __future__ import annotations

import math
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from handypriors_core.errors import InvalidValueError, JointNameError, ModelFileError, ShapeError
from handypriors_core.models import Tessellation, URDFHand

TET = np.array([[0.0, 0.0, 0.0], [0.02, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 0.02]])
TET_FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
COARSE = Tessellation(box_max_edge=1.0, cylinder_sections=6, cylinder_max_edge=1.0, sphere_subdivisions=0)

TOY = """\
<?xml version="1.0"?>
<robot name="toy">
  <material name="red"><color rgba="1 0 0 1"/></material>
  <link name="base">
    <visual><origin xyz="0 0 0.15"/><geometry><box size="0.1 0.2 0.3"/></geometry><material name="red"/></visual>
    <collision><origin xyz="0 0 0.15"/><geometry><box size="0.1 0.2 0.3"/></geometry></collision>
  </link>
  <link name="arm">
    <collision><origin xyz="0 0 0.1"/><geometry><cylinder radius="0.02" length="0.2"/></geometry></collision>
  </link>
  <link name="slider"><collision><geometry><sphere radius="0.03"/></geometry></collision></link>
  <link name="wheel"><collision><geometry><mesh filename="meshes/tet.obj"/></geometry></collision></link>
  <link name="tip">
    <collision><geometry><mesh filename="package://toy_pkg/meshes/tet.stl" scale="0.5 0.5 0.5"/></geometry></collision>
  </link>
  <link name="follower"/>
  <joint name="j_rev" type="revolute">
    <parent link="base"/><child link="arm"/>
    <origin xyz="0.1 0 0.3" rpy="0 0 1.5707963267948966"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/>
  </joint>
  <joint name="j_pri" type="prismatic">
    <parent link="arm"/><child link="slider"/>
    <origin xyz="0 0 0.2" rpy="1.5707963267948966 0 0"/><axis xyz="1 0 0"/>
    <limit lower="0" upper="0.05" effort="1" velocity="1"/>
  </joint>
  <joint name="j_cont" type="continuous">
    <parent link="slider"/><child link="wheel"/><origin xyz="0.05 0 0"/><axis xyz="0 1 0"/>
  </joint>
  <joint name="j_fixed" type="fixed">
    <parent link="wheel"/><child link="tip"/><origin xyz="0 0 0.04" rpy="0.3 -0.2 0.1"/>
  </joint>
  <joint name="j_mimic" type="revolute">
    <parent link="base"/><child link="follower"/><origin xyz="0 0.1 0"/><axis xyz="1 0 0"/>
    <limit lower="-2" upper="2" effort="1" velocity="1"/><mimic joint="j_rev" multiplier="-2" offset="0.1"/>
  </joint>
</robot>
"""


# ---------------------------------------------------------------------------------- hand-written kinematics
def trans(x, y, z):
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


def rot(axis: str, a: float):
    c, s = math.cos(a), math.sin(a)
    T = np.eye(4)
    if axis == "x":
        T[1:3, 1:3] = [[c, -s], [s, c]]
    elif axis == "y":
        T[0, 0], T[0, 2], T[2, 0], T[2, 2] = c, s, -s, c
    else:
        T[:2, :2] = [[c, -s], [s, c]]
    return T


def toy_fk(q):
    q0, q1, q2 = q
    arm = trans(0.1, 0, 0.3) @ rot("z", math.pi / 2) @ rot("z", q0)
    slider = arm @ trans(0, 0, 0.2) @ rot("x", math.pi / 2) @ trans(q1, 0, 0)
    wheel = slider @ trans(0.05, 0, 0) @ rot("y", q2)
    tip = wheel @ trans(0, 0, 0.04) @ rot("z", 0.1) @ rot("y", -0.2) @ rot("x", 0.3)
    follower = trans(0, 0.1, 0) @ rot("x", -2 * q0 + 0.1)
    return {"base": np.eye(4), "arm": arm, "slider": slider, "wheel": wheel, "tip": tip, "follower": follower}


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _no_ros_env(monkeypatch):
    monkeypatch.delenv("ROS_PACKAGE_PATH", raising=False)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)


def write_toy(root: Path, urdf_text: str = TOY) -> tuple[Path, Path]:
    """robot/toy.urdf + robot/meshes/tet.obj and pkgs/toy_pkg/meshes/tet.stl; returns (urdf, pkgs dir)."""
    (root / "robot" / "meshes").mkdir(parents=True, exist_ok=True)
    (root / "pkgs" / "toy_pkg" / "meshes").mkdir(parents=True, exist_ok=True)
    lines = [f"v {x} {y} {z}" for x, y, z in TET] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in TET_FACES]
    (root / "robot" / "meshes" / "tet.obj").write_text("\n".join(lines) + "\n")
    trimesh.Trimesh(TET, TET_FACES, process=False).export(root / "pkgs" / "toy_pkg" / "meshes" / "tet.stl")
    urdf = root / "robot" / "toy.urdf"
    urdf.write_text(urdf_text)
    return urdf, root / "pkgs"


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    return write_toy(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def toy64(toy_files):
    urdf, pkgs = toy_files
    return URDFHand.from_urdf(urdf, package_paths=[pkgs], dtype=torch.float64, points_per_link=32,
                              tessellation=COARSE)


# ------------------------------------------------------------------------------------------------ tests
def test_structure(toy64):
    assert toy64.joint_names == ["j_rev", "j_pri", "j_cont"]
    assert toy64.mimic_joint_names == ["j_mimic"]
    assert toy64.link_names == ["base", "arm", "slider", "wheel", "tip", "follower"]
    assert toy64.root_link == "base" and toy64.fingertip_names == ["tip"]
    assert toy64.link_parents == [-1, 0, 1, 2, 3, 0]
    assert toy64.joint_index("j_cont") == 2 and toy64.link_index("wheel") == 3
    np.testing.assert_array_equal(toy64.lower_limits.numpy(), [-1, 0, -np.inf])
    np.testing.assert_array_equal(toy64.upper_limits.numpy(), [1, 0.05, np.inf])


def test_fk_matches_hand_computed_transforms(toy64):
    qs = np.array([[0.0, 0.0, 0.0], [0.3, 0.02, -2.0], [-0.9, 0.05, 5.0], [0.7, -0.01, 1.0]])
    poses = toy64.forward_kinematics(torch.from_numpy(qs)).numpy()
    for b, q in enumerate(qs):
        ref = toy_fk(q)
        for name, T in ref.items():
            np.testing.assert_allclose(poses[b, toy64.link_index(name)], T, atol=1e-12, err_msg=name)
    # an analytic spot check: at q = 0 the slider sits 0.2 m above the arm joint
    np.testing.assert_allclose(poses[0, 2, :3, 3], [0.1, 0.0, 0.5], atol=1e-12)


def test_mesh_vertices_are_link_geometry_posed(toy64):
    q = torch.tensor([[0.4, 0.03, 0.8]], dtype=torch.float64)
    verts, faces, vlink = toy64.mesh(q)
    assert verts.shape == (1, vlink.shape[0], 3) and faces.dtype == torch.long and faces.max() < vlink.shape[0]
    T = toy_fk(q[0].numpy())["tip"]
    tip = verts[0, vlink == toy64.link_index("tip")].numpy()
    expected = (0.5 * TET) @ T[:3, :3].T + T[:3, 3]  # package:// mesh (STL: float32, vertex order may change), scaled
    np.testing.assert_allclose(np.sort(tip, axis=0), np.sort(expected, axis=0), atol=1e-8)
    W = toy_fk(q[0].numpy())["wheel"]
    wheel = verts[0, vlink == toy64.link_index("wheel")].numpy()
    expected = TET @ W[:3, :3].T + W[:3, 3]  # relative-path OBJ mesh
    np.testing.assert_allclose(np.sort(wheel, axis=0), np.sort(expected, axis=0), atol=1e-12)
    assert (vlink == toy64.link_index("follower")).sum() == 0  # no geometry
    # collision box: centred at (0, 0, 0.15) in the base frame, 0.1 x 0.2 x 0.3
    base = verts[0, vlink == 0]
    np.testing.assert_allclose(base.min(0).values.numpy(), [-0.05, -0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(base.max(0).values.numpy(), [0.05, 0.1, 0.3], atol=1e-12)


def test_gradcheck_fk_and_mesh(toy64):
    q = torch.tensor([[0.3, 0.02, -0.7], [-0.5, 0.04, 2.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(toy64.forward_kinematics, (q,))
    assert torch.autograd.gradcheck(lambda x: toy64.mesh(x)[0], (q,), fast_mode=True)
    assert torch.autograd.gradcheck(toy64.surface_points, (q,), fast_mode=True)
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)  # angle 0 is a special case of Rodrigues
    assert torch.autograd.gradcheck(toy64.forward_kinematics, (zero,))


def test_batch_of_one_equals_batch_and_unbatched(toy64):
    q = torch.tensor([[0.1, 0.01, 0.2], [0.5, 0.02, -1.0], [-0.8, 0.0, 3.0]], dtype=torch.float64)
    full = toy64.forward_kinematics(q)
    for b in range(3):
        torch.testing.assert_close(toy64.forward_kinematics(q[b:b + 1])[0], full[b])
        torch.testing.assert_close(toy64.forward_kinematics(q[b]), full[b])
    assert toy64.mesh(q[0])[0].dim() == 2 and toy64.fingertips(q).shape == (3, 1, 3)


def test_surface_points_even_deterministic_on_surface(toy_files, toy64):
    urdf, pkgs = toy_files
    q = torch.zeros(2, 3, dtype=torch.float64)
    pts, nrm = toy64.surface_points(q, with_normals=True)
    assert pts.shape == (2, 5 * 32, 3) and nrm.shape == pts.shape  # 5 links with geometry
    assert torch.bincount(toy64.point_link, minlength=6).tolist() == [32, 32, 32, 32, 32, 0]
    again = URDFHand.from_urdf(urdf, package_paths=[pkgs], dtype=torch.float64, points_per_link=32, tessellation=COARSE)
    torch.testing.assert_close(again.surface_points(q), pts)
    # slider sphere (icosphere level 0 -> points on flat faces, within the sphere; outward normals)
    poses = toy64.forward_kinematics(q[0])
    sl = pts[0, toy64.point_link == 2] - poses[2, :3, 3]
    r = torch.linalg.norm(sl, dim=-1)
    assert (r <= 0.03 + 1e-12).all() and (r > 0.03 * 0.79).all()
    assert ((sl * nrm[0, toy64.point_link == 2]).sum(-1) > 0).all()
    # box points lie on the faces: some coordinate sits at its half extent
    base = pts[0, toy64.point_link == 0] - torch.tensor([0, 0, 0.15], dtype=torch.float64)
    on_face = ((base.abs() - torch.tensor([0.05, 0.1, 0.15], dtype=torch.float64)).abs() < 1e-12).any(-1)
    assert on_face.all()
    # evenly spread: nearest-neighbour gaps are not much smaller than their mean
    d = torch.cdist(base, base) + torch.eye(32, dtype=torch.float64)
    nn = d.min(1).values
    assert nn.min() > 0.4 * nn.mean()
    # generic URDF: contact candidates are the surface points
    torch.testing.assert_close(toy64.contact_candidates(q), pts)


def test_fingertips_configurable(toy_files):
    urdf, pkgs = toy_files
    hand = URDFHand.from_urdf(urdf, package_paths={"toy_pkg": pkgs / "toy_pkg"}, dtype=torch.float64,
                              fingertip_links=["tip", "follower"], tessellation=COARSE, points_per_link=8)
    q = torch.tensor([0.2, 0.01, 0.4], dtype=torch.float64)
    ref = toy_fk(q.numpy())
    np.testing.assert_allclose(hand.fingertips(q).numpy(), [ref["tip"][:3, 3], ref["follower"][:3, 3]], atol=1e-12)
    with pytest.raises(JointNameError, match="nope"):
        URDFHand.from_urdf(urdf, package_paths=[pkgs], fingertip_links=["nope"], tessellation=COARSE)


def test_clamp_and_default(toy64):
    q = torch.tensor([[5.0, -1.0, 100.0]], dtype=torch.float64)
    torch.testing.assert_close(toy64.clamp(q), torch.tensor([[1.0, 0.0, 100.0]], dtype=torch.float64))
    torch.testing.assert_close(toy64.default_joint_angles(), torch.zeros(3, dtype=torch.float64))


def test_device_and_dtype(toy_files):
    urdf, pkgs = toy_files
    hand = URDFHand.from_urdf(urdf, package_paths=[pkgs], device="cpu", tessellation=COARSE, points_per_link=4)
    assert hand.device.type == "cpu" and hand.dtype == torch.float32
    assert hand.forward_kinematics(torch.zeros(2, 3)).dtype == torch.float32
    hand64 = hand.to(torch.float64)
    assert hand64.forward_kinematics(torch.zeros(2, 3)).dtype == torch.float64
    assert hand64.faces.dtype == torch.long
    if torch.cuda.is_available():
        gpu = URDFHand.from_urdf(urdf, package_paths=[pkgs], device="cuda", tessellation=COARSE)
        q = torch.rand(4, 3, device="cuda")
        torch.testing.assert_close(gpu.mesh(q)[0].cpu(), hand.mesh(q.cpu())[0], atol=1e-5, rtol=1e-5)
        with pytest.raises(InvalidValueError, match="cuda"):
            hand.forward_kinematics(q)


@pytest.mark.parametrize("how", ["mapping", "dir", "ros_package_path", "ament", "ancestor", "string"])
def test_package_resolution(tmp_path, monkeypatch, how):
    urdf, pkgs = write_toy(tmp_path)
    kwargs = {"tessellation": COARSE, "points_per_link": 4}
    if how == "mapping":
        hand = URDFHand.from_urdf(urdf, package_paths={"toy_pkg": pkgs / "toy_pkg"}, **kwargs)
    elif how == "dir":
        hand = URDFHand.from_urdf(urdf, package_paths=[pkgs / "toy_pkg"], **kwargs)  # the package folder itself
    elif how == "ros_package_path":
        monkeypatch.setenv("ROS_PACKAGE_PATH", f"/nonexistent:{pkgs}")
        hand = URDFHand.from_urdf(urdf, **kwargs)
    elif how == "ament":
        share = tmp_path / "install" / "share"
        share.mkdir(parents=True)
        (pkgs / "toy_pkg").rename(share / "toy_pkg")
        monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
        hand = URDFHand.from_urdf(urdf, **kwargs)
    elif how == "ancestor":  # URDF inside the package: package://toy_pkg resolves to its ancestor folder
        inner = pkgs / "toy_pkg" / "urdf"
        (inner / "meshes").mkdir(parents=True)
        (urdf.parent / "meshes" / "tet.obj").rename(inner / "meshes" / "tet.obj")
        hand = URDFHand.from_urdf(urdf.rename(inner / "toy.urdf"), **kwargs)
    else:
        hand = URDFHand.from_urdf_string(TOY, base_dir=urdf.parent, package_paths=[pkgs], **kwargs)
    assert (hand.vertex_link == hand.link_index("tip")).sum() == 4


# ----------------------------------------------------------------------------------------------- errors
def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ModelFileError, match="nothere.urdf"):
        URDFHand.from_urdf(tmp_path / "nothere.urdf")
    bad = tmp_path / "broken.urdf"
    bad.write_text("<robot name='x'><link name='a'>")
    with pytest.raises(ModelFileError, match="broken.urdf"):
        URDFHand.from_urdf(bad)
    bad.write_text("<sdf/>")
    with pytest.raises(ModelFileError, match="robot"):
        URDFHand.from_urdf(bad)
    bad.write_text(TOY.replace('<parent link="arm"/>', '<parent link="ghost"/>'))
    with pytest.raises(ModelFileError, match="j_pri.*ghost"):
        URDFHand.from_urdf(bad)
    bad.write_text(TOY.replace('xyz="0.05 0 0"', 'xyz="0.05 zero 0"'))
    with pytest.raises(ModelFileError, match="j_cont"):
        URDFHand.from_urdf(bad)


def test_missing_and_corrupt_meshes(tmp_path):
    urdf, pkgs = write_toy(tmp_path)
    with pytest.raises(ModelFileError, match="package://toy_pkg/meshes/tet.stl"):
        URDFHand.from_urdf(urdf)  # no package path given
    (urdf.parent / "meshes" / "tet.obj").unlink()
    with pytest.raises(ModelFileError, match="meshes/tet.obj"):
        URDFHand.from_urdf(urdf, package_paths=[pkgs])
    (urdf.parent / "meshes" / "tet.obj").write_text("this is not a mesh\n")
    with pytest.raises(ModelFileError, match="tet.obj"):
        URDFHand.from_urdf(urdf, package_paths=[pkgs])


def test_bad_joint_angles(toy64):
    with pytest.raises(ShapeError, match="joint_angles"):
        toy64.forward_kinematics(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ShapeError, match="joint_angles"):
        toy64.mesh(torch.zeros(2, 2, 3, dtype=torch.float64))
    q = torch.zeros(3, 3, dtype=torch.float64)
    q[1, 1] = float("nan")
    with pytest.raises(InvalidValueError, match="j_pri"):
        toy64.forward_kinematics(q)
    with pytest.raises(InvalidValueError, match="j_pri"):
        toy64.surface_points(q)
    with pytest.raises(JointNameError, match="nope"):
        toy64.joint_index("nope")
    with pytest.raises(JointNameError, match="nope"):
        toy64.link_index("nope")


def test_bad_options_and_unsupported_joints(toy_files, tmp_path):
    urdf, pkgs = toy_files
    with pytest.raises(InvalidValueError, match="geometry"):
        URDFHand.from_urdf(urdf, package_paths=[pkgs], geometry="both")
    text = textwrap.dedent("""\
        <robot name="f"><link name="world"/><link name="body"><collision><geometry><sphere radius="0.1"/>
        </geometry></collision></link>
        <joint name="free" type="floating"><parent link="world"/><child link="body"/><origin xyz="0 0 1"/></joint>
        </robot>""")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hand = URDFHand.from_urdf_string(text, tessellation=COARSE)
    assert any("free" in str(w.message) for w in caught)
    assert hand.joint_names == [] and hand.forward_kinematics(torch.zeros(1, 0))[0, 1, 2, 3] == 1.0
