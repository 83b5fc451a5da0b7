"""The demo's ROS path: play a sequence through ``sequence_player`` -> ``allegro_tracker`` and record the poses.

:class:`TrackerRecorder` is a small rclpy node living in the calling process. It subscribes to the tracker's
``~/object_pose`` (``geometry_msgs/PoseWithCovarianceStamped``), ``/diagnostics`` and, optionally, ``~/overlay``,
and keeps every pose with its header stamp; :meth:`TrackerRecorder.match_frames` assigns them to the sequence's
frames by stamp (the player publishes the recorded stamps, ``restamp`` false, so a pose's stamp *is* its
frame's stamp).

:func:`run_sequence_through_nodes` does a whole run: it reserves a private ROS domain, starts
``python -m handypriors_ros.launch_here`` (the launch file's node graph as separate processes: the player in
front of the tracker, with ``config/allegro_tracking.yaml``) on localhost-only DDS, records until the pose of
the last frame has arrived (or the player has finished and the tracker had ``linger_s`` to catch up, or the
deadline passed), stops the processes (SIGINT, then SIGTERM / SIGKILL of their process group) and returns a
:class:`RosRun`. Frames the node dropped (the newest frame wins while it is busy) simply have no pose; they
are counted, not scored.

Run by :mod:`handypriors_core.app.demo_ros` through :mod:`handypriors_ros.demo_run` (a subprocess: the core never
imports this package). Needs rclpy (``make setup``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import conversions
from .ros_environment import reserve_domain_id, ros_environment

__all__ = ["RecordedPose", "RosRun", "TrackerRecorder", "node_commands", "run_sequence_through_nodes"]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The colour camera info of the launch file's camera namespace (its arrival marks a frame's publication).
COLOR_INFO_TOPIC = "/camera/camera/color/camera_info"
#: The sensor topics ``sequence_player`` publishes for the tracker (launch_here's remappings) and their types.
STREAM_TOPICS = {
    "/camera/camera/color/image_raw": "Image",
    COLOR_INFO_TOPIC: "CameraInfo",
    "/camera/camera/aligned_depth_to_color/image_raw": "Image",
    "/camera/camera/aligned_depth_to_color/camera_info": "CameraInfo",
    "/joint_states": "JointState",
}
_SPIN_SLICE_S = 0.05


def _ignore(_msg: Any) -> None:
    """Callback of the subscriptions that only make the player wait for this node."""


@dataclasses.dataclass
class RecordedPose:
    """One ``~/object_pose`` message: ``object2camera (4, 4)`` float64, ``covariance (6, 6)`` (ROS order),
    ``stamp_ns`` (header stamp), ``frame_id`` and ``received`` (``time.monotonic()`` at arrival)."""

    stamp_ns: int
    object2camera: torch.Tensor
    covariance: np.ndarray
    frame_id: str
    received: float


class TrackerRecorder:
    """Records the outputs of one ``allegro_tracker`` node (see the module docstring).

    Args:
        context: an initialised ``rclpy.Context`` (its domain is the one the tracker runs in).
        tracker_name: the tracker node's fully qualified name (its ``~/`` topics live below it).
        overlay: also keep the ``~/overlay`` images (RGB ``(H, W, 3)`` uint8 by stamp). The node renders its
            overlay only while someone subscribes, so this costs the tracker time.
        stream_topics: the player's sensor topics (``{topic: message type name}``; the tracker's inputs as the
            launch file remaps them). This node subscribes to every one of them so that a player started with
            ``wait_for_subscribers: 2`` waits for this node as well as the tracker; images and joint states are
            taken raw (never deserialised), and the arrival time of each colour camera info (one small message
            per frame, published with its image) is kept: the start of the stream and each frame's latency.
            Empty: none.
    """

    def __init__(self, context: Any, tracker_name: str = "/allegro_tracker", overlay: bool = False,
                 stream_topics: Mapping[str, str] = STREAM_TOPICS,
                 node_name: str = "handypriors_demo_recorder") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        self.tracker_name = "/" + tracker_name.strip("/")
        # reliable and deep: every pose the node publishes is kept, even when this process is briefly busy
        deep = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.node = Node(node_name, context=context)
        self.poses: dict[int, RecordedPose] = {}
        self.duplicates = 0
        self.overlays: dict[int, np.ndarray] = {}
        self.diagnostics: list[dict[str, str]] = []  # key-values of the tracker's status, one dict per message
        self.frames_seen: dict[int, float] = {}  # camera info stamp -> time.monotonic() at arrival
        self._pose_sub = self.node.create_subscription(PoseWithCovarianceStamped, f"{self.tracker_name}/object_pose",
                                                       self._on_pose, deep)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, deep)
        if stream_topics:
            import sensor_msgs.msg

            from .qos import SENSOR_SUBSCRIBER_QOS

            for topic, type_name in stream_topics.items():
                msg_type = getattr(sensor_msgs.msg, type_name)
                if topic == COLOR_INFO_TOPIC:
                    self.node.create_subscription(msg_type, topic, self._on_camera_info, deep)
                else:
                    self.node.create_subscription(msg_type, topic, _ignore, SENSOR_SUBSCRIBER_QOS, raw=True)
        if overlay:
            from sensor_msgs.msg import Image

            self.node.create_subscription(Image, f"{self.tracker_name}/overlay", self._on_overlay, deep)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    # -- callbacks
    def _on_pose(self, msg: Any) -> None:
        stamp = conversions.stamp_ns(msg)
        if stamp in self.poses:
            self.duplicates += 1
        self.poses[stamp] = RecordedPose(stamp, conversions.pose_to_matrix(msg), conversions.covariance_from_msg(msg),
                                         msg.header.frame_id, time.monotonic())

    def _on_diagnostics(self, msg: Any) -> None:
        prefix = self.tracker_name.lstrip("/").split("/")[-1]
        for status in msg.status:
            if status.name.startswith(prefix):
                values = {kv.key: kv.value for kv in status.values}
                values["_level"] = str(int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                       else int(status.level))
                values["_message"] = status.message
                self.diagnostics.append(values)

    def _on_camera_info(self, msg: Any) -> None:
        self.frames_seen.setdefault(conversions.stamp_ns(msg), time.monotonic())

    def _on_overlay(self, msg: Any) -> None:
        self.overlays[conversions.stamp_ns(msg)] = conversions.image_to_rgb(msg)

    # -- spinning
    @property
    def publisher_count(self) -> int:
        """Publishers matched to the pose subscription (1 once the tracker has been discovered)."""
        return self._pose_sub.get_publisher_count()

    def spin_until(self, condition: Callable[[], bool], deadline: float,
                   keep_going: Callable[[], bool] = lambda: True) -> bool:
        """Serve callbacks until ``condition()``, the monotonic ``deadline`` or ``keep_going()`` turns false;
        returns ``condition()``."""
        while not condition():
            if time.monotonic() >= deadline or not keep_going():
                return condition()
            self.executor.spin_once(timeout_sec=min(_SPIN_SLICE_S, max(0.0, deadline - time.monotonic())))
        return True

    def drain(self, seconds: float = 0.2) -> None:
        """Serve what has already arrived (for up to ``seconds``)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    # -- results
    def match_frames(self, frame_stamps_ns: Sequence[int], tolerance_ns: int = 1_000_000) -> dict[int, RecordedPose]:
        """``frame index -> pose`` for every frame whose stamp has a pose within ``tolerance_ns``.

        Poses whose stamps match no frame are left out (see :meth:`unmatched`).
        """
        stamps = np.asarray(list(frame_stamps_ns), dtype=np.int64)
        matched: dict[int, RecordedPose] = {}
        if not len(stamps):
            return matched
        for stamp, pose in sorted(self.poses.items()):
            k = int(np.argmin(np.abs(stamps - stamp)))
            if abs(int(stamps[k]) - stamp) <= tolerance_ns:
                matched[k] = pose
        return matched

    def unmatched(self, frame_stamps_ns: Sequence[int], tolerance_ns: int = 1_000_000) -> list[int]:
        """Stamps of recorded poses that match no frame (should be empty)."""
        stamps = np.asarray(list(frame_stamps_ns), dtype=np.int64)
        return [s for s in sorted(self.poses) if not len(stamps) or np.abs(stamps - s).min() > tolerance_ns]

    def last_diagnostics(self) -> dict[str, str]:
        return dict(self.diagnostics[-1]) if self.diagnostics else {}

    def diagnostics_median(self, key: str) -> float:
        """Median of a numeric diagnostics value (NaN when no message reported one), over the messages sent after
        a new frame was processed (``frames_processed`` changed; an idle node repeats its last frame's values)."""
        values = []
        previous = None
        for d in self.diagnostics:
            processed = d.get("frames_processed")
            if processed == previous:
                continue
            previous = processed
            try:
                v = float(d.get(key, "nan"))
            except ValueError:
                continue
            if math.isfinite(v):
                values.append(v)
        return float(np.median(values)) if values else math.nan

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=0.0)
        self.node.destroy_node()


@dataclasses.dataclass
class RosRun:
    """Outcome of :func:`run_sequence_through_nodes`.

    Attributes:
        poses: ``frame index -> RecordedPose`` (frames the node dropped have none).
        num_frames: frames in the sequence. ok: at least one pose arrived and the run ended normally (the last
            frame's pose arrived, or the player finished and the tracker had ``linger_s`` more). reason: why
            not, when not ok.
        wall_s: seconds from the first frame's camera info reaching this process (the stream's start) to the
            last pose received; fps: ``poses / wall_s`` (bounded by the playback rate).
        latency_ms: median per frame of (pose received - its frame's camera info received) [ms].
        startup_s: seconds from starting the tracker process until it was ready (built, warmed up, discovered).
        diagnostics: the tracker's last ``/diagnostics`` key-values; node_ms: median ``processing_ms`` over the
            ``/diagnostics`` messages (the node's time per frame: queueing, inputs, tracking, publishing);
            stages_ms: the same medians of ``queue_ms``, ``inputs_ms``, ``track_ms`` and ``publish_ms``.
        overlays: ``frame index -> (H, W, 3)`` uint8 RGB ``~/overlay`` images (when recorded).
        log: the processes' output. returncodes: ``{name: exit code}`` (None: had to be killed).
        unmatched: stamps of poses that matched no frame. commands: the two command lines.
        rate: the playback speed factor.
    """

    poses: dict[int, RecordedPose]
    num_frames: int
    ok: bool
    reason: str
    wall_s: float
    latency_ms: float
    startup_s: float
    diagnostics: dict[str, str]
    node_ms: float
    stages_ms: dict[str, float]
    overlays: dict[int, np.ndarray]
    log: Path
    returncodes: dict[str, int | None]
    unmatched: list[int]
    commands: dict[str, list[str]]
    rate: float

    @property
    def fps(self) -> float:
        return len(self.poses) / self.wall_s if self.poses and self.wall_s > 0 else math.nan

    @property
    def dropped(self) -> int:
        """Frames of the sequence without a pose (the node was busy: the newest frame wins; or input errors)."""
        return self.num_frames - len(self.poses)


@contextlib.contextmanager
def _process_environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` = ``env`` inside the block (rcl and Fast DDS read it when a context / participant is made)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _stop(process: subprocess.Popen, grace_s: float = 15.0) -> int | None:
    """SIGINT, then SIGTERM and SIGKILL to the process group of a process started here (its own session);
    returns the exit code (None when it had to be killed)."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=5.0)
            break
        except subprocess.TimeoutExpired:
            continue
    return None


def node_commands(sequence: str | os.PathLike, object_mesh: str | os.PathLike, initial_pose: Sequence[float] | None,
                  mode: str = "filter", rate: float = 0.5, params_file: str | os.PathLike | None = None,
                  extra_params: Sequence[str] = (), wait_for_subscribers: int = 2) -> dict[str, list[str]]:
    """The tracker and player command lines of :mod:`handypriors_ros.launch_here` (the launch file's node graph:
    its parameter file, remappings and player settings) for this run: recorded stamps (no restamp), one pass;
    the player waits for ``wait_for_subscribers`` subscribers per sensor topic (the tracker and the recorder)."""
    from . import launch_here

    argv = ["--sequence", str(sequence), "--object-mesh", str(Path(object_mesh).resolve()), "--rate", repr(float(rate)),
            "-p", f"tracking.mode:={mode}", "-p", "torch_threads:=1", "-p", "diagnostics_period:=0.5"]
    if params_file:
        argv += ["--params-file", str(params_file)]
    if initial_pose is not None:
        argv += ["-p", "initial_pose:=[" + ", ".join(repr(float(v)) for v in initial_pose) + "]"]
    for param in extra_params:
        argv += ["-p", param]
    # the player starts when the tracker AND the recorder subscribe to every sensor topic
    argv += ["--player-param", f"wait_for_subscribers:={int(wait_for_subscribers)}"]
    try:
        tracker, player, _notes = launch_here.build_commands(launch_here.parse_args(argv))
    except SystemExit as exc:  # launch_here reports bad arguments (a missing file) this way
        raise RuntimeError(f"cannot build the node commands: {exc.code}") from None
    assert player is not None
    return {"allegro_tracker": tracker, "sequence_player": player}


def run_sequence_through_nodes(
    sequence: str | os.PathLike,
    frame_stamps_ns: Sequence[int],
    object_mesh: str | os.PathLike,
    initial_pose: Sequence[float] | None,
    *,
    mode: str = "filter",
    rate: float = 0.5,
    params_file: str | os.PathLike | None = None,
    extra_params: Sequence[str] = (),
    overlay: bool = False,
    log_path: str | os.PathLike | None = None,
    startup_timeout_s: float = 120.0,
    first_pose_timeout_s: float = 30.0,
    linger_s: float = 3.0,
    deadline_s: float | None = None,
    report: Callable[[str], None] = print,
) -> RosRun:
    """Play ``sequence`` through ``sequence_player`` -> ``allegro_tracker`` (separate processes) and record.

    The tracker starts first; once it is ready (its first ``/diagnostics`` message: tracker built and warmed up)
    and this process's subscription has matched its pose publisher, the player starts, so no frame is published
    before every subscriber is in place.

    Args:
        sequence: what ``sequence_player`` plays (a dev-sequence folder or a rosbag2; recorded stamps,
            ``rate`` x real time).
        frame_stamps_ns: the stamps of its colour frames, in order [ns] (poses are matched to them).
        object_mesh: the tracker's ``object_mesh``.
        initial_pose: ``[x, y, z, qx, qy, qz, qw]`` (the tracker's ``initial_pose`` parameter) or None for the
            node's own global search.
        mode: ``tracking.mode`` (filter | refine). rate: playback speed factor (> 0).
        params_file: the tracker's parameter file (default: the shipped ``config/allegro_tracking.yaml``).
        extra_params: more ``name:=value`` tracker parameters.
        overlay: also record ``~/overlay``.
        log_path: where the processes' output goes (default: a temporary file).
        startup_timeout_s: longest wait for the tracker to become ready.
        first_pose_timeout_s: after the player started, longest wait for the first pose.
        linger_s: after the player has finished, how long the tracker may still deliver poses.
        deadline_s: limit of the playback phase (default: ``first_pose_timeout_s`` + 4 x the playback time + 10 s).
        report: informational lines.
    """
    import rclpy

    stamps = [int(s) for s in frame_stamps_ns]
    if not stamps:
        raise ValueError("frame_stamps_ns is empty")
    if not rate > 0:
        raise ValueError(f"rate must be > 0; got {rate!r}")
    playback_s = (stamps[-1] - stamps[0]) / 1e9 / rate
    if deadline_s is None:
        deadline_s = first_pose_timeout_s + 4 * playback_s + 10.0
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="handypriors_demo_")) / "ros_nodes.log"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    commands = node_commands(sequence, object_mesh, initial_pose, mode, rate, params_file, extra_params)

    processes: dict[str, subprocess.Popen] = {}
    returncodes: dict[str, int | None] = {}
    reason = ""
    startup = math.nan
    with reserve_domain_id() as domain, tempfile.TemporaryDirectory(prefix="handypriors_demo_ros_log_") as ros_log:
        env = ros_environment(domain_id=domain.domain_id, log_dir=ros_log, interpreter=sys.executable)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        child_env = dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HANDYPRIORS_THREADS="1")
        context = rclpy.Context()
        with _process_environment(env):  # this process's participant: the same private domain, localhost DDS
            rclpy.init(context=context, domain_id=domain.domain_id)
            recorder = TrackerRecorder(context, overlay=overlay)
        try:
            with open(log_path, "w") as log:
                def start(name: str) -> subprocess.Popen:
                    log.write(f"$ {' '.join(commands[name])}\n")
                    log.flush()
                    processes[name] = subprocess.Popen(commands[name], cwd=REPO_ROOT, env=child_env, stdout=log,
                                                       stderr=subprocess.STDOUT, start_new_session=True)
                    return processes[name]

                report(f"ROS path: starting allegro_tracker ({mode} mode, domain {domain.domain_id}, localhost DDS; "
                       f"node output in {log_path}) ...")
                started = time.monotonic()
                tracker = start("allegro_tracker")
                tracker_alive = lambda: tracker.poll() is None
                ready = recorder.spin_until(lambda: bool(recorder.diagnostics) and recorder.publisher_count > 0,
                                            started + startup_timeout_s, tracker_alive)
                error = recorder.last_diagnostics().get("config_error", "")
                if not ready:
                    reason = (f"the tracker was not ready within {startup_timeout_s:.0f} s" if tracker_alive() else
                              f"the tracker exited (code {tracker.returncode}) while starting")
                elif error:
                    reason = f"the tracker reports a configuration error: {error}"
                else:
                    startup = time.monotonic() - started
                    report(f"ROS path: tracker ready after {startup:.1f} s; sequence_player plays {len(stamps)} frames "
                           f"at {rate:g}x (recorded stamps) ...")
                    player = start("sequence_player")
                    player_started = time.monotonic()
                    first = recorder.spin_until(lambda: bool(recorder.poses),
                                                player_started + first_pose_timeout_s + 3 * playback_s, tracker_alive)
                    if not first:
                        reason = ("no pose from the tracker" + (f" (player exit code {player.poll()})"
                                                                 if player.poll() not in (None, 0) else "")
                                  if tracker_alive() else f"the tracker exited (code {tracker.returncode})")
                    else:
                        finished: list[float] = []

                        def keep_going() -> bool:
                            if not tracker_alive():
                                return False
                            if player.poll() is not None and not finished:
                                finished.append(time.monotonic())
                            return not finished or time.monotonic() - finished[0] < linger_s

                        last = stamps[-1]
                        done = recorder.spin_until(lambda: last in recorder.poses, player_started + deadline_s,
                                                   keep_going)
                        if not done and not tracker_alive():
                            reason = f"the tracker exited (code {tracker.returncode}) during playback"
                        elif not done and not finished:
                            reason = f"the playback did not finish within {deadline_s:.0f} s"
                recorder.drain(0.2)
                for name in ("sequence_player", "allegro_tracker"):
                    if name in processes:
                        returncodes[name] = _stop(processes[name])
        finally:
            for process in processes.values():
                if process.poll() is None:
                    _stop(process)
            recorder.close()
            rclpy.try_shutdown(context=context)
    poses = recorder.match_frames(stamps)
    seen = {s: t for s, t in recorder.frames_seen.items() if s in set(stamps)}
    received = [p.received for p in poses.values()]
    wall = max(received) - min(seen.values()) if received and seen else math.nan
    latencies = [p.received - seen[p.stamp_ns] for p in poses.values() if p.stamp_ns in seen]
    overlays = {}
    if recorder.overlays:
        index = {s: k for k, s in enumerate(stamps)}
        overlays = {index[s]: img for s, img in recorder.overlays.items() if s in index}
    if not poses and not reason:
        reason = "no pose"
    return RosRun(poses=poses, num_frames=len(stamps), ok=bool(poses) and not reason, reason=reason, wall_s=wall,
                  latency_ms=1e3 * float(np.median(latencies)) if latencies else math.nan, startup_s=startup,
                  diagnostics=recorder.last_diagnostics(), node_ms=recorder.diagnostics_median("processing_ms"),
                  stages_ms={k: recorder.diagnostics_median(k) for k in ("queue_ms", "inputs_ms", "track_ms",
                                                                         "publish_ms")},
                  overlays=overlays, log=log_path, returncodes=returncodes, unmatched=recorder.unmatched(stamps),
                  commands=commands, rate=rate)
