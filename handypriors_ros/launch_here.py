"""The node graph of ``launch/allegro_tracking.launch.py`` started as plain processes, where ``ros2 launch`` is missing.

ROS 2 from PyPI wheels has no ``launch`` / ``ros2 launch``. This starts the same tracker, with the same parameter
file, launch-argument names and topic remappings, as separate processes; optionally a ``sequence_player`` in
front of it (a dev-sequence folder or a rosbag2) standing in for the camera and hand drivers::

    python -m handypriors_ros.launch_here --sequence ../shared/data/dev/mug_pivot_fixed \\
        --initial-pose-from-ground-truth [--rate 1.0] [--loop] [-p tracking.mode:=filter]

Not started here: robot_state_publisher and rviz2 (neither exists as a PyPI wheel), and the camera-mount static
transform (a sequence publishes its own hand-camera transform). Ctrl-C (SIGINT) or SIGTERM stops every process
(SIGINT, then SIGTERM, then SIGKILL after grace periods); without ``--loop`` the player ends with its sequence
and the tracker keeps running until stopped, unless ``--exit-after-sequence``.

``--initial-pose-from-ground-truth`` reads frame 0's object pose from the sequence's ``gt.json``: ground truth
used as the initial pose, allowed for development runs and to be reported as such. Without it the tracker waits
for ``~/initial_pose`` (or runs the global search when available).

Exit code: the tracker's (0 after a clean stop), or 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from handypriors_core import defaults

__all__ = ["build_commands", "main", "parse_args"]

ROOT = Path(__file__).resolve().parents[1]

#: Topics of the RealSense wrapper below ``camera_namespace``, as remapped by the launch file.
CAMERA_TOPICS = {defaults.TOPICS[role]: suffix.lstrip("/") for role, suffix in defaults.CAMERA_TOPIC_SUFFIXES.items()}
_PLAYER_TOPIC_PARAMS = {defaults.TOPICS[role]: f"{role}_topic" for role in defaults.CAMERA_TOPIC_SUFFIXES}


def _default_params_file() -> Path:
    from handypriors_core.config import find_config

    return Path(find_config("allegro_tracking.yaml"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m handypriors_ros.launch_here",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--object-mesh", default="", help="launch argument object_mesh (default: the sequence's "
                                                          "object/model.obj when --sequence is a dev sequence)")
    parser.add_argument("--params-file", default="", help="launch argument params_file (default: the shipped "
                                                          "config/allegro_tracking.yaml)")
    parser.add_argument("--camera-namespace", default=defaults.CAMERA_NAMESPACE,
                        help="launch argument camera_namespace")
    parser.add_argument("--joint-states-topic", default=defaults.JOINT_STATES_TOPIC,
                        help="launch argument joint_states_topic")
    parser.add_argument("--use-sim-time", action="store_true", help="launch argument use_sim_time")
    parser.add_argument("--use-rviz", action="store_true", help="launch argument use_rviz (rviz2 is not available "
                                                                "from PyPI: only reported)")
    parser.add_argument("--sequence", default="", help="play this dev-sequence folder or rosbag2 with sequence_player")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed (0 = as fast as possible)")
    parser.add_argument("--loop", action="store_true", help="repeat the sequence")
    parser.add_argument("--restamp", action="store_true", help="player stamps = now (instead of the recorded ones)")
    parser.add_argument("--initial-pose-from-ground-truth", action="store_true",
                        help="initial_pose = frame 0 of the sequence's gt.json (ground truth; say so when reporting)")
    parser.add_argument("--exit-after-sequence", action="store_true",
                        help="stop the tracker once the player has finished (after --linger seconds)")
    parser.add_argument("--linger", type=float, default=2.0, help="seconds the tracker keeps running after the "
                                                                   "sequence with --exit-after-sequence")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra tracker parameter (as -p of --ros-args); repeatable")
    parser.add_argument("--player-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra sequence_player parameter; repeatable")
    parser.add_argument("--log-level", default="", help="--log-level of both nodes (e.g. debug)")
    return parser.parse_args(argv)


def _ground_truth_pose(sequence: Path) -> list[float]:
    """Frame 0's object pose ``[x y z qx qy qz qw]`` from ``gt.json`` (camera frame)."""
    import torch

    from handypriors_core.geometry.transforms import pose_from_transform
    from handypriors_core.io.dev_sequence import load_ground_truth

    truth = load_ground_truth(sequence)
    position, quaternion = pose_from_transform(truth.object2camera[0].to(torch.float64))
    return [float(v) for v in position.tolist() + quaternion.tolist()]


def _sequence_mesh(sequence: Path) -> str:
    meta = sequence / "meta.json"
    if not meta.is_file():
        return ""
    mesh = json.loads(meta.read_text()).get("object", {}).get("mesh", "")
    return str((sequence / mesh).resolve()) if mesh else ""


def build_commands(args: argparse.Namespace) -> tuple[list[str], list[str] | None, list[str]]:
    """``(tracker command, player command or None, notes)`` for ``args``."""
    notes: list[str] = []
    params_file = Path(args.params_file) if args.params_file else _default_params_file()
    if not params_file.is_file():
        raise SystemExit(f"params file not found: {params_file}")
    namespace = "/" + args.camera_namespace.strip("/") if args.camera_namespace.strip("/") else ""
    sequence = Path(args.sequence).expanduser() if args.sequence else None
    if sequence is not None and not sequence.exists():
        raise SystemExit(f"sequence not found: {sequence}")
    object_mesh = args.object_mesh
    if not object_mesh and sequence is not None and sequence.is_dir():
        object_mesh = _sequence_mesh(sequence)
        if object_mesh:
            notes.append(f"object_mesh from the sequence: {object_mesh}")
    tracker = [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
               str(params_file)]
    if args.log_level:
        tracker += ["--log-level", args.log_level]
    remaps = {name: f"{namespace}/{suffix}" for name, suffix in CAMERA_TOPICS.items()}
    remaps[defaults.JOINT_STATES_TOPIC] = args.joint_states_topic
    for name, target in remaps.items():
        if name != target:
            tracker += ["-r", f"{name}:={target}"]
    if object_mesh:
        tracker += ["-p", f"object_mesh:={object_mesh}"]
    if args.use_sim_time:
        tracker += ["-p", "use_sim_time:=true"]
    if args.initial_pose_from_ground_truth:
        if sequence is None:
            raise SystemExit("--initial-pose-from-ground-truth needs --sequence")
        pose = _ground_truth_pose(sequence)
        tracker += ["-p", "initial_pose:=[" + ", ".join(repr(v) for v in pose) + "]"]
        notes.append("initial pose = ground truth of frame 0 (gt.json): report runs as such")
    for param in args.param:
        tracker += ["-p", param]
    if args.use_rviz:
        notes.append("use_rviz: rviz2 is not available here; open config/allegro_tracking.rviz on a ROS machine")
    notes.append("robot_state_publisher is not started here (no PyPI wheel); the tracker does not need it")
    player = None
    if sequence is not None:
        player = [sys.executable, "-m", "handypriors_ros.sequence_player", "--ros-args"]
        if args.log_level:
            player += ["--log-level", args.log_level]
        player += ["-p", f"source:={sequence}", "-p", f"rate:={float(args.rate)!r}",
                   "-p", f"loop:={'true' if args.loop else 'false'}",
                   "-p", f"restamp:={'true' if args.restamp else 'false'}",
                   "-p", "wait_for_subscribers:=1", "-p", "wait_for_subscribers_timeout:=120.0",
                   "-p", f"joint_states_topic:={args.joint_states_topic}"]
        for name, param in _PLAYER_TOPIC_PARAMS.items():
            player += ["-p", f"{param}:={remaps[name]}"]
        for param in args.player_param:
            player += ["-p", param]
    return tracker, player, notes


def _stop(process: subprocess.Popen, name: str) -> int:
    """SIGINT, then SIGTERM, then SIGKILL; returns the exit code."""
    for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        process.send_signal(sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            print(f"[launch_here] {name} did not stop on {signal.Signals(sig).name}", file=sys.stderr, flush=True)
    return process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        tracker_cmd, player_cmd, notes = build_commands(args)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"[launch_here] {exc.code}", file=sys.stderr)
            return 2
        return int(exc.code or 0)
    for note in notes:
        print(f"[launch_here] {note}", flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    stopping = {"signal": None}

    def on_signal(signum, _frame):
        stopping["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes: dict[str, subprocess.Popen] = {}
    try:
        processes["allegro_tracker"] = subprocess.Popen(tracker_cmd, env=env)
        if player_cmd is not None:
            processes["sequence_player"] = subprocess.Popen(player_cmd, env=env)
        player_done_at = None
        while stopping["signal"] is None:
            if processes["allegro_tracker"].poll() is not None:
                break
            player = processes.get("sequence_player")
            if player is not None and player.poll() is not None and player_done_at is None:
                player_done_at = time.monotonic()
                print(f"[launch_here] sequence_player finished (exit code {player.returncode})", flush=True)
            if (args.exit_after_sequence and player_done_at is not None
                    and time.monotonic() - player_done_at >= args.linger):
                break
            time.sleep(0.1)
    finally:
        codes = {name: _stop(process, name) for name, process in reversed(list(processes.items()))}
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"[launch_here] exit codes: {codes}", flush=True)
    return codes.get("allegro_tracker", 0)


if __name__ == "__main__":
    raise SystemExit(main())
