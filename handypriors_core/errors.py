"""Typed exceptions raised by the core library.

The core raises these; the ROS layer and the CLI catch them at their boundary and report them
(log line, diagnostics, exit code). Every message names the offending file, joint or argument.
"""


class HandyPriorsError(Exception):
    """Base class of every error the core raises on purpose."""


class ModelFileError(HandyPriorsError):
    """A URDF, mesh or model file is missing, unreadable or malformed (the message names the file)."""


class JointNameError(HandyPriorsError, KeyError):
    """A joint name is not known to the hand model or joint map (the message names the joint)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ShapeError(HandyPriorsError, ValueError):
    """A tensor argument has the wrong shape (the message names the argument and both shapes)."""


class InvalidValueError(HandyPriorsError, ValueError):
    """An argument holds NaN/inf or a value outside its valid range (the message names it)."""


class ConfigError(HandyPriorsError, ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range)."""
