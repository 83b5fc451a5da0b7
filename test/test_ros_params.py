"""ROS parameters <-> settings dataclasses (handypriors_ros.params): declaration, parameter file, validation.

In-process: a bare rclpy Node (own context and ROS domain) carries a :class:`ParameterBinding`; no tracker.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import typing
from pathlib import Path

import pytest
import torch

from handypriors_core import defaults
from handypriors_core.errors import ConfigError
from handypriors_core.estimation.settings import TrackerSettings, load_tracking_settings
from handypriors_ros.node_settings import NodeSettings
from handypriors_ros.parameter_specs import (
    NODE_RANGES,
    TRACKING_RANGES,
    attribute_docs,
    node_parameter_specs,
    parameters_from_settings,
    settings_from_values,
    tracking_parameter_specs,
)
from handypriors_ros.params import ParameterBinding

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "allegro_tracking.yaml"


def _leaf_paths(cls, prefix=()):
    """Every leaf field path of a settings dataclass, found independently of params.py."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _leaf_paths(hints[f.name], prefix + (f.name,))
        else:
            out.append((prefix + (f.name,), hints[f.name]))
    return out


def make_node(context, overrides=(), params_file: Path | None = None, on_change=None):
    """A bare node with the binding; returns ``(node, binding)`` (the node is destroyed by the caller)."""
    from rclpy.node import Node

    cli = ["--ros-args", "--params-file", str(params_file)] if params_file else None
    node = Node("params_test", context=context, parameter_overrides=list(overrides), cli_args=cli)
    try:
        return node, ParameterBinding(node, on_change)
    except Exception:
        node.destroy_node()
        raise


# -- specs ------------------------------------------------------------------------------------------------------
def test_every_tracker_setting_is_a_typed_documented_ranged_parameter():
    from rclpy.parameter import Parameter

    specs = {s.path: s for s in tracking_parameter_specs()}
    leaves = dict(_leaf_paths(TrackerSettings))
    assert set(specs) == set(leaves), "every TrackerSettings leaf field must be a tracking.* parameter"
    for path, spec in specs.items():
        assert spec.name == "tracking." + ".".join(path)
        assert len(spec.description) > 10, f"{spec.name}: no description from the docstring"
        hint = leaves[path]
        if hint is float:
            assert spec.type == Parameter.Type.DOUBLE
        elif hint is int:
            assert spec.type == Parameter.Type.INTEGER
        elif hint is bool:
            assert spec.type == Parameter.Type.BOOL
        if spec.type in (Parameter.Type.DOUBLE, Parameter.Type.INTEGER):
            assert spec.value_range is not None, f"{spec.name}: give the field a range (config.ranged)"
            low, high = spec.value_range
            assert low <= spec.default <= high, f"{spec.name}: default {spec.default} outside {spec.value_range}"
        if typing.get_origin(hint) is typing.Literal:
            assert spec.choices == typing.get_args(hint)
    assert set(TRACKING_RANGES) <= {".".join(p) for p in specs}, "TRACKING_RANGES names fields that do not exist"
    assert specs[("mode",)].choices == ("filter", "refine")
    assert specs[("filter", "observations")].type == Parameter.Type.STRING_ARRAY
    assert set(specs[("filter", "observations")].choices) == {"centre", "fingertips", "silhouette", "depth",
                                                              "sparse_depth", "contacts", "region", "texture"}


def test_ranges_come_from_the_dataclass_fields_and_agree_with_their_validation():
    """One range per numeric field, in its metadata: the descriptor shows it and the dataclass enforces it."""
    from handypriors_core.config import field_ranges, settings_from_dict

    specs = {".".join(s.path): s for s in tracking_parameter_specs()}
    assert TRACKING_RANGES and set(TRACKING_RANGES) == {n for n, s in specs.items() if s.value_range is not None}
    for dotted, valid in TRACKING_RANGES.items():
        spec = specs[dotted]
        descriptor = spec.descriptor()
        ros_range = descriptor.integer_range or descriptor.floating_point_range
        assert (ros_range[0].from_value, ros_range[0].to_value) == (valid.low, valid.high), dotted
        *parents, leaf = dotted.split(".")
        owner = TrackerSettings()
        for name in parents:
            owner = getattr(owner, name)
        assert field_ranges(owner)[leaf] is valid  # the descriptor's range is the field's own

        def nested(value, parents=parents, leaf=leaf):
            data = {leaf: value}
            for name in reversed(parents):
                data = {name: data}
            return data

        step = 1 if spec.type.name == "INTEGER" else 1e-6 * max(1.0, abs(valid.high))
        with pytest.raises(ConfigError, match=re.escape(leaf)):  # above the ROS range: the dataclass says no
            settings_from_dict(TrackerSettings, nested(valid.high + step))
        with pytest.raises(ConfigError, match=re.escape(leaf)):
            settings_from_dict(TrackerSettings, nested(valid.low - step))
        if not valid.low_open:
            settings_from_dict(TrackerSettings, nested(valid.low))  # the ROS range's ends are valid values
        else:
            with pytest.raises(ConfigError, match=re.escape(leaf)):
                settings_from_dict(TrackerSettings, nested(valid.low))
        if not valid.high_open:
            settings_from_dict(TrackerSettings, nested(valid.high))


def test_a_range_change_in_the_dataclass_reaches_the_ros_descriptor(monkeypatch):
    from types import MappingProxyType

    from handypriors_core.config import RANGE, ValueRange
    from handypriors_core.estimation.settings import ROISettings

    size = next(f for f in dataclasses.fields(ROISettings) if f.name == "size")
    assert next(s for s in tracking_parameter_specs() if s.name == "tracking.roi.size").value_range == (16, 1024)
    monkeypatch.setattr(size, "metadata", MappingProxyType({RANGE: ValueRange(32, 256)}))
    spec = next(s for s in tracking_parameter_specs() if s.name == "tracking.roi.size")
    assert spec.value_range == (32, 256)
    assert spec.descriptor().integer_range[0].to_value == 256
    with pytest.raises(ConfigError, match=r"roi.size must be in \[32, 256\]; got 300"):
        ROISettings(size=300)
    assert ROISettings(size=200).size == 200


def test_node_parameters_are_typed_documented_and_ranged():
    from rclpy.parameter import Parameter

    specs = {s.name: s for s in node_parameter_specs()}
    assert {f.name for f in dataclasses.fields(NodeSettings)} == set(specs)
    for name in ("object_mesh", "object_mesh_scale", "object_frame", "camera_frame", "hand_root_frame", "hand_urdf",
                 "joint_map", "initial_pose", "hand2camera_override", "mask_source", "publish_overlay",
                 "overlay_every_n", "max_image_age", "torch_threads"):
        assert name in specs and specs[name].description
    assert specs["initial_pose"].type == Parameter.Type.DOUBLE_ARRAY
    assert specs["mask_source"].choices == defaults.MASK_SOURCES == ("none", "external", "colour", "detectron2")
    assert specs["joint_map"].read_only and not specs["object_mesh"].read_only
    assert specs["torch_threads"].default == 1
    for name, (low, high) in NODE_RANGES.items():
        assert low <= specs[name].default <= high


def test_attribute_docs_reads_google_style_entries():
    @dataclasses.dataclass
    class Example:
        """Example.

        Attributes:
            alpha: first line
                continued here with ``code`` and :class:`~pkg.Thing`.
            beta, gamma: shared [m].

        Notes:
            not an attribute: ignored.
        """

        alpha: float = 1.0
        beta: int = 2
        gamma: int = 3

    docs = attribute_docs(Example)
    assert docs == {"alpha": "first line continued here with code and Thing.", "beta": "shared [m].",
                    "gamma": "shared [m]."}


def test_settings_round_trip_through_parameters():
    settings = TrackerSettings(mode="filter", device="cpu")
    settings.roi.size = 64
    settings.filter.observations = ["centre", "depth"]
    settings.refine.terms = ["mask"]
    settings.weights = dataclasses.replace(settings.weights, lambda_smo=3.5)  # LossWeights is frozen
    params = parameters_from_settings(settings)
    values = {p.name: p.value for p in params}
    assert values["tracking.roi.size"] == 64 and values["tracking.filter.observations"] == ["centre", "depth"]
    rebuilt = settings_from_values(TrackerSettings, tracking_parameter_specs(), values)
    assert rebuilt == settings
    node = NodeSettings(object_mesh="/x.obj", initial_pose=[0.0, 0.0, 0.4, 0.0, 0.0, 0.0, 1.0])
    assert settings_from_values(NodeSettings, node_parameter_specs(),
                                {p.name: p.value for p in parameters_from_settings(node)}) == node


def test_dataclass_messages_name_the_problem():
    specs = tracking_parameter_specs()
    with pytest.raises(ConfigError, match="mode must be .*filter.*refine"):
        settings_from_values(TrackerSettings, specs, {"tracking.mode": "fast"})
    with pytest.raises(ConfigError, match=r"filter\.observations.*magic"):
        settings_from_values(TrackerSettings, specs, {"tracking.filter.observations": ["centre", "magic"]})
    with pytest.raises(ConfigError, match="initial_pose must be empty or 7 numbers"):
        NodeSettings(initial_pose=[0.0] * 6)
    with pytest.raises(ConfigError, match="quaternion"):
        NodeSettings(hand2camera_override=[0.0] * 7)
    with pytest.raises(ConfigError, match="object_frame and camera_frame must differ"):
        NodeSettings(object_frame="cam", camera_frame="cam")


# -- binding on a node ---------------------------------------------------------------------------------------------
def test_parameter_file_values_reach_the_settings(ros_context, tmp_path):
    node, binding = make_node(ros_context, params_file=CONFIG)
    try:
        assert binding.tracking == load_tracking_settings(CONFIG)
        assert binding.node.initial_pose == []  # `[]` in YAML arrives as "not set"
        descriptor = node.describe_parameter("tracking.roi.size")
        assert descriptor.integer_range[0].from_value == 16 and descriptor.integer_range[0].to_value == 1024
        assert "crop" in descriptor.description
        assert "one of: filter, refine" in node.describe_parameter("tracking.mode").additional_constraints
        assert node.describe_parameter("joint_map").read_only
    finally:
        node.destroy_node()
    custom = tmp_path / "custom.yaml"
    custom.write_text("/**:\n  ros__parameters:\n    object_mesh: /tmp/m.obj\n    initial_pose: [0.0, 0.0, 0.4, 0.0,"
                      " 0.0, 0.0, 1.0]\n    tracking:\n      mode: filter\n      refine:\n        gamma: 1\n"
                      "      filter:\n        observations: [centre]\n")
    node, binding = make_node(ros_context, params_file=custom)
    try:
        assert binding.tracking.mode == "filter" and binding.tracking.filter.observations == ["centre"]
        assert binding.tracking.refine.gamma == 1.0  # an integer for a float parameter is accepted
        assert binding.node.object_mesh == "/tmp/m.obj" and binding.node.initial_pose[2] == 0.4
    finally:
        node.destroy_node()


def test_invalid_values_are_rejected_at_start(ros_context):
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    with pytest.raises(ConfigError, match="mode must be .*filter.*refine.*got 'fast'"):
        make_node(ros_context, [Parameter("tracking.mode", value="fast")])
    with pytest.raises(InvalidParameterValueException, match="tracking.roi.size"):
        make_node(ros_context, [Parameter("tracking.roi.size", value=8)])
    with pytest.raises(InvalidParameterTypeException, match="tracking.roi.margin"):
        make_node(ros_context, [Parameter("tracking.roi.margin", value="wide")])
    with pytest.raises(ConfigError, match="initial_pose must be empty or 7 numbers"):
        make_node(ros_context, [Parameter("initial_pose", value=[0.1, 0.2])])
    with pytest.raises(ConfigError, match="joint_map 'no_such_driver'"):
        make_node(ros_context, [Parameter("joint_map", value="no_such_driver")])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            make_node(ros_context, [Parameter("tracking.device", value="cuda")])
    # a missing mesh is accepted at start (the node then waits in an error state)
    node, binding = make_node(ros_context, [Parameter("object_mesh", value="/no/such/mesh.obj")])
    node.destroy_node()
    assert binding.node.object_mesh == "/no/such/mesh.obj"


def test_live_updates_are_validated_and_applied(ros_context, tmp_path):
    from rclpy.parameter import Parameter

    changes = []
    node, binding = make_node(ros_context, on_change=lambda t, n, changed: changes.append((t, n, changed)))
    try:
        before = binding.tracking

        def set_one(name, *value):
            param = Parameter(name, *value) if len(value) == 2 else Parameter(name, value=value[0])
            [result] = node.set_parameters([param])
            return result

        result = set_one("tracking.filter.observations", ["centre", "magic"])
        assert not result.successful and re.search(r"filter\.observations.*magic", result.reason), result.reason
        result = set_one("tracking.filter.motion_model", "teleport")
        assert not result.successful and "motion_model" in result.reason
        result = set_one("tracking.roi.size", 8)  # rclpy's own range check
        assert not result.successful and "range" in result.reason.lower(), result.reason
        result = set_one("object_mesh", "/no/such/mesh.obj")
        assert not result.successful and "no such file" in result.reason
        result = set_one("joint_map", "wonik_ros2")
        assert not result.successful and "read-only" in result.reason
        assert binding.tracking == before and changes == []
        assert node.get_parameter("tracking.filter.motion_model").value == "quasistatic"

        mesh = tmp_path / "m.obj"
        mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
        result = set_one("tracking.refine.gamma", 2)  # integer for a float: accepted as 2.0
        assert result.successful, result.reason
        result = node.set_parameters_atomically([Parameter("tracking.mode", value="filter"),
                                                   Parameter("object_mesh", value=str(mesh)),
                                                   Parameter("initial_pose", Parameter.Type.DOUBLE_ARRAY,
                                                             [0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0])])
        assert result.successful, result.reason
        assert binding.tracking.mode == "filter" and binding.tracking.refine.gamma == 2.0
        assert binding.node.object_mesh == str(mesh) and binding.node.initial_pose[2] == 0.5
        assert [c[2] for c in changes] == [{"tracking.refine.gamma"},
                                           {"tracking.mode", "object_mesh", "initial_pose"}]
        assert changes[-1][0] is binding.tracking and changes[-1][1] is binding.node
        if not torch.cuda.is_available():
            result = set_one("tracking.device", "cuda")
            assert not result.successful and "CUDA is not available" in result.reason
    finally:
        node.destroy_node()


def test_specs_cover_only_supported_annotations():
    # a field type without a ROS parameter type is reported by name instead of being skipped
    from handypriors_ros.parameter_specs import settings_specs

    @dataclasses.dataclass
    class Odd:
        """Odd.

        Attributes:
            table: a mapping.
        """

        table: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="Odd.table"):
        settings_specs(Odd)
    assert math.isfinite(max(high for _, high in TRACKING_RANGES.values()))
    assert sys.modules["handypriors_ros.parameter_specs"].TRACKING_PREFIX == "tracking"


def test_humble_without_pre_and_post_set_callbacks_still_validates_and_applies(ros_context, monkeypatch):
    """Humble's rclpy Node has neither add_pre_set_parameters_callback nor add_post_set_parameters_callback."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    monkeypatch.delattr(Node, "add_pre_set_parameters_callback")
    monkeypatch.delattr(Node, "add_post_set_parameters_callback")
    changes = []
    node, binding = make_node(ros_context, on_change=lambda t, n, changed: changes.append((t, n, changed)))
    try:
        assert binding.humble_fallback
        [result] = node.set_parameters([Parameter("tracking.filter.motion_model", value="teleport")])
        assert not result.successful and "motion_model" in result.reason
        assert changes == [] and node.get_parameter("tracking.filter.motion_model").value == "quasistatic"
        [result] = node.set_parameters([Parameter("tracking.mode", value="filter")])
        assert result.successful, result.reason
        assert binding.tracking.mode == "filter" and node.get_parameter("tracking.mode").value == "filter"
        assert [c[2] for c in changes] == [{"tracking.mode"}] and changes[0][0] is binding.tracking
    finally:
        node.destroy_node()
