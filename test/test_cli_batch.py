"""``handypriors batch``: every bag of a folder in a worker process, one failure reported without stopping the rest,
resumable (finished bags are skipped), and a clear error for ``--ray`` without Ray."""

from __future__ import annotations

import json
import shutil

import pytest
from test_cli import make_sequence, pose_arg, write_test_config

from handypriors_core import cli
from handypriors_core.app.batch import bag_name
from handypriors_core.io import load_ground_truth, read_poses


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    seq = make_sequence(root / "seq", frames=3, width=128, height=96)
    bags = root / "bags"
    (bags / "lab").mkdir(parents=True)
    shutil.copytree(seq / "bag", bags / "lab" / "run_a")  # a rosbag2 folder
    shutil.copy(next((seq / "bag").glob("*.mcap")), bags / "run_b.mcap")  # a single mcap file
    data = next((seq / "bag").glob("*.mcap")).read_bytes()
    (bags / "run_c.mcap").write_bytes(data[: len(data) // 3])  # corrupt
    meta = json.loads((seq / "meta.json").read_text())
    gt = load_ground_truth(seq)
    return {"bags": bags, "mesh": seq / meta["object"]["mesh"], "initial": pose_arg(gt.object2camera[0]),
            "config": write_test_config(root / "tracking.yaml"), "root": root}


def test_batch_reports_failures_and_resumes(folder, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["batch", str(folder["bags"]), "--object-mesh", str(folder["mesh"]), "--out", str(out), "--mode",
            "filter", "--initial-pose", folder["initial"], "--config", str(folder["config"]), "--mask-source",
            "none", "--workers", "1"]
    assert cli.main(args) == cli.EXIT_FAILED  # one bag failed
    stdout = capsys.readouterr().out
    assert "FAILED run_c" in stdout and "2 done, 0 skipped, 1 failed" in stdout
    for name in ("lab__run_a", "run_b"):
        poses = read_poses(out / name / "poses.json")
        assert [p.frame for p in poses.poses] == [0, 1, 2]
        assert json.loads((out / name / "done.json").read_text())["status"] == "done"
        assert not (out / name / "poses.json.partial").exists()
    failed = json.loads((out / "run_c" / "failed.json").read_text())
    assert "run_c.mcap" in failed["message"] and "\n" not in failed["message"]
    summary = json.loads((out / "batch.json").read_text())
    assert [o["status"] for o in summary["outcomes"]] == ["done", "done", "failed"]
    # again, the broken bag removed: the finished bags are skipped (nothing is re-run or rewritten)
    (folder["bags"] / "run_c.mcap").unlink()
    stamp = (out / "run_b" / "done.json").stat().st_mtime_ns
    assert cli.main(args) == cli.EXIT_OK
    stdout = capsys.readouterr().out
    assert "0 to track, 2 finished earlier" in stdout and "0 done, 2 skipped, 0 failed" in stdout
    assert (out / "run_b" / "done.json").stat().st_mtime_ns == stamp


def test_batch_ray_without_ray_is_a_clear_error(folder, tmp_path, capsys):
    try:
        import ray  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - only where Ray is installed
        return
    args = ["batch", str(folder["bags"]), "--object-mesh", str(folder["mesh"]), "--out", str(tmp_path / "o"),
            "--ray", "auto", "--initial-pose", folder["initial"]]
    assert cli.main(args) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "pip install 'ray[default]'" in err and "Traceback" not in err


def test_batch_argument_errors(folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["batch", str(empty), "--object-mesh", str(folder["mesh"]), "--out", str(tmp_path / "o")]) == 2
    assert "no bags" in capsys.readouterr().err
    assert cli.main(["batch", str(folder["bags"]), "--object-mesh", str(tmp_path / "x.obj"), "--out",
                     str(tmp_path / "o")]) == 2
    assert "x.obj" in capsys.readouterr().err


def test_bag_names(tmp_path):
    assert bag_name(tmp_path / "a" / "b.mcap", tmp_path) == "a__b"
    assert bag_name(tmp_path / "x" / "bag", tmp_path) == "x__bag"
    assert bag_name(tmp_path, tmp_path) == tmp_path.name
