"""Settings of the MANO hand-object optimizer (:class:`HandObjectSettings`) and EKF (:class:`HandObjectEKFSettings`).

Imports nothing of :mod:`handypriors_core.estimation.hand_object` (settings sit below the estimators).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from ...config import check_ranges, ranged, require
from ...errors import ConfigError
from ...physics.settings import QuasistaticSettings
from ...priors.losses import LossWeights

OptimizerTerm = Literal["mask", "keypoints", "penetration", "sliding", "con", "smo", "pose_prior", "shape_prior"]
_OPTIMIZER_TERMS = ("mask", "keypoints", "penetration", "sliding", "con", "smo", "pose_prior", "shape_prior")
_PHYSICS_TERMS = ("penetration", "sliding")


@dataclass
class HandObjectSettings:
    """Settings of :class:`HandObjectOptimizer` (defaults tuned on the generated sequences, 160 x 120 px).

    Attributes:
        iterations: Adam steps per frame.
        roi_size: edge [px] of the square region of interest (hand + object, grown by ``roi_margin``) that the
            silhouettes are rendered and compared at.
        roi_margin: fraction of the box size added on each side; roi_min_box: smallest crop edge [px].
        sigma_start, sigma_end: soft rasterizer sharpness [px^2] at ROI resolution, geometric schedule. Keep the
            end small: SoftRas' probabilistic union inflates silhouettes by about a pixel at 0.5 px^2, which
            biases the fit (the object is pushed away to look smaller).
        lr_translation [m], lr_rotation [rad], lr_hand_pose [rad or PCA units], lr_betas: Adam step sizes of hand
            translation and object translation, of hand orientation and object rotation, of the finger pose, of
            the shape; all decay geometrically to ``lr_final_fraction`` of themselves.
        optimize_hand_pose, optimize_hand_global (orientation + translation), optimize_betas, optimize_object:
            which parameters move.
        terms: loss terms used (see the module docstring); a term with zero weight is skipped.
        weights: lambdas of ``mask``, ``penetration``, ``sliding``, ``con``, ``smo`` (and the reverse
            penetration weight), shared with the object refiner.
        lambda_keypoints: weight of the 2D keypoint term (robust, residuals in units of the ROI edge).
        keypoint_scale: Geman-McClure scale of the keypoint residuals, fraction of the ROI edge.
        lambda_pose_prior: weight of ``mean (theta - theta_init)^2`` [1/rad^2] (finger articulation only).
        lambda_shape_prior: weight of ``mean beta^2``.
        contact_distance: hand contact vertices closer than this to the object [m] are contacts (sliding term,
            next frame).
        object_samples: object surface samples for the reverse penetration and the temporal terms.
        convergence_tolerance: stop when the relative loss change stays below this for 5 steps.
        physics_ramp: fraction of the iterations over which the weights of ``penetration`` and ``sliding`` grow
            linearly from 0 to their value (the hand first settles on the image evidence, then contact shapes the
            result; against a badly initialised hand they would only push the object away). 0 = full weight.
            The best iterate is chosen by the fully weighted loss.
    """

    iterations: int = ranged(60, 0, 1_000_000)
    roi_size: int = ranged(96, 16, 1024)
    roi_margin: float = ranged(0.12, 0.0, 3.0)
    roi_min_box: float = ranged(32.0, 4.0, 1e4)
    sigma_start: float = 0.3
    sigma_end: float = ranged(0.02, 0.0, 1e6, low_open=True)
    lr_translation: float = ranged(0.002, 0.0, 1e9)
    lr_rotation: float = ranged(0.02, 0.0, 1e9)
    lr_hand_pose: float = ranged(0.02, 0.0, 1e9)
    lr_betas: float = ranged(0.05, 0.0, 1e9)
    lr_final_fraction: float = ranged(0.1, 0.0, 1.0, low_open=True)
    optimize_hand_pose: bool = True
    optimize_hand_global: bool = True
    optimize_betas: bool = False
    optimize_object: bool = True
    terms: tuple[str, ...] = _OPTIMIZER_TERMS
    weights: LossWeights = field(default_factory=LossWeights)
    lambda_keypoints: float = ranged(0.2, 0.0, 1e9)
    keypoint_scale: float = ranged(0.1, 0.0, 1e9, low_open=True)
    lambda_pose_prior: float = ranged(0.02, 0.0, 1e9)
    lambda_shape_prior: float = ranged(0.001, 0.0, 1e9)
    contact_distance: float = ranged(0.002, 0.0, 1e9)
    object_samples: int = ranged(200, 1, 1_000_000)
    convergence_tolerance: float = 0.0
    physics_ramp: float = ranged(0.5, 0.0, 1.0)

    def __post_init__(self) -> None:
        self.terms = tuple(self.terms)
        unknown = sorted(set(self.terms) - set(_OPTIMIZER_TERMS))
        require(not unknown, f"unknown optimizer terms {unknown} (known: {list(_OPTIMIZER_TERMS)})")
        check_ranges(self)
        require(self.sigma_end <= self.sigma_start, "need 0 < sigma_end <= sigma_start")
        if isinstance(self.weights, Mapping):
            self.weights = LossWeights(**self.weights)

    def weight(self, term: str) -> float:
        """Weight of ``term``."""
        if term == "keypoints":
            return self.lambda_keypoints
        if term == "pose_prior":
            return self.lambda_pose_prior
        if term == "shape_prior":
            return self.lambda_shape_prior
        return self.weights.weight(term)


EKFObservation = Literal["fingertips", "centre", "contact"]
_EKF_OBSERVATIONS = ("fingertips", "centre", "contact")


@dataclass
class HandObjectEKFSettings:
    """Settings of :class:`HandObjectEKF` (standard deviations in px, m and rad).

    Attributes:
        observations: updates applied each step, in order: ``"fingertips"`` (Eq. 8, O_hand), ``"centre"``
            (O_object), ``"contact"`` (physics prior: hand vertices in contact at ``t-1`` stay on the surface).
        keypoints: ``"fingertips"`` uses the 5 fingertip vertices (Eq. 8); ``"all"`` every confident keypoint.
        keypoint_std: 2D keypoint noise [px] (divided by sqrt(confidence)); centre_std: object centre noise [px].
        contact_std: [m] of the contact pseudo-observation.
        control_std_orient [rad], control_std_transl [m], control_std_pose [rad or PCA units]: noise of the
            control (the external hand estimate), the hand's process noise.
        process_std_translation [m], process_std_rotation [rad]: object process noise per step when contacts
            drive it; free_std_translation, free_std_rotation: without usable contacts (constant pose).
        initial_std_translation, initial_std_rotation: initial object uncertainty.
        contact_distance: [m] hand contact vertices closer than this to the object are the contacts of the next
            prediction (and of the contact observation).
        rigid_contact_tolerance: [m] RMS residual of the contacts' rigid fit above which they are not taken as
            evidence of the object's motion (fingers sliding or a noisy control): constant pose instead.
        gate_probability: chi-square gate of every update (>= 1 disables gating).
        quasistatic: Kabsch settings (minimum contacts, collinearity) of the contact motion.
    """

    observations: tuple[str, ...] = ("fingertips", "centre")
    keypoints: Literal["fingertips", "all"] = "fingertips"
    keypoint_std: float = 2.0
    centre_std: float = 3.0
    contact_std: float = 0.003
    control_std_orient: float = 0.05
    control_std_transl: float = 0.01
    control_std_pose: float = 0.1
    process_std_translation: float = 0.002
    process_std_rotation: float = 0.02
    free_std_translation: float = 0.01
    free_std_rotation: float = 0.1
    initial_std_translation: float = 0.01
    initial_std_rotation: float = 0.1
    contact_distance: float = 0.004
    rigid_contact_tolerance: float = 0.006
    gate_probability: float = 0.9999
    quasistatic: QuasistaticSettings = field(default_factory=QuasistaticSettings)

    def __post_init__(self) -> None:
        self.observations = tuple(self.observations)
        unknown = sorted(set(self.observations) - set(_EKF_OBSERVATIONS))
        if unknown:
            raise ConfigError(f"unknown EKF observations {unknown} (known: {list(_EKF_OBSERVATIONS)})")
        if self.keypoints not in ("fingertips", "all"):
            raise ConfigError(f"keypoints must be 'fingertips' or 'all'; got {self.keypoints!r}")
        for f_ in fields(self):
            value = getattr(self, f_.name)
            if isinstance(value, float) and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{f_.name} must be a finite number > 0; got {value}")
        if isinstance(self.quasistatic, Mapping):
            self.quasistatic = QuasistaticSettings(**self.quasistatic)
