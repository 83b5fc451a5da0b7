"""Settings of the estimators (refiner, filter, tracker), one dataclass per component.

They are built from the ``tracking`` section of ``config/allegro_tracking.yaml`` (the file the ROS node and the
CLI both read) with :func:`load_tracking_settings`; every field has a documented default, and every numeric field
its valid range in the field metadata (:func:`~handypriors_core.config.ranged`; the ROS parameter descriptors are
derived from it). Imports only ``config``, ``errors`` and ``priors.losses`` (settings sit below every estimator).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Literal

from .. import defaults
from ..config import check_ranges, find_config, load_settings, load_yaml, ranged, require, settings_from_dict
from ..errors import ConfigError
from ..priors.losses import LossWeights
from .calibration_settings import CalibrationSettings
from .region_settings import RegionSettings
from .texture_settings import TextureSettings

__all__ = [
    "ColourOnlySettings",
    "DepthSettings",
    "FilterSettings",
    "InitializationSettings",
    "ROISettings",
    "RecoverySettings",
    "RefineSettings",
    "RegionSettings",
    "SparseDepthSettings",
    "TextureSettings",
    "TrackerSettings",
    "load_initialization_settings",
    "load_tracking_settings",
]

#: Observation models of the filter (paper Table I plus depth): see :mod:`.filter`.
FilterObservation = Literal["centre", "fingertips", "silhouette", "depth", "sparse_depth", "contacts", "region",
                            "texture"]
#: Observations that enter the iterated (Gauss-Newton) update as ``(r, J, w)`` modalities.
ITERATED_OBSERVATIONS = ("sparse_depth", "contacts", "region", "texture")
#: Observations that read the depth image (frames without depth replace them: ``filter.colour_only``).
DEPTH_OBSERVATIONS = ("depth", "sparse_depth")
#: Robust functions of the sparse modalities (:func:`.residuals.robust_weights`).
RobustFunction = Literal["huber", "tukey", "cauchy", "geman_mcclure", "none"]
#: Loss terms of the refiner (paper Eq. 1-5 plus depth): see :mod:`.modalities`.
RefineTerm = Literal["img", "mask", "depth", "sliding", "penetration", "con", "smo"]


@dataclass
class ROISettings:
    """Region of interest around the predicted object, rendered at a fixed resolution.

    Attributes:
        size: edge [px] of the square crop the dense modalities work on (the image is resampled to it).
        margin: fraction of the projected object's bounding-box size added on each side.
        min_box: smallest crop edge in original image pixels.
    """

    size: int = ranged(96, 16, 1024)
    margin: float = ranged(0.3, 0.0, 3.0)
    min_box: float = ranged(32.0, 4.0, 4096.0)

    def __post_init__(self) -> None:
        check_ranges(self, "roi")


@dataclass
class DepthSettings:
    """Depth association: which observed depth pixels are treated as object surface.

    Attributes:
        max_points: most back-projected depth points used per frame (evenly subsampled).
        association_distance: a depth point is associated with the object when it lies within this distance
            [m] of the predicted object surface and outside the rendered hand.
        robust_scale: scale ``c`` [m] of the Geman-McClure penalty ``r^2 / (r^2 + c^2)`` on depth residuals.
        hand_clearance: depth points within this distance [m] of the hand surface are never associated with
            the object (they are the fingers).
    """

    max_points: int = ranged(800, 10, 1_000_000)
    association_distance: float = ranged(0.015, 0.0, 1.0, low_open=True)
    robust_scale: float = ranged(0.004, 0.0, 1.0, low_open=True)
    hand_clearance: float = ranged(0.003, 0.0, 0.1)

    def __post_init__(self) -> None:
        check_ranges(self, "depth")


@dataclass
class SparseDepthSettings:
    """Sparse point-to-plane depth modality (:mod:`.sparse_depth`), coarse to fine over Gauss-Newton iterations.

    Attributes:
        max_points: most visible model surface points used per frame (evenly chosen).
        min_points: fewer associated points than this and the modality says nothing.
        considered_distances: per iteration [m], targets farther than this from their point's plane are not
            associated (the last value repeats for later iterations).
        robust_scales: per iteration [m], scale of the robust function.
        standard_deviations: per iteration [m], per-point noise (inflated for correlated points and model error).
        robust: robust function of the residuals.
        self_occlusion: a point is visible when within this distance [m] of the nearest model point in its
            z-buffer cell.
        zbuffer_cell: smallest z-buffer cell size [px of the full image].
        zbuffer_spacings: z-buffer cell size in mean spacings of the surface samples (projected at the
            object's distance), so that each cell holds a sample of the nearest surface.
        hand_margin: points (and depth targets) with the rendered hand in front of them or within this distance
            [m] behind them are dropped.
        noise_floor: smallest per-point noise [m] the per-frame noise estimate may give (with
            ``filter.noise_estimation``; 0 = the configured ``standard_deviations`` only).
        correlation: residuals per independent one (>= 1): the estimated noise variance is multiplied by it.
        symmetry_ratio: object motions whose point-to-plane information over the whole surface is below this
            fraction of the largest (rotation about the axis of a surface of revolution) get none from depth.
    """

    max_points: int = ranged(300, 3, 100_000)
    min_points: int = ranged(10, 3, 100_000)
    considered_distances: list[float] = field(default_factory=lambda: [0.03, 0.015, 0.008])
    robust_scales: list[float] = field(default_factory=lambda: [0.03, 0.015, 0.008])
    standard_deviations: list[float] = field(default_factory=lambda: [0.02, 0.01, 0.005])
    robust: RobustFunction = "tukey"
    self_occlusion: float = ranged(0.01, 0.0, 1.0, low_open=True)
    zbuffer_cell: float = ranged(4.0, 0.0, 1000.0, low_open=True)
    zbuffer_spacings: float = ranged(2.5, 0.0, 100.0, low_open=True)
    hand_margin: float = ranged(0.005, 0.0, 0.1, low_open=True)
    noise_floor: float = ranged(1e-4, 0.0, 1.0)
    correlation: float = ranged(1.0, 1.0, 1e6)
    symmetry_ratio: float = ranged(0.01, 0.0, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self, "sparse_depth")
        for name in ("considered_distances", "robust_scales", "standard_deviations"):
            values = getattr(self, name)
            require(len(values) >= 1 and all(math.isfinite(v) and v > 0 for v in values),
                    f"sparse_depth.{name} must be a non-empty list of values > 0 m; got {values}")
        require(self.robust in RobustFunction.__args__, f"sparse_depth.robust must be one of "
                f"{RobustFunction.__args__}; got {self.robust!r}")


@dataclass
class RefineSettings:
    """Adam refinement of the object pose (paper Sec. III-D).

    Attributes:
        terms: loss terms used (``img`` Eq. 1, ``mask`` Eq. 2, ``depth``, ``sliding``, ``penetration`` Eq. 3,
            ``con`` Eq. 4, ``smo`` Eq. 5); their weights are in :class:`TrackerSettings.weights`.
        iterations: Adam steps per frame (online) or per window pass (offline).
        time_budget: wall-clock budget per frame [s] (online); 0 = no budget.
        converged_iterations: Adam steps (online) when the filter's iterated update converged this frame: its pose
            is then the optimum of the shared residuals, which the blurred dense terms only pull away from
            (``block_lift_wrist``: 0.006 -> 0.19 cm over 20 frames of 30 steps).
        lr_translation: Adam step size of the translation [m].
        lr_rotation: Adam step size of the rotation [rad].
        lr_final_fraction: the step sizes decay geometrically to this fraction of their start over the
            iterations (fine steps at the end).
        sigma_start, sigma_end: silhouette sharpness [px^2 at ROI resolution], scheduled geometrically from
            coarse to fine over the iterations.
        coarse_fraction: the first fraction of the iterations renders at half the ROI resolution (coarse to fine;
            0 = always full resolution).
        gamma: depth/colour blend temperature of the soft renderer.
        convergence_tolerance: stop when the relative loss change stays below this for 3 steps.
        optimize_hand2camera: also optimise a small correction of hand2camera (calibration error).
        lr_hand2camera: Adam step size of that correction (translation [m] and rotation [rad]).
        hand2camera_prior: weight of ``|correction|^2`` keeping the calibration correction small [1/m^2].
        window: frames optimised jointly by the offline refiner (temporal terms act both ways).
    """

    terms: list[RefineTerm] = field(default_factory=lambda: ["mask", "depth", "penetration", "sliding", "con", "smo"])
    iterations: int = ranged(30, 0, 100_000)
    time_budget: float = ranged(0.2, 0.0, 60.0)
    converged_iterations: int = ranged(0, 0, 100_000)
    lr_translation: float = ranged(0.002, 0.0, 1.0, low_open=True)
    lr_rotation: float = ranged(0.02, 0.0, math.pi, low_open=True)
    lr_final_fraction: float = ranged(0.1, 0.0, 1.0, low_open=True)
    sigma_start: float = ranged(4.0, 0.0, 1000.0, low_open=True)
    sigma_end: float = ranged(0.5, 0.0, 1000.0, low_open=True)
    coarse_fraction: float = ranged(0.5, 0.0, 1.0)
    gamma: float = ranged(1e-4, 0.0, 10.0, low_open=True)
    convergence_tolerance: float = ranged(1e-4, 0.0, 1.0)
    optimize_hand2camera: bool = False
    lr_hand2camera: float = ranged(0.001, 0.0, 1.0, low_open=True)
    hand2camera_prior: float = ranged(1e4, 0.0, 1e9)
    window: int = ranged(8, 1, 10_000)

    def __post_init__(self) -> None:
        known = set(RefineTerm.__args__)
        require(set(self.terms) <= known, f"refine.terms must be a subset of {sorted(known)}; got {self.terms}")
        check_ranges(self, "refine")


@dataclass
class ColourOnlySettings:
    """The filter's settings that change on a frame without depth (colour only: the region modality observes the
    pose, with the hand's contacts; a fixed number of iterations and a tighter motion prior, as ICG regularises
    its updates).

    Attributes:
        observations: observation models used on frames without depth, in update order.
        iterations: Gauss-Newton iterations of the iterated update (one per region scale, then the finest).
        max_iterations: at most this many iterations.
        keep_prior_unconverged: as :class:`FilterSettings`.
        process_std_translation, process_std_rotation: per-frame process noise with hand contact [m], [rad].
        free_std_translation, free_std_rotation: per-frame process noise without contact [m], [rad].
        start_search: as :class:`FilterSettings` (on: a thin object gets no colours surely its own from a start
            centimetres off).
        carried_fingertip_std: as :class:`FilterSettings`: tight without depth, where the outline barely sees the
            distance along the view ray and the fingers that carry the object fix it (the bottle drifted 2-3 cm).
        settle_factor: as :class:`FilterSettings` (off: raising a colour-only track's covariance back towards the
            start's let the contour pull the pose along the directions it barely sees, ``region.weak_gain``).
    """

    observations: list[FilterObservation] = field(default_factory=lambda: ["region", "contacts", "texture"])
    iterations: int = ranged(5, 1, 10)
    max_iterations: int = ranged(5, 1, 50)
    keep_prior_unconverged: bool = False
    process_std_translation: float = ranged(0.003, 0.0, 1.0, low_open=True)
    process_std_rotation: float = ranged(0.01, 0.0, math.pi, low_open=True)
    free_std_translation: float = ranged(0.005, 0.0, 1.0, low_open=True)
    free_std_rotation: float = ranged(0.03, 0.0, math.pi, low_open=True)
    start_search: bool = True
    carried_fingertip_std: float = ranged(0.002, 0.0, 1.0, low_open=True)
    settle_factor: float = ranged(0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        known = set(FilterObservation.__args__)
        require(set(self.observations) <= known,
                f"filter.colour_only.observations must be a subset of {sorted(known)}; got {self.observations}")
        check_ranges(self, "filter.colour_only")


@dataclass
class FilterSettings:
    """Extended Kalman filter tracking (paper Sec. III-E, Table I).

    Attributes:
        observations: observation models used, in update order (see :mod:`.filter`).
        motion_model: ``"quasistatic"`` (Eq. 9: the hand's contacts carry the object) or ``"constant_pose"``
            (no physics prior in the prediction; for ablations and free objects).
        initial_std_translation, initial_std_rotation: prior standard deviation of the first pose [m], [rad].
        process_std_translation, process_std_rotation: per-frame process noise with hand contact [m], [rad].
        free_std_translation, free_std_rotation: per-frame process noise without contact [m], [rad].
        contact_distance: hand points closer than this to the estimated object surface [m] drive the
            quasistatic motion model (looser than the physics contact threshold: the estimate is approximate).
        rigid_contact_tolerance, rigid_contact_ratio: the contacts carry the object (the motion model uses their
            rigid motion) when the RMS misfit of that motion is at most ``rigid_contact_tolerance [m] +
            rigid_contact_ratio * RMS contact displacement``; otherwise they are sliding, closing or rolling the
            object against a fixed palm, and the prediction falls back to a constant pose.
        centre_std_px: standard deviation of the 2D visible-centroid observation [px, full image].
        centre_std_depth: standard deviation of the mean visible depth observation [m].
        fingertip_std: standard deviation of the fingertip-on-surface observation [m].
        silhouette_std: per-pixel standard deviation of the dense silhouette observation (inflated to account
            for correlated pixels).
        depth_std: per-point standard deviation of the dense depth observation [m] (inflated likewise).
        gate_probability: chi-square gate of every update (``1`` disables gating).
        iterations: Gauss-Newton iterations of the iterated update of the ``(r, J, w)`` observations
            (``sparse_depth``, ``contacts``; :mod:`.iterated_update`), coarse to fine.
        contact_std: standard deviation of the contact pseudo-observations [m] (contacts of t-1 stay on the
            surface; hand points stay outside).
        carried_fingertip_std: standard deviation [m] of the fingertip contact residuals (``contacts``) on a frame
            whose prediction the contacts carried (their rigid motion accepted by the quasistatic model: fingers
            holding the object, not sliding or pivoting it); ``contact_std`` on the others.
        penetration: also observe one-sided non-penetration of the hand's surface points (``contacts``).
        noise_estimation: the ``(r, J, w)`` blocks that have a noise floor (``sparse_depth``) are weighed with the
            noise their own residuals show in this frame, and the covariance uses it (:mod:`.iterated_update`).
        max_iterations: the iterated update goes on past ``iterations`` (at the finest level) until it has
            converged, at most this many iterations.
        converged_translation, converged_rotation: the iterated update has converged when its step is below both
            [m], [rad].
        keep_prior_unconverged: an update that did not converge moves the pose but keeps the prior covariance.
        cycle_factor: an update whose iterates alternate between two poses (successive steps about opposite, each
            below ``cycle_factor`` times the converged steps) has converged at their midpoint (0 = off;
            :class:`~.iterated_update.CovarianceOptions`).
        settle_factor: after a (re)initialisation the k-th converged update keeps at least the initial
            variances times ``settle_factor^k`` (the first fits may sit in a wrong basin; 0 = off).
        settle_observations, settle_frames: observations added to the others during the first ``settle_frames``
            frames after a (re)initialisation: a start 2 cm / 10 deg off can settle where the depth fits well but
            the pose is wrong (a box slid 1 cm along its face), which the region's contour sees (0 = off).
        start_search: a new track's region histograms are learnt where an image-plane search finds the object's
            colours (:mod:`.region_start`) when the silhouette is too thin for pixels surely inside it at the start's
            uncertainty (off with depth: the depth observes the start).
        colour_only: what replaces these settings on frames without depth where the observations read depth
            (:class:`ColourOnlySettings`; :meth:`for_frame`).
    """

    observations: list[FilterObservation] = field(default_factory=lambda: ["sparse_depth", "texture"])
    motion_model: Literal["quasistatic", "constant_pose"] = "quasistatic"
    initial_std_translation: float = ranged(0.02, 0.0, 1.0, low_open=True)
    initial_std_rotation: float = ranged(0.2, 0.0, math.pi, low_open=True)
    process_std_translation: float = ranged(0.003, 0.0, 1.0, low_open=True)
    process_std_rotation: float = ranged(0.03, 0.0, math.pi, low_open=True)
    free_std_translation: float = ranged(0.01, 0.0, 1.0, low_open=True)
    free_std_rotation: float = ranged(0.1, 0.0, math.pi, low_open=True)
    contact_distance: float = ranged(0.006, 0.0, 0.1, low_open=True)
    rigid_contact_tolerance: float = ranged(0.0001, 0.0, 0.1, low_open=True)
    rigid_contact_ratio: float = ranged(0.2, 0.0, 1.0, high_open=True)
    centre_std_px: float = ranged(3.0, 0.0, 1000.0, low_open=True)
    centre_std_depth: float = ranged(0.01, 0.0, 1.0, low_open=True)
    fingertip_std: float = ranged(0.004, 0.0, 1.0, low_open=True)
    silhouette_std: float = ranged(1.5, 0.0, 100.0, low_open=True)
    depth_std: float = ranged(0.02, 0.0, 1.0, low_open=True)
    gate_probability: float = ranged(0.9999, 0.0, 1.0, low_open=True)
    iterations: int = ranged(3, 1, 10)
    contact_std: float = ranged(0.015, 0.0, 1.0, low_open=True)
    carried_fingertip_std: float = ranged(0.015, 0.0, 1.0, low_open=True)
    penetration: bool = True
    noise_estimation: bool = True
    max_iterations: int = ranged(10, 1, 50)
    converged_translation: float = ranged(2e-4, 0.0, 1.0)
    converged_rotation: float = ranged(2e-3, 0.0, math.pi)
    keep_prior_unconverged: bool = True
    cycle_factor: float = ranged(4.0, 0.0, 1000.0)
    settle_factor: float = ranged(0.03, 0.0, 1.0)
    settle_observations: list[FilterObservation] = field(default_factory=lambda: ["region"])
    settle_frames: int = ranged(10, 0, 10_000)
    start_search: bool = False
    colour_only: ColourOnlySettings = field(default_factory=ColourOnlySettings)

    def for_frame(self, has_depth: bool) -> FilterSettings:
        """These settings, or on a frame without depth these with :attr:`colour_only`'s fields replacing theirs.

        The replacement applies only where the configured observations need depth (``depth`` /
        ``sparse_depth``): an explicitly colour-only configuration (e.g. ``[silhouette]``) is kept as given."""
        if has_depth or not set(self.observations) & set(DEPTH_OBSERVATIONS):
            return self
        c = self.colour_only
        return dataclasses.replace(self, **{f.name: getattr(c, f.name) for f in dataclasses.fields(c)})

    def settling(self) -> FilterSettings:
        """These settings with :attr:`settle_observations` added to the observations."""
        extra = [o for o in self.settle_observations if o not in self.observations]
        return dataclasses.replace(self, observations=self.observations + extra) if extra else self

    def __post_init__(self) -> None:
        known = set(FilterObservation.__args__)
        require(set(self.observations) <= known,
                f"filter.observations must be a subset of {sorted(known)}; got {self.observations}")
        require(self.motion_model in ("quasistatic", "constant_pose"),
                f"filter.motion_model must be 'quasistatic' or 'constant_pose'; got {self.motion_model!r}")
        require(set(self.settle_observations) <= set(FilterObservation.__args__),
                f"filter.settle_observations must be a subset of {sorted(FilterObservation.__args__)}; "
                f"got {self.settle_observations}")
        check_ranges(self, "filter")


@dataclass
class RecoverySettings:
    """Loss-of-track detection and recovery (``recovery`` section of ``config/segmentation.yaml``; used by
    :class:`~.recovery.TrackingMonitor`).

    Attributes:
        lost_threshold: a frame whose quality score (in [0, 1]) falls below this counts as bad.
        relative_threshold: a frame whose quality falls below this fraction of the track's typical quality
            counts as bad (0 = not used).
        reference_rate: weight of each good frame in the running mean of the typical quality.
        lost_after: consecutive bad frames after which the track is ``lost``.
        recovered_after: consecutive good frames after which a lost track is ``tracking`` again.
        covariance_inflation: factor on the pose covariance when the track is lost.
        innovation_threshold: normalised innovation squared per degree of freedom above which a frame counts as
            bad (0 = not used).
        reinit_every: while lost, request a re-initialisation every this many frames.
        search_near_attempts: the first re-initialisations search around the last good pose, later ones globally.
        reinit_min_score: a re-initialised pose is accepted when its search score reaches this ...
        reinit_relative: ... and this fraction of the track's typical quality.
        learn_threshold: learning mask sources learn only from frames at least this good (and not while lost).
    """

    lost_threshold: float = ranged(0.3, 0.0, 1.0)
    relative_threshold: float = ranged(0.6, 0.0, 1.0, high_open=True)
    reference_rate: float = ranged(0.2, 0.0, 1.0, low_open=True)
    lost_after: int = ranged(3, 1, 10_000)
    recovered_after: int = ranged(2, 1, 10_000)
    covariance_inflation: float = ranged(25.0, 1.0, 1e6)
    innovation_threshold: float = ranged(0.0, 0.0, 1e6)
    reinit_every: int = ranged(1, 1, 10_000)
    search_near_attempts: int = ranged(2, 0, 10_000)
    reinit_min_score: float = ranged(0.5, 0.0, 1.0)
    reinit_relative: float = ranged(0.8, 0.0, 1.0)
    learn_threshold: float = ranged(0.6, 0.0, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self, "recovery")


@dataclass
class TrackerSettings:
    """Everything the tracker needs (``tracking`` section of ``config/allegro_tracking.yaml``).

    Attributes:
        mode: ``"filter"`` (EKF only, fast), ``"refine"`` (EKF then a time-budgeted Adam refinement per frame).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        roi, depth, sparse_depth, region, texture, refine, filter: component settings.
        recovery: loss-of-track detection and re-initialisation (:class:`RecoverySettings`).
        calibration: self-calibration of the hand-camera transform and joint offsets
            (:class:`~.calibration_settings.CalibrationSettings`).
        weights: loss weights lambda of the refiner (paper Eq. 6 and L_physics).
    """

    mode: Literal["filter", "refine"] = defaults.MODE  # type: ignore[assignment]
    device: str = "cpu"
    roi: ROISettings = field(default_factory=ROISettings)
    depth: DepthSettings = field(default_factory=DepthSettings)
    sparse_depth: SparseDepthSettings = field(default_factory=SparseDepthSettings)
    region: RegionSettings = field(default_factory=RegionSettings)
    texture: TextureSettings = field(default_factory=TextureSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)
    filter: FilterSettings = field(default_factory=FilterSettings)
    recovery: RecoverySettings = field(default_factory=RecoverySettings)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    weights: LossWeights = field(default_factory=lambda: LossWeights(
        lambda_img=0.0, lambda_mask=1.0, lambda_depth=1.0, lambda_sliding=20.0, lambda_penetration=200.0,
        lambda_con=10.0, lambda_smo=100.0))

    def __post_init__(self) -> None:
        require(self.mode in ("filter", "refine"), f"mode must be 'filter' or 'refine'; got {self.mode!r}")
        require(self.device == "cpu" or self.device.startswith("cuda"),
                f"device must be 'cpu', 'cuda' or 'cuda:N'; got {self.device!r}")


def load_tracking_settings(path: str | os.PathLike | None = None, section: str = "tracking") -> TrackerSettings:
    """Read :class:`TrackerSettings` from ``path`` (default: the shipped ``allegro_tracking.yaml``).

    The file may be a ROS 2 parameter file (``<node or /**>: ros__parameters: tracking: ...``) or a plain YAML
    file with a top-level ``tracking`` section.
    """
    path = path if path is not None else find_config("allegro_tracking.yaml")
    data = load_yaml(path)
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get("ros__parameters"), dict):
            data = value["ros__parameters"]
            break
    if section not in data:
        raise ConfigError(f"{path}: no {section!r} section (has: {sorted(data)})")
    try:
        return settings_from_dict(TrackerSettings, data[section] or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


@dataclass
class InitializationSettings:
    """Global pose search (``initialization`` section of ``config/segmentation.yaml``).

    Attributes:
        rotations: candidate rotations on SO(3) (about 3000 spaces them ~12 deg apart).
        coarse_mesh: geometry rendered for the candidates: ``"convex_hull"`` of the object mesh (few triangles,
            several times faster; exact for convex objects) or the ``"mesh"`` itself. The local search and the
            final scores always render the mesh.
        resolution: edge [px] of the square crop the candidates are scored in (their translation is corrected at
            half of it).
        fine_resolution: edge [px] of the crop of the local search and the final scores.
        margin: crop margin around the mask's bounding box, fraction of its larger side on each side.
        chunk: candidates rendered per batch (bounds memory).
        min_mask_pixels: fewer mask pixels (> 0.5) than this and the search does not run.
        depth_weight: weight of the depth agreement in the score (with depth): ``(1 - w) IoU + w agreement``.
        depth_tolerance: a visible pixel agrees when |rendered - observed depth| is below this [m].
        penetration_weight: score penalty per unit fraction of hand surface points inside the object.
        penetration_tolerance: a hand point counts as inside when deeper than this [m].
        penetration_candidates: best candidates (by silhouette) whose penetration is checked.
        penetration_points: at most this many hand surface points (those that any candidate could reach) are
            checked.
        top_k: candidates refined (distinct: at least ``distinct_rotation`` rad apart).
        distinct_rotation: smallest rotation difference [rad] between two refined candidates.
        local_rounds: rounds of the batched random local search around each of the ``top_k`` candidates (each
            renders ``local_samples`` perturbations per candidate at twice ``resolution``).
        local_samples: perturbations per candidate and round.
        local_translation, local_rotation: standard deviation of the first round's perturbations [m], [rad].
        local_shrink: factor on those standard deviations after each round.
        refine_iterations: Adam steps of the estimation refiner per candidate after the local search (0 = none:
            the tracker refines on its first frame anyway).
        refine_roi: ROI edge [px] of the refinement renders.
        near_rotation: with ``near=`` the candidate rotations lie within this angle [rad] of the given one.
        near_translation: with ``near=`` a candidate whose translation lies farther than this [m] from the given
            one is penalised (score - 1).
        seed: offset of the rotation spiral (deterministic).
    """

    rotations: int = 2500
    coarse_mesh: Literal["convex_hull", "mesh"] = "convex_hull"
    resolution: int = 32
    fine_resolution: int = 48
    margin: float = 0.25
    chunk: int = 1000
    min_mask_pixels: int = 30
    depth_weight: float = 0.3
    depth_tolerance: float = 0.015
    penetration_weight: float = 2.0
    penetration_tolerance: float = 0.002
    penetration_candidates: int = 200
    penetration_points: int = 384
    top_k: int = 3
    distinct_rotation: float = 0.3
    local_rounds: int = 5
    local_samples: int = 32
    local_translation: float = 0.006
    local_rotation: float = 0.12
    local_shrink: float = 0.7
    refine_iterations: int = 0
    refine_roi: int = 64
    near_rotation: float = 0.8
    near_translation: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.rotations >= 1, f"initialization.rotations must be >= 1; got {self.rotations}")
        require(self.coarse_mesh in ("convex_hull", "mesh"), "initialization.coarse_mesh must be convex_hull or mesh")
        require(16 <= self.resolution <= 256, "initialization.resolution must be in [16, 256] px")
        require(16 <= self.fine_resolution <= 512, "initialization.fine_resolution must be in [16, 512] px")
        require(self.penetration_points >= 1, "initialization.penetration_points must be >= 1")
        require(0 <= self.margin <= 2, "initialization.margin must be in [0, 2]")
        require(self.chunk >= 1, "initialization.chunk must be >= 1")
        require(self.min_mask_pixels >= 1, "initialization.min_mask_pixels must be >= 1")
        require(0 <= self.depth_weight <= 1, "initialization.depth_weight must be in [0, 1]")
        require(self.depth_tolerance > 0, "initialization.depth_tolerance must be > 0 m")
        require(self.penetration_weight >= 0 and self.penetration_tolerance >= 0,
                "initialization.penetration_weight and penetration_tolerance must be >= 0")
        require(self.penetration_candidates >= 1 and self.top_k >= 1, "initialization candidates must be >= 1")
        require(self.local_rounds >= 0 and self.local_samples >= 1, "initialization.local_rounds >= 0, samples >= 1")
        require(self.local_translation > 0 and self.local_rotation > 0 and 0 < self.local_shrink <= 1,
                "initialization.local_translation/rotation must be > 0 and local_shrink in (0, 1]")
        require(self.refine_iterations >= 0, "initialization.refine_iterations must be >= 0")
        require(16 <= self.refine_roi <= 512, "initialization.refine_roi must be in [16, 512] px")
        require(0 < self.near_rotation <= math.pi, "initialization.near_rotation must be in (0, pi] rad")
        require(self.near_translation > 0, "initialization.near_translation must be > 0 m")


def load_initialization_settings(path=None, section: str = "initialization") -> InitializationSettings:
    """:class:`InitializationSettings` from ``path`` (default: the shipped ``config/segmentation.yaml``)."""
    return load_settings(InitializationSettings, path if path is not None else find_config("segmentation.yaml"),
                         section=section)
