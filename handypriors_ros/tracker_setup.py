"""Building the node's tracker from its parameters (no rclpy): object, mask source, joint map, warm-up.

The node calls :func:`build_tracker` at start and whenever a tracking parameter or the object mesh changes;
:func:`warm_up` runs the tracker once on a small synthetic frame so that the first real frame does not pay
for kernel loading (warp compiles and caches its kernels on first use).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from handypriors_core.errors import HandyPriorsError
from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.io.frame import Frame
from handypriors_core.models import JointMap, RigidObject, URDFHand

__all__ = ["build_tracker", "load_joint_map", "named_mask_source", "synthetic_frame", "warm_up"]


def load_joint_map(name: str) -> JointMap:
    """A shipped joint map by name, or a map YAML file (``*.yaml`` / ``*.yml``)."""
    if name.endswith((".yaml", ".yml")):
        return JointMap.from_yaml(name)
    return JointMap.shipped(name)


def named_mask_source(name: str, scene: Any) -> Any:
    """The core's mask source ``name`` (``colour``: the built-in colour model; ``detectron2``: imported only here,
    a ConfigError says how to install it where it is missing) with the settings of ``config/segmentation.yaml``."""
    from handypriors_core.segmentation import SegmentationSettings, make_mask_source

    try:
        from handypriors_core.segmentation import load_segmentation_settings

        settings = load_segmentation_settings()
    except (HandyPriorsError, ImportError):
        settings = SegmentationSettings()
    return make_mask_source(dataclasses.replace(settings, source=name), scene)


def build_tracker(hand: URDFHand, mesh: str, mesh_scale: float, settings: TrackerSettings,
                  mask_source: str) -> ObjectTracker:
    """An :class:`ObjectTracker` for the object mesh file ``mesh`` (scaled by ``mesh_scale`` to metres).

    ``mask_source``: ``colour`` / ``detectron2`` attach that segmentation; ``external`` / ``none`` leave masks
    to the frames. Raises whatever loading the mesh or building the scene raises (the node reports it).
    """
    obj = RigidObject.from_mesh(mesh, scale=mesh_scale)
    tracker = ObjectTracker(hand, obj, settings)
    if mask_source in ("colour", "detectron2"):
        tracker.mask_source = named_mask_source(mask_source, tracker.scene)
    return tracker


def synthetic_frame(joint_count: int) -> Frame:
    """A 64x48 frame with the hand 0.45 m and a depth wall 0.4 m ahead (warm-up; transfer checks)."""
    from handypriors_core.geometry.camera import PinholeCamera

    width, height = 64, 48
    camera = PinholeCamera(torch.tensor([[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]]), width, height)
    hand2camera = torch.eye(4)
    hand2camera[:3, :3] = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
    hand2camera[:3, 3] = torch.tensor([0.0, 0.0, 0.45])
    return Frame(index=0, stamp=0.0, rgb=torch.full((height, width, 3), 128, dtype=torch.uint8), camera=camera,
                 joint_angles=torch.zeros(joint_count), hand2camera=hand2camera,
                 depth=torch.full((height, width), 0.4), object_mask=torch.zeros(height, width))


def warm_up(tracker: ObjectTracker, hand: URDFHand) -> None:
    """One ``track()`` on :func:`synthetic_frame` (object 0.4 m ahead, the hand behind it); the tracker is
    reset afterwards. Raises what the tracker raises (the node logs it and goes on)."""
    object2camera = torch.eye(4, dtype=torch.float64)
    object2camera[2, 3] = 0.4
    frame = synthetic_frame(len(hand.joint_names))
    try:
        tracker.initialize(object2camera)
        tracker.track(frame)
    finally:
        tracker.reset()
        if hasattr(tracker.mask_source, "reset"):
            tracker.mask_source.reset()
