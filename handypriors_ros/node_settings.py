"""The node-level settings of ``allegro_tracker`` (:class:`NodeSettings`; the ``tracking.*`` ones are the core's
TrackerSettings) and the checks that depend on this machine (:func:`validate_runtime`). No rclpy: the ROS
parameters are derived from these fields by :mod:`.parameter_specs`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from handypriors_core import defaults
from handypriors_core.config import range_problems, ranged
from handypriors_core.errors import ConfigError
from handypriors_core.estimation.settings import TrackerSettings

__all__ = ["MASK_SOURCES", "READ_ONLY_NODE_PARAMETERS", "NodeSettings", "pose_from_parameter", "validate_runtime"]

#: Values of the ``mask_source`` parameter (the names the command line uses too).
MASK_SOURCES = defaults.MASK_SOURCES


def _pose_problem(values: Sequence[float], name: str) -> str | None:
    """Why ``values`` is not ``[]`` or a pose ``x y z qx qy qz qw``, or None."""
    if len(values) == 0:
        return None
    if len(values) != 7:
        return f"{name} must be empty or 7 numbers x y z qx qy qz qw (metres, quaternion); got {len(values)}"
    if not all(math.isfinite(v) for v in values):
        return f"{name} must hold finite numbers; got {list(values)}"
    if math.sqrt(sum(v * v for v in values[3:])) < 1e-6:
        return f"{name}: the quaternion qx qy qz qw must not be zero; got {list(values[3:])}"
    return None


@dataclass
class NodeSettings:
    """Node-level parameters of ``allegro_tracker`` (the ``tracking.*`` parameters are TrackerSettings).

    Attributes:
        object_mesh: path of the tracked object's mesh (.obj, .ply, .stl; metres after object_mesh_scale). Required:
            while it is empty or unreadable the node stays up in an error state (diagnostics say why) and loads
            the mesh as soon as the parameter is set to a valid path.
        object_mesh_scale: factor applied to the mesh coordinates (0.001 for a mesh in millimetres).
        object_frame: TF child frame of the published object pose (its parent is the camera optical frame).
        camera_frame: camera optical frame of the images; empty = the frame_id of each image header.
        hand_root_frame: TF frame of the hand's URDF root link: hand_root in the development sequences, base_link
            (the Allegro URDF's root link) when robot_state_publisher publishes the hand.
        hand_urdf: URDF of the hand; empty = the shipped urdf/allegro_hand_right.urdf.
        joint_map: driver joint names -> URDF joint names: auto (the shipped map that best matches the first
            JointState), a shipped map name (menagerie, ros1_allegro, wonik_ros2) or the path of a map YAML.
        initial_pose: x y z qx qy qz qw of the object in the camera frame [m]; empty = wait for a pose on
            ~/initial_pose (or run the global search when it is available). Also used by ~/reset.
        global_search: without an initial pose, run the global pose search on incoming frames (every 2 s until
            it finds a pose; the mask comes from mask_source or is bootstrapped from depth around the hand).
        hand2camera_override: x y z qx qy qz qw of the hand root in the camera frame for a fixed mount [m]; empty =
            look hand_root_frame up in TF at each image stamp.
        mask_source: none (depth and physics carry the estimate), external (mono8 object masks from a segmenter
            on ~/object_mask, matched by stamp), colour (the built-in colour segmentation) or detectron2 (PointRend,
            config/segmentation.yaml; imported only when chosen, an error state says how to install it).
        use_depth: use the aligned depth topic when it publishes (16UC1 mm or 32FC1 m).
        publish_overlay: publish ~/overlay (hand and object outlines over the input image).
        overlay_every_n: publish the overlay for every n-th tracked frame.
        publish_markers: publish ~/contacts (contacts, normals and the object mesh as markers).
        max_image_age: skip a frame whose stamp is older than this [s] (node clock) when its processing starts; 0 =
            no limit (bags played with their recorded stamps).
        sync_timeout: longest wait [s] of a frame for its depth, mask, joint states and TF to arrive.
        stamp_tolerance: largest stamp difference [s] when matching depth and masks to an image; joint states and
            TF may also be held this long past their newest sample.
        input_extrapolation: when the newest joint-state or TF sample is at most this far [s] before the image
            stamp, the frame does not wait for the sample after the stamp: the value at the stamp is extrapolated
            at constant velocity from the newest sample and the one this long before it. 0 = always wait for the
            sample after the stamp (interpolation; the wait bounded by sync_timeout). At most stamp_tolerance is
            used. A camera whose images arrive later than one joint-state / TF period after their stamp never
            needs it.
        torch_threads: torch.set_num_threads of the node (1 is fastest for the tracker's small per-frame tensors).
        tracker_process: run the tracker in a process of its own, so that its computation never delays the message
            callbacks (docs/node_runtime.md); false: a worker thread of the node's process (tests, debugging).
        intake_nice: scheduling priority (nice, -20..19) of the node's intake thread, the one that takes every
            input, and of Fast DDS's receive threads in the node's process, which hand it the messages: below 0 they
            get a core before the tracker and the worker, which keeps the intake lag's tail short on a busy machine
            (docs/node_runtime.md). Lowering it needs CAP_SYS_NICE (root, e.g. in a container);
            without it the thread keeps the default priority and the node says so once. 0 = unchanged.
        warm_up: after (re)building the tracker, run it once on a synthetic frame so that the first real frame does
            not pay for kernel loading.
        diagnostics_period: seconds between /diagnostics messages.
        error_hold: seconds an input error keeps the diagnostics at WARN after its last occurrence.
        calibration_file: hand calibration YAML (handypriors calibrate: hand-camera correction and joint offsets)
            applied to every frame and used as the prior of the online estimate; empty = none. A wrong file is
            rejected at start and on live updates.
    """

    object_mesh: str = ""
    object_mesh_scale: float = ranged(1.0, 0.0, 1000.0, low_open=True)
    object_frame: str = defaults.OBJECT_FRAME
    camera_frame: str = ""
    hand_root_frame: str = defaults.HAND_ROOT_FRAME
    hand_urdf: str = ""
    joint_map: str = defaults.JOINT_MAP
    initial_pose: list[float] = field(default_factory=list)
    global_search: bool = True
    hand2camera_override: list[float] = field(default_factory=list)
    mask_source: Literal[defaults.MASK_SOURCES] = defaults.MASK_SOURCE  # type: ignore[valid-type]
    use_depth: bool = True
    publish_overlay: bool = True
    overlay_every_n: int = ranged(1, 1, 10_000)
    publish_markers: bool = True
    max_image_age: float = ranged(0.0, 0.0, 3600.0)
    sync_timeout: float = ranged(0.05, 0.0, 10.0)
    stamp_tolerance: float = ranged(0.02, 0.0, 10.0)
    input_extrapolation: float = ranged(0.0, 0.0, 1.0)
    torch_threads: int = ranged(1, 1, 256)
    tracker_process: bool = True
    intake_nice: int = ranged(-10, -20, 19)
    warm_up: bool = True
    diagnostics_period: float = ranged(1.0, 0.0, 3600.0, low_open=True)
    error_hold: float = ranged(5.0, 0.0, 3600.0)
    calibration_file: str = ""

    def __post_init__(self) -> None:
        problems = range_problems(self)
        for name in ("object_frame", "hand_root_frame"):
            value = getattr(self, name)
            if not value.strip("/") or " " in value:
                problems.append(f"{name} must be a non-empty frame id without spaces; got {value!r}")
        if " " in self.camera_frame:
            problems.append(f"camera_frame must not contain spaces; got {self.camera_frame!r}")
        if self.camera_frame and self.camera_frame.strip("/") == self.object_frame.strip("/"):
            problems.append(f"object_frame and camera_frame must differ; both are {self.object_frame!r}")
        if self.hand_root_frame.strip("/") == self.object_frame.strip("/"):
            problems.append(f"object_frame and hand_root_frame must differ; both are {self.object_frame!r}")
        if not self.joint_map:
            problems.append("joint_map must be 'auto', a shipped map name or a map YAML path; got ''")
        for name in ("initial_pose", "hand2camera_override"):
            problem = _pose_problem(getattr(self, name), name)
            if problem:
                problems.append(problem)
        if self.mask_source not in MASK_SOURCES:
            problems.append(f"mask_source must be one of {list(MASK_SOURCES)}; got {self.mask_source!r}")
        if problems:
            raise ConfigError("; ".join(problems))


#: Node parameters that can only be set at start (the rest apply live).
READ_ONLY_NODE_PARAMETERS = ("hand_urdf", "joint_map", "diagnostics_period", "tracker_process", "intake_nice")


def pose_from_parameter(values: Sequence[float]):
    """``[x y z qx qy qz qw]`` -> ``(4, 4)`` float64 torch pose (a new tensor); ``[]`` -> None."""
    if not values:
        return None
    return _pose_from_values(tuple(float(x) for x in values)).clone()


@functools.lru_cache(maxsize=8)
def _pose_from_values(values: tuple[float, ...]):
    """(The node asks for the parameter's pose every frame: built once per value.)"""
    import torch

    from handypriors_core.geometry.transforms import transform_from_pose

    v = torch.tensor(values, dtype=torch.float64)
    return transform_from_pose(v[:3], v[3:] / v[3:].norm())


def validate_runtime(tracking: TrackerSettings, node: NodeSettings, live: bool = False) -> None:
    """Checks beyond the dataclasses that depend on this machine; :class:`ConfigError` when one fails.

    - ``tracking.device`` ``cuda[:N]`` needs a CUDA device N;
    - ``hand_urdf`` (when set) must exist; ``joint_map`` must be ``auto``, a shipped name or an existing YAML;
    - ``calibration_file`` (when set) must be a valid calibration YAML;
    - on live updates only: a non-empty ``object_mesh`` must be an existing file (at start a missing mesh leaves
      the node up in an error state instead).
    """
    import torch

    from handypriors_core.models import JointMap

    device = tracking.device
    if device.startswith("cuda"):
        index = 0
        if ":" in device:
            try:
                index = int(device.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"tracking.device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from None
        if not torch.cuda.is_available():
            raise ConfigError(f"tracking.device {device!r}: CUDA is not available to torch on this machine "
                              f"(torch.cuda.is_available() is False); use 'cpu'")
        if index >= torch.cuda.device_count():
            raise ConfigError(f"tracking.device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if node.hand_urdf and not Path(node.hand_urdf).expanduser().is_file():
        raise ConfigError(f"hand_urdf: no such file {node.hand_urdf!r}")
    yaml_map = node.joint_map.endswith((".yaml", ".yml")) and Path(node.joint_map).expanduser().is_file()
    if node.joint_map != "auto" and node.joint_map not in JointMap.available() and not yaml_map:
        raise ConfigError(f"joint_map {node.joint_map!r} is neither 'auto', a shipped map "
                              f"({', '.join(JointMap.available())}) nor an existing map YAML file")
    if node.calibration_file:
        from handypriors_core.io.calibration_file import load_calibration

        load_calibration(Path(node.calibration_file).expanduser())  # CalibrationFileError (a ConfigError)
    if live and node.object_mesh and not Path(node.object_mesh).expanduser().is_file():
        raise ConfigError(f"object_mesh: no such file {node.object_mesh!r}")
