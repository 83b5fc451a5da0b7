"""``handypriors batch``: every bag of a folder in a worker process, one failure reported without stopping the rest,
resumable (finished bags are skipped), three bags on a local Ray instance (``--ray local``), and a clear error for
``--ray`` without Ray."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import make_sequence, pose_arg, write_test_config

from handypriors_core import cli
from handypriors_core.app.batch import bag_name
from handypriors_core.io import load_ground_truth, read_poses

REPO = Path(__file__).resolve().parents[1]


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


def test_batch_ray_without_ray_is_a_clear_error(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, installed or not
    args = ["batch", str(folder["bags"]), "--object-mesh", str(folder["mesh"]), "--out", str(tmp_path / "o"),
            "--ray", "auto", "--initial-pose", folder["initial"]]
    assert cli.main(args) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--ray needs Ray, which is not installed" in err and "Traceback" not in err


def test_batch_on_a_local_ray_instance(folder, tmp_path):
    """Three bags as Ray tasks on a private 2-CPU instance (`--ray local`), the command as a user runs it."""
    pytest.importorskip("ray", reason="ray is pinned in requirements.txt; `make setup` installs it")
    bags = tmp_path / "bags"
    for name in ("a", "b", "c"):
        shutil.copytree(folder["bags"] / "lab" / "run_a", bags / f"run_{name}")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               RAY_ADDRESS="")  # a cluster address in the caller's environment must not matter for 'local'
    result = subprocess.run(
        [sys.executable, "-m", "handypriors_core.cli", "batch", str(bags), "--object-mesh", str(folder["mesh"]),
         "--out", str(out), "--mode", "filter", "--initial-pose", folder["initial"], "--config",
         str(folder["config"]), "--ray", "local", "--workers", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == cli.EXIT_OK, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"Ray 2\.\d+\.\d+ on a private local instance \(2 CPUs\): 2 CPUs, 1 node", result.stdout), (
        result.stdout)
    assert "3 done, 0 skipped, 0 failed" in result.stdout, result.stdout
    for name in ("run_a", "run_b", "run_c"):
        assert [p.frame for p in read_poses(out / name / "poses.json").poses] == [0, 1, 2]
        assert json.loads((out / name / "done.json").read_text())["status"] == "done"


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
