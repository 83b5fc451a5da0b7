"""Settings of one synthetic sequence: :class:`Scenario`, built from ``config/synthetic.yaml`` plus overrides.

    scenario = load_scenario()                                            # shipped defaults
    scenario = load_scenario(overrides={"object": {"kind": "cylinder"}, "frames": 8,
                                        "camera": {"width": 160, "height": 120}})
    scenario = scenario_from_dict({...})                                   # no file at all

Units: metres, radians, seconds; image sizes in pixels. Every section is a dataclass with documented defaults,
so a misspelt key is a :class:`~handypriors_core.errors.ConfigError` (see :mod:`handypriors_core.config`).

Frames of reference: the **hand frame** is the URDF root ``base_link`` (= ``hand_root``; palm facing ``+x``,
fingers along ``+z``, index finger on ``+y``). The **world frame** has ``+z`` up and the hand root at its
origin at frame 0 with the palm facing up (hand ``+x`` = world ``+z``, fingers along world ``+x``); the camera
is static in the world.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

from .. import defaults
from ..config import find_config, load_yaml, require, settings_from_dict
from ..errors import ConfigError
from .faults import FaultSettings

__all__ = [
    "FINGERS",
    "BagSettings",
    "CameraSettings",
    "ClutterSettings",
    "DepthEffects",
    "FaultSettings",
    "GraspSettings",
    "LightingSettings",
    "MotionSettings",
    "ObjectSettings",
    "RgbEffects",
    "Scenario",
    "load_scenario",
    "merge_overrides",
    "scenario_from_dict",
]

#: Finger names in Allegro order: finger ``f`` owns joints ``joint_{4f}.0 .. joint_{4f+3}.0``.
FINGERS = ("index", "middle", "ring", "thumb")
OBJECT_KINDS = ("box", "cylinder", "mesh")
MOTION_KINDS = ("carry", "rotate", "pivot")


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


@dataclasses.dataclass
class ObjectSettings:
    """The manipulated object (object frame = the coordinates of the written ``object/model.obj``).

    Attributes:
        kind: ``box`` (``extents``), ``cylinder`` (``radius``, ``height``, axis = object z) or ``mesh``
            (``mesh_path``; empty = the built-in bottle, a non-convex solid of revolution along object z).
        extents: box full side lengths [m] along object x, y, z.
        radius, height: cylinder and built-in bottle [m] (the default grasp fits objects up to 4 cm deep
            between the knuckles and the thumb base).
        mesh_path: mesh file (anything trimesh reads); relative paths are relative to the working directory.
            Its own UVs + texture are kept; otherwise a procedural texture is baked.
        mesh_scale: factor applied to the mesh file's coordinates (0.001 for millimetres).
        max_edge: longest triangle edge of the generated box / cylinder meshes [m].
        texture_size: edge of the generated texture image [px].
        mass_kg: written to ``meta.json`` (the generator is kinematic; the mass is informational).
        name: object name in ``meta.json`` (default: the kind, or the mesh file stem).
    """

    kind: str = "box"
    extents: tuple[float, float, float] = (0.04, 0.06, 0.09)
    radius: float = 0.02
    height: float = 0.1
    mesh_path: str = ""
    mesh_scale: float = 1.0
    max_edge: float = 0.01
    texture_size: int = 512
    mass_kg: float = 0.1
    name: str = ""

    def __post_init__(self) -> None:
        require(self.kind in OBJECT_KINDS, f"object.kind must be one of {list(OBJECT_KINDS)}; got {self.kind!r}")
        require(len(self.extents) == 3 and _finite(*self.extents) and min(self.extents) > 0,
                f"object.extents must be 3 positive lengths [m]; got {self.extents}")
        require(_finite(self.radius, self.height) and self.radius > 0 and self.height > 0,
                "object.radius and object.height must be > 0 [m]")
        require(_finite(self.mesh_scale) and self.mesh_scale > 0, "object.mesh_scale must be > 0")
        require(_finite(self.max_edge) and self.max_edge > 0, "object.max_edge must be > 0 [m]")
        require(16 <= self.texture_size <= 8192, f"object.texture_size must be in [16, 8192]; got {self.texture_size}")
        require(_finite(self.mass_kg) and self.mass_kg > 0, "object.mass_kg must be > 0")


@dataclasses.dataclass
class GraspSettings:
    """Object placement on the palm and the finger closing.

    The object is rotated by ``object_rpy`` (URDF roll-pitch-yaw, object -> hand frame), its bounding-box centre
    put at hand ``(y, z) = object_yz`` and pushed along ``-x`` until it rests on the palm face (pressed in by
    ``rest_overlap``). Each finger of ``fingers`` then moves from ``open_pose`` towards ``closed_pose`` (linear
    in joint space, curl parameter ``s`` in [0, 1]) until its geometry touches the object: the signed distance
    of its surface points (fingertip: sphere of ``tip_radius`` about the tip link origin) reaches
    ``-contact_overlap`` (found by bisection). Fingers not listed stay at ``open_pose``.

    Attributes:
        object_rpy: object orientation in the hand frame [rad]; default stands object z along the palm normal.
        object_yz: hand-frame (y, z) of the object's bounding-box centre [m].
        rest_overlap: how far the object is pressed into the palm [m] (> 0: touching).
        fingers: closing fingers (subset of index, middle, ring, thumb).
        open_pose, closed_pose: per finger its 4 joint values [rad] (the finger's joints in URDF order).
        tip_radius: fingertip sphere radius [m] (Allegro: 12 mm).
        contact_overlap: target overlap of a closed finger [m] (bisection tolerance is far below it).
        contact_threshold: a hand contact candidate within this distance of the object surface is a
            ground-truth contact [m] (one contact per link, at its closest candidate).
        object_samples: object surface samples of the reverse test (object points inside the hand mesh).
        grid_steps: coarse search steps along the curl path (one batch); the first crossing is then refined by
            ``refine_iterations`` batches of ``refine_points`` (bracket shrinks ``refine_points + 1``-fold each).
    """

    object_rpy: tuple[float, float, float] = (0.0, math.pi / 2, 0.0)
    object_yz: tuple[float, float] = (0.01, -0.0225)
    rest_overlap: float = 1.0e-4
    fingers: tuple[str, ...] = ("index", "middle", "thumb")
    open_pose: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {
        "index": [0.0, 0.0, 0.0, 0.0],
        "middle": [0.0, 0.0, 0.0, 0.0],
        "ring": [0.0, 0.0, 0.0, 0.0],
        "thumb": [1.396, 0.35, -0.1, -0.1],
    })
    closed_pose: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {
        "index": [0.0, 1.6, 1.7, 1.6],
        "middle": [0.0, 1.6, 1.7, 1.6],
        "ring": [0.0, 1.6, 1.7, 1.6],
        "thumb": [1.396, 0.35, 1.6, 1.7],
    })
    tip_radius: float = 0.012
    contact_overlap: float = 1.0e-4
    contact_threshold: float = 1.0e-3
    object_samples: int = 2000
    grid_steps: int = 12
    refine_iterations: int = 5
    refine_points: int = 5

    def __post_init__(self) -> None:
        require(len(self.object_rpy) == 3 and _finite(*self.object_rpy), "grasp.object_rpy must be 3 angles [rad]")
        require(len(self.object_yz) == 2 and _finite(*self.object_yz), "grasp.object_yz must be 2 lengths [m]")
        require(_finite(self.rest_overlap) and 0 <= self.rest_overlap < 1e-3,
                "grasp.rest_overlap must be in [0, 1 mm)")
        self.fingers = tuple(self.fingers)
        bad = [f for f in self.fingers if f not in FINGERS]
        require(not bad, f"grasp.fingers must be among {list(FINGERS)}; got {bad}")
        for label, pose in (("open_pose", self.open_pose), ("closed_pose", self.closed_pose)):
            unknown = sorted(set(pose) - set(FINGERS))
            require(not unknown, f"grasp.{label} has unknown finger(s) {unknown}")
            for finger in FINGERS:
                values = pose.get(finger)
                require(values is not None and len(values) == 4 and _finite(*values),
                        f"grasp.{label}.{finger} must hold 4 joint values [rad]; got {values}")
        require(_finite(self.tip_radius) and self.tip_radius > 0, "grasp.tip_radius must be > 0")
        require(_finite(self.contact_overlap) and 0 <= self.contact_overlap < 5e-4,
                "grasp.contact_overlap must be in [0, 0.5 mm)")
        require(_finite(self.contact_threshold) and self.contact_threshold > self.contact_overlap,
                "grasp.contact_threshold must exceed grasp.contact_overlap")
        require(100 <= self.object_samples <= 100000, "grasp.object_samples must be in [100, 100000]")
        require(2 <= self.grid_steps <= 1000 and 1 <= self.refine_iterations <= 60 and 1 <= self.refine_points <= 64,
                "grasp.grid_steps must be in [2, 1000], refine_iterations in [1, 60], refine_points in [1, 64]")


@dataclasses.dataclass
class MotionSettings:
    """What happens over the sequence. The first ``close_fraction`` of the frames close the grasp (the object
    rests on the static palm), the rest performs ``kind``:

    - ``carry``: the object is held rigidly while the hand base lifts by ``lift`` (world, m), shifts by
      ``shift`` (world x, y; m) and turns about ``wrist_point`` (hand frame) by ``wrist_rpy`` (hand frame, rad).
    - ``rotate``: the hand base stays; the object turns in the hand by ``rotate_angle`` about the hand-frame
      axis ``rotate_axis`` through its centre; the fingers re-close on it every frame.
    - ``pivot``: the hand base stays; the object tips by ``pivot_angle`` about its bottom edge on the finger
      side (axis hand y); the fingers re-close on it every frame.

    ``oscillate``: rotate/pivot go there and back (``angle * sin(pi u)``) instead of monotonically.
    """

    kind: str = "carry"
    close_fraction: float = 0.25
    lift: float = 0.07
    shift: tuple[float, float] = (-0.02, 0.0)
    wrist_point: tuple[float, float, float] = (0.0, 0.0, -0.095)
    wrist_rpy: tuple[float, float, float] = (0.0, -0.35, 0.7)
    rotate_angle: float = 0.9
    rotate_axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    pivot_angle: float = 0.3
    oscillate: bool = False

    def __post_init__(self) -> None:
        require(self.kind in MOTION_KINDS, f"motion.kind must be one of {list(MOTION_KINDS)}; got {self.kind!r}")
        require(_finite(self.close_fraction) and 0.0 < self.close_fraction < 1.0,
                "motion.close_fraction must be in (0, 1)")
        require(_finite(self.lift, self.rotate_angle, self.pivot_angle), "motion angles and lift must be finite")
        require(len(self.shift) == 2 and _finite(*self.shift), "motion.shift must be 2 lengths [m]")
        require(len(self.wrist_point) == 3 and _finite(*self.wrist_point), "motion.wrist_point must be 3 lengths")
        require(len(self.wrist_rpy) == 3 and _finite(*self.wrist_rpy), "motion.wrist_rpy must be 3 angles [rad]")
        require(len(self.rotate_axis) == 3 and _finite(*self.rotate_axis) and any(self.rotate_axis),
                "motion.rotate_axis must be a non-zero 3-vector")


@dataclasses.dataclass
class CameraSettings:
    """Static colour camera (depth is aligned to it).

    Intrinsics: ``fx = fy = focal_640 * width / 640``, principal point at the image centre in OpenCV pixel-centre
    convention (``((width - 1) / 2, (height - 1) / 2)``), no distortion. Placement: the camera looks at the
    object's frame-0 centre (plus half the carry lift, plus ``target_offset`` [world, m]) from ``distance`` [m],
    ``azimuth`` [rad] about world z measured from the finger direction towards the ring-finger side and
    ``elevation`` [rad] above the horizontal.
    """

    width: int = 640
    height: int = 480
    focal_640: float = 615.0
    distance: float = 0.45
    azimuth: float = 1.0
    elevation: float = 0.4
    target_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    frame_id: str = "camera_color_optical_frame"

    def __post_init__(self) -> None:
        require(8 <= self.width <= 8192 and 8 <= self.height <= 8192, "camera.width/height must be in [8, 8192] px")
        require(_finite(self.focal_640) and self.focal_640 > 0, "camera.focal_640 must be > 0 [px]")
        require(_finite(self.distance) and 0.1 <= self.distance <= 5.0, "camera.distance must be in [0.1, 5] m")
        require(_finite(self.azimuth, self.elevation) and abs(self.elevation) < 1.5,
                "camera.azimuth/elevation must be finite, |elevation| < 1.5 rad")
        require(len(self.target_offset) == 3 and _finite(*self.target_offset),
                "camera.target_offset must be 3 lengths")
        require(bool(self.frame_id), "camera.frame_id must not be empty")


@dataclasses.dataclass
class LightingSettings:
    """Lambertian shading ``albedo * (ambient + diffuse * max(0, n . l)) * exposure``.

    ``direction``: towards the key light, world frame. Per frame the light direction wanders by up to
    ``direction_jitter`` [rad], and the light gain by ``intensity_jitter`` (relative), as smooth random walks.
    """

    ambient: float = 0.4
    diffuse: float = 0.75
    direction: tuple[float, float, float] = (0.3, 0.5, 1.0)
    direction_jitter: float = 0.25
    intensity_jitter: float = 0.15

    def __post_init__(self) -> None:
        require(_finite(self.ambient, self.diffuse) and self.ambient >= 0 and self.diffuse >= 0,
                "lighting.ambient/diffuse must be >= 0")
        require(len(self.direction) == 3 and _finite(*self.direction) and any(self.direction),
                "lighting.direction must be a non-zero 3-vector")
        require(_finite(self.direction_jitter, self.intensity_jitter) and self.direction_jitter >= 0
                and 0 <= self.intensity_jitter < 1, "lighting jitters must be >= 0 (intensity < 1)")


@dataclasses.dataclass
class RgbEffects:
    """Colour sensor effects (each off when its strength is 0, all off with ``enabled: false``).

    Attributes:
        exposure_jitter: relative per-frame exposure change (smooth random walk, std of the log gain).
        blur_sigma: Gaussian optical blur [px at 640 px width; scaled with the width].
        read_noise: Gaussian noise std [8-bit levels].
        shot_noise: signal-dependent noise: std ``shot_noise * sqrt(level)`` [8-bit levels].
    """

    enabled: bool = True
    exposure_jitter: float = 0.08
    blur_sigma: float = 0.7
    read_noise: float = 1.5
    shot_noise: float = 0.35

    def __post_init__(self) -> None:
        vals = (self.exposure_jitter, self.blur_sigma, self.read_noise, self.shot_noise)
        require(_finite(*vals) and min(vals) >= 0, "rgb effect strengths must be >= 0")


@dataclasses.dataclass
class DepthEffects:
    """Depth sensor effects (RealSense-like; each off when its strength is 0, all with ``enabled: false``).

    Attributes:
        noise_z2: axial noise std per squared depth [1/m]: ``std = noise_z2 * z^2`` (0.002 -> 0.4 mm at 0.45 m).
        min_range, max_range: no return outside [m].
        edge_threshold: a relative depth jump ``|dz| / z`` above this between neighbours marks a depth edge.
        edge_dropout: probability that a depth-edge pixel (dilated by 1 px) has no return.
        hole_rate: mean number of random hole blobs per frame (Poisson).
        hole_radius: (min, max) blob radius [px at 640 px width; scaled].
        flying_pixels: probability that a surviving depth-edge pixel takes a depth between the two surfaces.
        quantisation: depth unit [m] of the written image (the format stores millimetres).
    """

    enabled: bool = True
    noise_z2: float = 0.002
    min_range: float = 0.105
    max_range: float = 3.0
    edge_threshold: float = 0.04
    edge_dropout: float = 0.5
    hole_rate: float = 3.0
    hole_radius: tuple[float, float] = (3.0, 14.0)
    flying_pixels: float = 0.0
    quantisation: float = 0.001

    def __post_init__(self) -> None:
        require(_finite(self.noise_z2, self.edge_threshold, self.hole_rate) and self.noise_z2 >= 0
                and self.edge_threshold > 0 and self.hole_rate >= 0, "depth effect strengths must be >= 0")
        require(_finite(self.min_range, self.max_range) and 0 <= self.min_range < self.max_range,
                "depth needs 0 <= min_range < max_range [m]")
        require(_finite(self.edge_dropout, self.flying_pixels) and 0 <= self.edge_dropout <= 1
                and 0 <= self.flying_pixels <= 1, "depth.edge_dropout/flying_pixels must be probabilities")
        require(len(self.hole_radius) == 2 and _finite(*self.hole_radius) and 0 < self.hole_radius[0]
                <= self.hole_radius[1], "depth.hole_radius must be (min, max) with 0 < min <= max [px]")
        require(self.quantisation == 0.001, "depth.quantisation must be 0.001 m (the format stores millimetres)")


@dataclasses.dataclass
class ClutterSettings:
    """Background: a table below the hand, a textured backdrop behind the scene and random boxes on the table.

    ``table_height`` is the table top in world z [m] (the hand root is at 0 at frame 0); ``backdrop_distance``
    the backdrop's distance behind the camera target [m]; ``boxes`` random boxes of ``box_size`` (min, max)
    [m] placed on the table behind/beside the hand (never between the camera and the hand).
    """

    enabled: bool = True
    table: bool = True
    table_height: float = -0.14
    backdrop: bool = True
    backdrop_distance: float = 0.55
    boxes: int = 5
    box_size: tuple[float, float] = (0.03, 0.12)
    texture_size: int = 512

    def __post_init__(self) -> None:
        require(_finite(self.table_height, self.backdrop_distance) and self.backdrop_distance > 0.05,
                "clutter.backdrop_distance must be > 0.05 m")
        require(0 <= self.boxes <= 64, "clutter.boxes must be in [0, 64]")
        require(len(self.box_size) == 2 and _finite(*self.box_size) and 0 < self.box_size[0] <= self.box_size[1],
                "clutter.box_size must be (min, max) with 0 < min <= max [m]")
        require(16 <= self.texture_size <= 4096, "clutter.texture_size must be in [16, 4096]")


@dataclasses.dataclass
class BagSettings:
    """The rosbag2 (MCAP) of the sensor data written beside the folder files (never any ground truth).

    Attributes:
        enabled: write ``bag/``.
        camera_namespace: RealSense ROS 2 wrapper prefix of the image topics (``<ns>/color/image_raw`` ...).
        joint_scheme: joint-name map of the joint states: ``ros1_allegro`` (``joint_0.0`` ...) or any map of
            ``config/joint_maps`` (e.g. ``wonik_ros2``: ``ah_joint00`` ...).
        joint_topic: topic of the joint states; empty = ``defaults.JOINT_STATES_TOPIC`` (``/joint_states``, a ROS 2
            driver's topic, for every joint scheme).
        joint_rate_factor: joint states per camera frame (every k-th one carries a camera stamp exactly).
        typestore: rosbags typestore of the message definitions (``ROS2_HUMBLE`` or ``ROS2_JAZZY``).
    """

    enabled: bool = True
    camera_namespace: str = defaults.CAMERA_NAMESPACE
    joint_scheme: str = "ros1_allegro"
    joint_topic: str = ""
    joint_rate_factor: int = 3
    typestore: str = "ROS2_HUMBLE"

    def __post_init__(self) -> None:
        require(self.camera_namespace.startswith("/") or self.camera_namespace == "",
                "bag.camera_namespace must be empty or start with '/'")
        require(1 <= self.joint_rate_factor <= 100, "bag.joint_rate_factor must be in [1, 100]")
        require(self.typestore in ("ROS2_HUMBLE", "ROS2_JAZZY"), "bag.typestore must be ROS2_HUMBLE or ROS2_JAZZY")

    def resolved_joint_topic(self) -> str:
        """``joint_topic``, or the scheme's default topic."""
        if self.joint_topic:
            return self.joint_topic
        return defaults.JOINT_STATES_TOPIC


@dataclasses.dataclass
class Scenario:
    """Everything that defines one synthetic sequence; the sequence is a deterministic function of it.

    Attributes:
        name: sequence name (default ``<object kind>_<motion kind>``).
        seed: seed of every random choice (clutter, lighting, sensor noise).
        frames, fps: number of camera frames and their rate [Hz]; ``start_stamp`` [s] is frame 0's stamp.
        device: torch device for rendering and noise ("cpu", "cuda", ...).
        faults: joint-encoder bias and hand-camera error in the published sensor data (:mod:`.faults`).
        torch_threads: torch intra-op threads while generating (restored afterwards); 0 = leave torch's
            setting. The generator's tensors are small, so one thread is fastest on a shared CPU.
    """

    name: str = ""
    seed: int = 0
    frames: int = 30
    fps: float = 30.0
    start_stamp: float = 1700000000.0
    device: str = "cpu"
    torch_threads: int = 1
    object: ObjectSettings = dataclasses.field(default_factory=ObjectSettings)
    grasp: GraspSettings = dataclasses.field(default_factory=GraspSettings)
    motion: MotionSettings = dataclasses.field(default_factory=MotionSettings)
    camera: CameraSettings = dataclasses.field(default_factory=CameraSettings)
    lighting: LightingSettings = dataclasses.field(default_factory=LightingSettings)
    rgb: RgbEffects = dataclasses.field(default_factory=RgbEffects)
    depth: DepthEffects = dataclasses.field(default_factory=DepthEffects)
    clutter: ClutterSettings = dataclasses.field(default_factory=ClutterSettings)
    bag: BagSettings = dataclasses.field(default_factory=BagSettings)
    faults: FaultSettings = dataclasses.field(default_factory=FaultSettings)

    def __post_init__(self) -> None:
        require(isinstance(self.seed, int) and 0 <= self.seed < 2**63, f"seed must be an int >= 0; got {self.seed}")
        require(2 <= self.frames <= 100000, f"frames must be in [2, 100000]; got {self.frames}")
        require(_finite(self.fps) and 0 < self.fps <= 1000, f"fps must be in (0, 1000]; got {self.fps}")
        require(_finite(self.start_stamp) and self.start_stamp >= 0, "start_stamp must be >= 0 [s]")
        require(0 <= self.torch_threads <= 256, "torch_threads must be in [0, 256]")
        if not self.name:
            self.name = f"{self.object.kind}_{self.motion.kind}"

    def replace(self, **overrides: Any) -> Scenario:
        """Copy with nested overrides (``{"camera": {"width": 160}}``), validated."""
        return scenario_from_dict(merge_overrides(dataclasses.asdict(self), overrides))


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict:
    """Deep merge of ``overrides`` into a copy of ``base`` (mappings merge key by key, anything else replaces).

    Keys may also be dotted paths (``{"camera.width": 160}``).
    """
    out = copy.deepcopy(dict(base))
    for key, value in (overrides or {}).items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = merge_overrides(node[last], value)
        else:
            node[last] = copy.deepcopy(value)
    return out


def scenario_from_dict(data: Mapping[str, Any] | None) -> Scenario:
    """:class:`Scenario` from a nested mapping (unknown keys raise ConfigError)."""
    return settings_from_dict(Scenario, data or {})


def load_scenario(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Scenario from the ``synthetic`` section of ``path`` (default: shipped ``config/synthetic.yaml``) with
    ``overrides`` (nested or dotted keys) merged on top."""
    data = load_yaml(path if path is not None else find_config("synthetic.yaml"))
    if "synthetic" not in data:
        raise ConfigError(f"config file {path or 'synthetic.yaml'} has no section 'synthetic'")
    return scenario_from_dict(merge_overrides(data["synthetic"] or {}, overrides))
