"""Guard of the dev-sequence figures that README.md and docs/benchmarks.md (with docs/benchmarks-history.md) report.

A 20-frame excerpt of each shared development sequence, read from its bag as ``handypriors track`` reads it,
tracked in filter mode with the shipped configuration from frame 0's ground truth perturbed by 2 cm and 10 deg
(perturbation seed 0 of ``bench/bench_tracking.py``). The bounds are twice the seed-0 figures of the
``bench/bench_tracking.py --quick`` filter rows that docs/benchmarks-history.md reports ("Dev-excerpt guard"), so a
regression of the tracker cannot land silently. Ground truth is read only to score. Skipped where
``../shared`` is absent.
"""

from __future__ import annotations

import math

import pytest
import torch

from handypriors_core.estimation.settings import load_tracking_settings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.evaluation import perturbed_pose
from handypriors_core.io.bag_reader import BagReader
from handypriors_core.io.dev_sequence import load_ground_truth
from handypriors_core.io.json_file import read_json
from handypriors_core.metrics import add, add_s, rotation_error
from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
from handypriors_core.physics.settings import load_physics_settings
from handypriors_core.render.settings import load_render_settings

EXCERPT = 20
#: docs/benchmarks-history.md, `--quick` filter rows, perturbation seed 0: median ADD-S [cm] and median rotation [deg].
REPORTED = {"block_lift_wrist": (0.008, 0.10), "mug_pivot_fixed": (0.039, 0.48)}


def _track_excerpt(shared_dir, name: str, seed: int):
    """The excerpt tracked from perturbation ``seed``: start, predicted and true poses, the object's samples."""
    path = shared_dir / "data" / "dev" / name
    hand = URDFHand.from_urdf(allegro_urdf())
    with BagReader(path / "bag", hand.joint_names) as reader:
        frames = [bf.frame for bf in reader.frames() if bf.index < EXCERPT]
    assert len(frames) == EXCERPT and all(f is not None for f in frames)
    truth = load_ground_truth(path).object2camera[:EXCERPT].double()
    settings = load_tracking_settings()
    settings.mode = "filter"
    obj = RigidObject.from_mesh(path / read_json(path / "meta.json", "meta")["object"]["mesh"])
    tracker = ObjectTracker(hand, obj, settings, render_settings=load_render_settings(),
                            physics_settings=load_physics_settings())
    start = perturbed_pose(truth[0], seed=seed)
    tracker.initialize(start)
    pred = torch.stack([tracker.track(frame).object2camera.double() for frame in frames])
    return start, pred, truth, obj.samples.double()


@pytest.mark.parametrize("name", sorted(REPORTED))
def test_filter_on_a_dev_excerpt_stays_within_twice_the_reported_figures(shared_dir, name):
    start, pred, truth, pts = _track_excerpt(shared_dir, name, seed=0)
    initial = float(add_s(pts, start[None], truth[:1])[0])
    err = 100 * float(add_s(pts, pred, truth).median())
    rot = math.degrees(float(rotation_error(pred, truth).median()))
    reported_add_s, reported_rot = REPORTED[name]
    assert initial > 0.005  # the start really is off
    assert err <= 2 * reported_add_s, (name, err)
    assert rot <= 2 * reported_rot, (name, rot)


#: Starts of the 10-start run that settled in a wrong pose whose depth fit is good (session 4: the box slid
#: 1.6 cm along its face, the mug turned 110 deg); the region observation while settling brings them to the
#: object (docs/benchmarks-history.md, "Wrong-basin starts"). Measured median ADD on the excerpt [cm].
WRONG_BASIN = {("block_lift_wrist", 8): 0.009, ("mug_pivot_fixed", 5): 0.009}


@pytest.mark.parametrize("name,seed", sorted(WRONG_BASIN))
def test_starts_that_settled_in_a_wrong_pose_reach_the_object(shared_dir, name, seed):
    _start, pred, truth, pts = _track_excerpt(shared_dir, name, seed)
    err = 100 * float(add(pts, pred, truth).median())
    rot = math.degrees(float(rotation_error(pred, truth).median()))
    assert err <= 2 * WRONG_BASIN[(name, seed)], (name, seed, err)  # was 1.6 cm (box) / 5.6 cm (mug)
    assert rot <= 0.5, (name, seed, rot)  # was 0.4 deg (box, slid) / 110 deg (mug)
