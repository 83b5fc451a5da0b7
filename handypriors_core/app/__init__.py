"""The application layer: one function per ``handypriors`` command, each taking a typed options dataclass
(:mod:`.track`, :mod:`.evaluate`, :mod:`.demo`, :mod:`.batch`); :mod:`handypriors_core.cli` only parses and calls
them. May import every core package; never ``handypriors_ros`` or rclpy (the demo's ROS path is a subprocess).
"""
