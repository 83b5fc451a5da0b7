"""ROS parameters <-> settings dataclasses: the one place where they are mapped onto each other.

Two dataclasses hold everything the tracker node can be configured with:

- :class:`~handypriors_core.estimation.settings.TrackerSettings` (core), declared as nested parameters
  ``tracking.<component>.<field>`` (``tracking.filter.depth_std``, ``tracking.weights.lambda_mask``, ...);
- :class:`NodeSettings` (this module), the node-level parameters (``object_mesh``, ``object_frame``, ...).

Each leaf field becomes one parameter whose **type** comes from the field's annotation (``bool``, ``int``,
``float``, ``str``, ``Literal[...]`` -> string with its choices, ``list[Literal[...]]`` -> string array,
``list[float]`` -> double array), whose **default** is the dataclass default, whose **description** is the
field's entry in the class docstring's ``Attributes:`` section, and whose **range** is the field's own
(``dataclasses.field`` metadata, :func:`handypriors_core.config.ranged`: the same range the dataclass checks in
``__post_init__``; ROS ranges are inclusive, so strict bounds such as "> 0" are enforced by the dataclass).
:data:`TRACKING_RANGES` / :data:`NODE_RANGES` are derived from that metadata, not kept here. Values come from the
parameter file (``config/allegro_tracking.yaml``: ``/**: ros__parameters: tracking: ...``), ``-p`` overrides
and live ``set_parameters`` calls.

Validation is the dataclasses' own: :class:`ParameterBinding` builds the dataclasses from the parameter values
at start (an invalid value raises :class:`~handypriors_core.errors.ConfigError` with the dataclass's message,
so the node refuses to start) and again for every live update, in an ``add_on_set_parameters_callback``
(an invalid update is rejected with that message and nothing changes). rclpy itself rejects wrong types,
out-of-range values and writes to read-only parameters first. Integers given for floating-point parameters
(``-p tracking.refine.gamma:=1``) are accepted as floats. An empty list in a YAML file (``initial_pose: []``)
reaches rclpy as "not set" and reads as an empty list here.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.parameter import Parameter

from handypriors_core import defaults
from handypriors_core.config import ValueRange, range_problems, ranged, settings_from_dict, settings_ranges
from handypriors_core.errors import ConfigError, HandyPriorsError
from handypriors_core.estimation.settings import TrackerSettings

__all__ = [
    "MASK_SOURCES",
    "NODE_RANGES",
    "READ_ONLY_NODE_PARAMETERS",
    "TRACKING_PREFIX",
    "TRACKING_RANGES",
    "NodeSettings",
    "ParameterBinding",
    "ParameterSpec",
    "attribute_docs",
    "node_parameter_specs",
    "parameters_from_settings",
    "pose_from_parameter",
    "settings_from_values",
    "settings_specs",
    "tracking_parameter_specs",
    "validate_runtime",
]

#: Name prefix of the TrackerSettings parameters.
TRACKING_PREFIX = "tracking"
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
        torch_threads: torch.set_num_threads of the node (1 is fastest for the tracker's small per-frame tensors).
        tracker_process: run the tracker in a process of its own, so that its computation never delays the message
            callbacks (docs/node_runtime.md); false: a worker thread of the node's process (tests, debugging).
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
    torch_threads: int = ranged(1, 1, 256)
    tracker_process: bool = True
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


#: Ranges of the numeric TrackerSettings fields (dotted path below ``tracking``), from the fields' metadata.
TRACKING_RANGES: dict[str, ValueRange] = settings_ranges(TrackerSettings)
#: Ranges of the numeric NodeSettings fields, from the fields' metadata.
NODE_RANGES: dict[str, ValueRange] = settings_ranges(NodeSettings)
#: Node parameters that can only be set at start (the rest apply live).
READ_ONLY_NODE_PARAMETERS = ("hand_urdf", "joint_map", "diagnostics_period", "tracker_process")


# ---------------------------------------------------------------------------------------------------------
# Specs: one per leaf field
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter mapped onto one dataclass field.

    Attributes:
        name: full parameter name (``tracking.filter.depth_std``).
        path: attribute path in the dataclass (``("filter", "depth_std")``).
        type: rclpy parameter type.
        default: the dataclass default (lists as lists).
        description: from the class docstring.
        choices: allowed strings (``Literal`` fields and lists of them), else empty.
        value_range: inclusive ``(low, high)`` for numbers (the field's range), else None.
        read_only: settable only at start.
    """

    name: str
    path: tuple[str, ...]
    type: Parameter.Type
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    read_only: bool = False

    @property
    def is_array(self) -> bool:
        return self.type in (Parameter.Type.STRING_ARRAY, Parameter.Type.DOUBLE_ARRAY,
                             Parameter.Type.INTEGER_ARRAY, Parameter.Type.BOOL_ARRAY)

    def descriptor(self) -> ParameterDescriptor:
        """The ``ParameterDescriptor`` (description, type, range, choices in ``additional_constraints``)."""
        descriptor = ParameterDescriptor(name=self.name, type=self.type.value, description=self.description,
                                         read_only=self.read_only)
        constraints = []
        if self.choices:
            constraints.append(("each entry one of: " if self.is_array else "one of: ") + ", ".join(self.choices))
        if self.value_range is not None:
            low, high = self.value_range
            if self.type == Parameter.Type.INTEGER:
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high),
                                                                      step=0.0)]
            constraints.append(f"in [{low:g}, {high:g}]")
        descriptor.additional_constraints = "; ".join(constraints)
        return descriptor

    def ros_value(self, value: Any) -> Any:
        """A dataclass value as rclpy wants it (lists as lists of the element type)."""
        if self.is_array:
            return list(value)
        return value

    def python_value(self, value: Any) -> Any:
        """A parameter value as the dataclass wants it (``None`` = unset array -> ``[]``)."""
        if self.is_array:
            return [] if value is None else list(value)
        return value


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data):`~?\.?([^`]+)`")


def _clean(text: str) -> str:
    text = _ROLE.sub(lambda m: m.group(1).split(".")[-1], text)
    return re.sub(r"\s+", " ", text.replace("``", "")).strip()


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of ``cls``'s docstring (Google style).

    An entry ``a, b: text`` documents both fields; continuation lines are indented deeper than the entry.
    """
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    entries: list[tuple[list[str], list[str]]] = []
    base = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            break
        if base is None:
            base = indent
        match = re.match(r"\s*([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)\s*:\s*(.*)$", line)
        if indent == base and match:
            entries.append(([n.strip() for n in match.group(1).split(",")], [match.group(2)]))
        elif entries:
            entries[-1][1].append(line.strip())
    return {name: _clean(" ".join(text)) for names, text in entries for name in names}


def _leaf_type(hint: Any, where: str) -> tuple[Parameter.Type, tuple[str, ...]]:
    """rclpy type and choices of a leaf annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return Parameter.Type.BOOL, ()
    if hint is int:
        return Parameter.Type.INTEGER, ()
    if hint is float:
        return Parameter.Type.DOUBLE, ()
    if hint is str:
        return Parameter.Type.STRING, ()
    if origin is Literal and all(isinstance(a, str) for a in args):
        return Parameter.Type.STRING, tuple(args)
    if origin in (list, tuple) and args:
        inner = args[0]
        inner_origin, inner_args = typing.get_origin(inner), typing.get_args(inner)
        if inner is str:
            return Parameter.Type.STRING_ARRAY, ()
        if inner_origin is Literal and all(isinstance(a, str) for a in inner_args):
            return Parameter.Type.STRING_ARRAY, tuple(inner_args)
        if inner is float:
            return Parameter.Type.DOUBLE_ARRAY, ()
        if inner is int:
            return Parameter.Type.INTEGER_ARRAY, ()
        if inner is bool:
            return Parameter.Type.BOOL_ARRAY, ()
    raise TypeError(f"settings field {where} has annotation {hint!r}, which has no ROS parameter type")


def settings_specs(cls: type, prefix: str = "", defaults: Any = None,
                   read_only: Iterable[str] = ()) -> list[ParameterSpec]:
    """One :class:`ParameterSpec` per leaf field of dataclass ``cls`` (nested dataclasses recursed).

    ``prefix``: parameter name prefix (``"tracking"``); ``defaults``: an instance whose values are the defaults
    (``cls()`` if None); ``read_only``: dotted paths. Ranges are the fields' own (``ranged`` metadata).
    """
    ranges = settings_ranges(cls)
    read_only = set(read_only)
    defaults = defaults if defaults is not None else cls()
    specs: list[ParameterSpec] = []

    def walk(klass: type, instance: Any, path: tuple[str, ...]) -> None:
        hints = typing.get_type_hints(klass)
        docs = attribute_docs(klass)
        for f in dataclasses.fields(klass):
            if not f.init:
                continue
            value = getattr(instance, f.name)
            here = path + (f.name,)
            dotted = ".".join(here)
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], value, here)
                continue
            ros_type, choices = _leaf_type(hints[f.name], f"{klass.__name__}.{f.name}")
            description = docs.get(f.name, "")
            specs.append(ParameterSpec(
                name=".".join(filter(None, (prefix, dotted))), path=here, type=ros_type,
                default=list(value) if isinstance(value, (list, tuple)) else value,
                description=description, choices=choices,
                value_range=(ranges[dotted].low, ranges[dotted].high) if dotted in ranges else None,
                read_only=dotted in read_only,
            ))

    walk(cls, defaults, ())
    return specs


def tracking_parameter_specs() -> list[ParameterSpec]:
    """The ``tracking.*`` parameters (every TrackerSettings leaf field)."""
    return settings_specs(TrackerSettings, TRACKING_PREFIX)


def node_parameter_specs() -> list[ParameterSpec]:
    """The node-level parameters (every NodeSettings field)."""
    return settings_specs(NodeSettings, "", read_only=READ_ONLY_NODE_PARAMETERS)


def _nested(specs: Sequence[ParameterSpec], values: Mapping[str, Any]) -> dict:
    data: dict = {}
    for spec in specs:
        if spec.name not in values:
            continue
        target = data
        for part in spec.path[:-1]:
            target = target.setdefault(part, {})
        target[spec.path[-1]] = spec.python_value(values[spec.name])
    return data


def settings_from_values(cls: type, specs: Sequence[ParameterSpec], values: Mapping[str, Any],
                         label: str = "") -> Any:
    """Build ``cls`` from ``{parameter name: value}`` (missing names keep their defaults).

    Raises :class:`ConfigError` carrying the dataclass's own message (prefixed by ``label``).
    """
    try:
        return settings_from_dict(cls, _nested(specs, values))
    except (ConfigError, TypeError, ValueError) as exc:
        message = str(exc)
        raise ConfigError(f"{label}: {message}" if label else message) from None


def parameters_from_settings(settings: Any, specs: Sequence[ParameterSpec] | None = None) -> list[Parameter]:
    """``settings`` (TrackerSettings or NodeSettings) as rclpy Parameters, e.g. for ``parameter_overrides``."""
    if specs is None:
        specs = tracking_parameter_specs() if isinstance(settings, TrackerSettings) else node_parameter_specs()
    out = []
    for spec in specs:
        value = settings
        for part in spec.path:
            value = getattr(value, part)
        out.append(Parameter(spec.name, spec.type, spec.ros_value(value)))
    return out


def pose_from_parameter(values: Sequence[float]):
    """``[x y z qx qy qz qw]`` -> ``(4, 4)`` float64 torch pose; ``[]`` -> None."""
    if not values:
        return None
    import torch

    from handypriors_core.geometry.transforms import transform_from_pose

    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
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


# ---------------------------------------------------------------------------------------------------------
# Binding to a node
# ---------------------------------------------------------------------------------------------------------
ChangeCallback = Callable[[TrackerSettings, NodeSettings, set], None]


class ParameterBinding:
    """Declares the tracking and node parameters on ``node`` and keeps the settings dataclasses in sync.

    At construction every parameter is declared (values from the parameter file and ``-p`` overrides), the
    dataclasses are built and :func:`validate_runtime` runs: any problem raises ConfigError (or rclpy's
    parameter exception), so the node does not start. Afterwards every ``set_parameters`` is validated the same
    way in an on-set callback; a valid update replaces :attr:`tracking` / :attr:`node` and calls
    ``on_change(tracking, node, changed_names)`` after the values are stored.

    Attributes:
        tracking: current :class:`TrackerSettings`; node: current :class:`NodeSettings` (replaced, never mutated).
        specs: ``{name: ParameterSpec}`` of every declared parameter.
    """

    def __init__(self, node: Any, on_change: ChangeCallback | None = None) -> None:
        self._node = node
        self._on_change = on_change
        self._tracking_specs = tracking_parameter_specs()
        self._node_specs = node_parameter_specs()
        self.specs = {s.name: s for s in self._tracking_specs + self._node_specs}
        self._coerce_overrides()
        values = {}
        for spec in self.specs.values():
            default = spec.ros_value(spec.default)
            second = spec.type if (spec.is_array and not default) else default
            value = node.declare_parameter(spec.name, second, spec.descriptor()).value
            if value is None and spec.is_array:  # unset (an empty YAML list): store a typed empty list
                node.set_parameters([Parameter(spec.name, spec.type, [])])
                value = []
            values[spec.name] = value
        self.tracking, self.node = self._build(values, live=False)
        self._pending: tuple[TrackerSettings, NodeSettings, set] | None = None
        # Humble's rclpy has only the on-set callback: it then also applies the accepted values (and integers
        # for float parameters are rejected by rclpy on live sets, as Humble does)
        pre_set = getattr(node, "add_pre_set_parameters_callback", None)
        post_set = getattr(node, "add_post_set_parameters_callback", None)
        self.humble_fallback = pre_set is None or post_set is None
        if pre_set is not None and not self.humble_fallback:
            pre_set(self._pre_set)
        node.add_on_set_parameters_callback(self._on_set)
        if not self.humble_fallback:
            post_set(self._post_set)

    # -- helpers ----------------------------------------------------------------------------------------
    def _coerce_overrides(self) -> None:
        """Integers from the parameter file / ``-p`` for DOUBLE parameters become floats."""
        overrides = getattr(self._node, "_parameter_overrides", None)
        if not isinstance(overrides, dict):
            return
        for name, spec in self.specs.items():
            given = overrides.get(name)
            if given is None:
                continue
            if spec.type == Parameter.Type.DOUBLE and given.type_ == Parameter.Type.INTEGER:
                overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(given.value))
            elif spec.type == Parameter.Type.DOUBLE_ARRAY and given.type_ == Parameter.Type.INTEGER_ARRAY:
                overrides[name] = Parameter(name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in given.value])

    def values(self) -> dict[str, Any]:
        """Current ``{name: value}`` of every bound parameter."""
        return {name: self._node.get_parameter(name).value for name in self.specs}

    def _build(self, values: Mapping[str, Any], live: bool) -> tuple[TrackerSettings, NodeSettings]:
        tracking = settings_from_values(TrackerSettings, self._tracking_specs, values, "invalid tracking parameters")
        node = settings_from_values(NodeSettings, self._node_specs, values, "invalid node parameters")
        validate_runtime(tracking, node, live=live)
        return tracking, node

    # -- callbacks -------------------------------------------------------------------------------------
    def _pre_set(self, parameters: list[Parameter]) -> list[Parameter]:
        out = []
        for p in parameters:
            spec = self.specs.get(p.name)
            if spec is not None and spec.type == Parameter.Type.DOUBLE and p.type_ == Parameter.Type.INTEGER:
                p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            elif (spec is not None and spec.type == Parameter.Type.DOUBLE_ARRAY
                  and p.type_ == Parameter.Type.INTEGER_ARRAY):
                p = Parameter(p.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in p.value])
            out.append(p)
        return out

    def _on_set(self, parameters: list[Parameter]) -> SetParametersResult:
        ours = [p for p in parameters if p.name in self.specs]
        if not ours:
            return SetParametersResult(successful=True)
        values = self.values()
        for p in ours:
            values[p.name] = p.value
        try:
            tracking, node = self._build(values, live=True)
        except HandyPriorsError as exc:
            self._pending = None
            return SetParametersResult(successful=False, reason=str(exc))
        self._pending = (tracking, node, {p.name for p in ours})
        if self.humble_fallback:  # no post-set callback: apply now (rclpy stores the values right after)
            self._post_set(parameters)
        return SetParametersResult(successful=True)

    def _post_set(self, parameters: list[Parameter]) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self.tracking, self.node, changed = pending
        if self._on_change is not None:
            self._on_change(self.tracking, self.node, changed)
