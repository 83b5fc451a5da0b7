"""Where a rig's data is in a rosbag2 and how to turn it into frames: :class:`BagTopics`, loaded from the tracking
config by :func:`load_bag_settings` (the node's frame and joint-map parameters, overridden by a ``bag`` section).

Defaults are the RealSense / Allegro driver names of :mod:`handypriors_core.defaults`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .. import defaults
from ..config import load_yaml
from ..errors import ConfigError

__all__ = ["BagTopics", "load_bag_settings"]


@dataclass
class BagTopics:
    """Where the rig's data is in a bag, and how to turn it into frames.

    Attributes:
        image: colour image topic (``sensor_msgs/Image`` rgb8/bgr8/rgba8/bgra8/mono8, or CompressedImage).
        camera_info: its CameraInfo topic.
        depth: aligned depth image topic (``16UC1`` mm or ``32FC1`` m); ``""`` = do not use depth.
        joint_states: the hand's ``sensor_msgs/JointState`` topic.
        tf, tf_static: the TF topics.
        hand_frame: TF frame of the hand root (the URDF root link).
        camera_frame: TF frame of the camera optical frame; ``""`` = the image header's ``frame_id``.
        joint_map: ``"auto"`` (best match among the shipped maps), a shipped map name or a map YAML path.
        hand2camera_override: ``[x, y, z, qx, qy, qz, qw]`` of a fixed hand mount in the camera frame (TF is then
            not needed); empty = look hand2camera up in TF for every image.
        depth_tolerance_s: largest stamp difference between a colour image and its depth image [s].
        max_gap_s: largest distance of an image stamp from joint-state / TF data it may be clamped to [s].
        explicit: names of the fields set explicitly (command line): those topics must exist in the bag.
    """

    image: str = defaults.TOPICS["color"]
    camera_info: str = defaults.TOPICS["color_info"]
    depth: str = defaults.TOPICS["depth"]
    joint_states: str = defaults.JOINT_STATES_TOPIC
    tf: str = defaults.TOPICS["tf"]
    tf_static: str = defaults.TOPICS["tf_static"]
    hand_frame: str = defaults.HAND_ROOT_FRAME
    camera_frame: str = ""
    joint_map: str = defaults.JOINT_MAP
    hand2camera_override: list[float] = field(default_factory=list)
    depth_tolerance_s: float = 0.02
    max_gap_s: float = 0.1
    explicit: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        o = list(self.hand2camera_override or [])
        if o and (len(o) != 7 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in o)
                  or math.sqrt(sum(v * v for v in o[3:])) < 1e-6):
            raise ConfigError(f"hand2camera_override must be [x, y, z, qx, qy, qz, qw] (7 numbers, non-zero "
                              f"quaternion) or empty; got {self.hand2camera_override!r}")
        self.hand2camera_override = [float(v) for v in o]
        for name in ("depth_tolerance_s", "max_gap_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"bag.{name} must be a number >= 0 [s]; got {value!r}")

    def override(self, **values: Any) -> BagTopics:
        """Copy with the non-None ``values`` set (and marked explicit)."""
        known = {f.name for f in fields(self)} - {"explicit"}
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["explicit"] = set(self.explicit)
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown bag setting {key!r} (known: {sorted(known)})")
            if value is not None:
                data[key] = value
                data["explicit"].add(key)
        return BagTopics(**data)


#: Node parameters of the tracking config (next to ``tracking``) that mean the same for a bag.
_NODE_KEYS = {"joint_map": "joint_map", "hand_root_frame": "hand_frame", "camera_frame": "camera_frame",
              "hand2camera_override": "hand2camera_override"}


def load_bag_settings(path: str | os.PathLike | None) -> BagTopics:
    """:class:`BagTopics` from a tracking config (defaults for what it does not say).

    The node's parameters ``joint_map``, ``hand_root_frame`` and ``camera_frame`` (next to ``tracking``) are
    used; an optional ``bag`` section (plain YAML or a ROS 2 parameter file) overrides them and names topics::

        bag:
          topics: {image: /camera/camera/color/image_raw, camera_info: ..., depth: ..., joint_states: ...}
          hand_frame: hand_root
          joint_map: auto
    """
    if path is None:
        return BagTopics()
    data = load_yaml(path)
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get("ros__parameters"), dict):
            data = value["ros__parameters"]
            break
    values = {ours: data[key] for key, ours in _NODE_KEYS.items()
              if (isinstance(data.get(key), str) and (data[key] or ours == "camera_frame"))
              or (isinstance(data.get(key), list) and data[key])}
    section = data.get("bag")
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'bag' must be a mapping")
    values.update(section)
    topics = values.pop("topics", None) or {}
    if not isinstance(topics, dict):
        raise ConfigError(f"{path}: bag.topics must be a mapping")
    values.update(topics)
    known = {f.name for f in fields(BagTopics)} - {"explicit"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown bag setting(s) {unknown} (known: {sorted(known)})")
    try:
        return BagTopics(**values)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
