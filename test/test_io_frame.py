"""Frame validation and poses.json read/write/validation (round trip through geometry's pose conversions)."""

import json
import math

import numpy as np
import pytest
import torch

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry import axis_angle_to_matrix, make_transform
from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.io import Frame, PoseRecord, PosesFile, read_poses, validate_poses, write_poses

H, W = 6, 8


def _camera() -> PinholeCamera:
    return PinholeCamera(K=torch.tensor([[10.0, 0, 3.5], [0, 10.0, 2.5], [0, 0, 1]]), width=W, height=H)


def _frame(**overrides) -> Frame:
    fields = {
        "index": 3,
        "stamp": 1700000000.1,
        "rgb": torch.zeros(H, W, 3, dtype=torch.uint8),
        "camera": _camera(),
        "joint_angles": torch.zeros(16),
        "hand2camera": torch.eye(4),
        "depth": torch.full((H, W), 0.5),
        "object_mask": torch.zeros(H, W),
        "hand_mask": None,
    }
    fields.update(overrides)
    return Frame(**fields)


# ---------------------------------------------------------------------------------------------- Frame
def test_valid_frame_and_helpers():
    depth = torch.full((H, W), 0.5)
    depth[0, 0] = math.nan
    frame = _frame(depth=depth, rgb=torch.full((H, W, 3), 255, dtype=torch.uint8))
    assert (frame.height, frame.width) == (H, W)
    assert frame.depth_valid.sum().item() == H * W - 1 and not frame.depth_valid[0, 0]
    torch.testing.assert_close(frame.rgb_float(), torch.ones(H, W, 3))
    masked = frame.with_masks(torch.ones(H, W), torch.zeros(H, W))
    assert masked.object_mask.sum() == H * W and masked.hand_mask is not None and frame.hand_mask is None


def test_frame_accepts_numpy_arrays():
    frame = _frame(rgb=np.zeros((H, W, 3), np.uint8), joint_angles=np.zeros(4), hand2camera=np.eye(4))
    assert isinstance(frame.rgb, torch.Tensor) and frame.joint_angles.dtype == torch.float64


@pytest.mark.parametrize(
    "field, value, error, match",
    [
        ("rgb", torch.zeros(H, W + 1, 3, dtype=torch.uint8), ShapeError, "rgb"),
        ("rgb", torch.zeros(H, W, 3), InvalidValueError, "rgb"),
        ("depth", torch.zeros(H + 1, W), ShapeError, "depth"),
        ("depth", torch.zeros(H, W), InvalidValueError, "depth"),  # 0 must be NaN, not "0 = invalid"
        ("depth", torch.full((H, W), math.inf), InvalidValueError, "depth"),
        ("object_mask", torch.full((H, W), 1.5), InvalidValueError, "object_mask"),
        ("hand_mask", torch.zeros(W, H), ShapeError, "hand_mask"),
        ("joint_angles", torch.tensor([0.0, math.nan]), InvalidValueError, "joint_angles"),
        ("joint_angles", torch.zeros(2, 2), ShapeError, "joint_angles"),
        ("hand2camera", torch.eye(3), ShapeError, "hand2camera"),
        ("hand2camera", torch.full((4, 4), math.inf), InvalidValueError, "hand2camera"),
        ("hand2camera", torch.diag(torch.tensor([1.0, 1.0, -1.0, 1.0])), InvalidValueError, "hand2camera"),
        ("stamp", math.nan, InvalidValueError, "stamp"),
        ("index", -1, InvalidValueError, "index"),
        ("camera", "cam", InvalidValueError, "camera"),
        ("joint_names", ("a", "b"), ShapeError, "joint_names"),
    ],
)
def test_frame_rejects_bad_fields(field, value, error, match):
    with pytest.raises(error, match=match):
        _frame(**{field: value})


# ---------------------------------------------------------------------------------------------- poses.json
def _poses_file(n: int = 4) -> PosesFile:
    gen = torch.Generator().manual_seed(0)
    records = []
    for i in range(n):
        aa = torch.randn(3, generator=gen, dtype=torch.float64) * 1.2
        T = make_transform(axis_angle_to_matrix(aa), torch.randn(3, generator=gen, dtype=torch.float64) * 0.1)
        A = torch.randn(6, 6, generator=gen, dtype=torch.float64)
        cov = A @ A.T * 1e-4 if i % 2 == 0 else None
        status = ("initialising", "tracking", "tracking", "lost")[i % 4]
        records.append(PoseRecord.from_transform(2 * i, 1700000000.0 + i / 30, T, cov, 0.5 + 0.1 * i, status))
    return PosesFile("camera_color_optical_frame", "object", "object/model.obj", records)


def test_poses_round_trip(tmp_path):
    original = _poses_file()
    path = tmp_path / "out" / "poses.json"
    write_poses(path, original)
    data = json.loads(path.read_text())
    assert set(data) == {"frame_id", "child_frame_id", "object_mesh", "poses"}
    assert set(data["poses"][0]) == {"frame", "stamp", "position", "orientation", "covariance", "quality", "status"}
    assert data["poses"][1]["covariance"] is None and len(data["poses"][0]["covariance"]) == 36
    back = read_poses(path)
    assert back == original
    torch.testing.assert_close(back.object2camera(), original.object2camera(), atol=1e-15, rtol=0)
    assert back.frames().tolist() == [0, 2, 4, 6] and back.statuses()[3] == "lost"
    expected_stamps = torch.tensor([1700000000.0 + i / 30 for i in range(4)], dtype=torch.float64)
    torch.testing.assert_close(back.stamps(), expected_stamps)


def test_pose_record_transform_matches_input():
    T = make_transform(axis_angle_to_matrix(torch.tensor([0.1, 3.0, -0.2], dtype=torch.float64)),
                       torch.tensor([0.01, -0.02, 0.45], dtype=torch.float64))
    cov = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
    record = PoseRecord.from_transform(0, 0.0, T, cov)
    torch.testing.assert_close(record.transform(), T, atol=1e-14, rtol=0)
    torch.testing.assert_close(record.covariance_matrix(), cov)
    assert record.orientation[3] >= 0 and record.status == "tracking"


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda d: d["poses"][1].update(orientation=[0, 0, 1]), ShapeError, r"poses\[1\]\.orientation"),
        (lambda d: d["poses"][2].update(orientation=[0, 0, 0, 2]), InvalidValueError, r"poses\[2\]\.orientation"),
        (lambda d: d["poses"][0].update(position=[0, math.nan, 0]), InvalidValueError, r"poses\[0\]\.position\[1\]"),
        (lambda d: d["poses"][0].update(covariance=[0.0] * 35), ShapeError, r"poses\[0\]\.covariance"),
        (lambda d: d["poses"][0]["covariance"].__setitem__(1, 5.0), InvalidValueError, "symmetric"),
        (lambda d: d["poses"][3].update(status="Tracking"), InvalidValueError, r"poses\[3\]\.status"),
        (lambda d: d["poses"][3].update(frame=2), InvalidValueError, r"poses\[3\]\.frame"),
        (lambda d: d["poses"][1].update(quality="high"), InvalidValueError, r"poses\[1\]\.quality"),
        (lambda d: d["poses"][1].pop("stamp"), InvalidValueError, r"poses\[1\].*stamp"),
        (lambda d: d["poses"][1].update(stamps=0.0), InvalidValueError, "unknown field"),
        (lambda d: d.update(frame_id=""), InvalidValueError, "frame_id"),
        (lambda d: d.pop("object_mesh"), InvalidValueError, "object_mesh"),
    ],
)
def test_validator_names_entry_and_field(mutate, error, match):
    data = _poses_file().to_dict()
    validate_poses(data)  # valid before the mutation
    mutate(data)
    with pytest.raises(error, match=match):
        validate_poses(data, "poses.json")


def test_read_poses_reports_file(tmp_path):
    path = tmp_path / "poses.json"
    path.write_text("{not json")
    with pytest.raises(InvalidValueError, match="poses.json"):
        read_poses(path)
    with pytest.raises(InvalidValueError, match="not found"):
        read_poses(tmp_path / "missing.json")
