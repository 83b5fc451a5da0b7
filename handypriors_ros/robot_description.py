"""The URDF that ``robot_state_publisher`` gets, with the hand driver's joint names.

``urdf/allegro_hand_right.urdf`` names its joints as the ROS 1 driver does (``joint_0.0`` ...). The
``/joint_states`` that ``robot_state_publisher`` reads come from the driver, e.g. ``ah_joint00`` ... from the
Wonik ROS 2 driver: with the shipped names the fingers in RViz would never move. :func:`robot_description`
renames every joint (and every reference to it: ``<mimic joint=>``, transmissions) to the driver names of a
joint map (``config/joint_maps/<name>.yaml`` or a map file), the same map the tracker uses.

Light on purpose (PyYAML and the standard library only): the launch file imports it in the ``ros2 launch``
process, before any node starts.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

__all__ = ["joint_map_file", "robot_description"]


def joint_map_file(joint_map: str, config_dir: str | os.PathLike) -> Path:
    """The file of a joint map given by name (``config_dir/joint_maps/<name>.yaml``) or by path."""
    if joint_map in ("", "auto"):
        raise ValueError("robot_state_publisher needs the driver's joint names: set joint_map to wonik_ros2, "
                         "ros1_allegro, menagerie or a map file (auto only decides when joint states arrive), "
                         "or use_robot_state_publisher:=false")
    path = Path(joint_map)
    if path.suffix in (".yaml", ".yml") or os.sep in joint_map:
        if not path.is_file():
            raise ValueError(f"joint map file {joint_map} not found")
        return path
    shipped = Path(config_dir) / "joint_maps" / f"{joint_map}.yaml"
    if not shipped.is_file():
        names = sorted(p.stem for p in (Path(config_dir) / "joint_maps").glob("*.yaml"))
        raise ValueError(f"no joint map {joint_map!r} (shipped: {', '.join(names)}; or give a .yaml path)")
    return shipped


def robot_description(urdf_path: str | os.PathLike, joint_map_path: str | os.PathLike) -> str:
    """URDF text of ``urdf_path`` with its joints renamed URDF name -> driver name by the map file.

    Raises ValueError when the map names a joint the URDF lacks, or changes a joint's sign or offset
    (a renamed URDF cannot express that: robot_state_publisher would show wrong finger angles).
    """
    data = yaml.safe_load(Path(joint_map_path).read_text()) or {}
    mapping = data.get("mapping") or {}
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"joint map {joint_map_path}: no 'mapping' driver_name: urdf_name")
    for key, neutral in (("sign", 1.0), ("offset", 0.0)):
        changed = {k: v for k, v in (data.get(key) or {}).items() if float(v) != neutral}
        if changed:
            raise ValueError(f"joint map {joint_map_path} sets {key} {changed}: robot_state_publisher would show "
                             "other angles than the tracker uses; give it a URDF with the driver's conventions")
    rename = {str(urdf): str(driver) for driver, urdf in mapping.items()}
    root = ET.parse(urdf_path).getroot()
    joints = {j.get("name"): j for j in root.iter("joint") if j.get("type") is not None}
    missing = sorted(set(rename) - set(joints))
    if missing:
        raise ValueError(f"joint map {joint_map_path} names joints that {urdf_path} lacks: {missing}")
    for element in root.iter():
        if element.tag == "joint" or element.tag == "mimic":
            attribute = "name" if element.tag == "joint" else "joint"
            name = element.get(attribute)
            if name in rename:
                element.set(attribute, rename[name])
    return ET.tostring(root, encoding="unicode")
