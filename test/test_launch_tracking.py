"""``ros2 launch`` / ``ros2 run`` / launch_testing against this checkout (needs the ros2 launch stack in .venv).

``make setup`` installs the launch stack from ``../shared/vendor/ros2-jazzy-launch`` where no ROS distro is
sourced (a sourced distro brings its own). These tests build a throwaway ament prefix pointing at this checkout
(``scripts/ament_prefix.py``), generate a small sequence with a bag (Wonik ROS 2 joint names), and

* run ``test/launch_tests/allegro_tracking_launch.py`` with ``launch_test`` (the real launch file with
  ``use_robot_state_publisher:=false``, the bag played in; see that file for what it asserts),
* list and run the package executables with ``ros2 pkg executables`` / ``ros2 run``,
* run ``ros2 launch handypriors_ros allegro_tracking.launch.py`` with ``ros2 run handypriors_ros sequence_player``
  and press Ctrl-C the way a terminal does (SIGINT to the launch's whole process group, so every node gets
  SIGINT from the terminal and again from the launcher): every node must end with exit code 0, no traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from handypriors_core import defaults
from handypriors_ros.ros_environment import ros_environment

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAUNCH_STACK = ("launch", "launch_ros", "launch_testing", "launch_testing_ros", "ros2cli", "ros2launch", "ros2run",
                "ros2param", "composition_interfaces")


def _missing_launch_stack() -> str | None:
    missing = [m for m in LAUNCH_STACK if importlib.util.find_spec(m) is None]
    missing += [tool for tool in ("ros2", "launch_test") if shutil.which(tool, path=f"{BIN}{os.pathsep}"
                                                                         f"{os.environ.get('PATH', '')}") is None]
    if missing:
        return (f"the ros2 launch stack is not installed ({', '.join(missing)} missing): `make setup` installs it "
                "from ../shared/vendor/ros2-jazzy-launch where no ROS distro is sourced")
    return None


pytestmark = pytest.mark.skipif(_missing_launch_stack() is not None, reason=str(_missing_launch_stack()))


def _make_prefix(prefix: Path) -> Path:
    spec = importlib.util.spec_from_file_location("ament_prefix", REPO / "scripts" / "ament_prefix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_prefix(prefix, REPO, sys.executable)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """(generated sequence folder, parameter file, environment for ros2 commands on this test's domain)."""
    root = tmp_path_factory.mktemp("launch")
    sequence = root / "sequence"
    generated = subprocess.run(
        [sys.executable, "-m", "handypriors_core.synthetic.generate", "--out", str(sequence), "--frames", "30",
         "--width", "160", "--height", "120", "--joint-scheme", "wonik_ros2", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert generated.returncode == 0, generated.stderr[-3000:]
    # the shipped parameter file plus frame 0's ground truth as the initial pose (initialisation is not the point)
    params = yaml.safe_load((REPO / "config" / "allegro_tracking.yaml").read_text())
    first = json.loads((sequence / "gt.json").read_text())["frames"][0]["object_pose_cam"]
    from scipy.spatial.transform import Rotation

    params["/**"]["ros__parameters"]["initial_pose"] = [float(v) for v in first["t"]] + [
        float(v) for v in Rotation.from_matrix(first["R"]).as_quat()]
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    prefix = _make_prefix(root / "prefix")
    env = ros_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=root / "ros_log",
                          interpreter=sys.executable)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), *filter(None, env["AMENT_PREFIX_PATH"].split(
        os.pathsep))])
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    return sequence, params_file, env


def test_ros2_run_finds_the_package_executables(workspace):
    _, _, env = workspace
    listed = subprocess.run(["ros2", "pkg", "executables", "handypriors_ros"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[1] for line in listed.stdout.splitlines()} == {
        "allegro_tracker", "sequence_player", "mano_tracker", "handypriors"}
    run = subprocess.run(["ros2", "run", "handypriors_ros", "handypriors", "--help"], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0 and "track" in run.stdout, run.stderr
    player = subprocess.run(["ros2", "run", "handypriors_ros", "sequence_player", "--ros-args", "-p",
                             "source:=/nonexistent"], env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert player.returncode == 2 and "/nonexistent" in player.stdout + player.stderr  # the node ran, said why


def test_launch_test_of_the_tracking_launch_file(workspace):
    sequence, params_file, env = workspace
    env = dict(env, HANDYPRIORS_LAUNCH_SEQUENCE=str(sequence), HANDYPRIORS_LAUNCH_PARAMS=str(params_file))
    result = subprocess.run([str(BIN / "launch_test"), str(REPO / "test" / "launch_tests" /
                                                          "allegro_tracking_launch.py")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False)
    output = result.stdout + result.stderr
    print(output[-6000:])
    assert result.returncode == 0, output[-8000:]
    assert re.search(r"Ran 5 tests .*\n\s*\nOK", output), output[-4000:]  # the five active tests ran and passed


def _interrupt(process: subprocess.Popen, timeout: float) -> str:
    """Ctrl-C to ``process`` started in its own session (SIGINT to its process group, as a terminal sends it: `ros2
    run` waits for its child to stop); its output; the group is killed after ``timeout`` s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.communicate()[0]


def _observer(env: dict[str, str]):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("launch_sigint_observer", context=context)
    processed = []

    def on_diagnostics(msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "frames_processed" in values:
                processed.append(int(values["frames_processed"]))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    return context, node, executor, processed


def test_ctrl_c_of_ros2_launch_ends_every_node_cleanly(workspace):
    import rclpy

    sequence, params_file, env = workspace
    launch = subprocess.Popen(
        ["ros2", "launch", "handypriors_ros", "allegro_tracking.launch.py",
         f"object_mesh:={sequence / 'object' / 'model.obj'}", f"params_file:={params_file}",
         "use_robot_state_publisher:=false"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    player = subprocess.Popen(
        ["ros2", "run", "handypriors_ros", "sequence_player", "--ros-args", "-p", f"source:={sequence / 'bag'}",
         "-p", "loop:=true", "-p", "wait_for_subscribers:=1", "-p", "wait_for_subscribers_timeout:=90.0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    context, node, executor, processed = _observer(env)
    try:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and not (processed and processed[-1] >= 5) and launch.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        tracking = bool(processed and processed[-1] >= 5)
        os.killpg(launch.pid, signal.SIGINT)  # Ctrl-C in the terminal: the launcher and every node get SIGINT
        try:
            output, _ = launch.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            output, _ = launch.communicate()
            pytest.fail(f"ros2 launch did not end within 60 s of Ctrl-C:\n{output[-4000:]}")
    finally:
        player_output = _interrupt(player, 30.0)
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.communicate()
        executor.shutdown(timeout_sec=0.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert tracking, f"the tracker processed {processed[-1:] or 'no'} frames before Ctrl-C:\n{output[-4000:]}"
    assert launch.returncode == 0, output[-4000:]
    assert re.search(rf"\[INFO\] \[{defaults.NODE_NAME}-\d+\]: process has finished cleanly", output), output[-4000:]
    assert "process has died" not in output and "Traceback" not in output, output[-4000:]
    assert player.returncode == 0 and "Traceback" not in player_output, player_output[-3000:]
