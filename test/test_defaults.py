"""One source of truth: the defaults of every entry point (topics, frames, modes, mask sources) are
handypriors_core.defaults.

Compared here: the node's parameter declarations (``handypriors_ros.node_settings.NodeSettings``,
``allegro_tracker.TOPICS``), the shipped parameter file ``config/allegro_tracking.yaml``, the command line
(``handypriors track`` / ``batch``), the bag reader (``BagTopics``), the sequence generator (the topics and frames
of the bags it writes), the result bag of ``track --out-bag``, the segmentation registry, the tracker settings and
the launch file's arguments.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from handypriors_core import cli, defaults
from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.io import result_bag
from handypriors_core.io.bag_settings import BagTopics
from handypriors_core.synthetic.scenario import BagSettings
from handypriors_core.synthetic.writer import HAND_ROOT_FRAME as GENERATOR_HAND_FRAME

REPO = Path(__file__).resolve().parents[1]


def _shipped_parameters() -> dict:
    return yaml.safe_load((REPO / "config" / "allegro_tracking.yaml").read_text())["/**"]["ros__parameters"]


def _subcommand(name: str):
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


def _option(parser, flag: str):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_topics_agree_with_the_realsense_and_wonik_drivers():
    assert defaults.TOPICS["color"] == "/camera/camera/color/image_raw"
    assert defaults.TOPICS["depth"] == "/camera/camera/aligned_depth_to_color/image_raw"
    assert defaults.camera_topics("/cam/") == {"color": "/cam/color/image_raw", "color_info": "/cam/color/camera_info",
                                               "depth": "/cam/aligned_depth_to_color/image_raw",
                                               "depth_info": "/cam/aligned_depth_to_color/camera_info"}
    assert defaults.camera_topics() == {k: defaults.TOPICS[k] for k in defaults.CAMERA_TOPIC_SUFFIXES}
    assert defaults.JOINT_STATES_TOPIC == "/joint_states" and defaults.DRIVER_JOINT_MAP == "wonik_ros2"
    assert (REPO / "config" / "joint_maps" / f"{defaults.DRIVER_JOINT_MAP}.yaml").is_file()
    assert defaults.resolve_private("~/object_pose") == "/allegro_tracker/object_pose"
    assert defaults.MODE in defaults.LIVE_MODES and set(defaults.LIVE_MODES) < set(defaults.MODES)
    assert defaults.MASK_SOURCE in defaults.MASK_SOURCES


def test_node_parameters_and_the_shipped_file_use_the_defaults():
    pytest.importorskip("rclpy")
    from handypriors_ros import allegro_tracker
    from handypriors_ros.node_settings import MASK_SOURCES, NodeSettings

    node = NodeSettings()
    assert (node.object_frame, node.hand_root_frame, node.joint_map, node.mask_source) == (
        defaults.OBJECT_FRAME, defaults.HAND_ROOT_FRAME, defaults.JOINT_MAP, defaults.MASK_SOURCE)
    assert MASK_SOURCES == defaults.MASK_SOURCES
    assert typing.get_args(typing.get_type_hints(NodeSettings)["mask_source"]) == defaults.MASK_SOURCES
    assert allegro_tracker.TOPICS == defaults.TOPICS
    from handypriors_ros.launch_here import CAMERA_TOPICS, parse_args
    from handypriors_ros.playback_sources import TopicNames

    player = TopicNames()
    assert {role: getattr(player, role) for role in (*defaults.CAMERA_TOPIC_SUFFIXES, "joint_states")} == {
        role: defaults.TOPICS[role] for role in (*defaults.CAMERA_TOPIC_SUFFIXES, "joint_states")}
    assert set(CAMERA_TOPICS) == {defaults.TOPICS[role] for role in defaults.CAMERA_TOPIC_SUFFIXES}
    args = parse_args([])
    assert (args.camera_namespace, args.joint_states_topic) == (defaults.CAMERA_NAMESPACE, defaults.JOINT_STATES_TOPIC)
    shipped = _shipped_parameters()
    assert shipped["tracking"]["mode"] == defaults.MODE == TrackerSettings().mode == "filter"
    assert shipped["mask_source"] == defaults.MASK_SOURCE
    assert (shipped["object_frame"], shipped["hand_root_frame"], shipped["joint_map"]) == (
        defaults.OBJECT_FRAME, defaults.HAND_ROOT_FRAME, defaults.JOINT_MAP)
    assert typing.get_args(typing.get_type_hints(TrackerSettings)["mode"]) == defaults.LIVE_MODES


def test_command_line_uses_the_defaults():
    track, batch = _subcommand("track"), _subcommand("batch")
    for parser in (track, batch):
        mask = _option(parser, "--mask-source")
        assert tuple(mask.choices) == defaults.MASK_SOURCES and mask.default == defaults.MASK_SOURCE
        assert tuple(_option(parser, "--mode").choices) == defaults.MODES
    assert _option(track, "--object-frame").default == defaults.OBJECT_FRAME
    assert defaults.HAND_ROOT_FRAME in _option(track, "--hand-frame").help


def test_bag_reader_generator_and_result_bag_use_the_defaults():
    topics = BagTopics()
    assert (topics.image, topics.camera_info, topics.depth, topics.joint_states) == (
        defaults.TOPICS["color"], defaults.TOPICS["color_info"], defaults.TOPICS["depth"], defaults.JOINT_STATES_TOPIC)
    assert (topics.tf, topics.tf_static, topics.hand_frame, topics.joint_map) == (
        "/tf", "/tf_static", defaults.HAND_ROOT_FRAME, defaults.JOINT_MAP)
    for scheme in ("ros1_allegro", "wonik_ros2"):
        bag = BagSettings(joint_scheme=scheme)
        assert bag.camera_namespace == defaults.CAMERA_NAMESPACE
        assert bag.resolved_joint_topic() == defaults.JOINT_STATES_TOPIC
    assert GENERATOR_HAND_FRAME == defaults.HAND_ROOT_FRAME
    assert result_bag.POSE_TOPIC == "/allegro_tracker/object_pose"
    assert (result_bag.CONTACTS_TOPIC, result_bag.OVERLAY_TOPIC) == ("/allegro_tracker/contacts",
                                                                     "/allegro_tracker/overlay")


def test_segmentation_registry_names_the_same_mask_sources():
    from handypriors_core.segmentation.base import MASK_SOURCES, SegmentationSettings

    assert MASK_SOURCES == defaults.MASK_SOURCES
    field = next(f for f in dataclasses.fields(SegmentationSettings) if f.name == "source")
    assert set(typing.get_args(typing.get_type_hints(SegmentationSettings)[field.name])) == set(defaults.MASK_SOURCES)


def test_launch_arguments_default_to_the_defaults():
    tree = ast.parse((REPO / "launch" / "allegro_tracking.launch.py").read_text())
    table = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS")
    arguments = {row.elts[0].value: ast.unparse(row.elts[1]) for row in table.elts}
    assert arguments["camera_namespace"] == "defaults.CAMERA_NAMESPACE"
    assert arguments["joint_states_topic"] == "defaults.JOINT_STATES_TOPIC"
    assert arguments["joint_map"] == "defaults.DRIVER_JOINT_MAP"
    assert arguments["hand_root_frame"] == "defaults.HAND_ROOT_FRAME"
    assert arguments["use_robot_state_publisher"] == "'true'"
    assert arguments["tracking_mode"] == "''"  # empty: the parameter file's mode (defaults.MODE, checked above)
