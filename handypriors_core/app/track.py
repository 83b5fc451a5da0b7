"""The tracking pipeline of ``handypriors track``: a bag in, one estimate per image message out.

:func:`run_track` takes a :class:`TrackOptions` (typed; the command line builds one in :mod:`..cli`, ``batch``
and ``demo`` build theirs directly) and returns a :class:`TrackSummary`; it writes ``poses.json`` and, through
:mod:`.track_outputs`, the overlay video and the result bag.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .initial_pose import parse_initial_pose
from .interrupts import deferred_interrupts
from .progress import Progress

__all__ = ["FrameResult", "TrackOptions", "TrackSummary", "run_track", "write_poses_json"]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

@dataclass
class TrackOptions:
    """Everything ``handypriors track`` needs (see ``docs/cli.md``).

    Attributes:
        bag: rosbag2 folder or ``.mcap`` / ``.db3`` file. object_mesh: the object model; mesh_scale: its unit.
        config: tracking config (default: the shipped ``allegro_tracking.yaml``). mode: filter | refine | offline
            (None: the config's). initial_pose: ``(4, 4)`` object2camera of the first tracked frame, or None for
            the global search. out: poses.json path (None: not written). out_bag, video: optional outputs.
        topics: overrides of :class:`~handypriors_core.io.bag_settings.BagTopics` fields (None = config value).
        mask_source: ``none`` | ``colour`` | ``external`` | ``detectron2`` or None (the segmentation config's).
        device: torch device (None: the config's). max_frames: stop after this many image messages.
        object_frame: child frame id of the pose outputs. offline_*: window settings of the offline mode.
        progress: show the progress bar. report: where informational lines go.
        calibration: hand calibration YAML applied to every frame; calibrate: estimate it online too.
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
    calibration: Path | None = None
    calibrate: bool = False


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
    damaged: str = ""  # the bag is damaged: what could not be read (the frames before it are in results)

    @property
    def num_tracked(self) -> int:
        return sum(r.tracked for r in self.results)

    @property
    def fps(self) -> float:
        """Tracked frames per second of tracking time (reading and writing excluded)."""
        return self.num_tracked / self.tracking_seconds if self.tracking_seconds > 0 else 0.0


def _initial_pose_by_search(tracker, frame, report: Callable[[str], None]):
    """Global search on the first frame (estimation.initialization), or a clear error when it is unavailable."""
    from ..errors import InvalidValueError

    try:
        from ..estimation import initialization
    except ImportError:
        raise InvalidValueError("no initial pose: pass --initial-pose x,y,z,qx,qy,qz,qw (the global pose search is "
                                "not available in this installation)") from None
    from ..config import find_config
    from ..errors import ConfigError

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
        from .. import segmentation as seg
    except ImportError:
        return None
    from ..config import find_config
    from ..errors import ConfigError

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

    from ..errors import InvalidValueError
    from ..estimation.settings import load_tracking_settings
    from ..estimation.tracker import ObjectTracker
    from ..io.bag_reader import BagReader
    from ..io.bag_settings import load_bag_settings
    from ..models import RigidObject, URDFHand, allegro_urdf
    from ..physics.settings import load_physics_settings
    from ..render.settings import load_render_settings

    t_start = time.perf_counter()
    report = opts.report
    settings = load_tracking_settings(opts.config)
    mode = opts.mode or settings.mode
    if mode not in ("filter", "refine", "offline"):
        raise InvalidValueError(f"--mode must be filter, refine or offline; got {mode!r}")
    settings.mode = "filter" if mode == "filter" else "refine"
    if opts.device:
        settings.device = opts.device
    settings.calibration.enabled = settings.calibration.enabled or opts.calibrate
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
        if opts.calibration is not None:
            from ..io.calibration_file import load_calibration

            tracker.set_calibration(load_calibration(opts.calibration, hand.joint_names))
        offline = None
        if mode == "offline":
            from ..estimation.offline import OfflineRefiner, OfflineSettings

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
        damaged = unread_images(reader, done)
        if damaged:
            report(damaged)
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
                               offline=None if offline is None else dict(vars(offline.stats)), damaged=damaged)
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
            with deferred_interrupts():  # a second Ctrl-C / SIGTERM must not leave half a file
                write_poses_json(opts, summary)
            summary.outputs["poses"] = Path(opts.out)
        if opts.out_bag is not None or opts.video is not None:
            from .track_outputs import write_visual_outputs

            write_visual_outputs(opts, reader, tracker.scene, summary)
    finally:
        reader.close()
    summary.elapsed = time.perf_counter() - t_start
    return summary


def unread_images(reader, done: int) -> str:
    """One line naming the images a damaged bag could not give (``""`` when the bag was read to its end)."""
    if reader.damage is None or done >= reader.num_images:
        return ""
    return (f"{reader.damage}: images {done}-{reader.num_images - 1} of {reader.num_images} not read (the "
            f"{done} before are tracked and written)")


def _shipped_config() -> Path | None:
    from ..config import find_config
    from ..errors import ConfigError

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


def write_poses_json(opts: TrackOptions, summary: TrackSummary) -> None:
    """``opts.out``: the summary's results as a poses file (``io.poses_file``)."""
    from ..io.poses_file import PoseRecord, PosesFile, write_poses

    records = [PoseRecord.from_transform(r.index, r.stamp_ns * 1e-9, r.object2camera, r.covariance, r.quality,
                                         r.status) for r in summary.results]
    write_poses(opts.out, PosesFile(frame_id=summary.camera_frame, child_frame_id=opts.object_frame,
                                    object_mesh=str(opts.object_mesh), poses=records))
