"""Settings of the sparse photometric ("texture") modality (``tracking.texture`` in ``config/allegro_tracking.yaml``).

The modality (:mod:`.texture`) compares the image intensity at object surface points with the intensity stored for
them at a keyframe: it observes motions that neither depth nor the outline see (a textured cylinder or bottle
turning about its own axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..config import check_ranges, ranged, require

__all__ = ["TextureSettings"]


@dataclass
class TextureSettings:
    """Sparse photometric modality (:mod:`.texture`): keyframe intensities at object surface points.

    Attributes:
        candidates: object surface points sampled once (area-weighted, deterministic) from which a keyframe picks.
        max_points: most points a keyframe keeps (those with the strongest image gradient).
        min_points: fewer usable points than this (at a keyframe or in a frame) and the modality says nothing.
        min_gradient: a keyframe point needs at least this image gradient [intensity / px] (intensity in [0, 1],
            after the blur).
        min_facing: a point is used while the cosine between its normal and the direction to the camera is at
            least this (grazing points mix in the background).
        min_facing_without_depth: ``min_facing`` on frames without depth, where the block also observes distance
            and tilt (no depth holds them): the generated bottle's colour-only rotation was about 1 deg smaller with
            0.5-0.75 than with 0.3 (docs/benchmarks.md, session 8).
        blur_radii: per Gauss-Newton iteration (coarse to fine; the last repeats), the radius [px] of the box
            filter (mean over ``2 r + 1`` squared pixels) on the luminance before sampling: the convergence basin
            (0 = none).
        search_margin: [px] the image is read this far around the keyframe's points projected at the prediction.
        robust: robust function of the intensity residuals.
        robust_scales: per Gauss-Newton iteration, the robust function's scale [intensity] (the last repeats).
        standard_deviations: per iteration, the per-point intensity noise [intensity] the update weighs with.
        noise_floor: smallest per-point noise [intensity] the per-frame noise estimate may give
            (``filter.noise_estimation``).
        correlation: residuals per independent one (>= 1): points on one texture edge share its error (blur,
            shading the photometric model misses, the rendered texture's registration).
        hand_margin: [m] points the rendered hand covers (or lies this close behind) are dropped.
        min_overlap: a new keyframe is taken (on a trusted frame) when fewer than this fraction of the keyframe's
            points remain usable ...
        max_rotation: [rad] ... or the object has turned by more than this relative to the camera since it ...
        min_inliers: ... or fewer than this fraction of the points agree with it (robust weight above one half).
        reference: what a keyframe stores: ``model`` (the object's texture rendered at the keyframe's pose, an
            absolute reference; the camera image for a mesh without texture) or ``image`` (the camera image of a
            trusted frame: holds the pose where it was taken, drift-free only relative to it).
        with_depth: when the block joins frames with depth: ``unseen_shapes`` (only for a shape with motions the
            depth cannot see, a surface of revolution: the textured cylinder's or bottle's turn about its axis; the
            block then has its full Jacobian, since one limited to those motions makes the Gauss-Newton iterations
            cycle: the intensities also move with the others), ``always`` or ``never``.
        without_depth: likewise on frames without depth (``filter.colour_only.observations`` must name the block):
            ``unseen_shapes`` (the cylinder's and the bottle's turn about their axis, which the outline does not see
            either), ``always`` or ``never``.
    """

    candidates: int = ranged(3000, 10, 1_000_000)
    max_points: int = ranged(200, 3, 100_000)
    min_points: int = ranged(20, 3, 100_000)
    min_gradient: float = ranged(0.01, 0.0, 10.0)
    min_facing: float = ranged(0.3, 0.0, 1.0)
    min_facing_without_depth: float = ranged(0.6, 0.0, 1.0)
    blur_radii: list[int] = field(default_factory=lambda: [6, 3, 1])
    search_margin: int = ranged(12, 0, 200)
    robust: Literal["huber", "tukey", "cauchy", "geman_mcclure", "none"] = "huber"
    robust_scales: list[float] = field(default_factory=lambda: [0.05])
    standard_deviations: list[float] = field(default_factory=lambda: [0.05])
    noise_floor: float = ranged(0.01, 0.0, 1.0)
    correlation: float = ranged(20.0, 1.0, 1e6)
    hand_margin: float = ranged(0.005, 0.0, 0.1)
    min_overlap: float = ranged(0.6, 0.0, 1.0)
    max_rotation: float = ranged(0.35, 0.0, math.pi, low_open=True)
    min_inliers: float = ranged(0.5, 0.0, 1.0)
    reference: Literal["model", "image"] = "model"
    with_depth: Literal["unseen_shapes", "always", "never"] = "unseen_shapes"
    without_depth: Literal["unseen_shapes", "always", "never"] = "unseen_shapes"

    def __post_init__(self) -> None:
        check_ranges(self, "texture")
        require(len(self.blur_radii) >= 1 and all(isinstance(r, int) and 0 <= r <= 50 for r in self.blur_radii),
                f"texture.blur_radii must be a non-empty list of integers in [0, 50] px; got {self.blur_radii}")
        for name in ("robust_scales", "standard_deviations"):
            values = getattr(self, name)
            require(len(values) >= 1 and all(math.isfinite(v) and v > 0 for v in values),
                    f"texture.{name} must be a non-empty list of values > 0; got {values}")
        require(self.robust in ("huber", "tukey", "cauchy", "geman_mcclure", "none"),
                f"texture.robust must be huber, tukey, cauchy, geman_mcclure or none; got {self.robust!r}")
        require(self.reference in ("model", "image"),
                f"texture.reference must be 'model' or 'image'; got {self.reference!r}")
        for name in ("with_depth", "without_depth"):
            require(getattr(self, name) in ("unseen_shapes", "always", "never"),
                    f"texture.{name} must be 'unseen_shapes', 'always' or 'never'; got {getattr(self, name)!r}")
