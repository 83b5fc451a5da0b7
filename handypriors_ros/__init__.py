"""ROS 2 layer of HandyPriors: thin rclpy nodes over :mod:`handypriors_core`.

Importing this package does not import rclpy; each node module does. Console scripts (see setup.py):
``allegro_tracker`` (:mod:`handypriors_ros.allegro_tracker`) and ``sequence_player``
(:mod:`handypriors_ros.sequence_player`). :mod:`handypriors_ros.ros_environment` builds the localhost-only DDS
environment used by tests, benchmarks and the demo. The node parts that need no rclpy (``frame_sync``,
``node_activity``, ``initial_pose``, ``node_settings``, ``cdr``) are unit-tested without DDS; ``conversions`` is the
one place where messages and core types meet. May import every package of the core (the core never imports this one:
the demo runs :mod:`handypriors_ros.demo_run` as a subprocess).
"""
