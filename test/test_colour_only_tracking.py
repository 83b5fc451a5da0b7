"""Colour-only tracking (``--no-depth``): the region modality alone moves the pose to the object.

A generated 320 x 240 sequence (the fingers carry a box), its depth dropped; the filter starts 1.6 cm / 9 deg
(0.86 cm ADD-S) and must bring the median error within the bounds below (measured 0.35 cm ADD-S and 2.5 deg,
at load 6). Ground truth is used only to score.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.metrics.pose_errors import add_s, rotation_error
from handypriors_core.models import URDFHand, allegro_urdf
from handypriors_core.synthetic import SyntheticSequence, load_scenario

FRAMES = 12


@pytest.fixture(scope="module")
def colour_frames():
    seq = SyntheticSequence(load_scenario(overrides={"frames": FRAMES, "seed": 5,
                                                     "camera": {"width": 320, "height": 240}}))
    frames = [dataclasses.replace(seq.frame(i), depth=None) for i in range(FRAMES)]
    return seq, frames, seq.ground_truth(visible_fraction=False).object2camera.double()


def test_colour_only_filter_reaches_the_object_from_a_perturbed_start(colour_frames, tmp_path):
    seq, frames, truth = colour_frames
    settings = TrackerSettings(mode="filter")
    settings.roi.size = 64
    settings.region.cache_dir = str(tmp_path)
    assert "region" in settings.filter.colour_only.observations
    obj = seq.object_model()
    tracker = ObjectTracker(URDFHand.from_urdf(allegro_urdf()), obj, settings)
    start = truth[0].clone()
    start[:3, :3] = axis_angle_to_matrix(torch.tensor([0.0, math.radians(6), 0.03], dtype=start.dtype)) @ start[:3, :3]
    start[:3, 3] += torch.tensor([0.012, -0.008, 0.006], dtype=start.dtype)
    tracker.initialize(start)
    poses, updates = [], []
    for frame in frames:
        est = tracker.track(frame)
        poses.append(est.object2camera.double())
        updates.append(est.updates.get("region"))
    pts = obj.samples.double()
    P = torch.stack(poses)
    err = add_s(pts, P, truth)
    rot = torch.rad2deg(rotation_error(P, truth))
    start_err = float(add_s(pts, start[None], truth[:1])[0])
    assert updates.count("accepted") >= FRAMES - 1, updates
    assert start_err > 0.008, start_err
    assert float(err.median()) < 0.005, err  # measured 0.0035 m
    assert float(rot.median()) < 4.0, rot  # measured 2.5 deg
    assert float(err[-4:].max()) < 0.5 * start_err, err  # it got there and stays


def test_frames_without_depth_replace_only_observations_that_read_depth():
    """The shipped depth observations give way to ``filter.colour_only`` on a frame without depth; an explicitly
    colour-only configuration is kept as configured (it would otherwise be silently replaced)."""
    shipped = TrackerSettings(mode="filter").filter
    assert shipped.for_frame(True) is shipped
    no_depth = shipped.for_frame(False)
    assert no_depth.observations == shipped.colour_only.observations
    assert no_depth.iterations == shipped.colour_only.iterations
    explicit = dataclasses.replace(shipped, observations=["silhouette", "centre"])
    assert explicit.for_frame(False) is explicit
    mixed = dataclasses.replace(shipped, observations=["silhouette", "sparse_depth"])
    assert mixed.for_frame(False).observations == shipped.colour_only.observations
