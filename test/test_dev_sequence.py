"""Sequence-folder reader: a tiny sequence written here in the documented format, the separation of
sensor data from ground truth / oracle masks, and (when ../shared is present) the shipped dev sequences."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from handypriors_core.errors import InvalidValueError
from handypriors_core.geometry import axis_angle_to_matrix, make_transform, transform_points
from handypriors_core.io import (
    DevSequence,
    Frame,
    load_ground_truth,
    load_oracle_masks,
    oracle_masks,
    with_oracle_masks,
)

H, W, N = 12, 16, 3


def _pose_entry(T: np.ndarray) -> dict:
    return {"R": T[:3, :3].tolist(), "t": T[:3, 3].tolist(), "quat_xyzw": [0.0, 0.0, 0.0, 1.0]}


def _hand_pose(i: int) -> np.ndarray:
    T = make_transform(axis_angle_to_matrix(torch.tensor([0.1 * i, 0.2, -0.3], dtype=torch.float64)),
                       torch.tensor([0.01 * i, 0.05, 0.4], dtype=torch.float64))
    return T.numpy()


def _object_pose(i: int) -> np.ndarray:
    T = make_transform(axis_angle_to_matrix(torch.tensor([0.0, 0.3 * i, 0.1], dtype=torch.float64)),
                       torch.tensor([0.0, 0.0, 0.45 + 0.01 * i], dtype=torch.float64))
    return T.numpy()


def _write_sequence(root: Path, with_ground_truth: bool = True) -> Path:
    """Write an N-frame sequence in the documented format (what the synthetic generator will do)."""
    for sub in ("rgb", "depth", "mask", "object"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "object" / "model.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    frames, gt_frames = [], []
    for i in range(N):
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100 + i, 7  # R, G, B
        cv2.imwrite(str(root / f"rgb/{i:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        depth = np.full((H, W), 450 + i, np.uint16)
        depth[0, :] = 0  # no return
        cv2.imwrite(str(root / f"depth/{i:06d}.png"), depth)
        if with_ground_truth:
            mask = np.zeros((H, W), np.uint8)
            mask[2:5, 3:9] = 1
            mask[6:10, 4:12] = 2
            cv2.imwrite(str(root / f"mask/{i:06d}.png"), mask)
        frames.append({
            "index": i, "stamp": 1700000000.0 + i / 30, "stamp_ns": 1700000000000000000 + round(i * 1e9 / 30),
            "rgb": f"rgb/{i:06d}.png", "depth": f"depth/{i:06d}.png", "mask": f"mask/{i:06d}.png",
            "joint_positions": [0.1 * i + 0.01 * j for j in range(4)],
            "hand_base_pose_cam": _pose_entry(_hand_pose(i)),
        })
        gt_frames.append({
            "index": i, "stamp": 1700000000.0 + i / 30, "object_pose_cam": _pose_entry(_object_pose(i)),
            "visible_fraction": 1.0 - 0.1 * i,
            "contacts": [] if i == 0 else [{
                "link": "link_3.0_tip", "mujoco_body": "ff_tip", "pos_cam": [0.0, 0.01 * i, 0.4],
                "pos_obj": [0.01, 0.0, 0.02], "normal_cam_hand_to_obj": [0.0, 0.0, 1.0],
                "normal_force": 1.5 * i, "penetration": 1e-4,
            }] * i,
        })
    meta = {
        "sequence": "tiny", "fps": 30, "width": W, "height": H,
        "camera": {"frame_id": "cam_optical", "K": [[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]],
                   "distortion_model": "plumb_bob", "D": [0.0] * 5},
        "depth": {"unit": "millimetre", "scale_to_m": 0.001, "invalid": 0, "dtype": "uint16"},
        "mask": {"values": {"0": "background", "1": "hand", "2": "object"}},
        "hand": {"joint_names": ["j0", "j1", "j2", "j3"], "root_frame": "palm", "base_moving": True},
        "object": {"name": "tri", "mesh": "object/model.obj", "mass_kg": 0.1},
        "frames": frames,
    }
    (root / "meta.json").write_text(json.dumps(meta))
    if with_ground_truth:
        gt = {"object": {"name": "tri", "mesh": "object/model.obj", "symmetry": "none"}, "frames": gt_frames}
        (root / "gt.json").write_text(json.dumps(gt))
    return root


def test_frames_hold_sensor_data_in_core_units(tmp_path):
    seq = DevSequence(_write_sequence(tmp_path / "tiny"))
    assert len(seq) == N and seq.name == "tiny" and seq.joint_names == ("j0", "j1", "j2", "j3")
    assert seq.camera_frame_id == "cam_optical" and seq.hand_root_frame == "palm" and seq.base_moving
    assert seq.object_mesh_path == (tmp_path / "tiny" / "object" / "model.obj").resolve()
    assert seq.object_mesh_path.is_file() and seq.object_mass_kg == 0.1
    torch.testing.assert_close(seq.camera.K, torch.tensor([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]]))
    frames = list(seq.frames())
    assert [f.index for f in frames] == [0, 1, 2] and all(isinstance(f, Frame) for f in frames)
    f = frames[2]
    assert f.stamp == pytest.approx(1700000000.0 + 2 / 30, abs=1e-6)
    assert f.rgb.dtype == torch.uint8 and f.rgb[0, 0].tolist() == [200, 102, 7]  # RGB order, not BGR
    assert math.isnan(f.depth[0, 3]) and not f.depth_valid[0].any()
    torch.testing.assert_close(f.depth[1:], torch.full((H - 1, W), 0.452))
    torch.testing.assert_close(f.joint_angles, torch.tensor([0.2, 0.21, 0.22, 0.23]))
    torch.testing.assert_close(f.hand2camera, torch.from_numpy(_hand_pose(2)).float())
    assert f.object_mask is None and f.hand_mask is None and f.joint_names == seq.joint_names
    assert [f.index for f in seq.frames(start=1)] == [1, 2] and seq[-1].index == 2
    torch.testing.assert_close(seq.hand2camera()[1], torch.from_numpy(_hand_pose(1)).float())
    with pytest.raises(IndexError):
        seq[N]


def test_tracker_input_never_needs_ground_truth_or_masks(tmp_path, monkeypatch):
    root = _write_sequence(tmp_path / "tiny")
    opened: list[str] = []
    real_imread = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda p, *a: opened.append(p) or real_imread(p, *a))
    seq = DevSequence(root)
    frames = list(seq.frames())
    assert len(frames) == N and opened and not any("/mask/" in p for p in opened)
    # without gt.json and mask/ the sensor side still loads
    bare = _write_sequence(tmp_path / "bare", with_ground_truth=False)
    assert not (bare / "gt.json").exists() and not any((bare / "mask").iterdir())
    assert len(list(DevSequence(bare).frames())) == N
    with pytest.raises(InvalidValueError, match="gt.json"):
        load_ground_truth(bare)
    with pytest.raises(InvalidValueError, match="mask"):
        load_oracle_masks(bare, 0)


def test_ground_truth_reader(tmp_path):
    root = _write_sequence(tmp_path / "tiny")
    gt = load_ground_truth(root)
    assert len(gt) == N and gt.object2camera.dtype == torch.float64 and gt.symmetry == "none"
    torch.testing.assert_close(gt.object2camera[1], torch.from_numpy(_object_pose(1)))
    assert [len(c) for c in gt.contacts] == [0, 1, 2]
    c = gt.contacts[2]
    assert c.links == ("link_3.0_tip",) * 2 and c.pos_cam.shape == (2, 3) and c.normal_force.tolist() == [3.0, 3.0]
    assert gt.contacts[0].pos_obj.shape == (0, 3)
    torch.testing.assert_close(gt.visible_fraction, torch.tensor([1.0, 0.9, 0.8], dtype=torch.float64))
    torch.testing.assert_close(load_ground_truth(root / "gt.json").object2camera, gt.object2camera)


def test_oracle_masks(tmp_path):
    root = _write_sequence(tmp_path / "tiny")
    obj, hand = load_oracle_masks(root, 1)
    assert obj.dtype == torch.float32 and obj.sum() == 4 * 8 and hand.sum() == 3 * 6
    assert (obj * hand).sum() == 0
    assert [i for i, _, _ in oracle_masks(root)] == [0, 1, 2]
    frame = with_oracle_masks(DevSequence(root)[2], root)
    torch.testing.assert_close(frame.object_mask, obj)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: m.pop("camera"), "camera"),
        (lambda m: m["frames"][1].update(index=5), r"frames\[1\]\.index"),
        (lambda m: m["frames"][2].update(joint_positions=[0.0]), r"frames\[2\]\.joint_positions"),
        (lambda m: m["frames"][0]["hand_base_pose_cam"].update(R=np.diag([1, 1, -1.0]).tolist()), "rotation"),
        (lambda m: m["frames"][2].update(stamp=0.0), "increasing"),
    ],
)
def test_malformed_meta_is_reported(tmp_path, mutate, match):
    root = _write_sequence(tmp_path / "tiny")
    meta = json.loads((root / "meta.json").read_text())
    mutate(meta)
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidValueError, match=match):
        DevSequence(root)


def test_missing_image_is_reported(tmp_path):
    root = _write_sequence(tmp_path / "tiny")
    (root / "rgb" / "000001.png").unlink()
    seq = DevSequence(root)
    with pytest.raises(InvalidValueError, match="000001.png"):
        seq[1]


# ------------------------------------------------------------------------------------ shipped dev sequences
@pytest.mark.parametrize("name", ["mug_pivot_fixed", "block_lift_wrist"])
def test_shipped_dev_sequences(name, shared_dir):
    if not (shared_dir / "data" / "dev" / name).is_dir():
        pytest.skip(f"{shared_dir}/data/dev/{name} not present")
    seq = DevSequence(shared_dir / "data" / "dev" / name)
    assert len(seq) == 60 and len(seq.joint_names) == 16 and seq.object_mesh_path.is_file()
    assert (seq.camera.width, seq.camera.height) == (640, 480)
    assert float(seq.camera.cx) == 319.5 and float(seq.camera.fx) == 615.0
    assert seq.stamps[1] - seq.stamps[0] == pytest.approx(1 / 30)
    frame = seq[30]
    valid = frame.depth[frame.depth_valid]
    assert 0.2 < valid.median() < 2.0  # metres, not millimetres
    gt = load_ground_truth(seq.path)
    assert len(gt) == 60 and sum(len(c) for c in gt.contacts) > 60
    obj_mask, hand_mask = load_oracle_masks(seq.path, 30)
    assert obj_mask.sum() > 500 and hand_mask.sum() > 500
    # the ground-truth object origin projects into the object's mask neighbourhood, and its depth agrees
    centre = transform_points(gt.object2camera[30], torch.zeros(1, 3, dtype=torch.float64))
    u, v = seq.camera.project(centre.float()[None])[0, 0].round().long().tolist()
    ys, xs = torch.nonzero(obj_mask > 0, as_tuple=True)
    assert xs.min() - 10 <= u <= xs.max() + 10 and ys.min() - 10 <= v <= ys.max() + 10
    object_depth = frame.depth[(obj_mask > 0) & frame.depth_valid].median()
    assert abs(float(object_depth) - float(centre[0, 2])) < 0.06
