"""Contact refinement (paper Sec. IV-D): recovery of a known grasp, the URDF hand, bad inputs and the CLI."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest
import torch

from handypriors_core.cli_contact import add_parser
from handypriors_core.errors import ConfigError, InvalidValueError, ModelFileError, ShapeError
from handypriors_core.estimation.contact_refinement import (
    ContactRefiner,
    ContactRefineSettings,
    contact_agreement,
    contact_colors,
    load_contact_target,
)
from handypriors_core.estimation.hand_object import ManoParams, load_mano_params
from handypriors_core.geometry.mesh import vertex_normals
from handypriors_core.geometry.transforms import make_transform, transform_points
from handypriors_core.models import URDFHand, allegro_urdf, primitives
from handypriors_core.models.mano import ManoHand
from handypriors_core.models.rigid_object import RigidObject
from handypriors_core.physics import ObjectSDF, contact_value
from handypriors_core.synthetic.mano_sequences import default_grasp_object, grasp_params, make_mano_grasp
from handypriors_core.synthetic.mano_test_model import build_synthetic_mano


@pytest.fixture(scope="module")
def hand() -> ManoHand:
    return ManoHand(build_synthetic_mano("right"))


@pytest.fixture(scope="module")
def obj() -> RigidObject:
    return default_grasp_object()


@pytest.fixture(scope="module")
def grasp(hand, obj):
    return make_mano_grasp(hand, obj)


@pytest.fixture(scope="module")
def truth(hand, grasp) -> ManoParams:
    """The grasp in the object frame (object at the identity)."""
    return grasp_params(hand, grasp)


@pytest.fixture(scope="module")
def refiner(hand, obj) -> ContactRefiner:
    return ContactRefiner(hand, obj, ContactRefineSettings(iterations=120, object_samples=200))


def _perturbed(truth: ManoParams, seed: int, pose=0.15, rot=0.08, trans=0.008) -> ManoParams:
    g = torch.Generator().manual_seed(seed)
    return ManoParams(truth.global_orient + rot * torch.randn(1, 3, generator=g),
                      truth.hand_pose + pose * torch.randn(1, truth.hand_pose.shape[1], generator=g),
                      truth.betas.clone(), truth.transl + trans * torch.randn(1, 3, generator=g))


def test_generated_grasp_touches_with_every_finger_and_the_palm_without_penetrating(hand, grasp):
    assert bool(grasp.touching.all())
    d = grasp.signed_distance
    assert float(d.min()) > -0.0005  # at most 0.5 mm inside (the float32 mesh query and skinning)
    assert torch.allclose(grasp.contact_map, contact_value(d))
    for joints in ((13, 14, 15), (1, 2, 3), (4, 5, 6), (10, 11, 12), (7, 8, 9), (0,)):
        part = torch.isin(hand.vertex_link, torch.tensor(joints))
        assert float(d[part].min()) < 0.001, joints  # each finger and the palm reach within 1 mm
    assert int((grasp.contact_map >= 0.999).sum()) >= 10


def test_contact_module_reproduces_the_grasp_contact_map(refiner, truth, grasp, hand):
    co, normals, _ = refiner.contact_map(truth.forward(hand).vertices)
    assert co.shape == (1, hand.num_vertices) and normals.shape == (1, hand.num_vertices, 3)
    assert (co[0] - grasp.contact_map).abs().max() < 1e-3
    assert contact_agreement(co[0], grasp.contact_map)["iou"] == 1.0


def test_vertex_normals_match_the_mano_layer_and_the_numpy_ones(hand, truth):
    verts = truth.forward(hand).vertices
    assert torch.allclose(vertex_normals(verts, hand.faces), hand.vertex_normals(verts), atol=1e-5)
    independent = primitives.vertex_normals(verts[0].double().numpy(), hand.faces.numpy())  # numpy, load-time code
    assert torch.allclose(hand.vertex_normals(verts)[0].double(), torch.from_numpy(independent), atol=1e-5)


@pytest.mark.parametrize("seed", [0])
def test_refinement_recovers_a_randomly_perturbed_grasp(refiner, truth, grasp, hand, seed):
    init = _perturbed(truth, seed)
    result = refiner.refine(grasp.contact_map, init)
    tips = hand.fingertip_vertex_ids
    gt_verts = truth.forward(hand).vertices[0]
    tip0 = (init.forward(hand).vertices[0, tips] - gt_verts[tips]).norm(dim=-1).mean()
    tip1 = (result.vertices[tips] - gt_verts[tips]).norm(dim=-1).mean()
    mesh1 = (result.vertices - gt_verts).norm(dim=-1).mean()
    # the start is far off (measured: IoU 0.03, MAE 0.11, fingertips 33 mm) ...
    assert result.initial_agreement["iou"] < 0.5 and result.initial_agreement["mae"] > 0.05
    assert float(tip0) > 0.02
    # ... and the refined grasp agrees (measured: IoU 0.92, MAE 0.005, fingertips 5 mm, mesh 2.9 mm)
    assert result.agreement["iou"] >= 0.8
    assert result.agreement["mae"] <= 0.012
    assert float(tip1) < 0.012 and float(tip1) < 0.4 * float(tip0)
    assert float(mesh1) < 0.007
    assert float(result.signed_distance.min()) > -0.001  # penetration kept out (< 1 mm)
    # the reported map is the contact module's output at the refined parameters
    again = refiner.contact_map(result.params.forward(hand).vertices)[0][0]
    assert torch.allclose(again, result.contact_map, atol=1e-4)
    assert result.loss < 0.2 * result.initial_loss


def test_object_pose_is_refined_when_asked(hand, obj, truth, grasp):
    refiner = ContactRefiner(hand, obj, ContactRefineSettings(iterations=60, object_samples=100,
                                                              optimize_object=True, optimize_hand_global=False,
                                                              optimize_hand_pose=False))
    # the hand stays at the truth; the object is displaced by 6 mm and must come back under it
    shift = make_transform(torch.eye(3), torch.tensor([0.0, 0.004, -0.0045]))
    result = refiner.refine(grasp.contact_map, truth, object2world=shift)
    assert torch.allclose(result.params.hand_pose, truth.hand_pose)
    err0 = float(shift[:3, 3].norm())
    err1 = float(result.object2world[:3, 3].norm())
    assert err1 < 0.4 * err0
    assert result.agreement["mae"] < result.initial_agreement["mae"]


def _slide_to_touch(sdf: ObjectSDF, verts: torch.Tensor, direction: torch.Tensor, start: torch.Tensor,
                    clearance: float = 0.0002) -> torch.Tensor:
    """Object pose (identity rotation) moved from ``start`` along ``direction`` until within ``clearance``."""
    lo, hi = 0.0, 0.3  # lo: free, hi: overlapping
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        pose = make_transform(torch.eye(3), start + mid * direction)[None]
        if float(sdf.signed_distance(verts, pose).distance.min()) > clearance:
            lo = mid
        else:
            hi = mid
    return make_transform(torch.eye(3), start + lo * direction)


def test_allegro_hand_is_refined_over_its_joint_angles():
    hand = URDFHand.from_urdf(allegro_urdf())
    obj = RigidObject.box([0.05, 0.05, 0.05], max_edge=0.01, n_samples=400)
    lo, hi = hand.lower_limits, hand.upper_limits
    q_true = (lo + 0.35 * (hi - lo)).float()
    verts = hand.mesh(q_true[None])[0]
    sdf = ObjectSDF(obj.verts, obj.faces)
    # the box comes from the palm side (+x of the Allegro hand frame) until it touches
    object2hand = _slide_to_touch(sdf, verts, torch.tensor([-1.0, 0.0, 0.0]), torch.tensor([0.25, 0.0, 0.07]))
    hand2object = torch.linalg.inv(object2hand)
    refiner = ContactRefiner(hand, obj, ContactRefineSettings(iterations=60, object_samples=100))
    target = refiner.contact_map(transform_points(hand2object[None], verts))[0][0]
    assert refiner.num_vertices == verts.shape[1] and int((target >= 0.999).sum()) >= 3
    g = torch.Generator().manual_seed(1)
    q0 = torch.clamp(q_true + 0.08 * torch.randn(hand.num_joints, generator=g), lo, hi)
    T0 = hand2object.clone()
    T0[:3, 3] += torch.tensor([0.003, -0.002, 0.002])
    result = refiner.refine(target, (q0, T0))
    assert result.params is None and result.hand2object.shape == (4, 4)
    assert result.contact_map.shape == target.shape
    assert result.agreement["mae"] < 0.5 * result.initial_agreement["mae"]
    assert bool((result.joint_angles >= lo - 1e-6).all()) and bool((result.joint_angles <= hi + 1e-6).all())


def test_bad_inputs_raise_typed_errors(refiner, truth, tmp_path, hand):
    good = torch.zeros(hand.num_vertices)
    with pytest.raises(ShapeError, match="one contact value per hand vertex"):
        refiner.refine(torch.zeros(hand.num_vertices - 1), truth)
    bad = good.clone()
    bad[3] = float("nan")
    with pytest.raises(InvalidValueError, match="non-finite"):
        refiner.refine(bad, truth)
    with pytest.raises(InvalidValueError, match=r"\[0, 1\]"):
        refiner.refine(good + 2.0, truth)
    with pytest.raises(ShapeError, match="target_normals"):
        refiner.refine(good, truth, target_normals=torch.zeros(5, 3))
    with pytest.raises(InvalidValueError, match="ManoParams"):
        refiner.refine(good, (torch.zeros(45), torch.eye(4)))
    wrong = ManoParams(truth.global_orient, truth.hand_pose[:, :10], truth.betas, truth.transl)
    with pytest.raises(ShapeError, match="hand_pose"):
        refiner.refine(good, wrong)
    with pytest.raises(ConfigError):
        ContactRefineSettings(contact_floor=1.5)
    # files
    with pytest.raises(ModelFileError, match="not found"):
        load_contact_target(tmp_path / "missing.npy", hand.num_vertices)
    np.save(tmp_path / "short.npy", np.zeros(100))
    with pytest.raises(ShapeError, match="short.npy"):
        load_contact_target(tmp_path / "short.npy", hand.num_vertices)
    (tmp_path / "nan.json").write_text(json.dumps({"contact": [0.5] * (hand.num_vertices - 1) + ["NaN"]}))
    with pytest.raises((InvalidValueError, ModelFileError)):
        load_contact_target(tmp_path / "nan.json", hand.num_vertices)
    (tmp_path / "nan2.json").write_text(json.dumps({"contact": [0.5] * (hand.num_vertices - 1) + [float("nan")]}))
    with pytest.raises(InvalidValueError, match="non-finite"):
        load_contact_target(tmp_path / "nan2.json", hand.num_vertices)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="broken.json"):
        load_contact_target(tmp_path / "broken.json", hand.num_vertices)
    values = np.concatenate([np.full((hand.num_vertices, 1), 0.5), np.tile([0.0, 0.0, 1.0], (hand.num_vertices, 1))], 1)
    np.save(tmp_path / "with_normals.npy", values)
    v, n = load_contact_target(tmp_path / "with_normals.npy", hand.num_vertices)
    assert v.shape == (hand.num_vertices,) and n.shape == (hand.num_vertices, 3)


def test_contact_colours_run_from_blue_to_red():
    c = contact_colors(torch.tensor([0.0, 0.5, 1.0]))
    assert c[0, 2] > 0.8 and c[0, 0] < 0.3  # blue
    assert torch.allclose(c[1], torch.full((3,), 0.95))
    assert c[2, 0] > 0.8 and c[2, 2] < 0.3  # red


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="handypriors")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_refined_params_contact_map_and_image(tmp_path, hand, obj, truth, grasp, capsys):
    import trimesh

    mesh = tmp_path / "box.obj"
    trimesh.Trimesh(obj.verts.numpy(), obj.faces.numpy(), process=False).export(mesh)
    target = tmp_path / "target.npy"
    np.save(target, grasp.contact_map.double().numpy())
    init = _perturbed(truth, seed=2, pose=0.1, rot=0.05, trans=0.005)
    (tmp_path / "init.json").write_text(json.dumps(init.to_dict()))
    out = tmp_path / "out"
    code = _cli(["refine-contact", "--synthetic-model", "right", "--object", str(mesh), "--target", str(target),
                 "--init", str(tmp_path / "init.json"), "--output-dir", str(out), "--iterations", "40",
                 "--image-size", "96"])
    assert code == 0
    assert "refine-contact" in capsys.readouterr().out
    refined = load_mano_params(out / "refined_params.json", hand)
    report = json.loads((out / "refined_params.json").read_text())["report"]
    assert report["agreement"]["mae"] < report["initial_agreement"]["mae"]
    co = np.load(out / "contact_map.npy")
    assert co.shape == (hand.num_vertices,) and co.min() >= 0 and co.max() <= 1
    # the written map is the contact module's output for the written parameters
    again = ContactRefiner(hand, obj).contact_map(refined.forward(hand).vertices)[0][0]
    assert np.allclose(again.numpy(), co, atol=1e-3)
    image = cv2.imread(str(out / "contact.png"))
    assert image.shape == (96, 192, 3)
    b, g, r = (image[..., k].astype(int) for k in range(3))
    assert int(((r > 180) & (g < 90) & (b < 90)).sum()) > 0  # contact (red) is visible
    assert int(((b > 180) & (r < 90)).sum()) > 0  # free skin (blue) too
    # a wrong-size target is reported, not raised
    np.save(tmp_path / "short.npy", np.zeros(10))
    code = _cli(["refine-contact", "--synthetic-model", "right", "--object", str(mesh), "--target",
                 str(tmp_path / "short.npy"), "--init", str(tmp_path / "init.json"), "--output-dir", str(out)])
    assert code == 2
    assert "error:" in capsys.readouterr().err
