"""The project's sequence generator: Allegro hand + known object, rendered RGB-D with sensor effects + ground truth.

In memory (tests, benchmarks; nothing touches the disk)::

    seq = SyntheticSequence(load_scenario(overrides={"frames": 8, "camera": {"width": 160, "height": 120}}))
    frame = seq.frame(3)             # handypriors_core.io.Frame, exactly what DevSequence(folder)[3] returns
    view = seq.render(3)             # SyntheticFrame: rgb, depth (mm and m), oracle mask, visible fraction
    gt = seq.ground_truth()          # handypriors_core.io.GroundTruth, as load_ground_truth(folder)

On disk (the development-sequence folder format of ``docs/sequence_format.md`` plus ``bag/``)::

    path = generate_sequence(scenario, "out/box_carry", progress=print)

Command line::

    python -m handypriors_core.synthetic.generate --out DIR --object box --motion carry --frames 30 --seed 0

The sequence is a deterministic function of the :class:`~.scenario.Scenario` (same scenario and device ->
identical bytes). Pipeline: object mesh (:mod:`.objects`) -> placement on the palm and finger closing with
contact-consistent ground truth (:mod:`.grasp`) -> motion (:mod:`.trajectory`) -> hard-render + shading of
hand, object and background clutter (:mod:`.scene`) -> sensor effects (:mod:`.sensor_effects`) -> files and
rosbag2 (:mod:`.writer`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import HandyPriorsError, InvalidValueError
from ..geometry.camera import PinholeCamera
from ..io.dev_sequence import FrameContacts, GroundTruth
from ..io.frame import Frame
from ..models import RigidObject
from .faults import SensorFaults, sample_faults
from .grasp import GraspModel, HandContacts, load_allegro_hand
from .objects import ObjectMesh, make_object_mesh
from .scenario import FINGERS, Scenario, load_scenario
from .scene import SceneRenderer, build_background
from .sensor_effects import apply_depth, apply_rgb, frame_generator, lighting_schedule
from .trajectory import Trajectory, build_trajectory

__all__ = ["SyntheticFrame", "SyntheticSequence", "generate_sequence", "main", "make_camera"]

Progress = Callable[[str], None]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (0: unchanged), restoring the previous count."""
    if n <= 0:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def make_camera(scenario: Scenario) -> PinholeCamera:
    """Pinhole camera of the scenario: ``fx = fy = focal_640 * width / 640``, principal point at the image centre
    (OpenCV pixel-centre convention), no distortion."""
    c = scenario.camera
    f = c.focal_640 * c.width / 640.0
    return PinholeCamera.from_camera_info([f, 0.0, (c.width - 1) / 2.0, 0.0, f, (c.height - 1) / 2.0, 0.0, 0.0, 1.0],
                                          [0.0] * 5, c.width, c.height, "plumb_bob")


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticFrame:
    """One rendered frame.

    Attributes:
        index, stamp [s], stamp_ns: frame number and time.
        rgb: ``(H, W, 3)`` uint8 sensor image (effects applied). depth_mm: ``(H, W)`` uint16 numpy, millimetres,
            0 = no return (what is written / published). depth: ``(H, W)`` float32 [m], NaN = no return.
        mask: ``(H, W)`` uint8 ORACLE instance mask (0 background, 1 hand, 2 object).
        visible_fraction: visible object pixels / object pixels rendered alone (GROUND TRUTH).
        clean_rgb: ``(H, W, 3)`` float noise-free render in [0, 1]; clean_depth: ``(H, W)`` exact z-depth [m]
            (0 = nothing).
    """

    index: int
    stamp: float
    stamp_ns: int
    rgb: torch.Tensor
    depth_mm: np.ndarray
    depth: torch.Tensor
    mask: torch.Tensor
    visible_fraction: float
    clean_rgb: torch.Tensor
    clean_depth: torch.Tensor


class SyntheticSequence:
    """A generated sequence in memory: motion and ground truth are computed on construction, images are
    rendered on demand (:meth:`render`, deterministic per frame, any order).

    Attributes:
        scenario, camera (:class:`PinholeCamera`, float32, CPU), joint_names (URDF order), trajectory
        (:class:`~.trajectory.Trajectory`), object_mesh (:class:`~.objects.ObjectMesh`), contacts (per frame
        :class:`~.grasp.HandContacts`, object frame), faults (:class:`~.faults.SensorFaults`: what the published
        joint states and hand pose add to the truth; images always show the truth), penetration ``(N,)`` [m]
        (largest hand-object overlap per frame, both directions), stamps ``(N,)`` [s], stamps_ns ``(N,)``.
    """

    def __init__(self, scenario: Scenario, progress: Progress | None = None):
        self.scenario = scenario
        self.device = torch.device(scenario.device)
        say = progress or (lambda _msg: None)
        t0 = time.perf_counter()
        with torch_threads(scenario.torch_threads):
            self.hand = load_allegro_hand(str(self.device))
            self.joint_names: tuple[str, ...] = tuple(self.hand.joint_names)
            self.object_mesh: ObjectMesh = make_object_mesh(scenario.object, seed=scenario.seed)
            self.grasp = GraspModel(self.hand, self.object_mesh, scenario.grasp)
            self.trajectory: Trajectory = build_trajectory(scenario, self.grasp, self.object_mesh)
            traj = self.trajectory
            q = torch.as_tensor(traj.joint_positions, dtype=self.hand.dtype, device=self.device)
            o2h = torch.as_tensor(traj.object2hand, dtype=self.hand.dtype, device=self.device)
            self.contacts: list[HandContacts] = self.grasp.contacts(q, o2h)
            self.penetration = self.grasp.penetration(q, o2h).double().cpu().numpy()
            self.camera = make_camera(scenario)
            rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 3]))
            background = build_background(scenario, traj.camera2world, traj.camera_target, rng)
            self.scene = SceneRenderer(scenario, self.camera, self.hand, self.object_mesh, background,
                                       traj.world2camera, self.device)
            self.lighting = lighting_schedule(scenario.lighting, scenario.rgb, scenario.frames, scenario.seed)
            self.faults: SensorFaults = sample_faults(scenario.faults, len(self.joint_names), scenario.seed)
        self._visible: dict[int, float] = {}
        say(f"[synthetic] {scenario.name}: {scenario.frames} frames, {scenario.object.kind} / {scenario.motion.kind}, "
            f"grasp and ground truth in {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.scenario.frames

    def __repr__(self) -> str:
        s = self.scenario
        return f"SyntheticSequence({s.name!r}, frames={len(self)}, {s.camera.width}x{s.camera.height}, seed={s.seed})"

    @property
    def stamps(self) -> np.ndarray:
        return self.trajectory.stamps

    @property
    def stamps_ns(self) -> np.ndarray:
        return self.trajectory.stamps_ns

    @property
    def hand2camera(self) -> np.ndarray:
        """``(N, 4, 4)`` float64 hand root poses in the camera frame as published (sensor data: with the
        hand-camera error of :attr:`faults`)."""
        return self.faults.measured_hand2camera(self.trajectory.hand2camera)

    @property
    def true_hand2camera(self) -> np.ndarray:
        """``(N, 4, 4)`` float64 GROUND-TRUTH hand root poses (what the images show)."""
        return self.trajectory.hand2camera

    @property
    def object2camera(self) -> np.ndarray:
        """``(N, 4, 4)`` float64 GROUND-TRUTH object poses in the camera frame."""
        return self.trajectory.object2camera

    @property
    def joint_positions(self) -> np.ndarray:
        """``(N, J)`` float64 joint positions [rad] in :attr:`joint_names` order as the encoders report them
        (sensor data: with the joint bias of :attr:`faults`)."""
        return self.faults.measured_joints(self.trajectory.joint_positions)

    @property
    def true_joint_positions(self) -> np.ndarray:
        """``(N, J)`` float64 GROUND-TRUTH joint positions [rad] (what the images show)."""
        return self.trajectory.joint_positions

    def _index(self, index: int) -> int:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= index < n:
            raise IndexError(f"frame index {index!r} out of range for {n} frames")
        return int(index) % n

    def object_model(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> RigidObject:
        """The object as a :class:`RigidObject` (geometry of ``object/model.obj``; appearance via the file)."""
        return RigidObject(self.object_mesh.verts, self.object_mesh.faces, name=self.object_mesh.name,
                           is_watertight=None, device=device, dtype=dtype)

    # ------------------------------------------------------------------------------------------ rendering
    def render(self, index: int) -> SyntheticFrame:
        """Render frame ``index`` with sensor effects (deterministic for the scenario and device)."""
        i = self._index(index)
        s = self.scenario
        traj = self.trajectory
        with torch_threads(s.torch_threads):
            light_cam = traj.world2camera[:3, :3] @ self.lighting.light_dir_world[i]
            view = self.scene.render(torch.as_tensor(traj.joint_positions[i]), traj.hand2camera[i],
                                     traj.object2camera[i], light_cam, float(self.lighting.light_gain[i]))
            scale = s.camera.width / 640.0
            rgb = apply_rgb(view.rgb, s.rgb, float(self.lighting.exposure[i]),
                            frame_generator(s.seed, i, "rgb", self.device), scale)
            mm = apply_depth(view.depth, s.depth, frame_generator(s.seed, i, "depth", self.device), scale)
        depth_mm = mm.cpu().numpy().astype(np.uint16)
        depth = torch.from_numpy(depth_mm.astype(np.float32) * np.float32(0.001))
        depth[torch.from_numpy(depth_mm == 0)] = math.nan
        self._visible[i] = view.visible_fraction
        return SyntheticFrame(index=i, stamp=float(traj.stamps[i]), stamp_ns=int(traj.stamps_ns[i]),
                              rgb=rgb.cpu(), depth_mm=depth_mm, depth=depth, mask=view.mask.cpu(),
                              visible_fraction=view.visible_fraction, clean_rgb=view.rgb.cpu(),
                              clean_depth=view.depth.cpu())

    def frame(self, index: int, dtype: torch.dtype = torch.float32) -> Frame:
        """Sensor-side :class:`Frame` of ``index`` (no masks), as ``DevSequence(folder)[index]`` returns it."""
        r = self.render(index)
        return Frame(index=r.index, stamp=r.stamp, rgb=r.rgb, camera=self.camera,
                     joint_angles=torch.as_tensor(self.joint_positions[r.index], dtype=dtype),
                     hand2camera=torch.as_tensor(self.hand2camera[r.index], dtype=dtype), depth=r.depth,
                     joint_names=self.joint_names)

    def frames(self) -> Iterator[Frame]:
        """All sensor-side frames in order."""
        for i in range(len(self)):
            yield self.frame(i)

    def visible_fraction(self, index: int) -> float:
        """GROUND-TRUTH visible fraction of frame ``index`` (renders the frame when not done yet)."""
        i = self._index(index)
        if i not in self._visible:
            with torch_threads(self.scenario.torch_threads):
                traj = self.trajectory
                light = traj.world2camera[:3, :3] @ self.lighting.light_dir_world[i]
                view = self.scene.render(torch.as_tensor(traj.joint_positions[i]), traj.hand2camera[i],
                                         traj.object2camera[i], light, 1.0)
            self._visible[i] = view.visible_fraction
        return self._visible[i]

    # ------------------------------------------------------------------------------------------ ground truth
    def frame_contacts(self, index: int) -> FrameContacts:
        """GROUND-TRUTH contacts of frame ``index`` in the camera frame (``normal_force`` is 0: not simulated)."""
        i = self._index(index)
        c = self.contacts[i]
        O2C = self.object2camera[i]
        pos_cam = c.pos_obj @ O2C[:3, :3].T + O2C[:3, 3]
        normal_cam = c.normal_obj @ O2C[:3, :3].T
        f64 = torch.float64
        return FrameContacts(links=c.links, pos_cam=torch.as_tensor(pos_cam, dtype=f64),
                             pos_obj=torch.as_tensor(c.pos_obj, dtype=f64),
                             normal_cam=torch.as_tensor(normal_cam, dtype=f64),
                             normal_force=torch.zeros(len(c), dtype=f64),
                             penetration=torch.as_tensor(c.penetration, dtype=f64))

    def ground_truth(self, visible_fraction: bool = True) -> GroundTruth:
        """GROUND TRUTH as :func:`~handypriors_core.io.dev_sequence.load_ground_truth` returns it for the written
        folder. ``visible_fraction=False`` skips rendering (NaN visible fractions)."""
        vis = [self.visible_fraction(i) if visible_fraction else math.nan for i in range(len(self))]
        return GroundTruth(object2camera=torch.as_tensor(self.object2camera, dtype=torch.float64),
                           stamps=torch.as_tensor(self.stamps, dtype=torch.float64),
                           contacts=tuple(self.frame_contacts(i) for i in range(len(self))),
                           visible_fraction=torch.tensor(vis, dtype=torch.float64),
                           symmetry=self.object_mesh.symmetry)

    def fingers_in_contact(self, index: int) -> tuple[str, ...]:
        """Fingers (index, middle, ring, thumb) with at least one ground-truth contact in frame ``index``."""
        links = self.contacts[self._index(index)].links
        out = []
        for f, name in enumerate(FINGERS):
            if any(link.startswith(f"link_{k}.0") for k in range(4 * f, 4 * f + 4) for link in links):
                out.append(name)
        return tuple(out)


# ---------------------------------------------------------------------------------------------- entry points
def generate_sequence(scenario: Scenario, out_dir: str | Path, progress: Progress | None = None,
                      overwrite: bool = False) -> Path:
    """Generate ``scenario`` into the folder ``out_dir`` (development-sequence format + ``bag/``); returns it.

    ``progress`` receives one line per stage and per frame (e.g. ``print``). An existing non-empty folder is
    refused unless ``overwrite`` (then the generator's own files and folders in it are replaced).
    """
    from .writer import write_sequence

    seq = SyntheticSequence(scenario, progress=progress)
    return write_sequence(seq, out_dir, progress=progress, overwrite=overwrite)


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m handypriors_core.synthetic.generate",
        description="Generate a synthetic Allegro hand-object RGB-D sequence with ground truth.")
    p.add_argument("--out", required=True, help="output sequence folder")
    p.add_argument("--config", help="scenario YAML (section 'synthetic'; default: shipped config/synthetic.yaml)")
    p.add_argument("--object", choices=["box", "cylinder", "mesh"], help="object kind")
    p.add_argument("--mesh", help="mesh file for --object mesh (default: the built-in bottle)")
    p.add_argument("--motion", choices=["carry", "rotate", "pivot"], help="motion kind")
    p.add_argument("--frames", type=int)
    p.add_argument("--fps", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--device", help="torch device (cpu, cuda, ...)")
    p.add_argument("--name", help="sequence name")
    p.add_argument("--joint-scheme", help="joint names in the bag: ros1_allegro (default) or wonik_ros2")
    p.add_argument("--no-bag", action="store_true", help="do not write bag/")
    p.add_argument("--no-effects", action="store_true", help="switch off RGB and depth sensor effects")
    p.add_argument("--no-clutter", action="store_true", help="no table, backdrop or boxes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any scenario setting by dotted key, e.g. --set motion.lift=0.05 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace the generator's files in an existing folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario of parsed command-line arguments (config file, shortcuts, then ``--set``)."""
    overrides: dict = {}
    for key, value in (("object.kind", args.object), ("object.mesh_path", args.mesh), ("motion.kind", args.motion),
                       ("frames", args.frames), ("fps", args.fps), ("seed", args.seed), ("camera.width", args.width),
                       ("camera.height", args.height), ("device", args.device), ("name", args.name),
                       ("bag.joint_scheme", args.joint_scheme)):
        if value is not None:
            overrides[key] = value
    if args.no_bag:
        overrides["bag.enabled"] = False
    if args.no_effects:
        overrides["rgb.enabled"] = False
        overrides["depth.enabled"] = False
    if args.no_clutter:
        overrides["clutter.enabled"] = False
    for item in args.set:
        if "=" not in item:
            raise InvalidValueError(f"--set expects KEY=VALUE; got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value)
    return load_scenario(args.config, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 2 bad arguments or settings)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        scenario = scenario_from_args(args)
        t0 = time.perf_counter()
        path = generate_sequence(scenario, args.out, progress=None if args.quiet else print, overwrite=args.overwrite)
    except HandyPriorsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        dt = time.perf_counter() - t0
        print(f"[synthetic] wrote {path} in {dt:.1f} s ({dt / scenario.frames:.2f} s/frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
