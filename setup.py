"""ament_python build of handypriors_ros (colcon build, or pip install . for the libraries alone).

Installs the two Python packages, the ament index marker, package.xml, launch files, and the urdf/
and config/ trees (every file, sub-folders kept) into share/handypriors_ros, plus the console scripts
into lib/handypriors_ros (see setup.cfg) where `ros2 run handypriors_ros <script>` looks for them.
Python dependencies come from requirements.txt (pip) or rosdep (package.xml), not from here.
"""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "handypriors_ros"
SHARE = os.path.join("share", PACKAGE)


def share_tree(directory):
    """``data_files`` entries installing every file below ``directory`` into ``share/<package>/<directory>``."""
    entries = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        paths = sorted(os.path.join(root, f) for f in files if not f.startswith(".") and not f.endswith(".pyc"))
        if paths:
            entries.append((os.path.join(SHARE, root), paths))
    return entries


data_files = [
    (os.path.join("share", "ament_index", "resource_index", "packages"), [os.path.join("resource", PACKAGE)]),
    (SHARE, ["package.xml"]),
]
launch_files = sorted(glob(os.path.join("launch", "*.launch.py")))
if launch_files:
    data_files.append((os.path.join(SHARE, "launch"), launch_files))
data_files += share_tree("urdf")
data_files += share_tree("config")

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["handypriors_core", "handypriors_core.*", "handypriors_ros", "handypriors_ros.*"]),
    data_files=data_files,
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},
    zip_safe=False,
    maintainer="HandyPriors-ROS developers",
    maintainer_email="handypriors-ros@example.com",
    description="HandyPriors: object pose tracking in an Allegro hand with differentiable rendering and physics priors",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "allegro_tracker = handypriors_ros.allegro_tracker:main",
            "sequence_player = handypriors_ros.sequence_player:main",
            "mano_tracker = handypriors_ros.mano_tracker:main",
            "handypriors = handypriors_core.cli:main",
        ],
    },
)
