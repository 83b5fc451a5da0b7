"""``handypriors track`` / ``eval`` / ``demo``: tracking a generated bag in every mode within error bounds, the
poses file, the result bag and video, Ctrl-C, evaluation against ground truth, and one-line errors.

The sequence comes from the project's generator (:mod:`handypriors_core.synthetic`): the Allegro hand closes on
a box and carries it (6 frames, 160x120). Its bag uses the RealSense wrapper's ``/camera/camera/...`` topic names,
so the configured topics are replaced by the ones found by message type. The tracking config is the shipped
one with ``refine.time_budget: 0`` (a fixed number of Adam steps: results do not depend on the machine's load).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from handypriors_core import cli
from handypriors_core.config import find_config
from handypriors_core.geometry.transforms import pose_from_transform
from handypriors_core.io import PoseRecord, PosesFile, load_ground_truth, read_poses, result_bag, write_poses
from handypriors_core.metrics import rotation_error, translation_error
from handypriors_core.visualization.video import OverlayVideo

FRAMES = 6


def pose_arg(T: torch.Tensor) -> str:
    p, q = pose_from_transform(T.double())
    return ",".join(f"{v:.12g}" for v in [*p.tolist(), *q.tolist()])


def make_sequence(root: Path, frames: int = FRAMES, width: int = 160, height: int = 120) -> Path:
    from handypriors_core.synthetic.generate import generate_sequence
    from handypriors_core.synthetic.scenario import load_scenario

    scenario = load_scenario(overrides={"frames": frames, "seed": 0, "camera": {"width": width, "height": height},
                                        "object": {"kind": "box"}, "motion": {"kind": "carry"}})
    path = generate_sequence(scenario, root, overwrite=True)
    assert (path / "bag" / "metadata.yaml").is_file() and (path / "gt.json").is_file()
    return path


def write_test_config(path: Path, **refine) -> Path:
    data = yaml.safe_load(find_config("allegro_tracking.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    params["tracking"]["refine"].update({"time_budget": 0.0, "iterations": 4, **refine})
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def seq(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    path = make_sequence(root / "seq")
    gt = load_ground_truth(path)
    meta = json.loads((path / "meta.json").read_text())
    return {"dir": path, "bag": path / "bag", "mesh": path / meta["object"]["mesh"], "gt": gt,
            "config": write_test_config(root / "tracking.yaml"), "initial": pose_arg(gt.object2camera[0]),
            "root": root}


def track_args(seq: dict, out: Path, mode: str, *extra: str) -> list[str]:
    return ["track", str(seq["bag"]), "--object-mesh", str(seq["mesh"]), "--mode", mode, "--initial-pose",
            seq["initial"], "--out", str(out), "--config", str(seq["config"]), "--mask-source", "none",
            "--no-progress", "--offline-window", "3", "--offline-overlap", "1", "--offline-iterations", "4", *extra]


def errors(poses: PosesFile, gt) -> tuple[torch.Tensor, torch.Tensor]:
    P = poses.object2camera()
    G = gt.object2camera[poses.frames()]
    return translation_error(P, G), rotation_error(P, G)


# --------------------------------------------------------------------------------------------- tracking
@pytest.mark.parametrize("mode", ["filter", "refine", "offline"])
def test_track_each_mode_within_error_bounds(seq, tmp_path, mode, capsys):
    out = tmp_path / "poses.json"
    assert cli.main(track_args(seq, out, mode)) == 0
    stdout, stderr = capsys.readouterr()
    # the generator writes the topics every entry point defaults to: nothing is picked by type as a fallback
    assert "picked by message type" not in stderr and "/camera/camera/color/image_raw" in stderr
    assert f"{mode}: {FRAMES} of {FRAMES} images tracked" in stdout
    poses = read_poses(out)  # validates the format
    assert [p.frame for p in poses.poses] == list(range(FRAMES))
    assert poses.frame_id == "camera_color_optical_frame" and poses.child_frame_id == "object"
    stamps = seq["gt"].stamps
    np.testing.assert_allclose(poses.stamps().numpy(), stamps.numpy(), atol=1e-6)
    assert all(p.covariance is not None for p in poses.poses)
    t_err, r_err = errors(poses, seq["gt"])
    # the object moves ~3 cm and turns over the sequence: holding the first pose would be far off
    gt = seq["gt"].object2camera
    still = translation_error(gt[:1].expand_as(gt), gt)
    assert float(still.max()) > 0.02
    assert float(t_err.max()) < 0.01, t_err
    assert float(r_err.max()) < math.radians(5), r_err
    assert float(t_err.mean()) < 0.25 * float(still.mean())


def test_result_bag_and_video(seq, tmp_path, capsys):
    out, bag_out, video = tmp_path / "poses.json", tmp_path / "result.mcap", tmp_path / "overlay.mp4"
    args = track_args(seq, out, "filter", "--max-frames", "3", "--out-bag", str(bag_out), "--video", str(video))
    assert cli.main(args) == 0
    assert len(read_poses(out).poses) == 3
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Reader(seq["bag"]) as src:
        input_counts = {c.topic: c.msgcount for c in src.connections}
    assert bag_out.is_file()
    with Reader(bag_out) as reader:
        counts: dict[str, int] = {}
        for c in reader.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
        poses, overlays, object_tfs, markers = [], [], [], []
        for conn, _, raw in reader.messages():
            if conn.topic == result_bag.POSE_TOPIC:
                poses.append(ts.deserialize_cdr(raw, conn.msgtype))
            elif conn.topic == result_bag.OVERLAY_TOPIC:
                overlays.append(ts.deserialize_cdr(raw, conn.msgtype))
            elif conn.topic == result_bag.CONTACTS_TOPIC:
                markers.append(ts.deserialize_cdr(raw, conn.msgtype))
            elif conn.topic == "/tf":
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                object_tfs += [t for t in msg.transforms if t.child_frame_id == "object"]
    for topic, n in input_counts.items():  # every input message is copied
        assert counts[topic] - (3 if topic == "/tf" else 0) == n, topic
    assert len(poses) == len(overlays) == len(object_tfs) == len(markers) == 3
    expected = read_poses(out).poses
    for msg, tf, rec in zip(poses, object_tfs, expected):
        p = msg.pose.pose.position
        assert [p.x, p.y, p.z] == pytest.approx(list(rec.position), abs=1e-9)
        assert tf.header.frame_id == "camera_color_optical_frame"
        assert [tf.transform.translation.x, tf.transform.translation.y] == pytest.approx(list(rec.position[:2]))
        np.testing.assert_allclose(np.asarray(msg.pose.covariance), np.asarray(rec.covariance), atol=1e-12)
    assert (overlays[0].width, overlays[0].height, overlays[0].encoding) == (160, 120, "rgb8")
    assert markers[0].markers[0].mesh_resource.startswith("file://")
    written = video if video.is_file() else video.with_suffix(".png")
    assert written.is_file() and written.stat().st_size > 1000
    if written == video:
        import cv2

        cap = cv2.VideoCapture(str(video))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
        cap.release()


def test_ctrl_c_writes_what_is_done(seq, tmp_path, monkeypatch, capsys):
    from handypriors_core.estimation.tracker import ObjectTracker

    original = ObjectTracker.track
    calls = {"n": 0}

    def interrupted(self, frame):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, frame)

    monkeypatch.setattr(ObjectTracker, "track", interrupted)
    out = tmp_path / "poses.json"
    assert cli.main(track_args(seq, out, "filter")) == cli.EXIT_INTERRUPTED
    assert [p.frame for p in read_poses(out).poses] == [0, 1]
    assert "interrupted" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- eval
def test_eval_ground_truth_is_zero_and_offset_is_measured(seq, tmp_path, capsys):
    gt = seq["gt"]
    exact = PosesFile("camera_color_optical_frame", "object", str(seq["mesh"]),
                      [PoseRecord.from_transform(i, float(gt.stamps[i]), gt.object2camera[i], torch.eye(6) * 1e-4)
                       for i in range(len(gt))])
    write_poses(tmp_path / "gt_poses.json", exact)
    out, plots = tmp_path / "eval.json", tmp_path / "plots"
    assert cli.main(["eval", "--poses", str(tmp_path / "gt_poses.json"), "--gt", str(seq["dir"]), "--out", str(out),
                     "--plots", str(plots)]) == 0
    table = capsys.readouterr().out
    assert "ADD-S" in table and "2D Chamfer" in table
    result = json.loads(out.read_text())
    for key in ("translation", "rotation", "add", "add_s", "add_or_add_s", "chamfer_3d", "chamfer_2d",
                "chamfer_2d_px"):
        assert result["summary"][key]["median"] == pytest.approx(0.0, abs=1e-6), key
    assert result["summary"]["add_s"]["auc"] == pytest.approx(1.0, abs=1e-6)
    assert {p.name for p in plots.iterdir()} == {"error_over_time.png", "add_s_accuracy.png"}
    # 1 cm along the camera x axis, frame 2 left out: every error is exactly 1 cm, the missing frame fails
    shifted = []
    for rec in exact.poses:
        if rec.frame == 2:
            continue
        T = rec.transform()
        T[0, 3] += 0.01
        shifted.append(PoseRecord.from_transform(rec.frame, rec.stamp, T, None, 0.5, "tracking"))
    write_poses(tmp_path / "shifted.json", PosesFile("camera_color_optical_frame", "object", "", shifted))
    assert cli.main(["eval", "--poses", str(tmp_path / "shifted.json"), "--gt", str(seq["dir"] / "gt.json"),
                     "--object-mesh", str(seq["mesh"]), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    frames = result["frames"]
    assert frames["estimated"][2] is False and frames["translation"][2] is None
    got = [v for i, v in enumerate(frames["translation"]) if i != 2]
    assert got == pytest.approx([0.01] * (len(gt) - 1), abs=1e-9)
    assert [v for i, v in enumerate(frames["add"]) if i != 2] == pytest.approx([0.01] * (len(gt) - 1), abs=1e-9)
    assert result["summary"]["rotation"]["median"] == pytest.approx(0.0, abs=1e-9)
    assert result["summary"]["add"]["frames_over"] == 1 and result["info"]["num_missing"] == 1
    n = len(gt)
    assert result["summary"]["add"]["auc"] == pytest.approx((n - 1) / n * (1 - 0.01 / 0.10), abs=1e-9)
    # only the estimated frames
    assert cli.main(["eval", "--poses", str(tmp_path / "shifted.json"), "--gt", str(seq["dir"]), "--only-estimated",
                     "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frames"]["index"] == [i for i in range(n) if i != 2] and result["info"]["num_missing"] == 0
    assert result["summary"]["add"]["auc"] == pytest.approx(1 - 0.01 / 0.10, abs=1e-9)
    assert result["summary"]["add"]["median"] == pytest.approx(0.01, abs=1e-9)


def test_symmetry_text():
    from handypriors_core.evaluation import is_symmetric

    assert is_symmetric("geometry: cylinder (continuous)") and is_symmetric("box D2h")
    for text in ("", "none", "geometry: box (D2h, 8 proper symmetries); texture breaks symmetry", "asymmetric"):
        assert not is_symmetric(text), text


# --------------------------------------------------------------------------------------------- errors
def _one_error_line(capsys, command: str = "track") -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith(f"handypriors {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_errors_are_one_line(seq, tmp_path, capsys):
    from test_bag_reader import Rig, write_rig_bag

    base = ["--object-mesh", str(seq["mesh"]), "--initial-pose", seq["initial"], "--out", str(tmp_path / "p.json"),
            "--no-progress", "--mask-source", "none"]
    # corrupt bag
    data = next(seq["bag"].glob("*.mcap")).read_bytes()
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(data[: len(data) // 3])
    assert cli.main(["track", str(broken), *base]) == cli.EXIT_USAGE
    assert "broken.mcap" in _one_error_line(capsys)
    # a bag missing a topic (no joint states)
    rig = Rig(frames=2)
    nojoints = write_rig_bag(tmp_path / "nojoints", rig, with_joints=False)
    assert cli.main(["track", str(nojoints), *base]) == cli.EXIT_USAGE
    assert "no joint states" in _one_error_line(capsys)
    # an explicitly named topic that is not there
    assert cli.main(["track", str(seq["bag"]), *base, "--image-topic", "/nope/image"]) == cli.EXIT_USAGE
    assert "/nope/image" in _one_error_line(capsys)
    # a missing mesh
    args = ["track", str(seq["bag"]), *base]
    args[args.index("--object-mesh") + 1] = str(tmp_path / "missing.obj")
    assert cli.main(args) == cli.EXIT_USAGE
    assert "missing.obj" in _one_error_line(capsys)
    # an unknown joint name
    names = write_rig_bag(tmp_path / "names", rig, joint_names=[f"arm_joint_{i}" for i in range(16)])
    assert cli.main(["track", str(names), *base]) == cli.EXIT_USAGE
    assert "arm_joint_" in _one_error_line(capsys)
    # a malformed initial pose
    args = ["track", str(seq["bag"]), *base]
    args[args.index("--initial-pose") + 1] = "1,2,3"
    assert cli.main(args) == cli.EXIT_USAGE
    assert "x,y,z,qx,qy,qz,qw" in _one_error_line(capsys)
    # eval with a missing poses file
    assert cli.main(["eval", "--poses", str(tmp_path / "none.json"), "--gt", str(seq["dir"])]) == cli.EXIT_USAGE
    assert "none.json" in _one_error_line(capsys, "eval")
    # --debug shows the traceback instead
    from handypriors_core.errors import ModelFileError

    args = ["track", str(seq["bag"]), *base, "--debug"]
    args[args.index("--object-mesh") + 1] = str(tmp_path / "missing.obj")
    with pytest.raises(ModelFileError):
        cli.main(args)


def test_initial_pose_parsing(tmp_path):
    T = cli.parse_initial_pose("0.1,0.2,0.3,0,0,0,2")  # the quaternion is normalised
    np.testing.assert_allclose(T.numpy(), np.array([[1, 0, 0, 0.1], [0, 1, 0, 0.2], [0, 0, 1, 0.3], [0, 0, 0, 1]]))
    R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    (tmp_path / "rt.json").write_text(json.dumps({"R": R.tolist(), "t": [1, 2, 3]}))
    T = cli.parse_initial_pose(str(tmp_path / "rt.json"))
    np.testing.assert_allclose(T[:3, :3].numpy(), R.numpy())
    write_poses(tmp_path / "p.json", PosesFile("cam", "object", "", [PoseRecord.from_transform(4, 1.0, T)]))
    np.testing.assert_allclose(cli.parse_initial_pose(str(tmp_path / "p.json")).numpy(), T.numpy(), atol=1e-12)
    (tmp_path / "m.txt").write_text(" ".join(str(v) for v in T.reshape(-1).tolist()))
    np.testing.assert_allclose(cli.parse_initial_pose(str(tmp_path / "m.txt")).numpy(), T.numpy())


def test_demo_hand_only(tmp_path, capsys):
    assert cli.main(["demo", "--hand-only", "--out", str(tmp_path)]) == 0
    import cv2

    images = sorted(tmp_path.glob("hand_0*.png"))
    assert len(images) == 4
    first, last = cv2.imread(str(images[0])), cv2.imread(str(images[2]))
    assert first.shape == (240, 320, 3)
    background = np.array([247, 242, 242])  # BGR of the light background
    for img in (first, last):
        hand_pixels = (np.abs(img.astype(int) - background).sum(-1) > 60).mean()
        assert 0.03 < hand_pixels < 0.6
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 2  # open vs closed hand differ


def test_video_falls_back_to_png_strip(tmp_path, monkeypatch):
    import cv2

    class NoCodec:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", NoCodec)
    lines = []
    video = OverlayVideo(tmp_path / "o.mp4", 30.0, expected_frames=20, report=lines.append, strip_frames=4)
    for i in range(20):
        video.add(np.full((12, 16, 3), i * 10, dtype=np.uint8))
    path = video.close()
    assert path == tmp_path / "o.png" and not (tmp_path / "o.mp4").exists()
    strip = cv2.imread(str(path))
    assert strip.shape == (12, 64, 3)
    assert [int(strip[0, 16 * k, 0]) for k in range(4)] == [0, 60, 130, 190]  # frames 0, 6, 13, 19
    assert "no mp4" in lines[0] and "o.png" in lines[0]
