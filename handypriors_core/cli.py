"""``handypriors``: the command line (track a bag, score poses, run the demo, batch-process a folder).

::

    handypriors track BAG --object-mesh MESH [--config config/allegro_tracking.yaml] [--mode filter|refine|offline]
                      [--initial-pose x,y,z,qx,qy,qz,qw | FILE] [--out poses.json] [--out-bag result.mcap]
                      [--video overlay.mp4]
    handypriors eval --poses poses.json --gt SEQUENCE_OR_GT_JSON [--out eval.json] [--plots DIR]
    handypriors demo [--out out/demo] [--hand-only]
    handypriors batch FOLDER --object-mesh MESH --out DIR [--workers N] [--ray ADDRESS]
    handypriors calibrate BAG [--out hand_calibration.yaml] [--initial CALIBRATION_YAML]

``docs/cli.md`` is the user documentation. Every expected failure (corrupt bag, missing topic or mesh, unknown
joint name, bad option) ends with one ``handypriors: error: ...`` line on stderr and exit status 2 (1 for
failures inside a run, 130 after Ctrl-C); ``--debug`` shows the traceback instead.

This module only parses arguments and dispatches: each command is a function of :mod:`handypriors_core.app`
taking typed options (``run_track(TrackOptions)``, ``run_evaluate(EvaluateOptions)``, ``run_demo(DemoOptions)``,
``run_batch(BatchOptions)``, ``run_calibrate(CalibrateOptions)``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from . import defaults
from .app.initial_pose import parse_initial_pose
from .app.interrupts import sigterm_as_interrupt
from .app.progress import quiet_warp
from .app.track import TrackOptions, TrackSummary, run_track

__all__ = ["build_parser", "main", "options_from_args", "parse_initial_pose"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
        "calibration": Path(args.calibration) if args.calibration else None, "calibrate": args.calibrate,
    }
    values.update(overrides)
    return TrackOptions(**values)


def _cmd_track(args: argparse.Namespace) -> int:
    with sigterm_as_interrupt():  # SIGTERM, like Ctrl-C, writes what is done
        summary = run_track(options_from_args(args))
    _print_track_summary(summary)
    if summary.damaged:  # a damaged bag: the frames before the damage are written
        print(f"handypriors track: error: {_one_line(summary.damaged)}", file=sys.stderr)
        return EXIT_USAGE
    if summary.skipped and not summary.num_tracked and not summary.interrupted:  # e.g. every image mis-sized
        print(f"handypriors track: error: no image could be tracked: {_one_line(summary.skipped[0][1])}",
              file=sys.stderr)
        return EXIT_USAGE
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
    from .app.evaluate import EvaluateOptions, run_evaluate

    run_evaluate(EvaluateOptions(poses=args.poses, gt=args.gt, object_mesh=args.object_mesh,
                                 mesh_scale=args.mesh_scale,
                                 symmetric=None if args.symmetric is None else args.symmetric == "yes",
                                 only_estimated=args.only_estimated, out=args.out, plots=args.plots))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .app.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(out_dir=Path(args.out), hand_only=args.hand_only, frames=args.frames,
                                width=args.width, height=args.height, seed=args.seed, modes=args.modes.split(","),
                                use_ros=args.ros))


def _cmd_batch(args: argparse.Namespace) -> int:
    from .app.batch import BatchOptions, run_batch

    report = run_batch(BatchOptions(folder=Path(args.folder), object_mesh=Path(args.object_mesh), out=Path(args.out),
                                    workers=args.workers, ray_address=args.ray, mode=args.mode,
                                    config=Path(args.config) if args.config else None,
                                    initial_pose=args.initial_pose, mask_source=args.mask_source,
                                    max_frames=args.max_frames, video=args.video, redo=args.redo))
    return EXIT_OK if not report.failed else EXIT_FAILED


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .app.calibrate import CalibrateOptions, describe_calibration, run_calibrate

    topics = {"image": args.image_topic, "depth": args.depth_topic, "joint_states": args.joint_states_topic,
              "joint_map": args.joint_map, "hand_frame": args.hand_frame, "camera_frame": args.camera_frame}
    summary = run_calibrate(CalibrateOptions(bag=Path(args.bag), out=Path(args.out) if args.out else None,
                                             config=Path(args.config) if args.config else None,
                                             initial=Path(args.initial) if args.initial else None, topics=topics,
                                             max_frames=args.max_frames))
    print(f"calibrate: {summary.frames_used} of {summary.frames_seen} frames used ({summary.statuses}), "
          f"{summary.seconds:.1f} s")
    print(describe_calibration(summary.calibration))
    if summary.warning:
        print(f"WARNING: recalibrate the robot: {summary.warning}")
    if summary.out is not None:
        print(f"wrote calibration: {summary.out}")
    return EXIT_OK if summary.frames_used else EXIT_FAILED


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
    t.add_argument("--mode", choices=defaults.MODES,
                   help=f"default: the config's tracking.mode (shipped: {defaults.MODE})")
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
    g.add_argument("--hand-frame", help=f"TF frame of the hand root (default {defaults.HAND_ROOT_FRAME})")
    g.add_argument("--camera-frame", help="TF frame of the colour optical frame (default: the images' frame_id)")
    g.add_argument("--hand2camera", help="x,y,z,qx,qy,qz,qw of a fixed hand mount in the camera frame (instead of TF)")
    t.add_argument("--object-frame", default=defaults.OBJECT_FRAME,
                   help="child frame id of the outputs (default: %(default)s)")
    t.add_argument("--mask-source", choices=defaults.MASK_SOURCES, default=defaults.MASK_SOURCE,
                   help="object segmentation, as the node's mask_source (default: %(default)s; settings of each "
                        "source in config/segmentation.yaml)")
    t.add_argument("--segmentation-config", help="segmentation config file")
    t.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's)")
    t.add_argument("--max-frames", type=int, help="stop after this many image messages")
    t.add_argument("--offline-window", type=int, help="offline mode: frames per window (default: refine.window)")
    t.add_argument("--offline-overlap", type=int, help="offline mode: frames shared by neighbouring windows")
    t.add_argument("--offline-iterations", type=int, help="offline mode: Adam steps per window")
    t.add_argument("--calibration", help="hand calibration YAML (handypriors calibrate) applied to every frame")
    t.add_argument("--calibrate", action="store_true", help="estimate the hand calibration online while tracking")
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
    b.add_argument("--ray", metavar="ADDRESS", nargs="?", const="auto",
                   help="run the bags as Ray tasks: 'auto' (the default: RAY_ADDRESS or the head on this machine), "
                        "host:port of a cluster's head, or 'local' (a private instance with --workers CPUs); "
                        "bags, mesh and --out must be on storage every node sees")
    b.add_argument("--mode", choices=defaults.MODES)
    b.add_argument("--config")
    b.add_argument("--initial-pose")
    b.add_argument("--mask-source", choices=defaults.MASK_SOURCES, default=defaults.MASK_SOURCE)
    b.add_argument("--max-frames", type=int)
    b.add_argument("--video", action="store_true", help="also write overlay.mp4 per bag")
    b.add_argument("--redo", action="store_true", help="re-run bags that already finished")
    b.set_defaults(func=_cmd_batch)

    c = sub.add_parser("calibrate", parents=[common], help="estimate the hand-camera correction and joint offsets "
                                                           "from a recording (writes the node's calibration YAML)",
                       description="Self-calibration from the hand's depth: hand-camera correction (6 DoF) and "
                                   "joint-encoder offsets; the hand should move during the recording.")
    c.add_argument("bag", help="rosbag2 folder or .mcap / .db3 file (colour, aligned depth, joint states, TF)")
    c.add_argument("--out", default="hand_calibration.yaml", help="calibration YAML to write (default: %(default)s)")
    c.add_argument("--initial", help="calibration YAML to start from (default: no correction)")
    c.add_argument("--config", help="tracking config: its tracking.calibration block (default: the shipped one)")
    c.add_argument("--max-frames", type=int, help="stop after this many image messages")
    for option in ("--image-topic", "--depth-topic", "--joint-states-topic", "--joint-map", "--hand-frame",
                   "--camera-frame"):
        c.add_argument(option, help="as for track")
    c.set_defaults(func=_cmd_calibrate)

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
        quiet_warp()
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
