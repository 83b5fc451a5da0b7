"""The demo's ROS path, run as a subprocess: ``python -m handypriors_ros.demo_run`` plays the sequence
through ``sequence_player`` -> ``allegro_tracker`` and writes what it recorded (``run.json``, ``overlays.npz``);
this module reads it back, writes the poses file and the node's overlay video, and returns the table's row.

The core never imports ``handypriors_ros``: the ROS package is found by name (:func:`ros_available`) and run
as a separate interpreter, whose stdout lines are passed on as progress lines.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RECORDER", "RecordedRun", "frame_stamps_ns", "ros_available", "run_recorder", "track_with_ros"]

#: The recorder's module (run with ``python -m``).
RECORDER = "handypriors_ros.demo_run"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding handypriors_core and handypriors_ros


def ros_available() -> tuple[bool, str]:
    """``(available, why not)``: rclpy and the recorder module can be found (neither is imported)."""
    try:
        if importlib.util.find_spec("rclpy") is None:
            return False, "rclpy is not installed (run `make setup`)"
        spec = importlib.util.find_spec("handypriors_ros")
    except (ImportError, ValueError) as exc:
        return False, f"rclpy cannot be found ({exc})"
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not any((Path(loc) / "demo_run.py").is_file() for loc in locations):
        return False, "handypriors_ros is not importable"
    return True, ""


def frame_stamps_ns(seq_dir: Path) -> list[int]:
    """The colour frames' stamps [ns] of a generated sequence (``meta.json``: ``stamp_ns``, else ``stamp``)."""
    frames = json.loads((seq_dir / "meta.json").read_text())["frames"]
    return [int(f["stamp_ns"]) if "stamp_ns" in f else round(float(f["stamp"]) * 1e9) for f in frames]


@dataclass
class RecordedRun:
    """What the recorder wrote: ``poses`` (frame index -> ``{"stamp_ns", "object2camera"`` (4x4 rows),
    ``"covariance"`` (6x6 rows), ``"frame_id"}``), ``overlays`` (frame index -> ``(H, W, 3)`` uint8 RGB of the
    node's ``~/overlay``) and ``info``: the other fields of ``run.json`` as
    ``handypriors_ros.demo_run.write_run`` writes them (``ok``, ``reason``, ``num_frames``, ``fps``, ``dropped``,
    ``wall_s``, ``node_ms``, ``stages_ms``, ``latency_ms``, ``startup_s``, ``log``, ``returncodes``,
    ``unmatched``, ``diagnostics``; times in the units their names say).
    """

    poses: dict[int, dict]
    overlays: dict[int, Any]
    info: dict[str, Any]


def run_recorder(bag: Path, stamps: list[int], mesh: Path, initial_pose: list[float], mode: str, rate: float,
                 log_path: Path, report: Callable[[str], None]) -> RecordedRun:
    """Run the recorder subprocess; its stdout lines go to ``report``. Raises RuntimeError (its last stderr
    line) when it fails."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="handypriors_demo_ros_") as tmp:
        stamps_file = Path(tmp) / "stamps.json"
        stamps_file.write_text(json.dumps(stamps))
        command = [sys.executable, "-m", RECORDER, "--sequence", str(bag), "--stamps", str(stamps_file),
                   "--object-mesh", str(mesh), "--initial-pose", *(repr(float(v)) for v in initial_pose),
                   "--mode", mode, "--rate", repr(float(rate)), "--overlay", "--log", str(log_path),
                   "--out", tmp]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SOURCE_ROOT), env.get("PYTHONPATH", "")]))
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=_SOURCE_ROOT) as process:
            for line in process.stdout:
                report(line.rstrip("\n"))
            errors = process.stderr.read()
        if process.returncode != 0 or not (Path(tmp) / "run.json").is_file():
            lines = [line for line in errors.splitlines() if line.strip()]
            raise RuntimeError(lines[-1] if lines else f"{RECORDER} exited with code {process.returncode}")
        data = json.loads((Path(tmp) / "run.json").read_text())
        with np.load(Path(tmp) / "overlays.npz") as images:
            overlays = {int(key.split("_")[1]): images[key] for key in images.files}
    poses = {int(i): p for i, p in data.pop("poses").items()}
    return RecordedRun(poses=poses, overlays=overlays, info=data)


def track_with_ros(seq_dir: Path, mesh: Path, mode: str, initial, out: Path, rate: float, out_dir: Path,
                    report) -> dict | None:
    """The ROS-nodes path of one mode: ``sequence_player`` -> ``allegro_tracker`` (separate processes, the
    launch file's parameters) play the sequence's bag; the recorder subprocess records ``~/object_pose`` and
    this function writes the poses that arrived to ``out``. Returns what the table needs, or None (with a
    one-line note) on failure."""
    import torch

    from ..geometry.transforms import pose_from_transform
    from ..io.poses_file import PoseRecord, PosesFile, write_poses

    try:
        stamps = frame_stamps_ns(seq_dir)
        position, quaternion = pose_from_transform(initial.to(torch.float64))
        run = run_recorder(seq_dir / "bag", stamps, mesh, position.tolist() + quaternion.tolist(), mode, rate,
                           out_dir / f"ros_{mode}.log", report)
    except Exception as exc:  # noqa: BLE001 - any failure of the ROS path falls back to the offline path
        report(f"note: the ROS path failed ({type(exc).__name__}: {exc}); {mode} mode takes the offline path")
        return None
    info = run.info
    if not info["ok"]:
        report(f"note: the ROS path produced no usable result ({info['reason']}; node output: {info['log']}); "
               f"{mode} mode takes the offline path")
        return None
    camera_frame = next(iter(run.poses.values()))["frame_id"]
    records = []
    for index in sorted(run.poses):
        pose = run.poses[index]
        covariance = torch.as_tensor(pose["covariance"], dtype=torch.float64)
        covariance = 0.5 * (covariance + covariance.T)
        # ~/object_pose carries no quality score or status: 0.0 / "tracking" (see results.json "ros")
        object2camera = torch.as_tensor(pose["object2camera"], dtype=torch.float64)
        records.append(PoseRecord.from_transform(index, stamps[index] * 1e-9, object2camera, covariance, 0.0,
                                                 "tracking"))
    write_poses(out, PosesFile(frame_id=camera_frame, child_frame_id="object", object_mesh=str(mesh), poses=records))
    video = None
    if run.overlays:
        from ..visualization.video import OverlayVideo

        writer = OverlayVideo(out_dir / f"overlay_{mode}_ros.mp4", 30.0 * rate, len(run.overlays), report)
        for index in sorted(run.overlays):
            writer.add(run.overlays[index])
        video = writer.close()
    report(f"ROS path: poses for {len(run.poses)} of {info['num_frames']} frames ({info['dropped']} dropped by the "
           f"node: the newest frame wins while it is busy); {info['fps']:.2f} fps over {info['wall_s']:.1f} s, node "
           f"{info['node_ms']:.0f} ms/frame")
    keys = {"fps": "fps", "dropped": "dropped", "wall_s": "wall_s", "node_ms_per_frame": "node_ms",
            "node_stages_ms": "stages_ms", "latency_ms": "latency_ms", "startup_s": "startup_s", "log": "log",
            "exit_codes": "returncodes"}
    return {**{key: info[name] for key, name in keys.items()}, "posed": len(run.poses), "rate": rate,
            "video": str(video) if video else None, "unmatched_poses": len(info["unmatched"]),
            "diagnostics": {k: info["diagnostics"].get(k) for k in ("frames_processed", "dropped_frames",
                                                                     "images_received", "node_state", "quality")}}
