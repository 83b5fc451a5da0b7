"""The tracker on a sequence the project generates (synthetic Allegro carrying a textured box, sensor noise).

Small frames (160 x 120) and few frames keep it fast; the initial pose is frame 0's ground truth perturbed by
1 cm and 5 degrees (as the benchmark does with 2 cm / 10 degrees at full size). Ground truth is used only to
score.
"""

from __future__ import annotations

import math

import pytest
import torch

from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.metrics.pose_errors import add_s
from handypriors_core.models import URDFHand, allegro_urdf
from handypriors_core.synthetic import SyntheticSequence, load_scenario

FRAMES = 10


@pytest.fixture(scope="module")
def sequence():
    scenario = load_scenario(overrides={"frames": FRAMES, "seed": 3, "camera": {"width": 160, "height": 120},
                                        "motion": {"close_fraction": 0.3}})
    seq = SyntheticSequence(scenario)
    return seq, [seq.frame(i) for i in range(FRAMES)], seq.ground_truth(visible_fraction=False)


def _perturbed(pose: torch.Tensor) -> torch.Tensor:
    out = pose.clone()
    out[:3, :3] = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(5)], dtype=out.dtype)) @ out[:3, :3]
    out[:3, 3] += torch.tensor([0.006, -0.006, 0.005], dtype=out.dtype)
    return out


@pytest.mark.parametrize("mode", ["filter", "refine"])
def test_tracker_on_generated_sequence(sequence, mode):
    seq, frames, gt = sequence
    settings = TrackerSettings(mode=mode)
    settings.roi.size = 64
    settings.filter.observations = ["fingertips", "depth"]
    settings.refine.iterations = 10
    settings.refine.time_budget = 0.0
    settings.refine.terms = ["depth", "penetration", "sliding", "con"]
    obj = seq.object_model()
    tracker = ObjectTracker(URDFHand.from_urdf(allegro_urdf()), obj, settings)
    start = _perturbed(gt.object2camera[0])
    tracker.initialize(start)
    pts = obj.samples.double()
    initial_error = float(add_s(pts, start[None], gt.object2camera[:1])[0])
    errors, statuses = [], []
    for i, frame in enumerate(frames):
        est = tracker.track(frame)
        errors.append(float(add_s(pts, est.object2camera[None], gt.object2camera[i:i + 1])[0]))
        statuses.append(est.status)
    assert initial_error > 0.005
    assert statuses == ["tracking"] * FRAMES, statuses  # the object is in view throughout: never lost
    # measured ADD-S: filter last 0.13 mm, median 0.44 mm; refine last 1.1 mm, median 1.2 mm (bounds about 2.5x)
    last, median = {"filter": (0.0004, 0.0012), "refine": (0.0025, 0.003)}[mode]
    assert errors[-1] < last, errors
    assert sorted(errors)[len(errors) // 2] < median, errors
