"""Allegro hand + RealSense object tracking: robot_state_publisher, allegro_tracker, camera mount TF, RViz.

    ros2 launch handypriors_ros allegro_tracking.launch.py object_mesh:=/path/model.obj use_rviz:=true

Nodes:

- ``robot_state_publisher`` with ``urdf/allegro_hand_right.urdf`` (driven by the joint states, so RViz shows the
  hand; its root link is ``base_link``; the URDF's joint names are those of the ROS 1 driver, ``joint_0.0`` ...);
- ``allegro_tracker`` with ``config/allegro_tracking.yaml`` (``params_file``), the camera topics of
  ``camera_namespace`` and ``joint_states_topic``; ``hand_root_frame`` says which TF frame is the hand's URDF root
  (``base_link`` here, as robot_state_publisher names it; ``hand_root`` for the development sequences, then an
  identity ``hand_root -> base_link`` transform is published so the robot model hangs off it);
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

from launch import LaunchDescription

PACKAGE = "handypriors_ros"

#: (name, default, description) of every launch argument.
ARGUMENTS = [
    ("object_mesh", "", "Mesh file of the tracked object (.obj/.ply/.stl, metres); required by the tracker."),
    ("params_file", os.path.join("config", "allegro_tracking.yaml"),
     "Parameter file of allegro_tracker (relative paths: inside the package share directory)."),
    ("use_rviz", "false", "Start rviz2 with config/allegro_tracking.rviz."),
    ("camera_namespace", "/camera/camera", "Namespace of the RealSense topics (color/, aligned_depth_to_color/)."),
    ("joint_states_topic", "/joint_states", "sensor_msgs/JointState topic of the hand driver."),
    ("use_sim_time", "false", "Use /clock (simulation or bag playback with --clock)."),
    ("hand_root_frame", "base_link", "TF frame of the hand's URDF root link (base_link via robot_state_publisher)."),
    ("publish_camera_mount", "false", "Publish the camera mount as a static transform from the camera_* arguments."),
    ("camera_mount_parent", "base_link", "Parent frame of the camera mount transform (e.g. the hand root)."),
    ("camera_mount_child", "camera_link", "Child frame of the camera mount transform (the camera's base frame)."),
    ("camera_x", "0.0", "Camera mount translation x [m]."),
    ("camera_y", "0.0", "Camera mount translation y [m]."),
    ("camera_z", "0.0", "Camera mount translation z [m]."),
    ("camera_roll", "0.0", "Camera mount roll [rad]."),
    ("camera_pitch", "0.0", "Camera mount pitch [rad]."),
    ("camera_yaw", "0.0", "Camera mount yaw [rad]."),
]

#: The RealSense wrapper's default topics (what allegro_tracker subscribes to) -> suffix below camera_namespace.
CAMERA_TOPICS = {
    "/camera/camera/color/image_raw": "/color/image_raw",
    "/camera/camera/color/camera_info": "/color/camera_info",
    "/camera/camera/aligned_depth_to_color/image_raw": "/aligned_depth_to_color/image_raw",
    "/camera/camera/aligned_depth_to_color/camera_info": "/aligned_depth_to_color/camera_info",
}


def _share_path(share: str, value: str) -> str:
    return value if os.path.isabs(value) else os.path.join(share, value)


def _tracker(context, share: str):
    """allegro_tracker with the resolved parameter file and the object_mesh override when given."""
    params_file = _share_path(share, LaunchConfiguration("params_file").perform(context))
    overrides = {
        "use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() == "true",
        "hand_root_frame": LaunchConfiguration("hand_root_frame").perform(context),
    }
    object_mesh = LaunchConfiguration("object_mesh").perform(context)
    if object_mesh:
        overrides["object_mesh"] = object_mesh
    namespace = LaunchConfiguration("camera_namespace").perform(context).rstrip("/")
    remappings = [(topic, namespace + suffix) for topic, suffix in CAMERA_TOPICS.items()]
    remappings.append(("/joint_states", LaunchConfiguration("joint_states_topic").perform(context)))
    return [Node(package=PACKAGE, executable="allegro_tracker", name="allegro_tracker", output="screen",
                 parameters=[params_file, overrides], remappings=remappings)]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    urdf = os.path.join(share, "urdf", "allegro_hand_right.urdf")
    rviz_config = os.path.join(share, "config", "allegro_tracking.rviz")
    with open(urdf) as f:
        robot_description = f.read()
    use_sim_time = LaunchConfiguration("use_sim_time")
    hand_root_frame = LaunchConfiguration("hand_root_frame")
    actions = [DeclareLaunchArgument(name, default_value=default, description=description)
               for name, default, description in ARGUMENTS]
    actions += [
        Node(package="robot_state_publisher", executable="robot_state_publisher", name="robot_state_publisher",
             output="screen", parameters=[{"robot_description": robot_description, "use_sim_time": use_sim_time}],
             remappings=[("joint_states", LaunchConfiguration("joint_states_topic"))]),
        OpaqueFunction(function=_tracker, args=[share]),
        Node(package="tf2_ros", executable="static_transform_publisher", name="hand_root_to_base_link",
             arguments=["--frame-id", hand_root_frame, "--child-frame-id", "base_link"],
             parameters=[{"use_sim_time": use_sim_time}],
             condition=IfCondition(PythonExpression(["'", hand_root_frame, "' != 'base_link'"]))),
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
