"""Clean shutdown of every node process: SIGINT, a second SIGINT during shutdown, SIGTERM -> exit 0, no traceback.

``ros2 launch`` sends SIGINT to the process group on Ctrl-C and then its own SIGINT / SIGTERM to each node;
each node process here gets such a pair once it is up (its subscriptions or publishers are visible in the graph).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0


@pytest.fixture
def mesh(tmp_path) -> Path:
    import trimesh

    path = tmp_path / "box.obj"
    trimesh.creation.box(extents=[0.04, 0.06, 0.09]).export(path)
    return path


def _graph_has(node, topic: str, kind: str) -> bool:
    return (node.count_subscribers(topic) if kind == "sub" else node.count_publishers(topic)) > 0


CASES = {
    # name: (module, parameters, (topic, "sub" | "pub") visible once the node is up, signals)
    "allegro_tracker-sigint-sigint": ("allegro_tracker", ["warm_up:=false", "global_search:=false"],
                                      ("/joint_states", "sub"), (signal.SIGINT, signal.SIGINT)),
    "allegro_tracker-sigterm-sigint": ("allegro_tracker", ["warm_up:=false"], ("/joint_states", "sub"),
                                       (signal.SIGTERM, signal.SIGINT)),
    "sequence_player-sigint-sigint": ("sequence_player", ["loop:=true", "rate:=1.0"],
                                      ("/camera/camera/color/image_raw", "pub"), (signal.SIGINT, signal.SIGINT)),
    "mano_tracker-sigint-sigterm": ("mano_tracker", [], ("/hand_keypoints", "sub"), (signal.SIGINT, signal.SIGTERM)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_node_process_stops_cleanly_on_repeated_signals(case, ros_context, mesh, tmp_path):
    from rclpy.node import Node

    module, parameters, (topic, kind), signals = CASES[case]
    parameters = list(parameters)
    if module == "sequence_player":
        from test_ros_sequence_player import write_dev_sequence

        parameters.append(f"source:={write_dev_sequence(tmp_path / 'seq', base_moving=True)}")
    else:
        parameters.append(f"object_mesh:={mesh}")
    command = [sys.executable, "-m", f"handypriors_ros.{module}", "--ros-args"]
    for parameter in parameters:
        command += ["-p", parameter]
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_context.get_domain_id()))
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    probe = Node("shutdown_probe", context=ros_context)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _graph_has(probe, topic, kind) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None and _graph_has(probe, topic, kind), f"{module} did not come up"
        time.sleep(0.3)  # into its spin
        process.send_signal(signals[0])
        time.sleep(0.02)  # the second signal lands while the node shuts down
        if process.poll() is None:
            process.send_signal(signals[1])
        output, _ = process.communicate(timeout=30)
    finally:
        probe.destroy_node()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]


def test_a_signal_during_destroy_node_does_not_interrupt_the_shutdown(tmp_path):
    """Deterministic version of the launch case: the node's destroy_node receives SIGINT and SIGTERM itself."""
    script = tmp_path / "slow_shutdown.py"
    script.write_text(
        "import os, signal, time\n"
        "from handypriors_ros.node_runtime import exit_process, run_node\n"
        "class SlowToStop:\n"
        "    def destroy_node(self):\n"
        "        for signum in (signal.SIGINT, signal.SIGTERM):\n"
        "            os.kill(os.getpid(), signum)\n"
        "            time.sleep(0.1)\n"
        "        print('destroyed', flush=True)\n"
        "def spin(node):\n"
        "    raise KeyboardInterrupt  # the first Ctrl-C\n"
        "exit_process(run_node(SlowToStop, [], spin=spin))\n")
    result = subprocess.run([sys.executable, str(script)], check=False, cwd=REPO, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "destroyed" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("wrapped", [True, False], ids=["interrupt-inside-rclpy", "plain-error"])
def test_an_interrupt_wrapped_by_rclpy_is_a_clean_stop(tmp_path, wrapped):
    """A Ctrl-C landing in Python code that rclpy's C++ calls back (a message constructor inside
    ``deserialize_message``) reaches the node as pybind11's ``TypeError`` caused by the KeyboardInterrupt: exit 0,
    no traceback. A TypeError without that cause is still a crash (exit 1 with its traceback)."""
    script = tmp_path / "wrapped_stop.py"
    cause = "KeyboardInterrupt()" if wrapped else "ValueError('bad value')"
    script.write_text(
        "from handypriors_ros.node_runtime import exit_process, run_node\n"
        "class Node:\n"
        "    def destroy_node(self):\n"
        "        pass\n"
        "def spin(node):\n"
        f"    raise TypeError('Unable to convert function return value to a Python type!') from {cause}\n"
        "exit_process(run_node(Node, [], spin=spin))\n")
    result = subprocess.run([sys.executable, str(script)], check=False, cwd=REPO, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    output = result.stdout + result.stderr
    if wrapped:
        assert result.returncode == 0 and "Traceback" not in output, output[-3000:]
    else:
        assert result.returncode != 0 and "Unable to convert" in output, output[-3000:]
