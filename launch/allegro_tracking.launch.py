"""Allegro hand + RealSense object tracking: robot_state_publisher, allegro_tracker, camera mount TF, RViz.

    ros2 launch handypriors_ros allegro_tracking.launch.py object_mesh:=/path/model.obj use_rviz:=true

Nodes:

- ``robot_state_publisher`` (``use_robot_state_publisher:=true``, the default; switch it off where the hand's
  own bringup runs one) with ``urdf/allegro_hand_right.urdf`` whose joints are renamed to the driver names of
  ``joint_map`` (``wonik_ros2``: ``ah_joint00`` ...), so the RViz fingers follow ``joint_states_topic``; its root
  link is ``base_link``, and an identity ``hand_root_frame -> base_link`` transform hangs it off the tracker's
  hand frame when the two differ;
- ``allegro_tracker`` with ``config/allegro_tracking.yaml`` (``params_file``; mode ``filter``,
  ``tracking_mode:=refine`` for the EKF + Adam refinement), the camera topics of ``camera_namespace``,
  ``joint_states_topic`` and ``joint_map``; ``hand_root_frame`` is the TF frame of the hand's URDF root;
- optionally (``publish_camera_mount:=true``) a ``static_transform_publisher`` for the camera mount:
  ``camera_mount_parent`` -> ``camera_mount_child`` at ``camera_x/y/z`` [m], ``camera_roll/pitch/yaw`` [rad];
- optionally (``use_rviz:=true``) ``rviz2`` with ``config/allegro_tracking.rviz``.

Where ``ros2 launch`` does not exist (ROS 2 from PyPI wheels), ``python -m handypriors_ros.launch_here`` starts the
tracker the same way (and optionally a sequence player in front of it).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from handypriors_core import defaults
from handypriors_ros.robot_description import joint_map_file, robot_description
from launch import LaunchDescription

PACKAGE = "handypriors_ros"

#: (name, default, description) of every launch argument.
ARGUMENTS = [
    ("object_mesh", "", "Mesh file of the tracked object (.obj/.ply/.stl, metres); required by the tracker."),
    ("params_file", os.path.join("config", "allegro_tracking.yaml"),
     "Parameter file of allegro_tracker (relative paths: inside the package share directory)."),
    ("tracking_mode", "", ("Override tracking.mode of the parameter file: filter (EKF, camera rate) or refine "
     "(EKF + Adam refinement, a few Hz on a CPU); empty: the file's (filter).")),
    ("use_rviz", "false", "Start rviz2 with config/allegro_tracking.rviz."),
    ("use_robot_state_publisher", "true", ("Start robot_state_publisher with the hand URDF (false where the hand's "
     "bringup runs one already).")),
    ("camera_namespace", defaults.CAMERA_NAMESPACE, ("Namespace of the RealSense topics (color/, "
     "aligned_depth_to_color/).")),
    ("joint_states_topic", defaults.JOINT_STATES_TOPIC, "sensor_msgs/JointState topic of the hand driver."),
    ("joint_map", defaults.DRIVER_JOINT_MAP, ("Joint map of the hand driver (wonik_ros2 | ros1_allegro | menagerie | "
     "a map file): the tracker's joint_map and the joint names of the URDF robot_state_publisher gets.")),
    ("use_sim_time", "false", "Use /clock (simulation or bag playback with --clock)."),
    ("hand_root_frame", defaults.HAND_ROOT_FRAME, ("TF frame of the hand's URDF root link (linked to base_link, "
     "robot_state_publisher's root, when different).")),
    ("publish_camera_mount", "false", "Publish the camera mount as a static transform from the camera_* arguments."),
    ("camera_mount_parent", defaults.URDF_ROOT_LINK, ("Parent frame of the camera mount transform (e.g. the hand "
     "root).")),
    ("camera_mount_child", "camera_link", "Child frame of the camera mount transform (the camera's base frame)."),
    ("camera_x", "0.0", "Camera mount translation x [m]."),
    ("camera_y", "0.0", "Camera mount translation y [m]."),
    ("camera_z", "0.0", "Camera mount translation z [m]."),
    ("camera_roll", "0.0", "Camera mount roll [rad]."),
    ("camera_pitch", "0.0", "Camera mount pitch [rad]."),
    ("camera_yaw", "0.0", "Camera mount yaw [rad]."),
]

#: The RealSense wrapper's default topics (what allegro_tracker subscribes to) -> suffix below camera_namespace.
CAMERA_TOPICS = {defaults.TOPICS[role]: suffix for role, suffix in defaults.CAMERA_TOPIC_SUFFIXES.items()}


def _share_path(share: str, value: str) -> str:
    return value if os.path.isabs(value) else os.path.join(share, value)


def _tracker(context, share: str):
    """allegro_tracker with the resolved parameter file and the object_mesh override when given."""
    params_file = _share_path(share, LaunchConfiguration("params_file").perform(context))
    overrides = {
        "use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() == "true",
        "hand_root_frame": LaunchConfiguration("hand_root_frame").perform(context),
        "joint_map": LaunchConfiguration("joint_map").perform(context),
    }
    object_mesh = LaunchConfiguration("object_mesh").perform(context)
    if object_mesh:
        overrides["object_mesh"] = object_mesh
    mode = LaunchConfiguration("tracking_mode").perform(context)
    if mode:
        if mode not in defaults.LIVE_MODES:
            raise ValueError(f"tracking_mode must be one of {', '.join(defaults.LIVE_MODES)} (or empty); got {mode!r}")
        overrides["tracking.mode"] = mode
    namespace = LaunchConfiguration("camera_namespace").perform(context).rstrip("/")
    remappings = [(topic, namespace + suffix) for topic, suffix in CAMERA_TOPICS.items()]
    remappings.append((defaults.JOINT_STATES_TOPIC, LaunchConfiguration("joint_states_topic").perform(context)))
    return [Node(package=PACKAGE, executable="allegro_tracker", name=defaults.NODE_NAME, output="screen",
                 parameters=[params_file, overrides], remappings=remappings)]


def _robot_state_publisher(context, share: str):
    """robot_state_publisher with the URDF's joints renamed to the driver names of ``joint_map``."""
    if LaunchConfiguration("use_robot_state_publisher").perform(context).lower() != "true":
        return []
    urdf = os.path.join(share, "urdf", "allegro_hand_right.urdf")
    joint_map = joint_map_file(LaunchConfiguration("joint_map").perform(context), os.path.join(share, "config"))
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    return [Node(package="robot_state_publisher", executable="robot_state_publisher", name="robot_state_publisher",
                 output="screen", parameters=[{"robot_description": robot_description(urdf, joint_map),
                                               "use_sim_time": use_sim_time}],
                 remappings=[("joint_states", LaunchConfiguration("joint_states_topic"))])]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    rviz_config = os.path.join(share, "config", "allegro_tracking.rviz")
    use_sim_time = LaunchConfiguration("use_sim_time")
    hand_root_frame = LaunchConfiguration("hand_root_frame")
    root_link = defaults.URDF_ROOT_LINK
    actions = [DeclareLaunchArgument(name, default_value=default, description=description)
               for name, default, description in ARGUMENTS]
    actions += [
        OpaqueFunction(function=_robot_state_publisher, args=[share]),
        OpaqueFunction(function=_tracker, args=[share]),
        Node(package="tf2_ros", executable="static_transform_publisher", name="hand_root_to_base_link",
             arguments=["--frame-id", hand_root_frame, "--child-frame-id", root_link],
             parameters=[{"use_sim_time": use_sim_time}],
             condition=IfCondition(PythonExpression([
                 "'", LaunchConfiguration("use_robot_state_publisher"), "'.lower() == 'true' and '",
                 hand_root_frame, f"' != '{root_link}'"]))),
        Node(package="tf2_ros", executable="static_transform_publisher", name="camera_mount",
             arguments=["--x", LaunchConfiguration("camera_x"), "--y", LaunchConfiguration("camera_y"),
                        "--z", LaunchConfiguration("camera_z"), "--roll", LaunchConfiguration("camera_roll"),
                        "--pitch", LaunchConfiguration("camera_pitch"), "--yaw", LaunchConfiguration("camera_yaw"),
                        "--frame-id", LaunchConfiguration("camera_mount_parent"),
                        "--child-frame-id", LaunchConfiguration("camera_mount_child")],
             parameters=[{"use_sim_time": use_sim_time}],
             condition=IfCondition(LaunchConfiguration("publish_camera_mount"))),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen", arguments=["-d", rviz_config],
             parameters=[{"use_sim_time": use_sim_time}], condition=IfCondition(LaunchConfiguration("use_rviz"))),
    ]
    return LaunchDescription(actions)
