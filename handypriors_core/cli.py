"""``handypriors``: the command line (track a bag, score poses, run the demo, batch-process a folder).

::

    handypriors track BAG --object-mesh MESH [--config config/allegro_tracking.yaml] [--mode filter|refine|offline]
                      [--initial-pose x,y,z,qx,qy,qz,qw | FILE] [--out poses.json] [--out-bag result.mcap]
                      [--video overlay.mp4]
    handypriors eval --poses poses.json --gt SEQUENCE_OR_GT_JSON [--out eval.json] [--plots DIR]
    handypriors demo [--out out/demo] [--hand-only]
    handypriors batch FOLDER --object-mesh MESH --out DIR [--workers N] [--ray ADDRESS]

``docs/cli.md`` is the user documentation. Every expected failure (corrupt bag, missing topic or mesh, unknown
joint name, bad option) ends with one ``handypriors: error: ...`` line on stderr and exit status 2 (1 for
failures inside a run, 130 after Ctrl-C); ``--debug`` shows the traceback instead.

The tracking pipeline (:func:`run_track`) is importable: :mod:`.batch` and :mod:`.demo` call it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FrameResult", "TrackOptions", "TrackSummary", "main", "parse_initial_pose", "run_track"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Topics the result bag adds (besides ``/tf``).
POSE_TOPIC = "/handypriors/object_pose"
CONTACTS_TOPIC = "/handypriors/contacts"
OVERLAY_TOPIC = "/handypriors/overlay"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ================================================================================================ options
@dataclass
class TrackOptions:
    """Everything ``handypriors track`` needs (see ``docs/cli.md``).

    Attributes:
        bag: rosbag2 folder or ``.mcap`` / ``.db3`` file. object_mesh: the object model; mesh_scale: its unit.
        config: tracking config (default: the shipped ``allegro_tracking.yaml``). mode: filter | refine | offline
            (None: the config's). initial_pose: ``(4, 4)`` object2camera of the first tracked frame, or None for
            the global search. out: poses.json path (None: not written). out_bag, video: optional outputs.
        topics: overrides of :class:`~handypriors_core.io.bag_reader.BagTopics` fields (None = config value).
        mask_source: ``none`` | ``colour`` | ``external`` | ``detectron2`` or None (the segmentation config's).
        device: torch device (None: the config's). max_frames: stop after this many image messages.
        object_frame: child frame id of the pose outputs. offline_*: window settings of the offline mode.
        progress: show the progress bar. report: where informational lines go.
    """

    bag: Path
    object_mesh: Path
    config: Path | None = None
    mode: str | None = None
    initial_pose: Any = None
    out: Path | None = None
    out_bag: Path | None = None
    video: Path | None = None
    topics: dict[str, Any] = field(default_factory=dict)
    mask_source: str | None = None
    segmentation_config: Path | None = None
    device: str | None = None
    max_frames: int | None = None
    mesh_scale: float = 1.0
    object_frame: str = "object"
    offline_window: int | None = None
    offline_overlap: int | None = None
    offline_iterations: int | None = None
    progress: bool = True
    report: Callable[[str], None] = _say


@dataclass
class FrameResult:
    """The final estimate of one image message (or a filler for a frame that could not be tracked).

    Attributes:
        index: image message index; stamp_ns: header stamp. object2camera ``(4, 4)`` float64; covariance
        ``(6, 6)`` or None; quality; status. contact_points ``(C, 3)`` [m, camera], contact_values ``(C,)``.
        tracked: False for a filler (no joint states / transform at that stamp). joint_angles, hand2camera,
        camera: the hand state and intrinsics (for overlays). seconds: tracker time of the frame.
    """

    index: int
    stamp_ns: int
    object2camera: Any
    covariance: Any
    quality: float
    status: str
    contact_points: Any = None
    contact_values: Any = None
    tracked: bool = True
    joint_angles: Any = None
    hand2camera: Any = None
    camera: Any = None
    seconds: float = 0.0


@dataclass
class TrackSummary:
    """What a tracking run did and wrote."""

    results: list[FrameResult]
    mode: str
    num_images: int
    skipped: list[tuple[int, str]]
    interrupted: bool
    elapsed: float
    tracking_seconds: float
    camera_frame: str
    outputs: dict[str, Path]
    choices: list[str]
    offline: dict | None = None
    forward: list[FrameResult] | None = None
    forward_seconds: float = 0.0

    @property
    def num_tracked(self) -> int:
        return sum(r.tracked for r in self.results)

    @property
    def fps(self) -> float:
        """Tracked frames per second of tracking time (reading and writing excluded)."""
        return self.num_tracked / self.tracking_seconds if self.tracking_seconds > 0 else 0.0


# ================================================================================================ helpers
def parse_initial_pose(text: str):
    """``(4, 4)`` float64 object2camera from ``x,y,z,qx,qy,qz,qw`` [m, unit quaternion] or from a file.

    Files: a ``poses.json`` (its first entry), JSON ``{"position": [3], "orientation": [4]}`` or ``{"R", "t"}``
    or a 4x4 list, or text holding 7 (pose) or 16 (row-major matrix) numbers.
    """
    import json

    import torch

    from .errors import InvalidValueError
    from .geometry.transforms import transform_from_pose

    def from_pose(values, where: str):
        v = [float(x) for x in values]
        if len(v) != 7 or not all(math.isfinite(x) for x in v):
            raise InvalidValueError(f"{where}: expected 7 finite numbers x,y,z,qx,qy,qz,qw; got {values!r}")
        q = torch.tensor(v[3:], dtype=torch.float64)
        if float(q.norm()) < 1e-6:
            raise InvalidValueError(f"{where}: the quaternion (qx, qy, qz, qw) is zero")
        return transform_from_pose(torch.tensor(v[:3], dtype=torch.float64), q / q.norm())

    def from_matrix(values, where: str):
        T = torch.tensor(values, dtype=torch.float64).reshape(4, 4)
        R = T[:3, :3]
        if not torch.isfinite(T).all() or not torch.allclose(R.T @ R, torch.eye(3, dtype=torch.float64), atol=1e-4) \
                or float(torch.linalg.det(R)) <= 0:
            raise InvalidValueError(f"{where}: not a rigid 4x4 transform")
        return T

    path = Path(text)
    if path.is_file():
        where = str(path)
        raw = path.read_text()
        try:
            data = json.loads(raw)
        except ValueError:
            numbers = raw.replace(",", " ").split()
            try:
                values = [float(x) for x in numbers]
            except ValueError:
                raise InvalidValueError(f"{where}: not JSON and not a list of numbers") from None
            if len(values) == 16:
                return from_matrix(values, where)
            return from_pose(values, where)
        if isinstance(data, dict) and "poses" in data:
            from .io.poses_file import PosesFile

            poses = PosesFile.from_dict(data, where)
            if not poses.poses:
                raise InvalidValueError(f"{where}: the poses file holds no pose")
            return poses.poses[0].transform()
        if isinstance(data, dict) and "position" in data and "orientation" in data:
            return from_pose(list(data["position"]) + list(data["orientation"]), where)
        if isinstance(data, dict) and "R" in data and "t" in data:
            R = torch.tensor(data["R"], dtype=torch.float64)
            t = torch.tensor(data["t"], dtype=torch.float64)
            T = torch.eye(4, dtype=torch.float64)
            T[:3, :3], T[:3, 3] = R, t
            return from_matrix(T.reshape(-1).tolist(), where)
        if isinstance(data, list):
            flat = torch.tensor(data, dtype=torch.float64).reshape(-1).tolist()
            return from_matrix(flat, where) if len(flat) == 16 else from_pose(flat, where)
        raise InvalidValueError(f"{where}: unrecognised initial pose file (see docs/cli.md)")
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InvalidValueError(f"--initial-pose must be x,y,z,qx,qy,qz,qw (metres, unit quaternion) or an existing "
                                f"file; got {text!r}") from None
    return from_pose(values, "--initial-pose")


class Progress:
    """A progress line on stderr: ``[#####.....] 12/60  3.4 fps  quality 0.87 tracking``.

    On a terminal it redraws in place; otherwise it prints a line every 10 % (logs stay readable).
    """

    def __init__(self, total: int, label: str = "tracking", enabled: bool = True, stream=None) -> None:
        self.total = max(1, total)
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.last_decile = -1
        self.done = 0

    def update(self, done: int, quality: float, status: str) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.perf_counter()
        fps = done / max(now - self.start, 1e-9)
        frac = min(1.0, done / self.total)
        bar = "#" * round(24 * frac)
        line = (f"{self.label} [{bar:<24}] {done}/{self.total}  {fps:5.2f} fps  quality {quality:.2f} "
                f"{status}")
        if self.tty:
            if now - self.last_draw > 0.1 or done >= self.total:
                self.stream.write("\r" + line + "\x1b[K")
                self.stream.flush()
                self.last_draw = now
        else:
            decile = int(10 * frac)
            if decile > self.last_decile:
                self.last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _quiet_warp() -> None:
    """Keep warp's kernel-cache chatter off stdout (the CLI's stdout is for results)."""
    try:
        import warp

        warp.config.quiet = True  # warp < 1.10
        if hasattr(warp, "LOG_WARNING"):
            warp.config.log_level = warp.LOG_ERROR  # warp >= 1.10: no greeting, kernel-load or no-CUDA lines
    except Exception:  # noqa: BLE001 - warp is optional for the eval command
        pass


# ================================================================================================ tracking
def _initial_pose_by_search(tracker, frame, report: Callable[[str], None]):
    """Global search on the first frame (estimation.initialization), or a clear error when it is unavailable."""
    from .errors import InvalidValueError

    try:
        from .estimation import initialization
    except ImportError:
        raise InvalidValueError("no initial pose: pass --initial-pose x,y,z,qx,qy,qz,qw (the global pose search is "
                                "not available in this installation)") from None
    from .config import find_config
    from .errors import ConfigError

    try:
        find_config("segmentation.yaml")
        settings = initialization.load_initialization_settings()
    except ConfigError as exc:
        if "not found" not in str(exc):
            raise
        settings = initialization.InitializationSettings()
    scene = tracker.scene
    hand = scene.pose_hand(frame.joint_angles, frame.hand2camera)
    mask = frame.object_mask
    if mask is None:
        mask = initialization.bootstrap_mask(scene, frame, hand)
    report("no --initial-pose: searching the first frame for the object (global pose search) ...")
    result = initialization.GlobalPoseSearch(scene, settings).search(frame, mask, hand)
    if not result.ok:
        raise InvalidValueError(f"the global pose search found no initial pose ({result.status}); pass "
                                f"--initial-pose x,y,z,qx,qy,qz,qw")
    report(f"initial pose from the global search: score {result.score:.2f} (IoU {result.iou:.2f}, "
           f"{result.elapsed:.1f} s)")
    return result.object2camera


def _make_mask_source(opts: TrackOptions, tracker):
    """The configured mask source (``--mask-source`` overrides the segmentation config's)."""
    try:
        from .segmentation import base as seg
    except ImportError:
        return None
    from .config import find_config
    from .errors import ConfigError

    settings = None
    path = opts.segmentation_config
    if path is None:
        try:
            path = find_config("segmentation.yaml")
        except ConfigError:
            path = None
    if path is not None:
        settings = seg.load_segmentation_settings(path)
    else:
        settings = seg.SegmentationSettings()
    if opts.mask_source is not None:
        import dataclasses

        settings = dataclasses.replace(settings, source=opts.mask_source)
    return seg.make_mask_source(settings, tracker.scene)


def _result(est, frame, seconds: float) -> FrameResult:
    import torch

    cov = est.covariance.detach().to(torch.float64).cpu()
    cov = 0.5 * (cov + cov.T)
    return FrameResult(index=est.index, stamp_ns=0, object2camera=est.object2camera.detach().double().cpu(),
                       covariance=cov, quality=float(est.quality), status=str(est.status),
                       contact_points=est.contact_points.detach().cpu(), contact_values=est.contact_values.detach()
                       .cpu(), joint_angles=None if frame is None else frame.joint_angles.detach().cpu(),
                       hand2camera=None if frame is None else frame.hand2camera.detach().cpu(),
                       camera=None if frame is None else frame.camera, seconds=seconds)


def run_track(opts: TrackOptions) -> TrackSummary:
    """Track the object through a bag and write the requested outputs (see :class:`TrackOptions`)."""
    import torch

    from .errors import InvalidValueError
    from .estimation.settings import load_tracking_settings
    from .estimation.tracker import ObjectTracker
    from .io.bag_reader import BagReader, load_bag_settings
    from .models import RigidObject, URDFHand, allegro_urdf
    from .physics.settings import load_physics_settings
    from .render.settings import load_render_settings

    t_start = time.perf_counter()
    report = opts.report
    settings = load_tracking_settings(opts.config)
    mode = opts.mode or settings.mode
    if mode not in ("filter", "refine", "offline"):
        raise InvalidValueError(f"--mode must be filter, refine or offline; got {mode!r}")
    settings.mode = "filter" if mode == "filter" else "refine"
    if opts.device:
        settings.device = opts.device
    bag_settings = load_bag_settings(opts.config if opts.config is not None else _shipped_config())
    bag_settings = bag_settings.override(**{k: v for k, v in opts.topics.items() if v is not None})
    obj = RigidObject.from_mesh(opts.object_mesh, scale=opts.mesh_scale)
    initial = opts.initial_pose
    if isinstance(initial, str):
        initial = parse_initial_pose(initial)
    hand = URDFHand.from_urdf(allegro_urdf())
    reader = BagReader(opts.bag, hand.joint_names, bag_settings, report=report)
    try:
        tracker = ObjectTracker(hand, obj, settings, render_settings=load_render_settings(),
                                physics_settings=load_physics_settings())
        tracker.mask_source = _make_mask_source(opts, tracker)
        offline = None
        if mode == "offline":
            from .estimation.offline import OfflineRefiner, OfflineSettings

            offline = OfflineRefiner(tracker, OfflineSettings(opts.offline_window, opts.offline_overlap,
                                                              opts.offline_iterations))
        total = reader.num_images if opts.max_frames is None else min(reader.num_images, opts.max_frames)
        report(f"{reader.describe()}; mode {mode}")
        progress = Progress(total, label=mode, enabled=opts.progress)
        results: dict[int, FrameResult] = {}
        frames_by_index: dict[int, Any] = {}
        skipped: list[tuple[int, str]] = []
        stamps: dict[int, int] = {}
        interrupted = False
        tracking_seconds = 0.0
        done = 0
        try:
            for bf in reader.frames():
                if opts.max_frames is not None and bf.index >= opts.max_frames:
                    break
                done += 1
                if bf.frame is None:
                    stamps[bf.index] = bf.stamp_ns
                    skipped.append((bf.index, bf.reason))
                    progress.update(done, 0.0, "skipped")
                    continue
                frame = bf.frame
                if not tracker.initialized:  # (the global search is not counted as tracking time)
                    pose0 = initial if initial is not None else _initial_pose_by_search(tracker, frame, report)
                    tracker.initialize(torch.as_tensor(pose0, dtype=torch.float64))
                t0 = time.perf_counter()
                if offline is not None:
                    frames_by_index[frame.index] = frame
                    finals = offline.track(frame)
                    fwd = offline.forward[frame.index]
                    quality, status = fwd.quality, fwd.status
                else:
                    finals = [tracker.track(frame)]
                    frames_by_index[frame.index] = frame
                    quality, status = finals[0].quality, finals[0].status
                dt = time.perf_counter() - t0
                tracking_seconds += dt
                stamps[bf.index] = bf.stamp_ns  # done (an interrupted frame is not written)
                for est in finals:
                    f = frames_by_index.pop(est.index)
                    results[est.index] = _result(est, f, dt if offline is None else 0.0)
                progress.update(done, quality, status)
        except KeyboardInterrupt:
            interrupted = True
            progress.close()
            report(f"interrupted after {done} image(s): writing what is done")
        else:
            progress.close()
        if offline is not None:
            t0 = time.perf_counter()
            for est in offline.finish(optimize=not interrupted):
                f = frames_by_index.pop(est.index)
                results[est.index] = _result(est, f, 0.0)
            tracking_seconds += time.perf_counter() - t0
        ordered = _fill_gaps(results, stamps, initial)
        summary = TrackSummary(results=ordered, mode=mode, num_images=reader.num_images, skipped=skipped,
                               interrupted=interrupted, elapsed=0.0, tracking_seconds=tracking_seconds,
                               camera_frame=reader.camera_frame, outputs={}, choices=list(reader.choices),
                               offline=None if offline is None else dict(vars(offline.stats)))
        if offline is not None:
            # the forward pass is the online refine mode: keep it (the demo reports it as "refine")
            forward = {i: _result(e, None, 0.0) for i, e in offline.forward.items()}
            summary.forward = _fill_gaps(forward, dict(stamps), initial)
            summary.forward_seconds = max(0.0, tracking_seconds - offline.stats.elapsed)
        if skipped:
            reasons = sorted({r for _, r in skipped})
            report(f"{len(skipped)} image(s) could not be tracked (written as 'lost' with the last pose): "
                   f"{reasons[0]}{' ...' if len(reasons) > 1 else ''}")
        if opts.out is not None:
            _write_poses_json(opts, summary)
            summary.outputs["poses"] = Path(opts.out)
        if opts.out_bag is not None or opts.video is not None:
            _write_visual_outputs(opts, reader, tracker.scene, summary)
    finally:
        reader.close()
    summary.elapsed = time.perf_counter() - t_start
    return summary


def _shipped_config() -> Path | None:
    from .config import find_config
    from .errors import ConfigError

    try:
        return find_config("allegro_tracking.yaml")
    except ConfigError:
        return None


def _fill_gaps(results: dict[int, FrameResult], stamps: dict[int, int], initial) -> list[FrameResult]:
    """Results in image order; images that could not be tracked get the last estimate as ``lost`` (or the initial
    pose as ``initialising`` before the first estimate)."""
    import torch

    ordered: list[FrameResult] = []
    last: FrameResult | None = None
    for index in sorted(stamps):
        r = results.get(index)
        if r is not None:
            r.stamp_ns = stamps[index]
            ordered.append(r)
            last = r
            continue
        if last is not None:
            ordered.append(FrameResult(index, stamps[index], last.object2camera, last.covariance, 0.0, "lost",
                                       tracked=False))
        elif initial is not None:
            ordered.append(FrameResult(index, stamps[index], torch.as_tensor(initial, dtype=torch.float64), None,
                                       0.0, "initialising", tracked=False))
    return ordered


def _write_poses_json(opts: TrackOptions, summary: TrackSummary) -> None:
    from .io.poses_file import PoseRecord, PosesFile, write_poses

    records = [PoseRecord.from_transform(r.index, r.stamp_ns * 1e-9, r.object2camera, r.covariance, r.quality,
                                         r.status) for r in summary.results]
    write_poses(opts.out, PosesFile(frame_id=summary.camera_frame, child_frame_id=opts.object_frame,
                                    object_mesh=str(opts.object_mesh), poses=records))


# ================================================================================================ overlays
def draw_overlay(rgb, scene, result: FrameResult):
    """Hand (blue) and object (green) outlines from hard renders, object axes and contacts over ``rgb (H, W, 3)``.

    Returns a new ``(H, W, 3)`` uint8 RGB numpy array.
    """
    import cv2
    import numpy as np
    import torch

    from .estimation.scene import HAND, OBJECT

    img = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., ::-1])  # BGR for OpenCV
    H, W = img.shape[:2]
    cam = result.camera.to(scene.device, torch.float32)
    pose = result.object2camera.to(scene.device, torch.float32)[None]
    with torch.no_grad():
        if result.joint_angles is not None:
            hand = scene.pose_hand(result.joint_angles, result.hand2camera)
            verts, faces, inst = scene.scene_mesh(pose, hand)
            out = scene.renderer.hard(verts, faces, cam, face_instance=inst)
        else:
            verts = scene.object_verts(pose)
            out = scene.renderer.hard(verts, scene.object_faces, cam,
                                      face_instance=torch.full((scene.object_faces.shape[0],), OBJECT))
        instance = out.instance[0].cpu().numpy()
    colour = {HAND: (255, 160, 40), OBJECT: (60, 220, 60)}
    status_colour = (60, 220, 60) if result.status == "tracking" else (0, 165, 255) if \
        result.status == "initialising" else (40, 40, 255)
    colour[OBJECT] = status_colour
    for label in (HAND, OBJECT):
        mask = (instance == label).astype(np.uint8)
        if mask.any():
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(img, contours, -1, colour[label], 2 if label == OBJECT else 1, cv2.LINE_AA)
    # object axes (x red, y green, z blue), 40 % of the object's size
    length = 0.4 * float(scene.object.diameter)
    axes = torch.tensor([[0, 0, 0], [length, 0, 0], [0, length, 0], [0, 0, length]], dtype=torch.float64)
    T = result.object2camera.double().cpu()
    pts = axes @ T[:3, :3].T + T[:3, 3]
    if bool((pts[:, 2] > 0.01).all()):
        uv = result.camera.to(None, torch.float64).project(pts[None])[0].numpy()
        o = tuple(round(v) for v in uv[0])
        for k, c in ((1, (40, 40, 230)), (2, (40, 200, 40)), (3, (230, 80, 40))):
            p = tuple(round(v) for v in uv[k])
            if max(abs(o[0]), abs(o[1]), abs(p[0]), abs(p[1])) < 10 * max(H, W):
                cv2.line(img, o, p, c, 2, cv2.LINE_AA)
    if result.contact_points is not None and len(result.contact_points):
        cp = result.contact_points.to(torch.float64)
        front = cp[:, 2] > 0.01
        if bool(front.any()):
            uv = result.camera.to(None, torch.float64).project(cp[front][None])[0].numpy()
            for u, v in uv:
                if 0 <= u < W and 0 <= v < H:
                    cv2.circle(img, (round(u), round(v)), 3, (0, 230, 255), -1, cv2.LINE_AA)
    text = f"#{result.index} {result.status} q={result.quality:.2f}"
    scale = max(0.35, min(1.0, W / 900))
    cv2.putText(img, text, (6, int(18 * scale / 0.6)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, int(18 * scale / 0.6)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return np.ascontiguousarray(img[..., ::-1])


class OverlayVideo:
    """mp4 via ``cv2.VideoWriter``; without an mp4 codec, a PNG strip of evenly spaced frames (said clearly)."""

    def __init__(self, path: Path, fps: float, expected_frames: int, report: Callable[[str], None],
                 strip_frames: int = 8) -> None:
        self.path = Path(path)
        self.fps = fps if math.isfinite(fps) and fps > 0 else 30.0
        self.report = report
        self.writer = None
        self.fallback = False
        self.strip: list = []
        self.count = 0
        n = max(1, expected_frames)
        k = min(strip_frames, n)
        self.strip_indices = {round(i * (n - 1) / max(k - 1, 1)) for i in range(k)}
        self.written_path: Path | None = None

    def add(self, rgb) -> None:
        import cv2
        import numpy as np

        frame = np.ascontiguousarray(rgb[..., ::-1])
        if self.writer is None and not self.fallback:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                     (frame.shape[1], frame.shape[0]))
            if writer.isOpened():
                self.writer = writer
            else:
                writer.release()
                self.fallback = True
        if self.writer is not None:
            self.writer.write(frame)
        elif self.count in self.strip_indices:
            self.strip.append(frame)
        self.count += 1

    def close(self) -> Path | None:
        import cv2
        import numpy as np

        if self.writer is not None:
            self.writer.release()
            self.written_path = self.path
        elif self.strip:
            h = min(f.shape[0] for f in self.strip)
            strip = np.concatenate([f[:h] for f in self.strip], axis=1)
            png = self.path.with_suffix(".png")
            cv2.imwrite(str(png), strip)
            self.report(f"OpenCV has no mp4 (mp4v) encoder here: wrote a PNG strip of {len(self.strip)} overlay "
                        f"frames to {png} instead of {self.path}")
            self.written_path = png
        return self.written_path


def _write_visual_outputs(opts: TrackOptions, reader, scene, summary: TrackSummary) -> None:
    """One pass over the input bag: overlays for the video, and the result bag (input topics + results)."""
    import numpy as np

    from .io.bag_reader import decode_colour, open_bag, stamp_to_ns

    by_index = {r.index: r for r in summary.results}
    stamps = sorted(r.stamp_ns for r in summary.results)
    fps = 1e9 / float(np.median(np.diff(stamps))) if len(stamps) > 1 else 30.0
    video = OverlayVideo(opts.video, fps, len(summary.results), opts.report) if opts.video is not None else None
    bag_out = _ResultBag(opts, summary, reader) if opts.out_bag is not None else None
    src = open_bag(opts.bag)
    ts = reader.typestore
    try:
        conns = src.connections if bag_out is not None else [c for c in src.connections
                                                             if c.topic == reader.image_topic]
        index = 0
        last_index = max(by_index) if by_index else -1
        for conn, t_log, raw in src.messages(connections=conns):
            if bag_out is not None:
                bag_out.copy(conn, t_log, raw)
            if conn.topic != reader.image_topic:
                continue
            i = index
            index += 1
            r = by_index.get(i)
            if r is None:
                if i > last_index and bag_out is None:
                    break
                continue
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            rgb = decode_colour(msg, conn.msgtype)
            if r.camera is None:
                r.camera = reader._camera(stamp_to_ns(msg.header.stamp) or t_log, rgb.shape[1], rgb.shape[0])
            overlay = draw_overlay(rgb, scene, r)
            if video is not None:
                video.add(overlay)
            if bag_out is not None:
                bag_out.add_results(r, t_log, overlay, msg.header)
    finally:
        src.close()
        if bag_out is not None:
            path = bag_out.close()
            summary.outputs["bag"] = path
        if video is not None:
            path = video.close()
            if path is not None:
                summary.outputs["video"] = path


class _ResultBag:
    """Writes the result bag: every input topic copied, plus ``/tf`` (camera -> object), the pose with covariance,
    contact markers (+ the object mesh) and overlay images, so the run replays in RViz or Foxglove."""

    def __init__(self, opts: TrackOptions, summary: TrackSummary, reader) -> None:
        import shutil
        import tempfile

        from rosbags.rosbag2 import StoragePlugin, Writer

        self.opts = opts
        self.summary = summary
        self.ts = reader.typestore
        out = Path(opts.out_bag)
        self.single_file = out.suffix == ".mcap"
        if out.exists():
            if out.is_dir():
                shutil.rmtree(out)
            else:
                out.unlink()
        out.parent.mkdir(parents=True, exist_ok=True)
        self.final = out
        if self.single_file:
            self.tmp = Path(tempfile.mkdtemp(prefix=".handypriors_bag_", dir=out.parent))
            self.target = self.tmp / "bag"
        else:
            self.tmp, self.target = None, out
        self.writer = Writer(self.target, version=8, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.out_conns: dict[int, Any] = {}
        self.tf_conn = None
        self.pose_conn = self.writer.add_connection(POSE_TOPIC, "geometry_msgs/msg/PoseWithCovarianceStamped",
                                                    typestore=self.ts)
        self.marker_conn = self.writer.add_connection(CONTACTS_TOPIC, "visualization_msgs/msg/MarkerArray",
                                                      typestore=self.ts)
        self.overlay_conn = self.writer.add_connection(OVERLAY_TOPIC, "sensor_msgs/msg/Image", typestore=self.ts)
        self.mesh_uri = "file://" + str(Path(opts.object_mesh).resolve())

    def _out_conn(self, conn):
        out = self.out_conns.get(conn.id)
        if out is not None:
            return out
        qos = list(getattr(conn.ext, "offered_qos_profiles", []) or [])
        fmt = getattr(conn.ext, "serialization_format", "cdr")
        for existing in self.writer.connections:
            if existing.topic == conn.topic and existing.msgtype == conn.msgtype:
                out = existing
                break
        else:
            if conn.msgtype in self.ts.types:
                out = self.writer.add_connection(conn.topic, conn.msgtype, typestore=self.ts, serialization_format=fmt,
                                                 offered_qos_profiles=qos)
            else:
                out = self.writer.add_connection(conn.topic, conn.msgtype, msgdef=conn.msgdef.data, rihs01=conn.digest,
                                                 serialization_format=fmt, offered_qos_profiles=qos)
        self.out_conns[conn.id] = out
        if conn.topic == "/tf" and conn.msgtype == "tf2_msgs/msg/TFMessage":
            self.tf_conn = out
        return out

    def copy(self, conn, t_log: int, raw) -> None:
        self.writer.write(self._out_conn(conn), t_log, raw)

    def add_results(self, r: FrameResult, t_log: int, overlay, header) -> None:
        import numpy as np

        from .geometry.transforms import pose_from_transform

        ts = self.ts
        T = self.ts.types
        stamp = header.stamp
        frame_id = self.summary.camera_frame
        pos, quat = (v.tolist() for v in pose_from_transform(r.object2camera.double()))
        Header = T["std_msgs/msg/Header"]
        hdr = Header(stamp=stamp, frame_id=frame_id)
        point = T["geometry_msgs/msg/Point"](x=pos[0], y=pos[1], z=pos[2])
        orient = T["geometry_msgs/msg/Quaternion"](x=quat[0], y=quat[1], z=quat[2], w=quat[3])
        pose = T["geometry_msgs/msg/Pose"](position=point, orientation=orient)
        cov = np.zeros(36) if r.covariance is None else r.covariance.double().reshape(-1).numpy()
        pwc = T["geometry_msgs/msg/PoseWithCovarianceStamped"](
            header=hdr, pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=cov.astype(np.float64)))
        self.writer.write(self.pose_conn, t_log, ts.serialize_cdr(pwc, "geometry_msgs/msg/PoseWithCovarianceStamped"))
        # TF camera -> object
        tf = T["geometry_msgs/msg/TransformStamped"](
            header=hdr, child_frame_id=self.opts.object_frame,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=pos[0], y=pos[1], z=pos[2]), rotation=orient))
        if self.tf_conn is None:
            self.tf_conn = self.writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=ts)
        self.writer.write(self.tf_conn, t_log, ts.serialize_cdr(T["tf2_msgs/msg/TFMessage"](transforms=[tf]),
                                                                "tf2_msgs/msg/TFMessage"))
        # markers: the object mesh at the pose, the contacts as spheres, a status text
        self.writer.write(self.marker_conn, t_log, ts.serialize_cdr(self._markers(r, hdr, pose),
                                                                    "visualization_msgs/msg/MarkerArray"))
        h, w = overlay.shape[:2]
        img = T["sensor_msgs/msg/Image"](header=hdr, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                                         data=np.ascontiguousarray(overlay).reshape(-1))
        self.writer.write(self.overlay_conn, t_log, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))

    def _markers(self, r: FrameResult, hdr, pose):
        import numpy as np

        T = self.ts.types
        Marker = T["visualization_msgs/msg/Marker"]
        V3, RGBA, P = T["geometry_msgs/msg/Vector3"], T["std_msgs/msg/ColorRGBA"], T["geometry_msgs/msg/Point"]
        Duration = T["builtin_interfaces/msg/Duration"]
        identity = T["geometry_msgs/msg/Pose"](position=P(x=0.0, y=0.0, z=0.0),
                                               orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                                             w=1.0))
        empty_image = T["sensor_msgs/msg/CompressedImage"](header=hdr, format="", data=np.zeros(0, dtype=np.uint8))
        mesh_file = T["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, dtype=np.uint8))

        def marker(ns, mid, mtype, mpose, scale, colour, points=(), colours=(), text="", mesh=""):
            return Marker(header=hdr, ns=ns, id=mid, type=mtype, action=0, pose=mpose, scale=scale, color=colour,
                          lifetime=Duration(sec=0, nanosec=0), frame_locked=False, points=list(points),
                          colors=list(colours), texture_resource="", texture=empty_image, uv_coordinates=[],
                          text=text, mesh_resource=mesh, mesh_file=mesh_file, mesh_use_embedded_materials=False)

        ok = r.status == "tracking"
        obj_colour = RGBA(r=0.2, g=0.85, b=0.2, a=0.6) if ok else RGBA(r=0.95, g=0.3, b=0.2, a=0.6)
        markers = [marker("object", 0, 10, pose,  # MESH_RESOURCE
                          V3(x=1.0, y=1.0, z=1.0), obj_colour, mesh=self.mesh_uri)]
        pts, cols = [], []
        if r.contact_points is not None:
            for p, v in zip(r.contact_points.tolist(), r.contact_values.tolist()):
                pts.append(P(x=p[0], y=p[1], z=p[2]))
                cols.append(RGBA(r=1.0, g=float(1.0 - 0.8 * v), b=0.0, a=1.0))
        markers.append(marker("contacts", 1, 7, identity, V3(x=0.006, y=0.006, z=0.006),  # SPHERE_LIST
                              RGBA(r=1.0, g=0.9, b=0.0, a=1.0), pts, cols))
        text_pose = T["geometry_msgs/msg/Pose"](position=P(x=pose.position.x, y=pose.position.y - 0.08,
                                                           z=pose.position.z), orientation=identity.orientation)
        markers.append(marker("status", 2, 9, text_pose, V3(x=0.0, y=0.0, z=0.02),  # TEXT_VIEW_FACING
                              RGBA(r=1.0, g=1.0, b=1.0, a=1.0), text=f"{r.status} q={r.quality:.2f}"))
        return T["visualization_msgs/msg/MarkerArray"](markers=markers)

    def close(self) -> Path:
        import shutil

        self.writer.close()
        if self.single_file:
            inner = self.target / f"{self.target.name}.mcap"
            shutil.move(str(inner), str(self.final))
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.final


# ================================================================================================ commands
def _seven_numbers(text: str, option: str) -> list[float]:
    from .errors import InvalidValueError

    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if len(values) != 7:
        raise InvalidValueError(f"{option} must be x,y,z,qx,qy,qz,qw (7 numbers); got {text!r}")
    return values


def options_from_args(args: argparse.Namespace, **overrides: Any) -> TrackOptions:
    """:class:`TrackOptions` of parsed ``track`` arguments (``overrides`` replace fields)."""
    topics = {"image": args.image_topic, "camera_info": args.camera_info_topic, "depth": args.depth_topic,
              "joint_states": args.joint_states_topic, "hand_frame": args.hand_frame,
              "camera_frame": args.camera_frame, "joint_map": args.joint_map,
              "hand2camera_override": _seven_numbers(args.hand2camera, "--hand2camera") if args.hand2camera else None}
    if args.no_depth:
        topics["depth"] = ""
    values: dict[str, Any] = {
        "bag": Path(args.bag), "object_mesh": Path(args.object_mesh),
        "config": Path(args.config) if args.config else None, "mode": args.mode, "initial_pose": args.initial_pose,
        "out": Path(args.out) if args.out else None, "out_bag": Path(args.out_bag) if args.out_bag else None,
        "video": Path(args.video) if args.video else None, "topics": topics, "mask_source": args.mask_source,
        "segmentation_config": Path(args.segmentation_config) if args.segmentation_config else None,
        "device": args.device, "max_frames": args.max_frames, "mesh_scale": args.mesh_scale,
        "object_frame": args.object_frame, "offline_window": args.offline_window,
        "offline_overlap": args.offline_overlap, "offline_iterations": args.offline_iterations,
        "progress": not args.no_progress,
    }
    values.update(overrides)
    return TrackOptions(**values)


def _cmd_track(args: argparse.Namespace) -> int:
    summary = run_track(options_from_args(args))
    _print_track_summary(summary)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


def _print_track_summary(summary: TrackSummary) -> None:
    res = summary.results
    tracked = [r for r in res if r.tracked]
    qualities = sorted(r.quality for r in tracked)
    median_q = qualities[len(qualities) // 2] if qualities else float("nan")
    lost = sum(r.status == "lost" for r in res)
    print(f"{summary.mode}: {len(tracked)} of {summary.num_images} images tracked at {summary.fps:.2f} fps "
          f"(tracking {summary.tracking_seconds:.1f} s, total {summary.elapsed:.1f} s); median quality "
          f"{median_q:.2f}; {lost} lost")
    for key, path in summary.outputs.items():
        print(f"wrote {key}: {path}")


def _cmd_eval(args: argparse.Namespace) -> int:
    from . import evaluation

    poses, gt, points, camera, mesh = evaluation.load_eval_inputs(args.poses, args.gt, args.object_mesh,
                                                                  args.mesh_scale)
    symmetric = None if args.symmetric is None else args.symmetric == "yes"
    result = evaluation.evaluate(poses, gt, points, camera, symmetric=symmetric, only_estimated=args.only_estimated)
    result.info.update({"poses": str(args.poses), "gt": str(args.gt), "object_mesh": str(mesh)})
    print(evaluation.format_table(result, title=f"{args.poses} vs {args.gt}"))
    if args.out:
        evaluation.write_json(result, args.out)
        print(f"wrote {args.out}")
    if args.plots:
        for path in evaluation.write_plots(result, args.plots, title=Path(args.poses).name):
            print(f"wrote {path}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run_demo(out_dir=Path(args.out), hand_only=args.hand_only, frames=args.frames, width=args.width,
                         height=args.height, seed=args.seed, modes=args.modes.split(","), use_ros=args.ros)


def _cmd_batch(args: argparse.Namespace) -> int:
    from . import batch

    extra = []
    if args.mode:
        extra += ["--mode", args.mode]
    if args.config:
        extra += ["--config", str(Path(args.config).resolve())]
    if args.initial_pose:
        extra += [f"--initial-pose={args.initial_pose}"]
    if args.max_frames is not None:
        extra += ["--max-frames", str(args.max_frames)]
    if args.mask_source:
        extra += ["--mask-source", args.mask_source]
    report = batch.run_batch(Path(args.folder), Path(args.object_mesh), Path(args.out), workers=args.workers,
                             ray_address=args.ray, track_args=extra, redo=args.redo, with_video=args.video)
    return EXIT_OK if not report.failed else EXIT_FAILED


# ================================================================================================ parser
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``handypriors`` (subcommands track, eval, demo, batch)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    common.add_argument("--threads", type=int, default=int(os.environ.get("HANDYPRIORS_THREADS", "1")),
                        help="torch CPU threads (default 1: small ops are fastest single-threaded)")
    parser = argparse.ArgumentParser(prog="handypriors", parents=[common],
                                     description="HandyPriors object tracking in an Allegro hand: track bags, "
                                                 "score results, run the demo.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("track", parents=[common], help="track the object through a rosbag2 recording",
                       description="Track a known object's 6-DoF pose through a rosbag2 (folder, .mcap or .db3).")
    t.add_argument("bag", help="rosbag2 folder or .mcap / .db3 file")
    t.add_argument("--object-mesh", required=True, help="object mesh (.obj/.ply/.stl) in metres (see --mesh-scale)")
    t.add_argument("--mesh-scale", type=float, default=1.0, help="multiply mesh coordinates (0.001 for mm)")
    t.add_argument("--config", help="tracking config (default: the shipped config/allegro_tracking.yaml)")
    t.add_argument("--mode", choices=("filter", "refine", "offline"), help="default: the config's tracking.mode")
    t.add_argument("--initial-pose", help="x,y,z,qx,qy,qz,qw of the object in the camera frame at the first image "
                                          "[m], or a file; default: global search on the first image")
    t.add_argument("--out", default="poses.json", help="poses.json to write (default: %(default)s; '' = none)")
    t.add_argument("--out-bag", help="result bag (.mcap file, or a folder name for a rosbag2 folder)")
    t.add_argument("--video", help="overlay video (.mp4; a PNG strip when OpenCV has no mp4 encoder)")
    g = t.add_argument_group("bag topics and frames (default: the config's 'bag' section, then auto-detection)")
    g.add_argument("--image-topic")
    g.add_argument("--camera-info-topic")
    g.add_argument("--depth-topic")
    g.add_argument("--no-depth", action="store_true", help="ignore depth images")
    g.add_argument("--joint-states-topic")
    g.add_argument("--joint-map", help="'auto', a shipped map (menagerie, ros1_allegro, wonik_ros2) or a YAML path")
    g.add_argument("--hand-frame", help="TF frame of the hand root (default hand_root)")
    g.add_argument("--camera-frame", help="TF frame of the colour optical frame (default: the images' frame_id)")
    g.add_argument("--hand2camera", help="x,y,z,qx,qy,qz,qw of a fixed hand mount in the camera frame (instead of TF)")
    t.add_argument("--object-frame", default="object", help="child frame id of the outputs (default: %(default)s)")
    t.add_argument("--mask-source", choices=("none", "colour", "external", "detectron2"),
                   help="object segmentation (default: config/segmentation.yaml)")
    t.add_argument("--segmentation-config", help="segmentation config file")
    t.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's)")
    t.add_argument("--max-frames", type=int, help="stop after this many image messages")
    t.add_argument("--offline-window", type=int, help="offline mode: frames per window (default: refine.window)")
    t.add_argument("--offline-overlap", type=int, help="offline mode: frames shared by neighbouring windows")
    t.add_argument("--offline-iterations", type=int, help="offline mode: Adam steps per window")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_track)

    e = sub.add_parser("eval", parents=[common], help="score poses.json against ground truth",
                       description="Translation/rotation error, ADD, ADD-S, ADD(-S) AUC up to 10 cm, 2D/3D Chamfer.")
    e.add_argument("--poses", required=True, help="poses.json written by 'handypriors track'")
    e.add_argument("--gt", required=True, help="sequence folder (docs/sequence_format.md) or its gt.json")
    e.add_argument("--object-mesh", help="default: the sequence's object mesh, else the poses file's")
    e.add_argument("--mesh-scale", type=float, default=1.0)
    e.add_argument("--symmetric", choices=("yes", "no"), help="ADD(-S) uses ADD-S (default: gt.json's symmetry)")
    e.add_argument("--only-estimated", action="store_true",
                   help="score only the frames in the poses file (default: missing frames count as failures)")
    e.add_argument("--out", help="write the results as JSON")
    e.add_argument("--plots", help="folder for PNG plots (error over time, ADD-S accuracy curve)")
    e.set_defaults(func=_cmd_eval)

    d = sub.add_parser("demo", parents=[common], help="generate a sequence, track it, print results (make demo)")
    d.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    d.add_argument("--hand-only", action="store_true", help="only render the Allegro hand at a few joint "
                                                            "configurations")
    d.add_argument("--frames", type=int, default=40)
    d.add_argument("--width", type=int, default=320)
    d.add_argument("--height", type=int, default=240)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--modes", default="filter,refine,offline", help="comma-separated modes (default: %(default)s)")
    ros = d.add_mutually_exclusive_group()
    ros.add_argument("--ros", dest="ros", action="store_true", default=None,
                     help="require the ROS-nodes path (default: taken when rclpy is available)")
    ros.add_argument("--no-ros", dest="ros", action="store_false", help="offline path only")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("batch", parents=[common], help="track every bag in a folder (resumable)")
    b.add_argument("folder", help="folder with bags (rosbag2 folders, .mcap or .db3 files)")
    b.add_argument("--object-mesh", required=True)
    b.add_argument("--out", required=True, help="output folder: one sub-folder per bag")
    b.add_argument("--workers", type=int, default=1, help="parallel bags (local process pool)")
    b.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('auto' or host:port)")
    b.add_argument("--mode", choices=("filter", "refine", "offline"))
    b.add_argument("--config")
    b.add_argument("--initial-pose")
    b.add_argument("--mask-source", choices=("none", "colour", "external", "detectron2"))
    b.add_argument("--max-frames", type=int)
    b.add_argument("--video", action="store_true", help="also write overlay.mp4 per bag")
    b.add_argument("--redo", action="store_true", help="re-run bags that already finished")
    b.set_defaults(func=_cmd_batch)

    from . import cli_contact  # contact refinement (paper Sec. IV-D), its own module

    cli_contact.add_parser(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--initial-pose -0.1,0.2,...`` -> ``--initial-pose=-0.1,0.2,...`` (argparse would take the value for an
    option); the same for ``--hand2camera``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--initial-pose", "--hand2camera") and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                and "," in argv[i + 1]:
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``handypriors`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if not args.debug:
        _quiet_warp()
    try:
        import torch

        torch.set_num_threads(max(1, args.threads))
    except ImportError:
        pass
    from .errors import HandyPriorsError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("handypriors: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `handypriors eval ... | head`: the reader went away, nothing to report
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown from flushing into the pipe
        return EXIT_OK
    except HandyPriorsError as exc:
        if args.debug:
            raise
        print(f"handypriors {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if args.debug:
            raise
        module = type(exc).__module__ or ""
        if module.startswith("rosbags") or isinstance(exc, (OSError, ValueError)):
            print(f"handypriors {args.command}: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        print(f"handypriors {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug "
              f"for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
