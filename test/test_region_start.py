"""Where a new colour-only track's contour starts (:mod:`handypriors_core.estimation.region_start`).

A thin object before a cluttered, colourful background, its contour drawn 2 cm (about its half width) off: the
image-plane search finds the object's colours, a uniform black "finger" beside it (the known hand) takes no part,
and the shift moves the pose's projection by exactly the shift. Then end to end: a generated cylinder (about
25 px wide at 320 x 240) tracked colour only from a start 2 cm off gets within a centimetre of it with the search
and is lost without.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from handypriors_core.estimation.region_start import (
    contour_shift_search,
    inscribed_radius,
    shifted_pose,
    start_for_learning,
)
from handypriors_core.estimation.settings import TrackerSettings
from handypriors_core.estimation.tracker import ObjectTracker
from handypriors_core.metrics.pose_errors import add_s
from handypriors_core.models import URDFHand, allegro_urdf
from handypriors_core.synthetic import SyntheticSequence, load_scenario

_F64 = torch.float64
H, W = 160, 200
BAR = (90, 114, 30, 130)  # object: columns [90, 114), rows [30, 130): 24 px wide
FINGER = (118, 142, 20, 140)  # uniform black hand beside it


def _rectangle_contour(u0: float, u1: float, v0: float, v1: float, step: float = 2.0):
    """Contour points ``(L, 2)`` and outward normals of the rectangle ``[u0, u1] x [v0, v1]`` [px]."""
    pts, nrm = [], []
    for v in torch.arange(v0, v1, step, dtype=_F64):
        pts += [(u0, float(v)), (u1, float(v))]
        nrm += [(-1.0, 0.0), (1.0, 0.0)]
    for u in torch.arange(u0 + step, u1, step, dtype=_F64):
        pts += [(float(u), v0), (float(u), v1)]
        nrm += [(0.0, -1.0), (0.0, 1.0)]
    return torch.tensor(pts, dtype=_F64), torch.tensor(nrm, dtype=_F64)


def _scene_image(seed: int = 0) -> torch.Tensor:
    """``(H, W, 3)`` uint8: random coloured 40 px blocks with noise (clutter), a thin multi-coloured bar, a black
    finger."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 256, (H // 40 + 1, W // 40 + 1, 3), generator=g, dtype=torch.uint8)
    img = blocks.repeat_interleave(40, 0).repeat_interleave(40, 1)[:H, :W].short()
    img = (img + torch.randint(-12, 13, img.shape, generator=g)).clamp(0, 255).to(torch.uint8)  # sensor noise
    u0, u1, v0, v1 = BAR
    stripes = torch.tensor([[250, 200, 20], [160, 40, 200], [240, 120, 10]], dtype=torch.uint8)
    img[v0:v1, u0:u1] = stripes[(torch.arange(v0, v1) // 12) % 3][:, None]
    f0, f1, w0, w1 = FINGER
    img[w0:w1, f0:f1] = 15
    return img


class _FingerOcclusion:
    """The known hand: a finger 0.30 m away over ``FINGER`` (in front of the 0.45 m object)."""

    def depth_at_pixels(self, uv: torch.Tensor) -> torch.Tensor:
        f0, f1, w0, w1 = FINGER
        px = uv.round()
        on = (px[:, 0] >= f0) & (px[:, 0] < f1) & (px[:, 1] >= w0) & (px[:, 1] < w1)
        return torch.where(on, torch.full_like(px[:, 0], 0.30), torch.full_like(px[:, 0], float("inf")))


def test_inscribed_radius_of_a_bar_and_a_disc():
    u0, u1, v0, v1 = BAR
    c, n = _rectangle_contour(u0, u1 - 1, v0, v1 - 1)
    assert inscribed_radius(c, n) == pytest.approx(11.5, abs=1.5)
    angle = torch.linspace(0, 2 * torch.pi, 241, dtype=_F64)[:-1]
    normals = torch.stack((angle.cos(), angle.sin()), -1)
    assert inscribed_radius(100 + 30 * normals, normals) == pytest.approx(30.0, abs=1.5)


@pytest.mark.parametrize("offset", [(16.0, -6.0), (-12.0, 9.0)])
def test_search_finds_a_thin_object_drawn_half_its_width_off(offset):
    u0, u1, v0, v1 = BAR
    c, n = _rectangle_contour(u0 - 0.5, u1 - 0.5, v0 - 0.5, v1 - 0.5)
    start = c + torch.tensor(offset, dtype=_F64)
    obs = SimpleNamespace(frame=SimpleNamespace(rgb=_scene_image()))
    depths = torch.full((c.shape[0],), 0.45, dtype=_F64)
    found = contour_shift_search(start, n, depths, obs, _FingerOcclusion(), reach=30.0)
    assert torch.allclose(found.shift, -torch.tensor(offset, dtype=_F64), atol=2.0), found.shift
    assert found.score > found.score_at_start


def test_shifted_pose_moves_the_projection_by_the_shift():
    pose = torch.eye(4, dtype=_F64)
    pose[:3, 3] = torch.tensor([0.03, -0.02, 0.45], dtype=_F64)
    out = shifted_pose(pose, torch.tensor([12.0, -5.0], dtype=_F64), 615.0, 610.0)

    def project(p):
        return torch.stack((615.0 * p[0, 3] / p[2, 3], 610.0 * p[1, 3] / p[2, 3]))

    assert torch.allclose(project(out) - project(pose), torch.tensor([12.0, -5.0], dtype=_F64), atol=1e-9)
    assert torch.equal(out[:3, :3], pose[:3, :3]) and float(out[2, 3]) == 0.45


# ------------------------------------------------------------------------------------------------ end to end
FRAMES = 4  # each generated frame costs seconds (the grasp search)


@pytest.fixture(scope="module")
def cylinder_frames():
    seq = SyntheticSequence(load_scenario(overrides={"frames": FRAMES, "seed": 0, "object": {"kind": "cylinder"},
                                                     "camera": {"width": 320, "height": 240}}))
    frames = [dataclasses.replace(seq.frame(i), depth=None) for i in range(FRAMES)]
    return seq, frames, seq.ground_truth(visible_fraction=False).object2camera.double()


def _track(seq, frames, truth, start_search: bool, cache_dir: str):
    settings = TrackerSettings(mode="filter")
    settings.roi.size = 64
    settings.region.cache_dir = cache_dir
    settings.region.view_subdivisions = 1  # 42 views: a viewpoint model built in seconds
    settings.filter.colour_only.start_search = start_search
    tracker = ObjectTracker(URDFHand.from_urdf(allegro_urdf()), seq.object_model(), settings)
    start = truth[0].clone()
    start[:3, 3] += torch.tensor([0.018, 0.007, 0.002], dtype=_F64)  # 2 cm: 12 px right, about the half width
    tracker.initialize(start)
    poses = [tracker.track(frame).object2camera.double() for frame in frames]
    return add_s(seq.object_model().samples.double(), torch.stack(poses), truth), start


def test_thin_object_colour_only_reaches_the_object_with_the_start_search(cylinder_frames, tmp_path):
    seq, frames, truth = cylinder_frames
    err, start = _track(seq, frames, truth, True, str(tmp_path))
    start_err = float(add_s(seq.object_model().samples.double(), start[None], truth[:1])[0])
    assert start_err > 0.01, start_err
    assert float(err.median()) < 0.01, err  # measured 0.6 cm (0.6 cm at the last frame), 1.0 cm at the start
    without, _ = _track(seq, frames, truth, False, str(tmp_path))  # learnt at the start: lost (measured 6-8 cm)
    assert float(without.median()) > 0.03, without


def test_start_for_learning_keeps_a_wide_object_where_it_is():
    """A silhouette whose inscribed radius leaves pixels surely inside is learnt at the start, as before."""
    u0, u1, v0, v1 = 40, 160, 20, 140  # 120 px wide
    c, n = _rectangle_contour(u0, u1, v0, v1)
    lines = SimpleNamespace(centres=c, normals=n, depth=torch.full((c.shape[0],), 0.45, dtype=_F64))
    region = SimpleNamespace(settings=TrackerSettings().region, lines=lambda *a: lines, _radius_px=lambda *a: 80.0)
    pose = torch.eye(4, dtype=_F64)
    start, margin = start_for_learning(region, None, pose, None, 27.0)
    assert start is pose and margin == 27.0
