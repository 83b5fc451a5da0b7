"""The node's ``~/overlay`` image: the core's drawing module (:mod:`handypriors_core.visualization.overlay`).

The drawing lives in the core (one module for the node and the command line); this name stays for the node.
"""

from handypriors_core.visualization.overlay import *
from handypriors_core.visualization.overlay import __all__  # noqa: F401
