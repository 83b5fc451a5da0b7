"""The project's own generator of Allegro hand-object RGB-D sequences with ground truth (issue #8).

``SyntheticSequence(scenario)`` keeps a sequence in memory (frames rendered on demand, ground truth as
``io.GroundTruth``); ``generate_sequence(scenario, out_dir)`` writes the development-sequence folder format
(``docs/sequence_format.md``) plus a rosbag2 of the sensor data; ``load_scenario()`` reads
``config/synthetic.yaml`` with overrides. Command line: ``python -m handypriors_core.synthetic.generate``.
May import geometry, models, render, physics, io, estimation (MANO sequences); never app.
"""

from .generate import SyntheticFrame, SyntheticSequence, generate_sequence, main, make_camera
from .grasp import GraspModel, HandContacts, load_allegro_hand
from .objects import ObjectMesh, make_object_mesh
from .scenario import (
    FINGERS,
    BagSettings,
    CameraSettings,
    ClutterSettings,
    DepthEffects,
    GraspSettings,
    LightingSettings,
    MotionSettings,
    ObjectSettings,
    RgbEffects,
    Scenario,
    load_scenario,
    scenario_from_dict,
)
from .trajectory import Trajectory, build_trajectory
from .writer import write_sequence

__all__ = [
    "FINGERS",
    "BagSettings",
    "CameraSettings",
    "ClutterSettings",
    "DepthEffects",
    "GraspModel",
    "GraspSettings",
    "HandContacts",
    "LightingSettings",
    "MotionSettings",
    "ObjectMesh",
    "ObjectSettings",
    "RgbEffects",
    "Scenario",
    "SyntheticFrame",
    "SyntheticSequence",
    "Trajectory",
    "build_trajectory",
    "generate_sequence",
    "load_allegro_hand",
    "load_scenario",
    "main",
    "make_camera",
    "make_object_mesh",
    "scenario_from_dict",
    "write_sequence",
]
