"""``handypriors demo`` (what ``make demo`` runs): generate the default sequence, track it, print a results table.

1. Generate the bundled default sequence with :mod:`handypriors_core.synthetic` (the Allegro hand carrying a
   textured box, ``--frames`` frames at ``--width`` x ``--height``, 40 at 320x240 by default, seed 0) into
   ``OUT/sequence/`` (the development-sequence folder format plus ``bag/``). An existing sequence made with the
   same scenario is reused.
2. **ROS path** (the :data:`ROS_MODES`, i.e. ``filter``, when rclpy is importable): play the bag through the
   real ROS 2 nodes, ``sequence_player`` -> ``allegro_tracker`` as separate processes with the launch file's
   parameters (:mod:`handypriors_ros.launch_here`; ``config/allegro_tracking.yaml``, ``tracking.mode`` set to
   the mode), at :data:`ROS_RATE` x real time with the recorded stamps, on a private ROS domain over
   localhost-only DDS; ``python -m handypriors_ros.demo_run`` (a subprocess, :mod:`.demo_ros`: the core
   never imports the ROS package) records ``/allegro_tracker/object_pose`` (and ``/diagnostics``, ``~/overlay``)
   and matches the poses to the frames by stamp.
   Frames the node dropped (the newest frame wins while it is busy) are counted, not scored. When rclpy is
   missing or the run yields no poses in time, a one-line note says so and the mode takes the offline path.
3. **Offline path** (the other modes, ``--no-ros``, or the fallback): track the bag through the same path as
   ``handypriors track`` (:func:`~handypriors_core.app.track.run_track`); the offline mode's forward pass *is* the
   refine mode, so when both are asked for, one run gives both.
4. The initial pose is frame 0's ground truth on both paths (stated in the table, as the development data's
   README allows). Score each run (:mod:`handypriors_core.evaluation`: ADD-S, rotation error; the ROS path over
   the frames that got a pose), print a table (per mode: path, frames with a pose, ADD-S, rotation error,
   frames per second) and write ``OUT/results.json``, ``OUT/poses_<mode>.json``, ``OUT/eval_<mode>.json``,
   ``OUT/plots_<mode>/``, an overlay video (or PNG strip) of the most accurate offline-path mode and, for the
   ROS path, the node's own ``~/overlay`` stream as ``OUT/overlay_<mode>_ros.mp4`` (or PNG strip) and its
   output in ``OUT/ros_<mode>.log``.

``use_ros``: None (default) = the ROS path where available; True (``--ros``) = required; False (``--no-ros``)
= the offline path only.

``--hand-only`` (also the fallback when the synthetic generator is not installed) renders the Allegro hand at a
few joint configurations to ``OUT/hand_*.png``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidValueError
from . import demo_ros

__all__ = ["DEMO_MODES", "ROS_MODES", "ROS_RATE", "DemoOptions", "render_hand_gallery", "run_demo"]

DEMO_MODES = ("filter", "refine", "offline")
#: Modes that run through the ROS nodes when rclpy is available (the other modes take the offline path).
ROS_MODES = ("filter",)
#: Playback speed of ``sequence_player`` on the ROS path: 7.5 frames/s, which the filter keeps up with on 2 cores.
ROS_RATE = 0.25
#: The default sequence: frames and resolution (small enough for a few minutes on 2 cores).
DEMO_FRAMES, DEMO_WIDTH, DEMO_HEIGHT = 40, 320, 240

#: Offline-mode window settings of the demo (kept small so the demo finishes in a few minutes on 2 cores).
DEMO_OFFLINE = {"offline_window": 6, "offline_overlap": 2, "offline_iterations": 6}


def _say(line: str) -> None:
    print(line, flush=True)


# ------------------------------------------------------------------------------------------------- hand only
def render_hand_gallery(out_dir: Path, width: int = 320, height: int = 240, report=_say) -> list[Path]:
    """Render the Allegro hand (shipped URDF) at four joint configurations, shaded, to ``out_dir/hand_*.png``."""
    import cv2
    import numpy as np
    import torch

    from ..geometry.camera import PinholeCamera
    from ..geometry.rotations import axis_angle_to_matrix
    from ..geometry.transforms import invert_transform, make_transform, transform_points
    from ..models import URDFHand, allegro_urdf
    from ..render.renderer import Renderer
    from ..render.settings import load_render_settings

    out_dir.mkdir(parents=True, exist_ok=True)
    hand = URDFHand.from_urdf(allegro_urdf())
    renderer = Renderer(load_render_settings())
    f = 0.5 * width / math.tan(math.radians(50.0) / 2)
    K = torch.tensor([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    camera = PinholeCamera(K, width, height)
    # camera 0.45 m in front of the palm (hand +x), fingers up in the image, slightly from the side
    R_c2h = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    R_c2h = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.8], dtype=torch.float64)) @ R_c2h
    target = torch.tensor([0.02, 0.0, 0.04], dtype=torch.float64)
    hand2camera = invert_transform(make_transform(R_c2h, target - 0.45 * R_c2h[:, 2])).float()
    J = len(hand.joint_names)
    poses = {"open": torch.zeros(J), "half": torch.zeros(J), "grasp": torch.zeros(J), "spread": torch.zeros(J)}
    for finger in range(3):
        poses["half"][4 * finger + 1: 4 * finger + 4] = torch.tensor([0.6, 0.6, 0.5])
        poses["grasp"][4 * finger + 1: 4 * finger + 4] = torch.tensor([1.2, 1.1, 0.9])
        poses["spread"][4 * finger] = (finger - 1) * -0.3
    poses["half"][12:16] = torch.tensor([1.0, 0.3, 0.3, 0.3])
    poses["grasp"][12:16] = torch.tensor([1.4, 0.4, 0.9, 1.0])
    poses["spread"][12:16] = torch.tensor([0.4, 0.2, 0.0, 0.0])
    lo, hi = hand.lower_limits.float(), hand.upper_limits.float()
    paths, tiles = [], []
    for k, (name, q) in enumerate(poses.items()):
        q = torch.maximum(torch.minimum(q, hi), lo)
        verts, faces, _ = hand.mesh(q[None])
        verts = transform_points(hand2camera[None], verts)
        out = renderer.hard(verts, faces, camera)
        face = out.face[0].clamp_min(0)
        tri = verts[0][faces[face]]
        normal = torch.linalg.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        p = (out.bary[0][..., None] * tri).sum(-2)
        shade = 0.25 + 0.75 * (normal * p / p.norm(dim=-1, keepdim=True).clamp_min(1e-9)).sum(-1).abs()
        base = torch.tensor([0.55, 0.58, 0.65])
        img = torch.where(out.mask[0][..., None], base * shade[..., None], torch.tensor([0.95, 0.95, 0.97]))
        rgb = (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        cv2.putText(bgr, name, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 40, 40), 1, cv2.LINE_AA)
        path = out_dir / f"hand_{k:02d}_{name}.png"
        cv2.imwrite(str(path), bgr)
        paths.append(path)
        tiles.append(bgr)
    strip = out_dir / "hand_strip.png"
    cv2.imwrite(str(strip), np.concatenate(tiles, axis=1))
    paths.append(strip)
    report(f"rendered the Allegro hand at {len(poses)} joint configurations: {strip}")
    return paths


# ------------------------------------------------------------------------------------------------- sequence
def _scenario(frames: int, width: int, height: int, seed: int):
    from ..synthetic.scenario import load_scenario

    return load_scenario(overrides={"frames": frames, "seed": seed, "camera": {"width": width, "height": height},
                                    "object": {"kind": "box"}, "motion": {"kind": "carry"}})


def _generate(out_dir: Path, frames: int, width: int, height: int, seed: int, report) -> Path:
    """The default sequence in ``out_dir/sequence`` (reused when the same scenario made it)."""
    import dataclasses

    from ..synthetic.generate import generate_sequence

    scenario = _scenario(frames, width, height, seed)
    seq_dir = out_dir / "sequence"
    stamp = out_dir / "sequence.scenario.json"
    key = json.dumps(dataclasses.asdict(scenario), sort_keys=True, default=str)
    if (seq_dir / "gt.json").is_file() and (seq_dir / "bag").is_dir() and stamp.is_file() and \
            stamp.read_text() == key:
        report(f"reusing the generated sequence {seq_dir}")
        return seq_dir
    t0 = time.perf_counter()
    report(f"generating the default sequence ({frames} frames, {width}x{height}, box carried by the Allegro hand, "
           f"seed {seed}) ...")
    out_dir.mkdir(parents=True, exist_ok=True)
    generate_sequence(scenario, seq_dir, overwrite=True)
    stamp.write_text(key)
    report(f"generated {seq_dir} in {time.perf_counter() - t0:.1f} s")
    return seq_dir


@dataclass
class DemoOptions:
    """Everything ``handypriors demo`` needs (see the module docstring).

    Attributes:
        out_dir: output folder. hand_only: only render the hand gallery. frames, width, height, seed: the
            generated sequence. modes: tracking modes to run and score (:data:`DEMO_MODES`).
        use_ros: None runs the :data:`ROS_MODES` through the ROS nodes when rclpy is available and falls back to
            the offline path otherwise; True requires rclpy (an error without it); False is the offline path only
            (``--no-ros``). ros_rate: the player's playback speed factor. report: where progress lines go.
    """

    out_dir: Path = Path("out/demo")
    hand_only: bool = False
    frames: int = DEMO_FRAMES
    width: int = DEMO_WIDTH
    height: int = DEMO_HEIGHT
    seed: int = 0
    modes: list[str] | tuple[str, ...] = DEMO_MODES
    use_ros: bool | None = None
    ros_rate: float = ROS_RATE
    report: Callable[[str], None] = _say


def run_demo(opts: DemoOptions) -> int:
    """Run the demo (see the module docstring); returns the exit status."""
    out_dir, frames, width, height, seed = Path(opts.out_dir), opts.frames, opts.width, opts.height, opts.seed
    use_ros, ros_rate, report = opts.use_ros, opts.ros_rate, opts.report
    modes = [m.strip() for m in opts.modes if m.strip()]
    bad = [m for m in modes if m not in DEMO_MODES]
    if bad:
        raise InvalidValueError(f"unknown demo mode(s) {bad}; choose from {list(DEMO_MODES)}")
    if frames < 3:
        raise InvalidValueError(f"--frames must be >= 3; got {frames}")
    if not ros_rate > 0:
        raise InvalidValueError(f"the playback rate must be > 0; got {ros_rate}")
    if opts.hand_only:
        render_hand_gallery(out_dir, report=report)
        return 0
    try:
        import handypriors_core.synthetic.generate  # noqa: F401
    except ImportError as exc:
        report(f"the synthetic sequence generator is not available ({exc}); rendering the hand only "
               f"(handypriors demo --hand-only)")
        render_hand_gallery(out_dir, report=report)
        return 0
    ros_modes: list[str] = []
    if use_ros is not False and any(m in ROS_MODES for m in modes):
        available, why = demo_ros.ros_available()
        if use_ros and not available:
            raise InvalidValueError(f"--ros needs rclpy and handypriors_ros ({why}); run `make setup` or leave "
                                    f"out --ros")
        if available:
            ros_modes = [m for m in modes if m in ROS_MODES]
        else:
            report(f"note: {why}: every mode takes the offline path")
    t_start = time.perf_counter()
    seq_dir = _generate(out_dir, frames, width, height, seed, report)
    return _track_and_score(seq_dir, out_dir, modes, ros_modes, ros_rate, report, t_start)


def _track_and_score(seq_dir: Path, out_dir: Path, modes: list[str], ros_modes: list[str], ros_rate: float, report,
                     t_start: float) -> int:
    from dataclasses import replace

    from .. import evaluation
    from ..io.dev_sequence import DevSequence, load_ground_truth
    from ..io.poses_file import read_poses
    from ..models import RigidObject
    from .track import TrackOptions, run_track, write_poses_json

    seq = DevSequence(seq_dir)
    gt = load_ground_truth(seq_dir)
    bag = seq_dir / "bag"
    mesh = seq.object_mesh_path
    initial = gt.object2camera[0]
    report("initial pose: ground truth of frame 0 (given, as the development data's README allows)")
    points = RigidObject.from_mesh(mesh, n_samples=1000).samples.double()
    ros_runs: dict[str, dict] = {}
    for mode in ros_modes:  # first: the ROS nodes (a failure falls back to the offline path below)
        result = demo_ros.track_with_ros(seq_dir, mesh, mode, initial, out_dir / f"poses_{mode}.json", ros_rate,
                                         out_dir, report)
        if result is not None:
            ros_runs[mode] = result
    offline_modes = [m for m in modes if m not in ros_runs]
    runs: list[str] = []
    if "offline" in offline_modes:
        runs.append("offline")
    runs += [m for m in ("filter", "refine") if m in offline_modes and not (m == "refine" and "offline" in runs)]
    summaries = {}
    for mode in runs:
        out = out_dir / f"poses_{mode}.json"
        report(f"tracking in {mode} mode (offline path) ...")
        opts = TrackOptions(bag=bag, object_mesh=mesh, mode=mode, initial_pose=initial, out=out, progress=True,
                            report=report, **(DEMO_OFFLINE if mode == "offline" else {}))
        summary = run_track(opts)
        summaries[mode] = summary
        if summary.interrupted:
            report("interrupted")
            return 130
        if mode == "offline" and "refine" in offline_modes and summary.forward is not None:
            # the offline forward pass is the refine mode
            fwd = replace(summary, results=summary.forward, mode="refine", tracking_seconds=summary.forward_seconds)
            write_poses_json(replace(opts, out=out_dir / "poses_refine.json"), fwd)
            summaries["refine"] = fwd
    rows: dict[str, dict] = {}
    for mode in modes:
        summary = summaries.get(mode)
        ros = ros_runs.get(mode)
        poses = read_poses(out_dir / f"poses_{mode}.json")
        # the ROS path scores the frames that got a pose (the node's dropped frames are counted, not scored)
        result = evaluation.evaluate(poses, gt, points, seq.camera, only_estimated=ros is not None)
        result.info.update({"mode": mode, "path": "ROS nodes" if ros else "offline",
                            "poses": str(out_dir / f"poses_{mode}.json"), "sequence": str(seq_dir)})
        evaluation.write_json(result, out_dir / f"eval_{mode}.json")
        evaluation.write_plots(result, out_dir / f"plots_{mode}",
                               title=f"demo, {mode} mode ({'ROS nodes' if ros else 'offline'})")
        s = result.summary
        if ros:
            fps, posed, lost = ros["fps"], ros["posed"], None
        else:
            fps = summary.num_tracked / summary.tracking_seconds if summary and summary.tracking_seconds > 0 else \
                float("nan")
            posed, lost = result.info["num_estimated"], sum(st == "lost" for st in result.statuses)
        rows[mode] = {
            "path": "ROS nodes" if ros else "offline", "frames_posed": posed, "frames": len(gt),
            "add_s_median_cm": 100 * s["add_s"]["median"], "add_s_auc": 100 * s["add_s"]["auc"],
            "add_median_cm": 100 * s["add"]["median"], "rotation_median_deg": math.degrees(s["rotation"]["median"]),
            "translation_median_cm": 100 * s["translation"]["median"], "fps": fps, "lost": lost,
        }
    best = min(rows, key=lambda m: rows[m]["add_s_median_cm"])
    video = None
    rendered = [m for m in sorted(rows, key=lambda m: rows[m]["add_s_median_cm"]) if m in summaries]
    if rendered:  # the most accurate mode tracked in this process: re-rendered overlay
        video = _overlay_video(seq_dir, out_dir, mesh, summaries[rendered[0]], rendered[0], report)
    width, height = seq.camera.width, seq.camera.height
    table = _table(rows, len(gt), width, height, ros_runs)
    print(table, flush=True)
    results = {"sequence": str(seq_dir), "frames": len(gt), "resolution": [width, height],
               "initial_pose": "ground truth of frame 0", "modes": rows, "best_mode": best,
               "video": str(video) if video else None,
               "ros": {m: dict(r, poses_topic="/allegro_tracker/object_pose",
                               note="scored over the frames with a pose; ~/object_pose carries no quality or "
                                    "status (poses file: quality 0.0, status tracking)")
                       for m, r in ros_runs.items()},
               "elapsed_s": round(time.perf_counter() - t_start, 1)}
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    videos = [str(v) for v in [video] + [r["video"] for r in ros_runs.values()] if v]
    report(f"wrote {out_dir / 'results.json'}, poses_*.json, eval_*.json, plots_*/"
           f"{' and ' + ', '.join(videos) if videos else ''} ({results['elapsed_s']} s)")
    return 0


def _overlay_video(seq_dir: Path, out_dir: Path, mesh: Path, summary, mode: str, report) -> Path | None:
    """Re-render the chosen mode's results as an overlay video (no second tracking run)."""
    import torch

    from ..estimation.scene import HandObjectScene
    from ..io.dev_sequence import DevSequence
    from ..models import RigidObject, URDFHand, allegro_urdf
    from ..visualization.video import OverlayVideo
    from .track_outputs import draw_overlay

    seq = DevSequence(seq_dir)
    scene = HandObjectScene(URDFHand.from_urdf(allegro_urdf()), RigidObject.from_mesh(mesh), "cpu")
    video = OverlayVideo(out_dir / f"overlay_{mode}.mp4", seq.fps or 30.0, len(summary.results), report)
    for r in summary.results:
        frame = seq[r.index]
        if r.joint_angles is None:
            r.joint_angles, r.hand2camera = frame.joint_angles, frame.hand2camera
        r.camera = r.camera or frame.camera
        with torch.no_grad():
            video.add(draw_overlay(frame.rgb.numpy(), scene, r))
    return video.close()


def _table(rows: dict[str, dict], frames: int, width: int, height: int, ros_runs: dict[str, dict]) -> str:
    header = (f"{'mode':<8} {'path':<10} {'posed':>7} {'ADD-S med [cm]':>15} {'ADD-S AUC [%]':>14} "
              f"{'rot med [deg]':>14} {'fps':>7} {'lost':>5}")
    lines = [f"HandyPriors demo: {frames} frames at {width}x{height}; initial pose = ground truth of frame 0 (given)",
             header, "-" * len(header)]
    for mode, r in rows.items():
        lost = "-" if r["lost"] is None else str(r["lost"])
        lines.append(f"{mode:<8} {r['path']:<10} {str(r['frames_posed']) + '/' + str(r['frames']):>7} "
                     f"{r['add_s_median_cm']:>15.2f} {r['add_s_auc']:>14.1f} {r['rotation_median_deg']:>14.2f} "
                     f"{r['fps']:>7.2f} {lost:>5}")
    for mode, ros in ros_runs.items():
        lines.append(f"{mode}, ROS nodes: sequence_player ({ros['rate']:g}x, recorded stamps) -> allegro_tracker "
                     f"(config/allegro_tracking.yaml, tracking.mode {mode}),")
        lines.append(f"  separate processes; poses recorded from /allegro_tracker/object_pose. {ros['dropped']} "
                     f"frame(s) dropped by the node (newest frame wins): counted, not scored.")
        lines.append(f"  fps = poses / wall time of the stream (the player sends {30 * ros['rate']:g} frames/s); "
                     f"the node took {ros['node_ms_per_frame']:.0f} ms per frame. lost: not on the ROS topics.")
    if any(r["path"] == "offline" for r in rows.values()):
        lines.append("offline: the `handypriors track` pipeline in this process (reads the bag); fps = tracked "
                     "frames / tracking time.")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(DemoOptions()))
