"""MANO layer, safe model loading and the synthetic MANO-format model."""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from handypriors_core.errors import InvalidValueError, ModelFileError, ShapeError
from handypriors_core.models.mano import ManoHand
from handypriors_core.models.mano_loading import load_mano_pickle, loads_mano_pickle
from handypriors_core.models.mano_model import MANO_KEYPOINT_NAMES, MANO_PARENTS, OFFICIAL_FINGERTIP_VERTEX_IDS
from handypriors_core.synthetic.mano_test_model import (
    NUM_FACES,
    NUM_VERTS,
    build_synthetic_mano,
    mirror_pose,
    write_synthetic_mano,
)

F64 = torch.float64


@pytest.fixture(scope="module")
def right() -> dict:
    return build_synthetic_mano("right")


@pytest.fixture(scope="module")
def left() -> dict:
    return build_synthetic_mano("left")


@pytest.fixture(scope="module")
def files(tmp_path_factory, right, left) -> dict:
    d = tmp_path_factory.mktemp("mano")
    return {
        "right": write_synthetic_mano(d / "MANO_RIGHT.pkl", model=right),
        "left": write_synthetic_mano(d / "MANO_LEFT.pkl", model=left),
        "chumpy": write_synthetic_mano(d / "MANO_RIGHT_chumpy.pkl", model=right, style="chumpy"),
        "p5": write_synthetic_mano(d / "right_p5.pkl", model=right, protocol=5),
    }


@pytest.fixture(scope="module")
def hand64(right) -> ManoHand:
    return ManoHand(right, dtype=F64)


def _random_inputs(hand: ManoHand, batch: int, seed: int = 0, scale: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    return {
        "global_orient": torch.randn(batch, 3, generator=g, dtype=F64) * scale,
        "hand_pose": torch.randn(batch, hand.num_joints, generator=g, dtype=F64) * scale,
        "betas": torch.randn(batch, hand.num_betas, generator=g, dtype=F64),
        "transl": torch.randn(batch, 3, generator=g, dtype=F64) * 0.1,
    }


# ------------------------------------------------------------------------------------- synthetic model file


def test_synthetic_model_has_mano_keys_shapes_and_dtypes(right):
    expect = {
        "v_template": ((778, 3), np.float64), "shapedirs": ((778, 3, 10), np.float64),
        "posedirs": ((778, 3, 135), np.float64), "weights": ((778, 16), np.float64),
        "kintree_table": ((2, 16), np.int64), "hands_components": ((45, 45), np.float64),
        "hands_mean": ((45,), np.float64), "f": ((1538, 3), np.uint32), "J": ((16, 3), np.float64),
    }
    for key, (shape, dtype) in expect.items():
        assert right[key].shape == shape and right[key].dtype == dtype, key
    assert scipy.sparse.isspmatrix_csc(right["J_regressor"]) and right["J_regressor"].shape == (16, 778)
    assert right["kintree_table"][0, 0] == 4294967295
    assert right["kintree_table"][0, 1:].tolist() == list(MANO_PARENTS[1:])
    np.testing.assert_allclose(right["weights"].sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(right["J_regressor"].sum(1), 1.0, atol=1e-12)
    comps = right["hands_components"]
    np.testing.assert_allclose(comps @ comps.T, np.eye(45), atol=1e-10)
    assert (NUM_VERTS, NUM_FACES) == (778, 1538)


@pytest.mark.parametrize("side", ["right", "left"])
def test_synthetic_mesh_is_one_oriented_surface_open_at_the_wrist(side, right, left):
    model = right if side == "right" else left
    v, f = model["v_template"], model["f"].astype(np.int64)
    directed = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    _, counts = np.unique(directed, axis=0, return_counts=True)
    assert counts.max() == 1  # consistently oriented: no directed edge twice
    undirected, counts = np.unique(np.sort(directed, 1), axis=0, return_counts=True)
    assert counts.max() == 2
    boundary = undirected[counts == 1]
    assert len(boundary) == 16  # the open wrist, as MANO
    # the 16 boundary edges form one loop
    assert np.all(np.bincount(boundary.ravel(), minlength=len(v))[np.unique(boundary)] == 2)
    assert len(v) - len(undirected) + len(f) == 1  # Euler characteristic of a disc
    # outward normals: signed volume of the surface closed by a fan over the wrist loop is positive
    centre = v[np.unique(boundary)].mean(0)
    tri = v[f] - centre
    volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert 1e-4 < volume < 1e-3  # [m^3]: a hand is about 0.3-0.5 litres
    # every fingertip vertex is the point of its finger farthest from the finger's knuckle
    w = model["weights"]
    for tip, joint in zip(model["fingertip_vertex_ids"], (15, 3, 6, 12, 9)):
        finger = np.flatnonzero(w[:, joint] > 0.5)
        dist = np.linalg.norm(v[finger] - model["J"][joint - 2], axis=1)
        assert finger[dist.argmax()] == tip


def test_left_model_is_the_mirror_of_the_right(right, left):
    m = np.array([-1.0, 1.0, 1.0])
    np.testing.assert_array_equal(left["v_template"], right["v_template"] * m)
    np.testing.assert_array_equal(left["f"], right["f"][:, ::-1])
    np.testing.assert_array_equal(left["hands_mean"], mirror_pose(right["hands_mean"]))
    assert left["side"] == "left" and right["side"] == "right"


# ------------------------------------------------------------------------------------------ the layer


def test_zero_pose_gives_the_template(right):
    hand = ManoHand(right, flat_hand_mean=True, dtype=F64)
    out = hand(hand_pose=torch.zeros(2, 45, dtype=F64))
    v = torch.from_numpy(right["v_template"])
    torch.testing.assert_close(out.vertices, v.expand(2, -1, -1), rtol=0, atol=1e-12)
    joints = torch.from_numpy(right["J_regressor"] @ right["v_template"])
    torch.testing.assert_close(out.joints, joints.expand(2, -1, -1), rtol=0, atol=1e-12)
    torch.testing.assert_close(out.joint_transforms[..., :3, :3], torch.eye(3, dtype=F64).expand(2, 16, 3, 3))
    # flat_hand_mean=False: zero hand_pose is the mean pose
    mean_hand = ManoHand(right, dtype=F64)
    mean = torch.from_numpy(right["hands_mean"])[None]
    torch.testing.assert_close(mean_hand().vertices, hand(hand_pose=mean).vertices, rtol=0, atol=1e-12)
    assert not torch.allclose(mean_hand().vertices, out.vertices[:1], atol=1e-4)


def test_keypoints_follow_the_documented_order(hand64, right):
    out = hand64(**_random_inputs(hand64, 2))
    names = list(MANO_KEYPOINT_NAMES)
    assert len(names) == 21 and names[:5] == ["wrist", "thumb1", "thumb2", "thumb3", "thumb_tip"]
    assert names[17:] == ["little1", "little2", "little3", "little_tip"]
    joint_of = {"wrist": 0, "index1": 1, "index3": 3, "middle2": 5, "little1": 7, "ring3": 12, "thumb1": 13}
    for name, j in joint_of.items():
        torch.testing.assert_close(out.keypoints[:, names.index(name)], out.joints[:, j])
    tips = right["fingertip_vertex_ids"]
    for name, vid in zip(("thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip"), tips):
        torch.testing.assert_close(out.keypoints[:, names.index(name)], out.vertices[:, vid])


def _reference_mano(model: dict, full_pose: np.ndarray, betas: np.ndarray, transl: np.ndarray):
    """Slow float64 numpy MANO for one hand: scipy rotations, per-joint loops, per-vertex blend."""
    parents = model["kintree_table"][0].astype(np.int64)
    v_shaped = model["v_template"] + model["shapedirs"] @ betas
    J = model["J_regressor"] @ v_shaped
    R = Rotation.from_rotvec(full_pose.reshape(16, 3)).as_matrix()
    feature = np.concatenate([(R[j] - np.eye(3)).ravel() for j in range(1, 16)])
    v_posed = v_shaped + model["posedirs"] @ feature
    G = [None] * 16
    for j in range(16):
        local = np.eye(4)
        local[:3, :3] = R[j]
        local[:3, 3] = J[j] - (J[parents[j]] if j else 0)
        G[j] = local if j == 0 else G[parents[j]] @ local
    joints = np.stack([g[:3, 3] for g in G]) + transl
    skin = []
    for j in range(16):
        rest = np.eye(4)
        rest[:3, 3] = -J[j]
        skin.append(G[j] @ rest)
    T = np.einsum("vj,jab->vab", model["weights"], np.stack(skin))
    verts = np.einsum("vab,vb->va", T[:, :3, :3], v_posed) + T[:, :3, 3] + transl
    return verts, joints


@pytest.mark.parametrize("side", ["right", "left"])
def test_layer_matches_a_slow_reference_implementation(side, right, left):
    model = right if side == "right" else left
    hand = ManoHand(model, dtype=F64)
    inputs = _random_inputs(hand, 2, seed=3, scale=0.6)
    out = hand(**inputs)
    for b in range(2):
        hand_pose = inputs["hand_pose"][b].numpy() + model["hands_mean"]
        full = np.concatenate([inputs["global_orient"][b].numpy(), hand_pose])
        verts, joints = _reference_mano(model, full, inputs["betas"][b].numpy(), inputs["transl"][b].numpy())
        np.testing.assert_allclose(out.vertices[b].numpy(), verts, atol=1e-12)
        np.testing.assert_allclose(out.joints[b].numpy(), joints, atol=1e-12)


def _subtree(joint: int) -> list[int]:
    nodes = [joint]
    for j in range(16):
        if MANO_PARENTS[j] in nodes:
            nodes.append(j)
    return nodes


@pytest.mark.parametrize("joint", [2, 13, 11])
def test_a_joint_rotation_moves_only_its_skinned_subtree(joint, right):
    no_correctives = dict(right, posedirs=np.zeros_like(right["posedirs"]))
    hand = ManoHand(no_correctives, flat_hand_mean=True, dtype=F64)
    pose = torch.zeros(1, 45, dtype=F64)
    pose[0, 3 * (joint - 1): 3 * joint] = torch.tensor([0.9, -0.3, 0.4], dtype=F64)
    rest, bent = hand(), hand(hand_pose=pose)
    moved = (bent.vertices - rest.vertices).norm(dim=-1)[0]
    influence = torch.from_numpy(right["weights"][:, _subtree(joint)].sum(1))
    assert moved[influence == 0].max() < 1e-12
    assert moved[influence > 0.5].min() > 1e-3
    joint_moved = (bent.joints - rest.joints).norm(dim=-1)[0]
    children = [j for j in _subtree(joint) if j != joint]
    assert joint_moved[[j for j in range(16) if j not in children]].max() < 1e-12
    assert joint_moved[children].min() > 1e-3
    # with the correctives, everything outside the subtree moves exactly by posedirs @ vec(R - I)
    full = ManoHand(right, flat_hand_mean=True, dtype=F64)
    R = Rotation.from_rotvec(pose[0, 3 * (joint - 1): 3 * joint].numpy()).as_matrix()
    corrective = right["posedirs"][:, :, 9 * (joint - 1): 9 * joint] @ (R - np.eye(3)).ravel()
    outside = (influence == 0).numpy()
    delta = (full(hand_pose=pose).vertices - full().vertices)[0].numpy()
    np.testing.assert_allclose(delta[outside], corrective[outside], atol=1e-12)


def test_pca_pose_equals_the_axis_angle_pose(right):
    coeffs = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    comps = torch.from_numpy(right["hands_components"][:6])
    mean = torch.from_numpy(right["hands_mean"])
    pca = ManoHand(right, use_pca=True, num_pca_comps=6, dtype=F64)
    aa = ManoHand(right, dtype=F64)
    flat = ManoHand(right, flat_hand_mean=True, dtype=F64)
    assert pca.num_joints == 6 and pca.joint_names[0] == "pca_0" and aa.num_joints == 45
    expected = aa(hand_pose=coeffs @ comps).vertices
    torch.testing.assert_close(pca(hand_pose=coeffs).vertices, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(flat(hand_pose=coeffs @ comps + mean).vertices, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(pca.full_hand_pose(coeffs), coeffs @ comps + mean)
    all45 = ManoHand(right, use_pca=True, num_pca_comps=45, flat_hand_mean=True, dtype=F64)
    pose = torch.randn(2, 45, dtype=F64) * 0.3
    all_comps = torch.from_numpy(right["hands_components"])
    torch.testing.assert_close(all45(hand_pose=pose @ all_comps.T).vertices, flat(hand_pose=pose).vertices)


@pytest.mark.parametrize("use_pca", [False, True])
def test_gradients_match_finite_differences(use_pca, right):
    hand = ManoHand(right, use_pca=use_pca, num_pca_comps=8, dtype=F64)
    inputs = _random_inputs(hand, 2, seed=5)
    args = tuple(inputs[k].clone().requires_grad_(True) for k in ("global_orient", "hand_pose", "betas", "transl"))

    def fn(global_orient, hand_pose, betas, transl):
        out = hand(global_orient=global_orient, hand_pose=hand_pose, betas=betas, transl=transl)
        return out.vertices[:, ::37], out.keypoints

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, fast_mode=True)


def test_float32_and_float64_agree(right):
    h32, h64 = ManoHand(right), ManoHand(right, dtype=F64)
    inputs = _random_inputs(h64, 3, seed=2)
    v32 = h32(**{k: v.float() for k, v in inputs.items()}).vertices
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), h64(**inputs).vertices, rtol=0, atol=2e-6)
    assert h32.to(F64).dtype == F64


def test_left_hand_is_the_mirror_of_the_right_hand(right, left):
    hr, hl = ManoHand(right, dtype=F64), ManoHand(left, dtype=F64)
    inp = _random_inputs(hr, 3, seed=7, scale=0.7)
    mirrored = {
        "global_orient": torch.from_numpy(mirror_pose(inp["global_orient"].numpy())),
        "hand_pose": torch.from_numpy(mirror_pose(inp["hand_pose"].numpy())),
        "betas": inp["betas"],
        "transl": inp["transl"] * torch.tensor([-1.0, 1.0, 1.0], dtype=F64),
    }
    m = torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    out_r, out_l = hr(**inp), hl(**mirrored)
    torch.testing.assert_close(out_l.vertices, out_r.vertices * m, rtol=0, atol=1e-12)
    torch.testing.assert_close(out_l.keypoints, out_r.keypoints * m, rtol=0, atol=1e-12)
    # the same PCA coefficients give mirrored hands (the left components are the mirrored right ones)
    pr = ManoHand(right, use_pca=True, dtype=F64)
    pl = ManoHand(left, use_pca=True, dtype=F64)
    c = torch.randn(2, 6, dtype=F64)
    torch.testing.assert_close(pl(hand_pose=c).vertices, pr(hand_pose=c).vertices * m, rtol=0, atol=1e-12)
    # palm-side contact candidates are the same vertices on both hands
    assert hr.side == "right" and hl.side == "left"
    assert torch.equal(hr.contact_vertex_ids, hl.contact_vertex_ids)
    # both meshes have outward normals: vertex normals of the tips point away from the wrist
    for hand, out in ((hr, out_r), (hl, out_l)):
        normals = hand.vertex_normals(out.vertices)[:, hand.fingertip_vertex_ids]
        away = out.vertices[:, hand.fingertip_vertex_ids] - out.joints[:, [15, 3, 6, 12, 9]]
        assert ((normals * away).sum(-1) > 0).all()


# -------------------------------------------------------------------------------------- hand interface


def test_hand_interface_matches_the_urdf_hand_conventions(hand64, right):
    q = torch.randn(4, 45, dtype=F64) * 0.3
    verts, faces, vertex_link = hand64.mesh(q)
    assert verts.shape == (4, 778, 3) and faces.shape == (1538, 3) and faces.dtype == torch.long
    assert torch.equal(vertex_link, torch.from_numpy(right["weights"].argmax(1)))
    assert hand64.link_names[vertex_link[right["fingertip_vertex_ids"][1]]] == "index3"
    torch.testing.assert_close(verts, hand64(hand_pose=q).vertices)
    tips = hand64.fingertips(q)
    torch.testing.assert_close(tips, verts[:, right["fingertip_vertex_ids"]])
    fk = hand64.forward_kinematics(q)
    assert fk.shape == (4, 16, 4, 4)
    torch.testing.assert_close(fk[..., :3, 3], hand64(hand_pose=q).joints)
    assert hand64.num_joints == 45 and hand64.joint_names[0] == "index1_x" and hand64.num_links == 16
    assert torch.isinf(hand64.lower_limits).all() and torch.isinf(hand64.upper_limits).all()
    assert hand64.link_index("thumb2") == 14 and hand64.joint_index("thumb3_z") == 44

    # unbatched input gives unbatched output, and MANO extras go in as keywords
    beta = torch.randn(10, dtype=F64)
    v1, _, _ = hand64.mesh(q[0], betas=beta, transl=torch.tensor([0.1, 0.0, 0.0], dtype=F64))
    vb, _, _ = hand64.mesh(q[:1], betas=beta[None])
    torch.testing.assert_close(v1, vb[0] + torch.tensor([0.1, 0.0, 0.0], dtype=F64))

    # contact candidates: the chosen vertices, unit normals, palm side and all fingertips included
    cand, normals = hand64.contact_candidates(q, with_normals=True)
    ids = hand64.contact_vertex_ids
    torch.testing.assert_close(cand, verts[:, ids])
    torch.testing.assert_close(normals.norm(dim=-1), torch.ones(4, len(ids), dtype=F64))
    assert set(right["fingertip_vertex_ids"].tolist()) <= set(ids.tolist())
    # away from the finger pads (12 mm around the tips) they face the palm side, -z for this model
    rest = hand64.v_template
    rest_normals = hand64.vertex_normals(rest[None])[0, ids]
    pad = torch.cdist(rest[ids], rest[right["fingertip_vertex_ids"]]).min(1).values < 0.012
    assert (rest_normals[~pad, 2] <= -0.5).all() and (~pad).sum() > 200
    assert torch.equal(hand64.contact_candidate_link, vertex_link[ids])

    # surface points lie on the posed triangles; at the rest pose they are the template samples
    pts, nrm = hand64.surface_points(q, with_normals=True)
    assert pts.shape == (4, 512, 3) and hand64.point_link.shape == (512,)
    tri = verts[:, faces[hand64._surface_face]]
    offset = ((pts[:, :, None] - tri) * nrm[:, :, None]).sum(-1)  # distance to each corner's plane
    assert offset.abs().max() < 1e-12
    assert ((hand64._surface_bary >= -1e-9) & (hand64._surface_bary <= 1 + 1e-9)).all()


def test_official_fingertip_ids_are_the_default_without_a_file_entry(right):
    official = {k: v for k, v in right.items() if k not in ("fingertip_vertex_ids", "side")}
    hand = ManoHand(official)
    assert hand.fingertip_vertex_ids.tolist() == list(OFFICIAL_FINGERTIP_VERTEX_IDS) == [745, 317, 444, 556, 673]
    assert hand.side == "right"
    custom = ManoHand(right, fingertip_vertex_ids=[1, 2, 3, 4, 5])
    assert custom.fingertip_vertex_ids.tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(InvalidValueError, match="fingertip_vertex_ids"):
        ManoHand(right, fingertip_vertex_ids=[1, 2, 3, 4, 778])


# -------------------------------------------------------------------------------------------- loading


def test_files_load_with_the_side_from_the_file(files, right):
    hr = ManoHand.from_file(files["right"], dtype=F64)
    hl = ManoHand.from_file(files["left"], dtype=F64)
    assert (hr.side, hl.side) == ("right", "left")
    torch.testing.assert_close(hr().vertices, ManoHand(right, dtype=F64)().vertices, rtol=0, atol=0)
    assert ManoHand.from_file(files["p5"]).num_vertices == 778
    # without a side entry the file name decides
    no_side = {k: v for k, v in right.items() if k != "side"}
    assert ManoHand(no_side, source="/data/MANO_LEFT.pkl").side == "left"
    assert ManoHand(no_side, source="/data/MANO_RIGHT.pkl").side == "right"


def test_chumpy_style_pickle_loads_without_chumpy(files, right, monkeypatch):
    raw = files["chumpy"].read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the Python 2 files
    for name in (b"cchumpy.ch\nCh\n", b"cnumpy.core.multiarray\n_reconstruct\n", b"cscipy.sparse.csc\ncsc_matrix\n",
                 b"c__builtin__\nset\n"):
        assert name in raw
    # chumpy cannot be imported: a None entry in sys.modules makes `import chumpy` raise ImportError
    monkeypatch.setitem(sys.modules, "chumpy", None)
    monkeypatch.setitem(sys.modules, "chumpy.ch", None)
    with pytest.raises(ImportError):
        import chumpy  # noqa: F401
    data = load_mano_pickle(files["chumpy"])
    for key in ("v_template", "shapedirs", "posedirs", "weights", "hands_components", "hands_mean", "f"):
        assert isinstance(data[key], np.ndarray) and data[key].dtype == right[key].dtype, key
        np.testing.assert_array_equal(data[key], right[key])
    assert scipy.sparse.isspmatrix_csc(data["J_regressor"])
    np.testing.assert_array_equal(data["J_regressor"].toarray(), right["J_regressor"].toarray())
    hand = ManoHand.from_file(files["chumpy"], dtype=F64)
    inputs = _random_inputs(hand, 2)
    torch.testing.assert_close(hand(**inputs).vertices, ManoHand(right, dtype=F64)(**inputs).vertices, rtol=0, atol=0)


class _ChumpyExpression:  # pickled, then renamed to a chumpy class whose state has no 'x'
    def __init__(self):
        self.a = np.zeros(3)


def test_chumpy_expressions_without_a_value_are_refused():
    data = pickle.dumps({"shapedirs": _ChumpyExpression()}, protocol=2)
    name = f"c{_ChumpyExpression.__module__}\n{_ChumpyExpression.__qualname__}\n".encode()
    assert name in data
    data = data.replace(name, b"cchumpy.reordering\ntranspose\n")
    with pytest.raises(ModelFileError, match=r"m\.pkl.*'shapedirs'.*chumpy\.reordering\.transpose"):
        loads_mano_pickle(data, "m.pkl")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_pickles_are_refused_without_running_anything(tmp_path, protocol, right):
    marker = tmp_path / "pwned"
    for payload, name in ((_Evil(marker), "system"), (_EvalEvil(), "eval")):
        path = tmp_path / f"evil_{name}.pkl"
        path.write_bytes(pickle.dumps({"v_template": right["v_template"], "x": payload}, protocol=protocol))
        with pytest.raises(ModelFileError, match=rf"evil_{name}\.pkl.*refusing.*{name}"):
            ManoHand.from_file(path)
    assert not marker.exists()
    # a class outside the allow-list is refused too, even when harmless
    path = tmp_path / "foreign.pkl"
    path.write_bytes(pickle.dumps({"v": Rotation.identity()}, protocol=protocol))
    with pytest.raises(ModelFileError, match="foreign.pkl.*refusing"):
        load_mano_pickle(path)


def test_missing_corrupt_and_malformed_files_raise_model_file_error(tmp_path, files, right):
    missing = tmp_path / "MANO_RIGHT.pkl"
    with pytest.raises(ModelFileError, match="MANO_RIGHT.pkl"):
        ManoHand.from_file(missing)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(files["right"].read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="truncated.pkl"):
        ManoHand.from_file(truncated)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(ModelFileError, match="garbage.pkl"):
        ManoHand.from_file(garbage)
    not_dict = tmp_path / "list.pkl"
    not_dict.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ModelFileError, match="list.pkl.*dict"):
        ManoHand.from_file(not_dict)
    with pytest.raises(ModelFileError, match="directory|read"):
        ManoHand.from_file(tmp_path)
    cases = {
        "weights": ({k: v for k, v in right.items() if k != "weights"}, "no entry 'weights'"),
        "posedirs": (dict(right, posedirs=right["posedirs"][:, :, :100]), "'posedirs' should have shape"),
        "J_regressor": (dict(right, J_regressor=np.zeros((15, 778))), "'J_regressor' should have shape"),
        "kintree": (dict(right, kintree_table=np.zeros((2, 16), np.int64)), "kintree_table"),
        "faces": (dict(right, f=right["f"] + 1000), "'f' indexes"),
        "nan": (dict(right, v_template=np.full((778, 3), np.nan)), "'v_template' holds NaN"),
        "text": (dict(right, shapedirs="abc"), "'shapedirs'"),
    }
    for name, (model, message) in cases.items():
        path = write_synthetic_mano(tmp_path / f"bad_{name}.pkl", model=model)
        with pytest.raises(ModelFileError, match=rf"bad_{name}\.pkl.*{message}"):
            ManoHand.from_file(path)


# ----------------------------------------------------------------------------------------- validation


def test_bad_inputs_raise_typed_errors_naming_the_argument(hand64, right):
    z = lambda *s: torch.zeros(*s, dtype=F64)
    for kwargs, name in (
        ({"hand_pose": z(2, 44)}, "hand_pose"),
        ({"betas": z(2, 9)}, "betas"),
        ({"global_orient": z(2, 4)}, "global_orient"),
        ({"transl": z(2, 3, 1)}, "transl"),
        ({"hand_pose": z(2, 45), "transl": z(3, 3)}, "transl"),
    ):
        with pytest.raises(ShapeError, match=name):
            hand64(**kwargs)
    bad = z(2, 45)
    bad[1, 7] = float("nan")
    with pytest.raises(InvalidValueError, match="hand_pose"):
        hand64(hand_pose=bad)
    with pytest.raises(InvalidValueError, match="betas"):
        hand64.mesh(z(45), betas=torch.full((10,), float("inf"), dtype=F64))
    with pytest.raises(ShapeError, match="joint_angles|hand_pose"):
        hand64.mesh(z(2, 6))
    for comps in (0, 46):
        with pytest.raises(InvalidValueError, match="num_pca_comps"):
            ManoHand(right, use_pca=True, num_pca_comps=comps)
    with pytest.raises(InvalidValueError, match="side"):
        ManoHand(right, side="both")
