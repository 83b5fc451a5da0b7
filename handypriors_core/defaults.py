"""The one place for the names every entry point shares: topics, frames, tracking modes, mask sources.

The ROS node (``handypriors_ros.allegro_tracker`` / ``params``), the command line (``handypriors track``), the
bag reader (:class:`handypriors_core.io.bag_settings.BagTopics`), the sequence generator, the launch file and
``config/allegro_tracking.yaml`` all read their defaults from here; ``test/test_defaults.py`` checks that they
agree. Standard library only (the launch file imports it inside ``ros2 launch``).

Topic defaults are what the robot's drivers publish: the RealSense ROS 2 wrapper (``realsense2_camera``, whose
default namespace and name make ``/camera/camera/...``) and the Wonik Allegro ROS 2 driver (``/joint_states``,
joint names ``ah_joint00`` ... = the ``wonik_ros2`` joint map).
"""

from __future__ import annotations

#: Namespace of the RealSense ROS 2 wrapper's topics (``ros2 launch realsense2_camera rs_launch.py``).
CAMERA_NAMESPACE = "/camera/camera"
#: Camera topics below :data:`CAMERA_NAMESPACE` (aligned depth: ``align_depth.enable:=true``).
CAMERA_TOPIC_SUFFIXES = {
    "color": "/color/image_raw",
    "color_info": "/color/camera_info",
    "depth": "/aligned_depth_to_color/image_raw",
    "depth_info": "/aligned_depth_to_color/camera_info",
}
#: The hand driver's joint states (Wonik allegro_hand_ros2; the ROS 1 driver used /allegroHand/joint_states).
JOINT_STATES_TOPIC = "/joint_states"
#: The joint map matching the driver of :data:`JOINT_STATES_TOPIC` (what the launch file gives
#: robot_state_publisher); the tracker itself defaults to :data:`JOINT_MAP` (chosen from the names it receives).
DRIVER_JOINT_MAP = "wonik_ros2"
JOINT_MAP = "auto"

#: The tracker node's name; its private topics resolve to ``/<NODE_NAME>/<topic>``.
NODE_NAME = "allegro_tracker"
#: Every topic of the tracker node by role (``~/`` = private to the node).
TOPICS = {
    **{role: CAMERA_NAMESPACE + suffix for role, suffix in CAMERA_TOPIC_SUFFIXES.items()},
    "joint_states": JOINT_STATES_TOPIC,
    "object_mask": "~/object_mask",
    "initial_pose": "~/initial_pose",
    "object_pose": "~/object_pose",
    "contacts": "~/contacts",
    "object_mesh": "~/object_mesh",
    "overlay": "~/overlay",
    "diagnostics": "/diagnostics",
    "tf": "/tf",
    "tf_static": "/tf_static",
    "reset": "~/reset",
    "hand_camera_correction": "~/hand_camera_correction",
    "joint_offsets": "~/joint_offsets",
}

#: TF frame of the hand's URDF root link as the data names it (generator, development sequences); the launch file
#: links it to the URDF's ``base_link`` for robot_state_publisher.
HAND_ROOT_FRAME = "hand_root"
#: Root link of ``urdf/allegro_hand_right.urdf`` (the palm), the frame robot_state_publisher publishes the hand in.
URDF_ROOT_LINK = "base_link"
#: Child frame of the published object pose (its parent is the camera optical frame).
OBJECT_FRAME = "object"
#: The RealSense colour optical frame (parent of the object pose; the image headers carry it).
CAMERA_FRAME = "camera_color_optical_frame"

#: Tracking modes: ``filter`` (EKF, camera rate), ``refine`` (EKF + time-budgeted Adam refinement per frame),
#: ``offline`` (whole-sequence windows; command line only).
LIVE_MODES = ("filter", "refine")
MODES = (*LIVE_MODES, "offline")
#: The shipped mode: the one that keeps up with a 30 Hz camera on a CPU (``tracking.mode:=refine`` for accuracy).
MODE = "filter"

#: Object mask sources: ``none`` (depth, contacts and the hand only), ``external`` (masks from a segmenter: the
#: node's ``~/object_mask`` topic or, offline, a mask topic/folder), ``colour`` (built-in colour model, no
#: weights), ``detectron2`` (optional PointRend backend, ``config/segmentation.yaml``).
MASK_SOURCES = ("none", "external", "colour", "detectron2")
#: Without a segmenter the EKF is more accurate and faster than with the colour model (issue 13's measurement).
MASK_SOURCE = "none"


def camera_topics(namespace: str = CAMERA_NAMESPACE) -> dict[str, str]:
    """Camera topic by role below ``namespace`` (``/camera/camera`` -> ``/camera/camera/color/image_raw`` ...)."""
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return {role: namespace + suffix for role, suffix in CAMERA_TOPIC_SUFFIXES.items()}


def resolve_private(topic: str, node_name: str = NODE_NAME) -> str:
    """``~/object_pose`` -> ``/allegro_tracker/object_pose`` (a node without namespace); others unchanged."""
    return f"/{node_name}/{topic[2:]}" if topic.startswith("~/") else topic
