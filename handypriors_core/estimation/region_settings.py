"""Settings of the sparse region modality (``tracking.region`` in ``config/allegro_tracking.yaml``).

The modality (:mod:`.region`) observes the object's contour in the colour image through correspondence lines and
colour histograms; it is what observes the pose on frames without depth (``filter.colour_only``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import check_ranges, ranged, require

__all__ = ["RegionSettings"]


@dataclass
class RegionSettings:
    """Sparse region modality (:mod:`.region`): correspondence lines across the contour, colour histograms.

    Attributes:
        view_subdivisions: icosahedron subdivisions of the viewpoint model (3: 642 views).
        points_per_view: contour points per view.
        cache_dir: where viewpoint models are cached (``~`` expanded; empty: no cache).
        function_length: segments of the smoothed step function's support around a candidate contour position.
        distribution_length: candidate contour positions per line (a line has ``function_length +
            distribution_length - 1`` segments of ``scale`` pixels: its capture range grows with the scale).
        scales: per Gauss-Newton iteration, the segment size [px] (coarse to fine; the last one repeats).
        levels_with_depth: on frames with depth (the region joins the depth while settling), the levels (indices
            into ``scales``) the iterations run through, coarse to fine; the last one repeats (empty: every level;
            the shipped configuration: the two finest). Frames without depth and a new track's first frame run
            through every level.
        hold_with_depth: on frames with depth (not a new track's first), the iterations after one search per level
            of ``levels_with_depth`` hold the last search's correspondences, weights and correlation (only residuals
            and Jacobians are evaluated at the iterate: the depth carries the fine alignment) until a contour point
            has moved more than ``hold_shift`` [px] along its line since the search; off: a search per iteration.
        hold_shift: see ``hold_with_depth``.
        standard_deviations: per iteration, the smallest residual noise [px] a line is trusted with (its weight is
            ``min(1, std^2 / var)`` with ``var`` the variance of its contour posterior).
        step_amplitude, step_slope: the smoothed step ``0.5 - a tanh(x / 2 b)`` (x in segments).
        min_contrast: lines whose foreground posterior spans less than this are dropped.
        min_lines: fewer lines than this and the modality says nothing.
        histogram_bits: bits per colour channel of the histograms.
        learning_rate: histogram update rate per frame.
        learn_length: [px] the histograms learn from pixels up to this far inside / outside the contour ...
        learn_margin: [px] ... and at least this far from it.
        hand_margin: [m] lines with a hand pixel in front of (or this close behind) the contour point are dropped.
        noise_model: on which frames the block is weighed with its lines' own noise: their correlation along the
            contour (lines per independent one, at most ``max_correlation``, divide the weights) and, in the
            covariance (``filter.noise_estimation``), their scatter where it exceeds the level's standard deviation:
            ``with_depth`` (the settling frames: the region joins the depth), ``always`` or ``off`` (every line
            independent).
        max_correlation: largest number of lines counted as one independent line.
        weak_gain: on frames without depth (after a track's first), the finest level's lines observe only the pose
            directions along which they add at least this many times the prior's information (generalised
            eigenvectors of their information against the prior covariance); along the others the prior (motion
            model, contacts) carries the pose. A face-on, half-hidden contour barely sees some rotations, and there
            its small model-to-image mismatch pulled the pose a little every frame (0 = every direction observed).
        texture_where_weak: on a frame without depth after one whose lines left directions to the prior (``weak_gain``),
            the texture observation joins (where ``filter.colour_only.observations`` lists it, whatever
            ``texture.without_depth`` says): the object's own texture sees the rotations its face-on outline does not.
    """

    view_subdivisions: int = ranged(3, 0, 5)
    points_per_view: int = ranged(200, 8, 10_000)
    cache_dir: str = "~/.cache/handypriors"
    function_length: int = ranged(8, 2, 100)
    distribution_length: int = ranged(12, 2, 100)
    scales: list[float] = field(default_factory=lambda: [6.0, 4.0, 2.0, 1.0])
    standard_deviations: list[float] = field(default_factory=lambda: [15.0, 5.0, 3.5, 1.5])
    levels_with_depth: list[int] = field(default_factory=list)
    hold_with_depth: bool = True
    hold_shift: float = ranged(3.0, 0.0, 100.0)
    step_amplitude: float = ranged(0.43, 0.0, 0.5, low_open=True, high_open=True)
    step_slope: float = ranged(0.5, 0.0, 100.0, low_open=True)
    min_contrast: float = ranged(0.3, 0.0, 1.0)
    min_lines: int = ranged(10, 1, 10_000)
    histogram_bits: int = ranged(4, 1, 8)
    learning_rate: float = ranged(0.2, 0.0, 1.0)
    learn_length: float = ranged(12.0, 1.0, 200.0)
    learn_margin: float = ranged(2.0, 0.0, 100.0)
    hand_margin: float = ranged(0.005, 0.0, 0.1)
    noise_model: str = "always"
    max_correlation: float = ranged(20.0, 1.0, 1000.0)
    weak_gain: float = ranged(0.3, 0.0, 1e6)
    texture_where_weak: bool = True

    def __post_init__(self) -> None:
        check_ranges(self, "region")
        for name in ("scales", "standard_deviations"):
            values = getattr(self, name)
            require(len(values) >= 1 and all(math.isfinite(v) and v > 0 for v in values),
                    f"region.{name} must be a non-empty list of values > 0 px; got {values}")
        require(self.noise_model in ("with_depth", "always", "off"),
                f"region.noise_model must be 'with_depth', 'always' or 'off'; got {self.noise_model!r}")
        levels = self.levels_with_depth
        require(all(isinstance(v, int) and 0 <= v < len(self.scales) for v in levels),
                f"region.levels_with_depth must be a list of indices into scales (0 .. "
                f"{len(self.scales) - 1}); got {levels}")
