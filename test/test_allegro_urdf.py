"""The shipped Allegro URDF against the published kinematics table, and against the public description.

The table below is copied from the published Allegro v4 numbers (allegro-kinematics.md); the FK here is an
independent numpy/scipy implementation (scipy rotations, explicit 4x4 products), not URDFHand's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handypriors_core.models import URDFHand, allegro_urdf

# joint: (parent, child, xyz, rpy, axis, (lower, upper)) -- the published table
FINGER_CHAIN = [((0, 0, 0.0164), (0, 1, 0), (-0.196, 1.61)),
                ((0, 0, 0.054), (0, 1, 0), (-0.174, 1.709)),
                ((0, 0, 0.0384), (0, 1, 0), (-0.227, 1.618))]
FINGER_BASES = {0: ((0, 0.0435, -0.001542), (-0.0873, 0, 0)),
                4: ((0, 0, 0.0007), (0, 0, 0)),
                8: ((0, -0.0435, -0.001542), (0.0873, 0, 0))}
TABLE: dict[str, tuple] = {}
for first, (xyz0, rpy0) in FINGER_BASES.items():
    TABLE[f"joint_{first}.0"] = ("base_link", f"link_{first}.0", xyz0, rpy0, (0, 0, 1), (-0.47, 0.47))
    for k, (xyz, axis, lim) in enumerate(FINGER_CHAIN, start=1):
        TABLE[f"joint_{first + k}.0"] = (f"link_{first + k - 1}.0", f"link_{first + k}.0", xyz, (0, 0, 0), axis, lim)
    TABLE[f"joint_{first + 3}.0_tip"] = (f"link_{first + 3}.0", f"link_{first + 3}.0_tip", (0, 0, 0.0267), (0, 0, 0),
                                         None, None)
TABLE["joint_12.0"] = ("base_link", "link_12.0", (-0.0182, 0.019333, -0.045987), (0, -1.65806, -1.5708), (-1, 0, 0),
                       (0.263, 1.396))
TABLE["joint_13.0"] = ("link_12.0", "link_13.0", (-0.027, 0.005, 0.0399), (0, 0, 0), (0, 0, 1), (-0.105, 1.163))
TABLE["joint_14.0"] = ("link_13.0", "link_14.0", (0, 0, 0.0177), (0, 0, 0), (0, 1, 0), (-0.189, 1.644))
TABLE["joint_15.0"] = ("link_14.0", "link_15.0", (0, 0, 0.0514), (0, 0, 0), (0, 1, 0), (-0.162, 1.719))
TABLE["joint_15.0_tip"] = ("link_15.0", "link_15.0_tip", (0, 0, 0.0423), (0, 0, 0), None, None)
ACTUATED = [f"joint_{i}.0" for i in range(16)]
TIPS = ["link_3.0_tip", "link_7.0_tip", "link_11.0_tip", "link_15.0_tip"]


def table_fk(q: np.ndarray) -> dict[str, np.ndarray]:
    """Link poses (4x4, base_link frame) from the table for one configuration ``q (16,)``."""
    poses = {"base_link": np.eye(4)}
    pending = dict(TABLE)
    while pending:
        for name, (parent, child, xyz, rpy, axis, _) in list(pending.items()):
            if parent not in poses:
                continue
            origin = np.eye(4)
            origin[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()  # extrinsic x-y-z = URDF rpy
            origin[:3, 3] = xyz
            motion = np.eye(4)
            if axis is not None:
                motion[:3, :3] = Rotation.from_rotvec(np.asarray(axis, float) * q[ACTUATED.index(name)]).as_matrix()
            poses[child] = poses[parent] @ origin @ motion
            del pending[name]
    return poses


def random_configs(n: int, seed: int) -> np.ndarray:
    lo = np.array([TABLE[j][5][0] for j in ACTUATED])
    hi = np.array([TABLE[j][5][1] for j in ACTUATED])
    return lo + (hi - lo) * np.random.default_rng(seed).random((n, 16))


@pytest.fixture(scope="module")
def hand() -> URDFHand:
    return URDFHand.from_urdf(allegro_urdf(), dtype=torch.float64)


def test_names_and_limits_match_the_table(hand):
    assert hand.joint_names == ACTUATED
    expected_links = {"base_link"} | {TABLE[j][1] for j in TABLE}
    assert set(hand.link_names) == expected_links and len(hand.link_names) == 21
    assert hand.root_link == "base_link"
    assert hand.fingertip_names == TIPS
    lo = np.array([TABLE[j][5][0] for j in ACTUATED])
    hi = np.array([TABLE[j][5][1] for j in ACTUATED])
    np.testing.assert_array_equal(hand.lower_limits.numpy(), lo)
    np.testing.assert_array_equal(hand.upper_limits.numpy(), hi)
    for j in ACTUATED:  # parent/child structure as published
        parent, child = TABLE[j][:2]
        assert hand.link_parents[hand.link_index(child)] == hand.link_index(parent)


def test_fingertips_match_independent_fk_from_the_table(hand):
    q = random_configs(50, seed=3)
    ours = hand.fingertips(torch.from_numpy(q)).numpy()  # (50, 4, 3)
    ref = np.stack([[table_fk(qi)[t][:3, 3] for t in TIPS] for qi in q])
    err = np.linalg.norm(ours - ref, axis=-1)
    print(f"fingertip FK vs table: max {err.max() * 1e3:.4f} mm")
    assert err.max() < 1e-3
    # every link frame, not only the tips (orientation too)
    poses = hand.forward_kinematics(torch.from_numpy(q[:5])).numpy()
    for b in range(5):
        ref_b = table_fk(q[b])
        for name, T in ref_b.items():
            np.testing.assert_allclose(poses[b, hand.link_index(name)], T, atol=2e-4)


def test_fk_is_not_trivially_constant(hand):
    """Guard: a flexed index finger moves its tip towards the palm side (+x) by centimetres."""
    q = hand.default_joint_angles()
    bent = q.clone()
    bent[1:4] = 1.0
    d = hand.fingertips(bent)[0] - hand.fingertips(q)[0]
    assert d[0] > 0.05 and torch.linalg.norm(d) > 0.08


def test_primitive_geometry_and_mesh_size(hand):
    _, faces, vlink = hand.mesh(hand.default_joint_angles())
    n_faces, n_verts = faces.shape[0], vlink.shape[0]
    print(f"Allegro mesh: {n_verts} vertices, {n_faces} faces")
    assert 2000 <= n_faces <= 4000
    assert torch.bincount(vlink, minlength=21).min() > 0  # every link has geometry
    # fingertip spheres: radius 12 mm around the tip origin
    verts = hand._mesh_verts
    for t in TIPS:
        r = torch.linalg.norm(verts[vlink == hand.link_index(t)], dim=-1)
        np.testing.assert_allclose(r.numpy(), 0.012, rtol=1e-6)
    # collision geometry takes the visual material colours: black links, white fingertips
    colors = hand.vertex_colors
    assert torch.allclose(colors[vlink == hand.link_index("link_3.0_tip")], torch.tensor(0.9, dtype=colors.dtype))
    assert torch.allclose(colors[vlink == hand.link_index("link_2.0")], torch.tensor(0.2, dtype=colors.dtype))
    palm = verts[vlink == hand.link_index("base_link")]
    np.testing.assert_allclose((palm.max(0).values - palm.min(0).values).numpy(), [0.0408, 0.1130, 0.095], atol=1e-9)


def test_contact_candidates_are_on_the_palm_side(hand):
    q = hand.default_joint_angles()
    pts, nrm = hand.contact_candidates(q, with_normals=True)
    assert pts.shape == nrm.shape and pts.shape[0] == len(hand.contact_candidate_link)
    poses = hand.forward_kinematics(q)
    link = hand.contact_candidate_link
    inward = poses[link, :3, 0]  # link +x axis in the hand frame
    is_tip = torch.tensor([hand.link_names[i].endswith("_tip") for i in link.tolist()])
    cos = (nrm * inward).sum(-1)
    assert (cos[~is_tip] >= 0.5 - 1e-9).all()
    assert set(hand.contact_link_names) >= set(TIPS) | {"link_1.0", "link_15.0", "base_link"}


def test_public_description_loads_with_meshes_and_agrees(hand, shared_dir):
    desc = shared_dir / "data" / "allegro_hand_description"
    if not desc.is_dir():
        pytest.skip(f"public allegro_hand_description not in {shared_dir}")
    public = URDFHand.from_urdf(desc / "allegro_hand_description_right.urdf", package_paths=[desc.parent],
                                geometry="visual", points_per_link=16, dtype=torch.float64)
    assert public.joint_names == hand.joint_names
    assert set(public.link_names) == set(hand.link_names)
    # the STL meshes were found through package:// and loaded: every link has triangles
    counts = torch.bincount(public.vertex_link, minlength=public.num_links)
    assert counts.min() > 0 and public.faces.shape[0] > 10000
    q = torch.from_numpy(random_configs(20, seed=11))
    ours, theirs = hand.forward_kinematics(q), public.forward_kinematics(q)
    idx = [public.link_index(n) for n in hand.link_names]
    diff = torch.linalg.norm(ours[:, :, :3, 3] - theirs[:, idx, :3, 3], dim=-1)
    print(f"link origins ours vs public URDF: max {diff.max().item() * 1e3:.2e} mm")
    assert diff.max() < 1e-3
    np.testing.assert_allclose(ours[:, :, :3, :3].numpy(), theirs[:, idx, :3, :3].numpy(), atol=1e-6)
    np.testing.assert_array_equal(public.lower_limits.numpy(), hand.lower_limits.numpy())
