"""The quasistatic motion model (paper Eq. 9) on the Allegro path: fingers carry a generated box.

The same EKF (default observations) runs twice from the same perturbed start, once with the quasistatic
prediction and once with a constant pose. While the grasp carries the box, the prediction must come from the
contacts, and it must make the track more accurate than holding the pose. Small frames (160 x 120) keep it
fast; ground truth is used only to score.
"""

from __future__ import annotations

import math

import pytest
import torch

from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.metrics.pose_errors import add
from handypriors_core.models import URDFHand, allegro_urdf
from handypriors_core.synthetic import SyntheticSequence, load_scenario

FRAMES = 16
CLOSE_FRACTION = 0.25  # frames 0-3 close the grasp, 4-15 carry


@pytest.fixture(scope="module")
def carried_box():
    scenario = load_scenario(overrides={"frames": FRAMES, "seed": 5, "camera": {"width": 160, "height": 120},
                                        "motion": {"close_fraction": CLOSE_FRACTION}})
    seq = SyntheticSequence(scenario)
    return seq, [seq.frame(i) for i in range(FRAMES)], seq.ground_truth(visible_fraction=False)


def _track(seq, frames, gt, motion_model: str):
    settings = TrackerSettings(mode="filter")
    settings.roi.size = 64
    settings.filter.motion_model = motion_model
    obj = seq.object_model()
    tracker = ObjectTracker(URDFHand.from_urdf(allegro_urdf()), obj, settings)
    start = gt.object2camera[0].clone()
    start[:3, :3] = axis_angle_to_matrix(torch.tensor([0.0, math.radians(4), 0.0], dtype=start.dtype)) @ start[:3, :3]
    start[:3, 3] += torch.tensor([0.004, -0.003, 0.003], dtype=start.dtype)
    tracker.initialize(start)
    pts = obj.samples.double()
    errors, used = [], []
    for i, frame in enumerate(frames):
        est = tracker.track(frame)
        errors.append(float(add(pts, est.object2camera[None].double(), gt.object2camera[i:i + 1].double())[0]))
        used.append("no_contact_prediction" not in est.timings)
    return torch.tensor(errors), used


def test_quasistatic_prediction_uses_the_contacts_and_beats_a_constant_pose(carried_box):
    seq, frames, gt = carried_box
    carry = slice(int(FRAMES * CLOSE_FRACTION) + 1, FRAMES)  # the grasp is closed and the hand moves
    moved = float((gt.object2camera[carry.start - 1, :3, 3] - gt.object2camera[-1, :3, 3]).norm())
    assert moved > 0.03, moved  # the fingers really carry the box
    quasi, used = _track(seq, frames, gt, "quasistatic")
    const, used_const = _track(seq, frames, gt, "constant_pose")
    assert not any(used_const)
    assert all(used[carry]), used  # every carried frame is predicted from the contacts
    q, c = float(quasi[carry].mean()), float(const[carry].mean())
    assert q < 0.6 * c, (quasi, const)  # the physics prior helps, clearly
