"""Tests of the sequence generator (handypriors_core.synthetic): determinism, the folder format read back by
io.dev_sequence, contact consistency checked with independent geometry, silhouettes against an independent
projection of the ground-truth mesh, sensor effects, the rosbag2 contents and the command line."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from handypriors_core import defaults
from handypriors_core.errors import ConfigError
from handypriors_core.geometry.transforms import rotation_angle_between
from handypriors_core.io.dev_sequence import DevSequence, load_ground_truth, load_oracle_masks
from handypriors_core.models import JointMap, RigidObject, URDFHand, allegro_urdf
from handypriors_core.physics import HandGeometry, ObjectSDF
from handypriors_core.render.renderer import Renderer
from handypriors_core.synthetic import (
    ObjectSettings,
    SyntheticSequence,
    generate_sequence,
    load_scenario,
    main,
    make_camera,
    make_object_mesh,
    write_sequence,
)
from handypriors_core.synthetic.textures import FACE_COLOURS

TINY = {"frames": 8, "camera": {"width": 160, "height": 120}}
FINGER_OF_LINK = {**{f"link_{k}.0": ("index", "middle", "ring", "thumb")[k // 4] for k in range(16)},
                  **{f"link_{k}.0_tip": ("index", "middle", "ring", "thumb")[k // 4] for k in range(16)}}


def _fingers(links) -> set[str]:
    return {FINGER_OF_LINK[link] for link in links if link in FINGER_OF_LINK}


@pytest.fixture(scope="module")
def carry_scenario():
    return load_scenario(overrides=TINY)


@pytest.fixture(scope="module")
def carry_seq(carry_scenario):
    return SyntheticSequence(carry_scenario)


@pytest.fixture(scope="module")
def carry_dir(carry_seq, tmp_path_factory):
    return write_sequence(carry_seq, tmp_path_factory.mktemp("carry") / "box_carry")


@pytest.fixture(scope="module")
def reference_hand():
    """An independently built hand model (float64, denser sampling than the generator's)."""
    return URDFHand.from_urdf(allegro_urdf(), points_per_link=200, contact_points_per_link=8, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ settings
def test_scenario_defaults_overrides_and_validation():
    s = load_scenario()
    assert (s.camera.width, s.camera.height, s.fps, s.object.kind, s.motion.kind) == (640, 480, 30.0, "box", "carry")
    assert s.name == "box_carry"
    t = load_scenario(overrides={"object.kind": "cylinder", "camera": {"width": 160}, "grasp.open_pose.thumb":
                                 [1.3, 0.3, 0.0, 0.0]})
    assert t.object.kind == "cylinder" and t.camera.width == 160 and t.camera.height == 480
    assert t.grasp.open_pose["thumb"] == [1.3, 0.3, 0.0, 0.0] and t.grasp.open_pose["index"] == [0.0] * 4
    assert t.replace(seed=5).seed == 5 and t.replace(seed=5).object.kind == "cylinder"
    with pytest.raises(ConfigError, match="colour"):
        load_scenario(overrides={"object.colour": "red"})
    with pytest.raises(ConfigError, match="motion.kind"):
        load_scenario(overrides={"motion.kind": "juggle"})
    with pytest.raises(ConfigError, match="open_pose"):
        load_scenario(overrides={"grasp.open_pose.thumb": [1.0, 2.0]})


def test_camera_intrinsics_follow_the_convention():
    for (w, h), f in (((640, 480), 615.0), ((160, 120), 153.75)):
        cam = make_camera(load_scenario(overrides={"camera": {"width": w, "height": h}}))
        K = cam.K.double()
        assert (cam.width, cam.height) == (w, h)
        assert torch.allclose(K, torch.tensor([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], dtype=K.dtype))


# ------------------------------------------------------------------------------------------------ folder format
def test_generation_is_deterministic(carry_scenario, carry_dir, carry_seq, tmp_path):
    again = generate_sequence(carry_scenario, tmp_path / "again")
    files = sorted(p.relative_to(carry_dir) for p in carry_dir.rglob("*") if p.is_file())
    assert {"meta.json", "gt.json", "overlay.png"} <= {str(p) for p in files}
    assert len([p for p in files if p.parts[0] == "rgb"]) == 8
    assert any(p.parts[0] == "bag" and p.suffix == ".mcap" for p in files)
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (carry_dir / rel).read_bytes() == (again / rel).read_bytes(), rel
    # another seed: other noise and clutter, same motion
    other = SyntheticSequence(carry_scenario.replace(seed=1))
    assert np.allclose(other.object2camera, carry_seq.object2camera)
    assert not torch.equal(other.render(3).rgb, carry_seq.render(3).rgb)


def test_dev_sequence_reads_the_folder(carry_dir, carry_seq):
    seq = DevSequence(carry_dir, dtype=torch.float64)
    assert len(seq) == 8 and seq.fps == 30.0 and seq.base_moving
    assert seq.joint_names == carry_seq.joint_names == tuple(f"joint_{k}.0" for k in range(16))
    assert seq.hand_root_frame == "hand_root" and seq.camera_frame_id == "camera_color_optical_frame"
    assert torch.equal(seq.camera.K, carry_seq.camera.K) and (seq.camera.width, seq.camera.height) == (160, 120)
    assert np.allclose(np.diff(seq.stamps), 1 / 30) and seq.stamps[0] == 1700000000.0
    meta = json.loads((carry_dir / "meta.json").read_text())
    assert [f["stamp_ns"] for f in meta["frames"]][:2] == [1700000000000000000, 1700000000033333333]
    assert torch.allclose(seq.joint_positions(), torch.as_tensor(carry_seq.joint_positions), atol=1e-12)
    assert torch.allclose(seq.hand2camera(), torch.as_tensor(carry_seq.hand2camera), atol=1e-12)
    assert not torch.allclose(seq.hand2camera()[0], seq.hand2camera()[-1])  # the base moves in carry
    mesh = RigidObject.from_mesh(seq.object_mesh_path)
    assert mesh.uv is not None and mesh.texture is not None
    assert np.allclose(mesh.verts.min(0).values.numpy(), [-0.02, -0.03, -0.045], atol=1e-6)
    for i in (0, 5):
        frame, mem = seq[i], carry_seq.frame(i, dtype=torch.float64)
        assert torch.equal(frame.rgb, mem.rgb)
        assert torch.equal(torch.isnan(frame.depth), torch.isnan(mem.depth))
        assert torch.allclose(torch.nan_to_num(frame.depth), torch.nan_to_num(mem.depth), atol=1e-6)
        assert torch.allclose(frame.hand2camera, mem.hand2camera)
        assert torch.allclose(frame.joint_angles, mem.joint_angles)
        assert frame.object_mask is None  # the reader never opens the oracle masks


def test_ground_truth_reads_back(carry_dir, carry_seq):
    gt = load_ground_truth(carry_dir)
    mem = carry_seq.ground_truth()
    assert torch.allclose(gt.object2camera, torch.as_tensor(carry_seq.object2camera), atol=1e-12)
    assert torch.allclose(gt.object2camera, mem.object2camera, atol=1e-12)
    assert torch.allclose(gt.visible_fraction, mem.visible_fraction, atol=1e-12)
    assert ((gt.visible_fraction > 0.3) & (gt.visible_fraction <= 1.0)).all()
    assert "box" in gt.symmetry
    for a, b in zip(gt.contacts, mem.contacts):
        assert a.links == b.links and torch.allclose(a.pos_cam, b.pos_cam, atol=1e-12)
    # object rigidly held while the wrist turns: the object moves in the camera but not in the hand
    H2C = carry_seq.hand2camera
    o2h = np.linalg.inv(H2C) @ gt.object2camera.numpy()
    assert np.allclose(o2h, o2h[:1], atol=1e-9)
    R = gt.object2camera[:, :3, :3]
    assert float(rotation_angle_between(R[:1].expand_as(R), R).max()) > math.radians(20)
    summary = json.loads((carry_dir / "gt.json").read_text())["summary"]
    assert summary["max_penetration_mm"] < 1.0 and summary["fingers_in_contact_min_after_close"] >= 2
    masks = load_oracle_masks(carry_dir, 4)
    assert masks[0].sum() > 50 and masks[1].sum() > 50


# ------------------------------------------------------------------------------------------------ contacts
def test_contacts_are_consistent(carry_dir, reference_hand):
    """Independent check: the written object mesh, a separately built hand model, dense points both ways."""
    seq = DevSequence(carry_dir, dtype=torch.float64)
    gt = load_ground_truth(carry_dir)
    obj = RigidObject.from_mesh(seq.object_mesh_path, n_samples=3000, dtype=torch.float64)
    sdf = ObjectSDF(obj.verts, obj.faces)
    hand = reference_hand
    q = seq.joint_positions()
    o2h = torch.linalg.inv(seq.hand2camera()) @ gt.object2camera
    h2o = torch.linalg.inv(o2h)

    def to_obj(points):  # (N, P, 3) hand frame -> object frame
        return points @ h2o[:, :3, :3].transpose(1, 2) + h2o[:, None, :3, 3]

    surface = torch.cat([hand.surface_points(q), hand.mesh(q)[0]], 1)
    d_hand = sdf.query(to_obj(surface)).distance
    tips = sdf.query(to_obj(hand.fingertips(q))).distance - 0.012
    samples = obj.samples.expand(len(q), -1, -1) @ o2h[:, :3, :3].transpose(1, 2) + o2h[:, None, :3, 3]
    d_obj = HandGeometry(hand.faces).signed_distance(samples, hand.mesh(q)[0]).distance
    assert float(d_hand.min()) > -1e-3 and float(tips.min()) > -1e-3 and float(d_obj.min()) > -1e-3
    assert float(torch.cat([d_hand, tips, d_obj], 1).amin(1)[-1]) < 1e-3  # and the hand does touch the object

    close_frames = json.loads((carry_dir / "gt.json").read_text())["summary"]["close_frames"]
    tip_names = reference_hand.fingertip_names
    for i, contacts in enumerate(gt.contacts):
        if i >= close_frames - 1:
            assert len(_fingers(contacts.links)) >= 2, (i, contacts.links)
        assert "base_link" in contacts.links  # the object rests on the palm throughout
        on_surface = sdf.query(contacts.pos_obj[None]).distance[0]
        assert float(on_surface.abs().max()) < 2e-4
        assert torch.allclose(contacts.normal_cam.norm(dim=1), torch.ones(len(contacts), dtype=torch.float64))
        assert ((contacts.penetration < 1e-3) & (contacts.penetration > -1e-3)).all()
        # normals point from the hand into the object: never along the object's outward normal
        R = gt.object2camera[i, :3, :3]
        outward = sdf.query(contacts.pos_obj[None]).normal[0] @ R.T
        assert ((contacts.normal_cam * outward).sum(1) < 0.05).all()
        # the named link is within ~1 mm of the contact point
        pos_hand = contacts.pos_obj @ o2h[i, :3, :3].T + o2h[i, :3, 3]
        normal_hand = contacts.normal_cam @ seq.hand2camera()[i, :3, :3]
        links = hand.forward_kinematics(q[i])
        verts = hand.mesh(q[i][None])[0][0]
        for link, p, n in zip(contacts.links, pos_hand, normal_hand):
            li = hand.link_index(link)
            if link in tip_names:  # the exact sphere; the normal runs from its centre through the contact
                gap = (p - links[li, :3, 3]).norm() - 0.012
                assert float(torch.dot(n, (p - links[li, :3, 3]) / (p - links[li, :3, 3]).norm())) > 0.99
            else:  # the link's own closed mesh
                link_faces = hand.faces[hand.vertex_link[hand.faces[:, 0]] == li]
                gap = HandGeometry(link_faces).signed_distance(p[None, None], verts[None]).distance[0, 0]
            assert abs(float(gap)) < 1.5e-3, (i, link, float(gap))


# ------------------------------------------------------------------------------------------------ images
def test_object_mask_matches_projected_mesh(carry_dir):
    seq = DevSequence(carry_dir, dtype=torch.float64)
    gt = load_ground_truth(carry_dir)
    obj = RigidObject.from_mesh(seq.object_mesh_path, dtype=torch.float64)
    K = seq.camera.K.double().numpy()
    shift = 8
    for i in range(len(seq)):
        T = gt.object2camera[i].numpy()
        v = obj.verts.numpy() @ T[:3, :3].T + T[:3, 3]
        uv = v[:, :2] / v[:, 2:] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
        proj = np.zeros((seq.camera.height, seq.camera.width), np.uint8)
        for tri in np.round(uv[obj.faces.numpy()] * (1 << shift)).astype(np.int32):  # loop over triangles
            cv2.fillConvexPoly(proj, tri, 1, lineType=cv2.LINE_8, shift=shift)
        obj_mask, hand_mask = (m.numpy() > 0.5 for m in load_oracle_masks(carry_dir, i))
        free = ~hand_mask
        a, b = obj_mask & free, proj.astype(bool) & free
        iou = (a & b).sum() / (a | b).sum()
        assert iou > 0.95, (i, iou)
        # centroids agree to a fraction of a pixel (principal point and optical-frame convention)
        ya, xa = np.nonzero(a)
        yb, xb = np.nonzero(b)
        assert abs(xa.mean() - xb.mean()) < 0.5 and abs(ya.mean() - yb.mean()) < 0.5


def test_generator_zbuffer_keeps_the_nearest_face():
    """The generator's z-buffer (``Renderer.hard``): a small quad in front of a large one wins at its centre."""
    cam = make_camera(load_scenario(overrides={"camera": {"width": 64, "height": 48}}))
    quad = torch.tensor([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=torch.float32)
    verts = torch.cat([quad * torch.tensor([1.0, 1.0, 0]) + torch.tensor([0, 0, 2.0]),
                       quad * torch.tensor([0.05, 0.05, 0]) + torch.tensor([0, 0, 1.0])])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    out = Renderer().hard(verts[None], faces, cam)
    face, bary, zbuf = out.face[0], out.bary[0], out.zbuf[0]
    assert int(face[24, 32]) in (2, 3) and abs(float(zbuf[24, 32]) - 1.0) < 1e-5
    assert int(face[2, 2]) in (0, 1) and abs(float(zbuf[2, 2]) - 2.0) < 1e-5
    p = (bary[24, 32, :, None] * verts[faces[face[24, 32]]]).sum(0)  # barycentrics reproduce the pixel ray
    assert abs(float(p[0] / p[2] * cam.fx + cam.cx) - 32) < 1e-3
    assert abs(float(p[1] / p[2] * cam.fy + cam.cy) - 24) < 1e-3


def test_sensor_effects(carry_seq, carry_scenario):
    fr = carry_seq.render(4)
    clean_mm = np.round(fr.clean_depth.numpy() * 1000.0)
    rendered = clean_mm > 0
    holes = rendered & (fr.depth_mm == 0)
    assert 0.001 < holes.sum() / rendered.sum() < 0.5
    both = rendered & (fr.depth_mm > 0)
    err = np.abs(fr.depth_mm[both].astype(np.float64) - clean_mm[both])
    assert np.median(err) <= 1.0 and np.percentile(err, 99) < 50
    assert torch.equal(torch.isnan(fr.depth), torch.from_numpy(fr.depth_mm == 0))
    noise = fr.rgb.double() - (fr.clean_rgb.double() * 255.0)
    assert 0.5 < float(noise[20:-20, 20:-20].std()) < 40
    # effects off: exact quantisation of the clean render
    off = SyntheticSequence(carry_scenario.replace(rgb={"enabled": False}, depth={"enabled": False},
                                                   lighting={"direction_jitter": 0.0, "intensity_jitter": 0.0}))
    fo = off.render(4)
    assert np.array_equal(fo.depth_mm, np.round(fo.clean_depth.numpy() * 1000.0).astype(np.uint16))
    assert torch.equal(fo.rgb, (fo.clean_rgb * 255.0).round().to(torch.uint8))
    assert torch.equal(fo.mask, fr.mask)  # effects never change the geometry


def test_textured_objects_round_trip(tmp_path):
    for kind in ("box", "cylinder", "mesh"):
        mesh = make_object_mesh(ObjectSettings(kind=kind, texture_size=96))
        obj = RigidObject.from_mesh(mesh.write_obj(tmp_path / kind))
        assert obj.uv is not None and obj.texture is not None
        assert np.allclose(obj.verts.min(0).values.numpy(), mesh.verts.min(0), atol=1e-6)
        assert np.allclose(obj.verts.max(0).values.numpy(), mesh.verts.max(0), atol=1e-6)
    # the box's +x face (label 1) is red: look the texture up at the UV of a +x face centre
    box = make_object_mesh(ObjectSettings(kind="box"))
    plus_x = np.nonzero(box.verts[box.faces][:, :, 0].min(1) > 0.0199)[0]
    u, v = box.face_uv[plus_x[len(plus_x) // 2]].mean(0)
    h, w = box.texture.shape[:2]
    colour = box.texture[int((1 - v) * h), int(u * w)]
    assert np.abs(colour.astype(int) - np.array(FACE_COLOURS[0])).max() < 40


# ------------------------------------------------------------------------------------------------ motions
def test_rotate_refits_fingers_every_frame():
    scenario = load_scenario(overrides={"frames": 5, "camera": {"width": 64, "height": 48}, "object.kind": "cylinder",
                                        "motion": {"kind": "rotate", "rotate_angle": 0.8, "close_fraction": 0.2},
                                        "clutter.enabled": False})
    seq = SyntheticSequence(scenario)
    o2h = seq.trajectory.object2hand
    angle = rotation_angle_between(torch.as_tensor(o2h[:1, :3, :3]), torch.as_tensor(o2h[-1:, :3, :3]))
    assert abs(float(angle) - 0.8) < 1e-6
    assert not seq.trajectory.base_moving and np.allclose(seq.hand2camera, seq.hand2camera[:1])
    assert seq.penetration.max() < 1e-3
    for i in range(seq.trajectory.close_frames - 1, len(seq)):
        assert len(seq.fingers_in_contact(i)) >= 2
    q = seq.joint_positions
    assert np.abs(np.diff(q[1:], axis=0)).max() > 1e-4  # re-solved while the object turns


# ------------------------------------------------------------------------------------------------ command line
def test_cli_with_wonik_joint_names(tmp_path, capsys):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    out = tmp_path / "cli"
    args = ["--out", str(out), "--object", "cylinder", "--motion", "carry", "--frames", "3", "--width", "64",
            "--height", "48", "--seed", "2", "--joint-scheme", "wonik_ros2", "--no-effects", "--no-clutter",
            "--set", "grasp.grid_steps=8", "--set", "bag.joint_rate_factor=2"]
    assert main(args) == 0
    assert "s/frame" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 2 and meta["hand"]["bag_joint_names"][0] == "ah_joint00"
    ts = get_typestore(Stores.ROS2_HUMBLE)
    jmap = JointMap.shipped("wonik_ros2")
    with Reader(out / "bag") as reader:
        conns = [c for c in reader.connections if c.topic == "/joint_states"]
        assert len(conns) == 1
        msgs = [ts.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert len(msgs) == (3 - 1) * 2 + 1
    assert list(msgs[0].name) == sorted(jmap.driver_names)
    for k, frame in ((0, 0), (2, 1), (4, 2)):
        q = jmap.to_joint_vector(list(msgs[k].name), msgs[k].position, meta["hand"]["joint_names"])
        assert np.allclose(q, meta["frames"][frame]["joint_positions"], atol=1e-12)
    assert main(args) == 2  # the folder is not empty now
    assert main(["--out", str(tmp_path / "x"), "--set", "motion.nope=1"]) == 2


def test_bag_holds_the_sensor_data_only(carry_dir):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    meta = json.loads((carry_dir / "meta.json").read_text())
    stamps = [f["stamp_ns"] for f in meta["frames"]]
    ns = "/camera/camera"
    expected = {f"{ns}/color/image_raw": "sensor_msgs/msg/Image", f"{ns}/color/camera_info":
                "sensor_msgs/msg/CameraInfo", f"{ns}/aligned_depth_to_color/image_raw": "sensor_msgs/msg/Image",
                f"{ns}/aligned_depth_to_color/camera_info": "sensor_msgs/msg/CameraInfo",
                defaults.JOINT_STATES_TOPIC: "sensor_msgs/msg/JointState", "/tf": "tf2_msgs/msg/TFMessage",
                "/tf_static": "tf2_msgs/msg/TFMessage"}
    got: dict[str, list] = {}
    with Reader(carry_dir / "bag") as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == expected
        static = next(c for c in reader.connections if c.topic == "/tf_static")
        assert static.ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"
        for conn, t_ns, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.topic != "/tf" and conn.topic != "/tf_static":
                assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t_ns
            got.setdefault(conn.topic, []).append((t_ns, msg))
    assert not any(word in topic.lower() for topic in got for word in ("gt", "truth", "mask", "object", "contact"))
    k = 3
    assert [len(got[t]) for t in expected] == [8, 8, 8, 8, 7 * k + 1, 7 * k + 1, 1]
    for i, (t_ns, img) in enumerate(got[f"{ns}/color/image_raw"]):
        assert t_ns == stamps[i] and img.encoding == "rgb8" and img.header.frame_id == "camera_color_optical_frame"
        png = cv2.imread(str(carry_dir / "rgb" / f"{i:06d}.png"))[..., ::-1]
        assert np.array_equal(img.data.reshape(120, 160, 3), png)
    for i, (t_ns, img) in enumerate(got[f"{ns}/aligned_depth_to_color/image_raw"]):
        assert t_ns == stamps[i] and img.encoding == "16UC1" and img.step == 2 * 160
        png = cv2.imread(str(carry_dir / "depth" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(img.data.view("<u2").reshape(120, 160), png)
    info = got[f"{ns}/color/camera_info"][0][1]
    assert np.allclose(info.k.reshape(3, 3), meta["camera"]["K"]) and info.distortion_model == "plumb_bob"
    assert np.allclose(info.p.reshape(3, 4)[:, :3], meta["camera"]["K"]) and not info.d.any()
    joints = got[defaults.JOINT_STATES_TOPIC]
    assert [t for t, _ in joints[::k]] == stamps
    for i, (_, msg) in enumerate(joints[::k]):
        assert list(msg.name) == meta["hand"]["joint_names"]
        assert np.allclose(msg.position, meta["frames"][i]["joint_positions"], atol=1e-12)
    assert all(b > a for (a, _), (b, _) in itertools.pairwise(joints))
    mid = joints[k + 1][1].position  # between frames 1 and 2: linear interpolation
    q1, q2 = (np.asarray(meta["frames"][j]["joint_positions"]) for j in (1, 2))
    assert np.allclose(mid, q1 + (q2 - q1) / k, atol=1e-9)
    assert got["/tf_static"][0][1].transforms == []  # moving base: /tf carries camera -> hand_root
    for i, (t_ns, msg) in enumerate(got["/tf"][::k]):
        tr = msg.transforms[0]
        assert (tr.header.frame_id, tr.child_frame_id) == ("camera_color_optical_frame", "hand_root")
        t = meta["frames"][i]["hand_base_pose_cam"]["t"]
        assert np.allclose([tr.transform.translation.x, tr.transform.translation.y, tr.transform.translation.z], t)
        q = meta["frames"][i]["hand_base_pose_cam"]["quat_xyzw"]
        r = tr.transform.rotation
        assert np.allclose(np.abs(np.dot([r.x, r.y, r.z, r.w], q)), 1.0, atol=1e-9)


def test_refuses_to_overwrite(carry_dir, carry_seq):
    from handypriors_core.errors import InvalidValueError

    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(carry_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(Path(carry_dir).rglob("*")) if p.is_file()}

    before = snapshot()
    assert before, "the fixture wrote a sequence"
    with pytest.raises(InvalidValueError, match="not empty"):
        write_sequence(carry_seq, carry_dir)
    assert snapshot() == before  # nothing written, removed or touched
