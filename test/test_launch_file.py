"""launch/allegro_tracking.launch.py, config/allegro_tracking.rviz and launch_here, checked without ``ros2 launch``.

``launch`` / ``launch_ros`` are not on PyPI, so the launch file is checked by reading its syntax tree: the launch
arguments it declares (and every one it uses), the executables it starts (console scripts of setup.py for this
package), the files it references, and the topics it remaps (the tracker's own subscriptions). Where the real
``launch`` package is importable the file is also imported and its LaunchDescription inspected.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import yaml

from handypriors_core import defaults

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "allegro_tracking.launch.py"
RVIZ = REPO / "config" / "allegro_tracking.rviz"
REQUIRED_ARGUMENTS = {"object_mesh", "params_file", "use_rviz", "camera_namespace", "joint_states_topic",
                      "use_sim_time"}
EXTERNAL_EXECUTABLES = {("robot_state_publisher", "robot_state_publisher"), ("tf2_ros", "static_transform_publisher"),
                        ("rviz2", "rviz2")}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)]


def _keyword(call: ast.Call, key: str):
    for kw in call.keywords:
        if kw.arg == key:
            return kw.value
    return None


def _assigned(tree: ast.Module, name: str) -> ast.AST:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node.value
    raise AssertionError(f"{name} is not assigned at module level")


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    scripts = {}
    for call in _calls(tree, "setup"):
        entry_points = ast.literal_eval(_keyword(call, "entry_points"))
        for line in entry_points["console_scripts"]:
            name, target = (part.strip() for part in line.split("="))
            scripts[name] = target
    return scripts


def _declared_arguments(tree: ast.Module) -> set[str]:
    names = set()
    for call in _calls(tree, "DeclareLaunchArgument"):
        first = call.args[0] if call.args else _keyword(call, "name")
        if isinstance(first, ast.Constant):
            names.add(first.value)
    table = _assigned(tree, "ARGUMENTS")  # the file declares its arguments from this table
    for row in table.elts:
        assert isinstance(row.elts[0], ast.Constant) and isinstance(row.elts[2], ast.Constant), "name, description"
        assert row.elts[2].value, f"launch argument {row.elts[0].value} needs a description"
        names.add(row.elts[0].value)
    return names


def test_launch_file_arguments_executables_files_and_topics():
    from handypriors_ros.allegro_tracker import TOPICS

    source = LAUNCH.read_text()
    tree = ast.parse(source)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    declared = _declared_arguments(tree)
    assert REQUIRED_ARGUMENTS <= declared, REQUIRED_ARGUMENTS - declared
    used = {c.args[0].value for c in _calls(tree, "LaunchConfiguration") if isinstance(c.args[0], ast.Constant)}
    assert used and used <= declared, f"used but not declared: {used - declared}"
    assert REQUIRED_ARGUMENTS <= used, f"declared but never used: {REQUIRED_ARGUMENTS - used}"

    # executables: this package's are console scripts whose module has main(); the others are known ROS tools
    scripts = _console_scripts()
    started = set()
    for call in _calls(tree, "Node"):
        package, executable = _keyword(call, "package"), _keyword(call, "executable")
        package = "handypriors_ros" if isinstance(package, ast.Name) and package.id == "PACKAGE" else package.value
        started.add((package, executable.value))
    ours = {e for p, e in started if p == "handypriors_ros"}
    assert ours == {"allegro_tracker"}
    for executable in ours:
        module, function = scripts[executable].split(":")
        assert (REPO / (module.replace(".", "/") + ".py")).is_file()
        assert f"def {function}(" in (REPO / (module.replace(".", "/") + ".py")).read_text()
    assert {s for s in started if s[0] != "handypriors_ros"} == EXTERNAL_EXECUTABLES

    # files: every os.path.join(..., "dir", "file") with constant parts exists in the package tree
    referenced = set()
    for call in _calls(tree, "join"):
        parts = [a.value for a in call.args if isinstance(a, ast.Constant)]
        if len(parts) >= 2:
            referenced.add(Path(*parts))
    assert {Path("config/allegro_tracking.yaml"), Path("config/allegro_tracking.rviz"),
            Path("urdf/allegro_hand_right.urdf")} <= referenced
    for path in referenced:
        assert (REPO / path).is_file(), f"the launch file references {path}, which does not exist"
        assert path.parts[0] in ("config", "urdf", "launch"), f"{path} is not installed into share/ by setup.py"

    # remapped camera topics are exactly the tracker's subscriptions
    assert "defaults.CAMERA_TOPIC_SUFFIXES" in ast.unparse(_assigned(tree, "CAMERA_TOPICS"))
    assert "(defaults.JOINT_STATES_TOPIC, LaunchConfiguration(\"joint_states_topic\")" in source.replace("'", '"')
    assert TOPICS["joint_states"] == defaults.JOINT_STATES_TOPIC

    # where ros2 launch exists: import the file and inspect the description
    if importlib.util.find_spec("launch") is not None and importlib.util.find_spec("launch_ros") is not None:
        import launch

        if hasattr(launch, "LaunchDescription"):  # not the unrelated PyPI 'launch' 0.1.3
            spec = importlib.util.spec_from_file_location("allegro_tracking_launch", LAUNCH)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            description = module.generate_launch_description()
            names = {a.name for a in description.get_launch_arguments()}
            assert REQUIRED_ARGUMENTS <= names
            camera_topics = module.CAMERA_TOPICS
            assert set(camera_topics) == {TOPICS[k] for k in ("color", "color_info", "depth", "depth_info")}
            assert all(topic.endswith(suffix) for topic, suffix in camera_topics.items())


def test_rviz_config_shows_overlay_tf_hand_object_and_contacts():
    from handypriors_ros.allegro_tracker import TOPICS

    config = yaml.safe_load(RVIZ.read_text())
    manager = config["Visualization Manager"]
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert {"rviz_default_plugins/TF", "rviz_default_plugins/RobotModel", "rviz_default_plugins/MarkerArray",
            "rviz_default_plugins/Image", "rviz_default_plugins/PoseWithCovariance"} <= set(displays)
    topics = {d["Class"]: d.get("Topic", {}).get("Value") for d in manager["Displays"] if d.get("Enabled")}
    node = "/allegro_tracker/"
    assert topics["rviz_default_plugins/Image"] == node + TOPICS["overlay"].removeprefix("~/")
    assert topics["rviz_default_plugins/MarkerArray"] == node + TOPICS["contacts"].removeprefix("~/")
    assert topics["rviz_default_plugins/PoseWithCovariance"] == node + TOPICS["object_pose"].removeprefix("~/")
    robot = displays["rviz_default_plugins/RobotModel"]
    assert robot["Description Source"] == "Topic" and robot["Description Topic"]["Value"] == "/robot_description"
    assert robot["Description Topic"]["Durability Policy"] == "Transient Local"  # robot_state_publisher latches it
    assert manager["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"
    namespaces = displays["rviz_default_plugins/MarkerArray"]["Namespaces"]
    assert {"object_mesh", "contacts", "contact_normals"} <= set(namespaces)


def test_launch_here_starts_the_same_graph(tmp_path):
    sys.path.insert(0, str(REPO / "test"))
    from test_ros_tracker_integration import render_sequence

    from handypriors_ros import launch_here

    args = launch_here.parse_args([])
    for name in REQUIRED_ARGUMENTS:  # the launch arguments, as options of the same names
        assert hasattr(args, name), name
    folder = render_sequence(tmp_path / "tiny", frames=2, width=32, height=24)
    args = launch_here.parse_args(["--sequence", str(folder), "--initial-pose-from-ground-truth",
                                   "--camera-namespace", "/cam", "--joint-states-topic", "/hand/joint_states",
                                   "-p", "tracking.mode:=filter", "--rate", "0.5"])
    tracker, player, notes = launch_here.build_commands(args)
    assert tracker[1:3] == ["-m", "handypriors_ros.allegro_tracker"]
    params_file = Path(tracker[tracker.index("--params-file") + 1])
    assert params_file.resolve() == (REPO / "config" / "allegro_tracking.yaml").resolve()
    assert "/camera/camera/color/image_raw:=/cam/color/image_raw" in tracker
    assert "/joint_states:=/hand/joint_states" in tracker
    assert f"object_mesh:={(folder / 'object' / 'model.obj').resolve()}" in tracker
    pose = next(p for p in tracker if p.startswith("initial_pose:="))
    values = ast.literal_eval(pose.split(":=", 1)[1])
    assert len(values) == 7 and all(isinstance(v, float) for v in values)
    assert "tracking.mode:=filter" in tracker
    assert any("ground truth" in note for note in notes)
    assert player[1:3] == ["-m", "handypriors_ros.sequence_player"]
    assert f"source:={folder}" in player and "color_topic:=/cam/color/image_raw" in player
    assert "joint_states_topic:=/hand/joint_states" in player and "wait_for_subscribers:=1" in player
    assert launch_here.main(["--sequence", str(tmp_path / "missing")]) == 2


def test_robot_state_publisher_urdf_carries_the_driver_joint_names():
    import xml.etree.ElementTree as ET

    import pytest

    from handypriors_ros.robot_description import joint_map_file, robot_description

    urdf = REPO / "urdf" / "allegro_hand_right.urdf"
    original = {j.get("name"): j for j in ET.parse(urdf).getroot().iter("joint")}
    config = REPO / "config"
    for name in ("wonik_ros2", "ros1_allegro", "menagerie"):
        path = joint_map_file(name, config)
        mapping = yaml.safe_load(path.read_text())["mapping"]
        renamed = {j.get("name"): j for j in ET.fromstring(robot_description(urdf, path)).iter("joint")}
        movable = {n for n, j in renamed.items() if j.get("type") != "fixed"}
        assert movable == set(mapping), name  # every movable joint has the driver's name
        for driver, urdf_name in mapping.items():  # ... and the geometry of the joint it stands for
            assert ET.tostring(renamed[driver].find("origin")) == ET.tostring(original[urdf_name].find("origin"))
            assert ET.tostring(renamed[driver].find("axis")) == ET.tostring(original[urdf_name].find("axis"))
    assert joint_map_file(str(config / "joint_maps" / "menagerie.yaml"), config).name == "menagerie.yaml"
    with pytest.raises(ValueError, match="auto only decides when joint states arrive"):
        joint_map_file("auto", config)
    with pytest.raises(ValueError, match="no joint map 'shadow'.*menagerie, ros1_allegro, wonik_ros2"):
        joint_map_file("shadow", config)
