"""Settings of the MANO hand-object optimizer (:class:`HandObjectSettings`) and EKF (:class:`HandObjectEKFSettings`).

Imports nothing of :mod:`handypriors_core.estimation.hand_object` (settings sit below the estimators).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from ...config import require
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

    iterations: int = 60
    roi_size: int = 96
    roi_margin: float = 0.12
    roi_min_box: float = 32.0
    sigma_start: float = 0.3
    sigma_end: float = 0.02
    lr_translation: float = 0.002
    lr_rotation: float = 0.02
    lr_hand_pose: float = 0.02
    lr_betas: float = 0.05
    lr_final_fraction: float = 0.1
    optimize_hand_pose: bool = True
    optimize_hand_global: bool = True
    optimize_betas: bool = False
    optimize_object: bool = True
    terms: tuple[str, ...] = _OPTIMIZER_TERMS
    weights: LossWeights = field(default_factory=LossWeights)
    lambda_keypoints: float = 0.2
    keypoint_scale: float = 0.1
    lambda_pose_prior: float = 0.02
    lambda_shape_prior: float = 0.001
    contact_distance: float = 0.002
    object_samples: int = 200
    convergence_tolerance: float = 0.0
    physics_ramp: float = 0.5

    def __post_init__(self) -> None:
        self.terms = tuple(self.terms)
        unknown = sorted(set(self.terms) - set(_OPTIMIZER_TERMS))
        require(not unknown, f"unknown optimizer terms {unknown} (known: {list(_OPTIMIZER_TERMS)})")
        require(self.iterations >= 0, f"iterations must be >= 0; got {self.iterations}")
        require(16 <= self.roi_size <= 1024, f"roi_size must be in [16, 1024]; got {self.roi_size}")
        require(0 <= self.roi_margin <= 3 and self.roi_min_box >= 4, "roi_margin in [0, 3] and roi_min_box >= 4")
        require(0 < self.sigma_end <= self.sigma_start, "need 0 < sigma_end <= sigma_start")
        for name in ("lr_translation", "lr_rotation", "lr_hand_pose", "lr_betas", "lambda_keypoints",
                     "keypoint_scale", "lambda_pose_prior", "lambda_shape_prior", "contact_distance"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, f"{name} must be a finite number >= 0; got {value}")
        require(0 < self.lr_final_fraction <= 1, "lr_final_fraction must be in (0, 1]")
        require(self.keypoint_scale > 0, "keypoint_scale must be > 0")
        require(self.object_samples >= 1, "object_samples must be >= 1")
        require(0 <= self.physics_ramp <= 1, f"physics_ramp must be in [0, 1]; got {self.physics_ramp}")
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
