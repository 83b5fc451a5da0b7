"""Joint hand-object estimation with a MANO hand (paper Sec. III-D/E, Tables I and II): optimizer and EKF.

Everything is in the **camera frame** (ROS optical frame, metres): the MANO ``global_orient`` / ``transl`` are
``model2camera`` (as HO-3D and DexYCB give them), the object pose is ``object2camera``.

Parameters (:class:`ManoParams`): ``global_orient (B, 3)`` [rad] axis-angle about the wrist joint,
``hand_pose (B, J)`` [rad] axis-angles of the 15 finger joints (or PCA coefficients, see
:class:`~handypriors_core.models.ManoHand`), ``betas (B, S)`` shape, ``transl (B, 3)`` [m]. They are read and
written as JSON by :func:`load_mano_params` / :func:`save_mano_params`; an external network's output (the
initialisation, or the EKF control) comes in that way or from a topic.

2D keypoints (:class:`HandObjectObservation`) are the 21 MANO keypoints in
:data:`~handypriors_core.models.mano.MANO_KEYPOINT_NAMES` order [px] with per-keypoint confidences (0 = not
detected), so a fingertip-only detector gives the 5 tips and zero confidence elsewhere
(:func:`load_keypoints` reads a JSON file of named keypoints).

**Optimizer** (:class:`HandObjectOptimizer`, Sec. III-D): Adam over the hand (``hand_pose``, ``global_orient``,
``transl`` and optionally ``betas``) and the object pose (``R = exp([phi]x) R0``, ``t = t0 + rho``) together, on

- ``mask`` (Eq. 2): soft visible silhouettes of the hand and object instances (the hand occludes the object
  and vice versa) against the observed instance masks, at region-of-interest resolution,
- ``keypoints``: robust 2D reprojection of the MANO keypoints against the detections,
- ``penetration`` (Eq. 3, both directions): hand vertices inside the object and object samples inside the
  hand mesh,
- ``sliding``: hand contact vertices of ``t-1`` seen in the object frame must not move,
- ``con`` (Eq. 4, object samples and hand pose), ``smo`` (Eq. 5, object acceleration),
- ``pose_prior``: ``|theta - theta_init|^2``, the initialisation (a network's output) as a prior on the finger
  articulation, which silhouettes alone leave ambiguous; ``shape_prior``: ``|beta|^2`` when shape is optimised.

**EKF** (:class:`HandObjectEKF`, Sec. III-E): state ``x = (object2camera on SE(3), e)`` with the hand in the
Euclidean extras ``e = (global_orient (3), transl (3), hand_pose (J))``; tangent ``(rho, phi, de)``.

- ``f`` (predict): the hand part follows the control ``u`` (an external hand estimate, as ``e``) with process
  noise; the object follows the quasistatic contact motion (Eq. 9, :func:`~handypriors_core.physics.contact_motion`)
  of the MANO contact vertices that touched it at ``t-1``: ``object_t = M(v_{t-1}, v_t) @ object_{t-1}``, or stays
  put (with the larger free-motion noise) without enough rigidly moving contacts.
- ``h``: ``"fingertips"`` (Eq. 8): the 2D projections of the 5 MANO fingertip vertices (or of every confident
  keypoint) [px]; ``"centre"``: the 2D projection of the object centre [px]; optionally ``"contact"``: the
  physics prior that hand vertices in contact at ``t-1`` stay on the object surface (``z = 0`` [m]).
  Table I's O_hand is ``("fingertips",)``, O_object ``("centre",)``, O_hand+object both.
- Jacobians ``F`` and ``H`` by reverse-mode autodiff (:func:`~handypriors_core.estimation.ekf.linearize`, mode
  ``"reverse_loop"``: Kabsch's rotation is a custom autograd function that torch.func cannot trace).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_finite, check_shape
from ..config import require
from ..errors import ConfigError, InvalidValueError, ModelFileError, ShapeError
from ..geometry.camera import PinholeCamera, crop_and_resize_image
from ..geometry.rotations import axis_angle_to_matrix
from ..geometry.transforms import invert_transform, make_transform, transform_points
from ..io.json_file import read_json
from ..models.mano import MANO_KEYPOINT_NAMES, ManoHand
from ..models.rigid_object import RigidObject
from ..physics.hand_geometry import HandGeometry
from ..physics.quasistatic import contact_motion
from ..physics.sdf import ObjectSDF
from ..physics.settings import ContactSettings, QuasistaticSettings
from ..priors.losses import LossWeights, consistency_loss, penetration_loss, sliding_loss, smoothness_loss
from ..render.renderer import Renderer, join_meshes
from ..render.settings import RenderSettings
from .ekf import EKFSettings, ErrorStateEKF, StepResult
from .pose_state import PoseState

__all__ = [
    "FINGERTIP_KEYPOINTS",
    "HAND",
    "OBJECT",
    "HandObjectEKF",
    "HandObjectEKFSettings",
    "HandObjectEKFStep",
    "HandObjectObservation",
    "HandObjectOptimizer",
    "HandObjectResult",
    "HandObjectSettings",
    "ManoParams",
    "load_keypoints",
    "load_mano_params",
    "mano_rigid_transform",
    "save_mano_params",
]

#: Instance ids of the rendered silhouettes.
HAND, OBJECT = 0, 1
#: Indices of the 5 fingertips (thumb, index, middle, ring, little) among the 21 keypoints.
FINGERTIP_KEYPOINTS: tuple[int, ...] = tuple(MANO_KEYPOINT_NAMES.index(f"{f}_tip")
                                             for f in ("thumb", "index", "middle", "ring", "little"))
_F64 = torch.float64
_PARAM_NAMES = ("global_orient", "hand_pose", "betas", "transl")


# ================================================================================================ parameters


@dataclass(frozen=True)
class ManoParams:
    """MANO parameters of ``B`` hands (camera frame); every tensor has the same dtype and device.

    Attributes:
        global_orient: ``(B, 3)`` [rad] axis-angle of the wrist, about the wrist joint.
        hand_pose: ``(B, J)`` [rad] finger joint axis-angles (``J = 45``) or PCA coefficients.
        betas: ``(B, S)`` shape coefficients.
        transl: ``(B, 3)`` [m].
    """

    global_orient: torch.Tensor
    hand_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor

    def __post_init__(self) -> None:
        check_shape(self.global_orient, (None, 3), "global_orient")
        B = self.global_orient.shape[0]
        check_shape(self.hand_pose, (B, None), "hand_pose")
        check_shape(self.betas, (B, None), "betas")
        check_shape(self.transl, (B, 3), "transl")
        for name in _PARAM_NAMES:
            x = getattr(self, name)
            if not x.is_floating_point():
                raise InvalidValueError(f"{name} must be a floating-point tensor; got {x.dtype}")
            if x.dtype != self.global_orient.dtype or x.device != self.global_orient.device:
                raise InvalidValueError(f"{name} ({x.dtype}, {x.device}) must match global_orient "
                                        f"({self.global_orient.dtype}, {self.global_orient.device})")

    # --------------------------------------------------------------------------------------- builders
    @classmethod
    def zeros(cls, hand: ManoHand, batch: int = 1) -> ManoParams:
        """``batch`` hands at the model's default (zero pose, the hand's ``betas`` buffer, no translation)."""
        z = torch.zeros(batch, 3, dtype=hand.dtype, device=hand.device)
        return cls(z, torch.zeros(batch, hand.num_joints, dtype=hand.dtype, device=hand.device),
                   hand.betas.expand(batch, -1).clone(), z.clone())

    @classmethod
    def cat(cls, params: Sequence[ManoParams]) -> ManoParams:
        """Concatenate along the batch."""
        if not params:
            raise InvalidValueError("ManoParams.cat needs at least one entry")
        return cls(*(torch.cat([getattr(p, n) for p in params], 0) for n in _PARAM_NAMES))

    @classmethod
    def from_vector(cls, vector: torch.Tensor, betas: torch.Tensor) -> ManoParams:
        """Inverse of :meth:`vector`: ``(B, 6 + J)`` = (global_orient, transl, hand_pose) plus ``betas (B, S)``."""
        check_shape(vector, (None, None), "vector")
        if vector.shape[1] < 6:
            raise ShapeError(f"Expected vector to have at least 6 columns; got {tuple(vector.shape)}")
        return cls(vector[:, :3], vector[:, 6:], betas.expand(vector.shape[0], -1).to(vector), vector[:, 3:6])

    # --------------------------------------------------------------------------------------- accessors
    @property
    def batch_size(self) -> int:
        return self.global_orient.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.global_orient.dtype

    @property
    def device(self) -> torch.device:
        return self.global_orient.device

    def vector(self) -> torch.Tensor:
        """``(B, 6 + J)``: ``(global_orient, transl, hand_pose)`` (the EKF's hand extras)."""
        return torch.cat((self.global_orient, self.transl, self.hand_pose), 1)

    def __getitem__(self, index) -> ManoParams:
        """Batch slice (an int keeps a batch dimension of 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return ManoParams(*(getattr(self, n)[index] for n in _PARAM_NAMES))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ManoParams:
        return ManoParams(*(getattr(self, n).to(device=device, dtype=dtype) for n in _PARAM_NAMES))

    def detach(self) -> ManoParams:
        return ManoParams(*(getattr(self, n).detach().clone() for n in _PARAM_NAMES))

    def check(self, hand: ManoHand, name: str = "params") -> None:
        """ShapeError unless the sizes match ``hand``; InvalidValueError on NaN/inf."""
        if self.hand_pose.shape[1] != hand.num_joints:
            raise ShapeError(f"{name}.hand_pose has {self.hand_pose.shape[1]} values per hand; the MANO model "
                             f"takes {hand.num_joints} ({'PCA' if hand.use_pca else 'axis-angle'})")
        if self.betas.shape[1] != hand.num_betas:
            raise ShapeError(f"{name}.betas has {self.betas.shape[1]} values per hand; the model has "
                             f"{hand.num_betas}")
        for n in _PARAM_NAMES:
            check_finite(getattr(self, n), f"{name}.{n}")

    def forward(self, hand: ManoHand):
        """The posed hand: :class:`~handypriors_core.models.mano.ManoOutput` (camera frame)."""
        return hand(global_orient=self.global_orient, hand_pose=self.hand_pose, betas=self.betas,
                    transl=self.transl)

    def to_dict(self, index: int = 0) -> dict[str, list[float]]:
        """JSON-ready values of hand ``index``."""
        return {n: [float(v) for v in getattr(self, n)[index].detach().cpu().double()] for n in _PARAM_NAMES}


def mano_rigid_transform(hand: ManoHand, params: ManoParams) -> torch.Tensor:
    """``model2camera (B, 4, 4)``: the rigid part of the MANO pose, ``p -> R_g (p - J_0) + J_0 + transl``.

    ``J_0`` is the wrist joint of the shaped rest hand (it depends on ``betas`` only). Differentiable.
    """
    zero = torch.zeros_like(params.global_orient)
    rest = hand(global_orient=zero, hand_pose=torch.zeros_like(params.hand_pose), betas=params.betas,
                transl=zero)
    J0 = rest.joints[:, 0]
    R = axis_angle_to_matrix(params.global_orient)
    return make_transform(R, J0 + params.transl - (R @ J0[..., None])[..., 0])


def _vector_entry(entry: Mapping, key: str, size: int | None, source: str) -> np.ndarray:
    if key not in entry:
        raise ModelFileError(f"{source}: missing entry {key!r}")
    try:
        arr = np.asarray(entry[key], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: entry {key!r} is not a list of numbers ({exc})") from None
    if size is not None and arr.shape != (size,):
        raise ShapeError(f"{source}: entry {key!r} has {arr.size} values; expected {size}")
    if not np.isfinite(arr).all():
        raise InvalidValueError(f"{source}: entry {key!r} holds NaN/inf")
    return arr


def mano_params_from_dicts(entries: Sequence[Mapping], hand: ManoHand, source: str = "<params>") -> ManoParams:
    """:class:`ManoParams` from dicts with ``global_orient``, ``hand_pose``, ``transl`` and optional ``betas``
    (default: the hand's ``betas`` buffer); sizes are checked against ``hand`` (ShapeError names the entry)."""
    cols: dict[str, list[np.ndarray]] = {n: [] for n in _PARAM_NAMES}
    default_betas = hand.betas.detach().cpu().double().numpy()
    for k, entry in enumerate(entries):
        where = f"{source} [{k}]" if len(entries) > 1 else source
        if not isinstance(entry, Mapping):
            raise ModelFileError(f"{where}: expected an object with MANO parameters; got {type(entry).__name__}")
        cols["global_orient"].append(_vector_entry(entry, "global_orient", 3, where))
        cols["hand_pose"].append(_vector_entry(entry, "hand_pose", hand.num_joints, where))
        cols["transl"].append(_vector_entry(entry, "transl", 3, where))
        cols["betas"].append(_vector_entry(entry, "betas", hand.num_betas, where) if "betas" in entry
                             else default_betas)
    return ManoParams(*(torch.as_tensor(np.stack(cols[n]), dtype=hand.dtype, device=hand.device)
                        for n in _PARAM_NAMES))


def load_mano_params(path: str | os.PathLike, hand: ManoHand) -> ManoParams:
    """Read MANO parameters from JSON: one object, a list of objects, or ``{"frames": [...]}`` (a sequence).

    Each object: ``global_orient [3]``, ``hand_pose [J]`` (45 axis-angles or the model's PCA count),
    ``transl [3]``, optional ``betas [S]``; other keys (``object2camera``, metadata) are ignored here.
    ModelFileError names a missing or unreadable file, ShapeError a wrong size, InvalidValueError NaN/inf.
    """
    data = read_json(path, "MANO parameter file", ModelFileError)
    entries = data.get("frames", [data]) if isinstance(data, Mapping) else data
    if not isinstance(entries, list) or not entries:
        raise ModelFileError(f"{path}: expected an object, a non-empty list or {{'frames': [...]}}")
    return mano_params_from_dicts(entries, hand, str(path))


def save_mano_params(path: str | os.PathLike, params: ManoParams, hand: ManoHand | None = None,
                     extra: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write :class:`ManoParams` as JSON (one object for ``B = 1``, else ``{"frames": [...]}``).

    ``hand`` adds the model metadata (``side``, ``use_pca``, ``num_pca_comps``, ``flat_hand_mean``); ``extra``
    adds keys to every frame (a mapping) or per frame (a sequence of mappings), e.g. ``object2camera``.
    """
    frames = []
    for i in range(params.batch_size):
        entry: dict[str, Any] = params.to_dict(i)
        if hand is not None:
            entry.update(side=hand.side, use_pca=hand.use_pca, num_pca_comps=hand.num_pca_comps,
                         flat_hand_mean=hand.flat_hand_mean)
        if extra is not None:
            entry.update(extra[i] if isinstance(extra, Sequence) else extra)
        frames.append(entry)
    path = Path(path)
    path.write_text(json.dumps(frames[0] if len(frames) == 1 else {"frames": frames}, indent=1) + "\n")
    return path


@dataclass(frozen=True)
class HandObjectObservation:
    """What one image says about the hand and the object (full-image pixels; any field may be None).

    Attributes:
        camera: intrinsics of the image.
        hand_mask, object_mask: ``(H, W)`` float in [0, 1] visible instance masks of a segmenter.
        keypoints: ``(21, 2)`` [px] 2D MANO keypoints (:data:`MANO_KEYPOINT_NAMES` order) of a detector.
        keypoint_confidence: ``(21,)`` in [0, 1] (0 = not detected); default 1 for every keypoint.
        object_centre: ``(2,)`` [px] detected object centre (the projection of the object model's bounding-box
            centre), for the EKF's O_object.
    """

    camera: PinholeCamera
    hand_mask: torch.Tensor | None = None
    object_mask: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None
    keypoint_confidence: torch.Tensor | None = None
    object_centre: torch.Tensor | None = None

    def __post_init__(self) -> None:
        H, W = self.camera.height, self.camera.width
        for name in ("hand_mask", "object_mask"):
            m = getattr(self, name)
            if m is not None:
                check_shape(m, (H, W), name)
                check_finite(m.float(), name)
        if self.keypoints is not None:
            check_shape(self.keypoints, (21, 2), "keypoints")
            check_finite(self.keypoints, "keypoints")
        if self.keypoint_confidence is not None:
            if self.keypoints is None:
                raise InvalidValueError("keypoint_confidence given without keypoints")
            check_shape(self.keypoint_confidence, (21,), "keypoint_confidence")
            check_finite(self.keypoint_confidence, "keypoint_confidence")
            if bool((self.keypoint_confidence < 0).any()):
                raise InvalidValueError("keypoint_confidence must be >= 0")
        if self.object_centre is not None:
            check_shape(self.object_centre, (2,), "object_centre")
            check_finite(self.object_centre, "object_centre")

    def confidences(self) -> torch.Tensor | None:
        """``(21,)`` keypoint confidences (ones when not given), or None without keypoints."""
        if self.keypoints is None:
            return None
        if self.keypoint_confidence is None:
            return torch.ones(21, dtype=self.keypoints.dtype, device=self.keypoints.device)
        return self.keypoint_confidence.to(self.keypoints)


def load_keypoints(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """2D keypoints of a detector from JSON -> ``keypoints (T, 21, 2)`` [px] and ``confidence (T, 21)``.

    Format: ``{"frames": [{"keypoints": {"thumb_tip": [u, v, (confidence)], ...}}, ...]}`` (names from
    :data:`~handypriors_core.models.mano.MANO_KEYPOINT_NAMES`; missing names get confidence 0) or
    ``{"frames": [{"keypoints": [[u, v(, c)] x 21]}]}`` in that order; a single frame may omit ``"frames"``.
    """
    data = read_json(path, "keypoint file", ModelFileError)
    frames = data.get("frames", [data]) if isinstance(data, Mapping) else None
    if not isinstance(frames, list) or not frames:
        raise ModelFileError(f"{path}: expected {{'frames': [{{'keypoints': ...}}, ...]}}")
    uv = np.zeros((len(frames), 21, 2))
    conf = np.zeros((len(frames), 21))
    for t, frame in enumerate(frames):
        kp = frame.get("keypoints") if isinstance(frame, Mapping) else None
        if isinstance(kp, Mapping):
            items = []
            for name, value in kp.items():
                if name not in MANO_KEYPOINT_NAMES:
                    raise InvalidValueError(f"{path}: frame {t}: unknown keypoint {name!r} "
                                            f"(known: {', '.join(MANO_KEYPOINT_NAMES)})")
                items.append((MANO_KEYPOINT_NAMES.index(name), value))
        elif isinstance(kp, list):
            if len(kp) != 21:
                raise ShapeError(f"{path}: frame {t}: a keypoint list needs 21 entries; got {len(kp)}")
            items = list(enumerate(kp))
        else:
            raise ModelFileError(f"{path}: frame {t} has no 'keypoints'")
        for k, value in items:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
            if arr.size not in (2, 3):
                raise ShapeError(f"{path}: frame {t}: keypoint {MANO_KEYPOINT_NAMES[k]} needs [u, v] or [u, v, c]")
            if not np.isfinite(arr).all():
                raise InvalidValueError(f"{path}: frame {t}: keypoint {MANO_KEYPOINT_NAMES[k]} holds NaN/inf")
            uv[t, k] = arr[:2]
            conf[t, k] = arr[2] if arr.size == 3 else 1.0
    return (torch.as_tensor(uv, dtype=torch.float32, device=device),
            torch.as_tensor(conf, dtype=torch.float32, device=device))


# ================================================================================================ optimizer

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


@dataclass
class HandObjectResult:
    """Outcome of one frame's optimization (detached tensors on the optimizer's device).

    Attributes:
        params: :class:`ManoParams` of the hand (batch 1). object2camera: ``(4, 4)``.
        loss, initial_loss: weighted total at the best and at the first iterate; terms: best weighted terms.
        iterations: Adam steps taken; elapsed [s]; stopped: ``"iterations"``, ``"converged"``,
            ``"non_finite_loss"``, ``"non_finite_gradient"`` or ``"no_gradient"``.
        contact_weights: ``(1, C)`` 1 for the hand contact vertices within ``contact_distance`` of the object.
        contacts_object: ``(1, C, 3)`` [m] those vertices in the object frame (for the next frame's sliding term).
    """

    params: ManoParams
    object2camera: torch.Tensor
    loss: float
    initial_loss: float
    iterations: int
    elapsed: float
    stopped: str
    terms: dict[str, float] = field(default_factory=dict)
    contact_weights: torch.Tensor | None = None
    contacts_object: torch.Tensor | None = None


def _pose_delta(pose: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``pose (B, 4, 4)`` moved by ``delta (B, 6) = (rho [m], phi [rad])``: ``R <- exp(phi) R``, ``t <- t + rho``."""
    R = axis_angle_to_matrix(delta[:, 3:]) @ pose[:, :3, :3]
    return make_transform(R, pose[:, :3, 3] + delta[:, :3])


def _square_box(uv: torch.Tensor, margin: float, min_box: float) -> tuple[float, float, float, float]:
    """Square ``(x0, y0, x1, y1)`` around pixels ``uv (N, 2)``, grown by ``margin`` per side, at least ``min_box``."""
    lo, hi = uv.min(0).values, uv.max(0).values
    centre = 0.5 * (lo + hi)
    half = max(0.5 * float((hi - lo).max()) * (1 + 2 * margin), 0.5 * min_box)
    cx, cy = float(centre[0]), float(centre[1])
    return (cx - half, cy - half, cx + half, cy + half)


def _crop_mask(mask: torch.Tensor, box, size: int) -> torch.Tensor:
    """``mask (H, W)`` resampled into the ROI ``(1, size, size)`` (area-averaged when it shrinks a lot)."""
    m = mask.float()[None, None]
    shrink = (box[2] - box[0]) / size
    if shrink > 1.5:
        k = round(shrink) | 1
        m = F.avg_pool2d(m, k, stride=1, padding=k // 2, count_include_pad=False)
    return crop_and_resize_image(m, box, size, size)[0].clamp(0, 1)


def _geman_mcclure(r2: torch.Tensor, scale: float) -> torch.Tensor:
    """``c^2 r^2 / (r^2 + c^2)`` of squared residuals (``~ r^2`` near 0, at most ``c^2``)."""
    c2 = scale * scale
    return c2 * r2 / (r2 + c2)


class HandObjectOptimizer:
    """Adam over MANO hand parameters and the object pose on rendering, keypoint and physics terms.

    Args:
        hand: the MANO model (its dtype and device are used; float32 recommended).
        obj: the object model (object frame, metres).
        settings: see :class:`HandObjectSettings`.
        render_settings, contact_settings: component settings (defaults if None).
    """

    def __init__(self, hand: ManoHand, obj: RigidObject, settings: HandObjectSettings | None = None,
                 render_settings: RenderSettings | None = None, contact_settings: ContactSettings | None = None):
        self.hand = hand
        self.settings = settings if settings is not None else HandObjectSettings()
        self.device, self.dtype = hand.device, hand.dtype
        self.object = obj.to(self.device, self.dtype)
        self.renderer = Renderer(render_settings)
        self.object_sdf = ObjectSDF(self.object.verts, self.object.faces, contact_settings)
        self.hand_geometry = HandGeometry(hand.faces, contact_settings)
        samples = self.object.samples
        step = max(1, samples.shape[0] // self.settings.object_samples)
        self.object_samples = samples[::step][: self.settings.object_samples].contiguous()

    # ------------------------------------------------------------------------------------------ helpers
    def active_terms(self) -> list[str]:
        """Terms of the settings whose weight is positive."""
        s = self.settings
        return [t for t in s.terms if s.weight(t) > 0 and (t != "shape_prior" or s.optimize_betas)]

    def object_points(self, object2camera: torch.Tensor) -> torch.Tensor:
        """Object surface samples ``(B, S, 3)`` [m, camera frame]."""
        return transform_points(object2camera, self.object_samples.expand(object2camera.shape[0], -1, -1))

    def region_of_interest(self, observation: HandObjectObservation, params: ManoParams,
                           object2camera: torch.Tensor) -> tuple[float, float, float, float]:
        """Square ROI [px] around the projected hand and object at the given estimate."""
        with torch.no_grad():
            cam = observation.camera.to(self.device, self.dtype)
            verts = params.forward(self.hand).vertices[0]
            obj = transform_points(object2camera[None], self.object.verts[None])[0]
            uv = cam.project(torch.cat((verts, obj))[None])[0]
        s = self.settings
        return _square_box(uv, s.roi_margin, s.roi_min_box)

    def contact_state(self, params: ManoParams, object2camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, C)`` contact weights of the hand contact vertices and ``(1, C, 3)`` their object-frame positions."""
        with torch.no_grad():
            pts = params.forward(self.hand).vertices[:, self.hand.contact_vertex_ids]
            pose = object2camera[None].to(pts)
            d = self.object_sdf.signed_distance(pts, pose).distance
            weights = (d < self.settings.contact_distance).to(pts.dtype)
            return weights, transform_points(invert_transform(pose), pts)

    # ------------------------------------------------------------------------------------------- losses
    def losses(self, params: ManoParams, object2camera: torch.Tensor, observation: HandObjectObservation,
               roi: tuple[float, float, float, float], sigma: float, init: ManoParams | None = None,
               previous: Sequence[HandObjectResult] = (), crops: dict | None = None) -> dict[str, torch.Tensor]:
        """Unweighted value of each active term for ``B`` candidates: ``{name: 0-dim tensor}`` (batch mean).

        Args:
            params: ``(B)`` hand parameters; object2camera: ``(B, 4, 4)``.
            observation: the frame; roi: the crop box [px]; sigma: rasterizer sharpness [px^2].
            init: the initialisation (pose prior); previous: results of earlier frames, oldest first.
            crops: cached ROI crops of the masks (from :meth:`_crops`).
        """
        s = self.settings
        terms = self.active_terms()
        B = object2camera.shape[0]
        out = params.forward(self.hand)
        verts = out.vertices
        obj_verts = transform_points(object2camera, self.object.verts.expand(B, -1, -1))
        cam = observation.camera.to(self.device, self.dtype)
        size = s.roi_size
        box_edge = roi[2] - roi[0]
        crops = crops if crops is not None else self._crops(observation, roi)
        result: dict[str, torch.Tensor] = {}
        if "mask" in terms and (crops["hand"] is not None or crops["object"] is not None):
            roi_cam = cam.crop_and_resize(roi, size, size)
            v, f, inst = join_meshes([(verts, self.hand.faces), (obj_verts, self.object.faces)])
            render = self.renderer(v, f, roi_cam, face_instance=inst, num_instances=2, sigma=sigma)
            loss = verts.new_zeros(())
            for k, key in ((HAND, "hand"), (OBJECT, "object")):
                if crops[key] is not None:
                    loss = loss + ((render.visible[:, k] - crops[key]) ** 2).mean()
            result["mask"] = loss
        if "keypoints" in terms and observation.keypoints is not None:
            conf = observation.confidences().to(self.device, self.dtype)
            uv = cam.project(out.keypoints)
            r2 = ((uv - observation.keypoints.to(uv)) / box_edge).pow(2).sum(-1)  # (B, 21), ROI edge units
            rho = _geman_mcclure(r2, s.keypoint_scale) / s.keypoint_scale ** 2
            result["keypoints"] = (rho * conf).sum(-1).mean() / conf.sum().clamp_min(1e-9)
        if "penetration" in terms:
            d_hand = self.object_sdf.signed_distance(verts, object2camera).distance
            d_obj = None
            if s.weights.penetration_reverse_weight > 0:
                d_obj = self.hand_geometry.signed_distance(self.object_points(object2camera), verts).distance
            result["penetration"] = penetration_loss(d_hand, d_obj, s.weights.penetration_reverse_weight)
        prev = list(previous)[-2:]
        if "sliding" in terms and prev and prev[-1].contact_weights is not None \
                and bool((prev[-1].contact_weights > 0).any()):
            cur = transform_points(invert_transform(object2camera), verts[:, self.hand.contact_vertex_ids])
            result["sliding"] = sliding_loss(prev[-1].contacts_object.to(cur).expand(B, -1, -1), cur,
                                             prev[-1].contact_weights.to(cur).expand(B, -1))
        if "con" in terms and prev:
            p1 = prev[-1]
            theta = torch.cat((params.global_orient, params.hand_pose), 1)
            theta1 = torch.cat((p1.params.global_orient, p1.params.hand_pose), 1).to(theta).expand_as(theta)
            result["con"] = consistency_loss(self.object_points(object2camera),
                                             self.object_points(p1.object2camera[None].to(object2camera)).expand(
                                                 B, -1, -1), theta, theta1)
        if "smo" in terms and len(prev) >= 2:
            cur = self.object_points(object2camera)
            p1 = self.object_points(prev[-1].object2camera[None].to(object2camera)).expand_as(cur)
            p2 = self.object_points(prev[-2].object2camera[None].to(object2camera)).expand_as(cur)
            result["smo"] = smoothness_loss(cur, p1, p2)
        if "pose_prior" in terms and init is not None:
            result["pose_prior"] = ((params.hand_pose - init.hand_pose.to(params.hand_pose)) ** 2).mean()
        if "shape_prior" in terms and s.optimize_betas:
            result["shape_prior"] = (params.betas ** 2).mean()
        return result

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the terms."""
        total = None
        for name, value in terms.items():
            part = self.settings.weight(name) * value
            total = part if total is None else total + part
        return total if total is not None else torch.zeros((), device=self.device, dtype=self.dtype)

    def _crops(self, observation: HandObjectObservation, roi) -> dict:
        size = self.settings.roi_size
        return {key: None if m is None else _crop_mask(m.to(self.device, self.dtype), roi, size)
                for key, m in (("hand", observation.hand_mask), ("object", observation.object_mask))}

    # ------------------------------------------------------------------------------------- optimization
    def optimize(self, observation: HandObjectObservation, init_params: ManoParams,
                 init_object2camera: torch.Tensor, previous: Sequence[HandObjectResult] = (),
                 iterations: int | None = None) -> HandObjectResult:
        """Optimize one frame from ``init_params`` (batch 1, e.g. a network's output) and ``init_object2camera
        (4, 4)``; ``previous`` are the results of earlier frames (temporal and sliding terms)."""
        s = self.settings
        check_shape(init_object2camera, (4, 4), "init_object2camera")
        check_finite(init_object2camera, "init_object2camera")
        if init_params.batch_size != 1:
            raise ShapeError(f"init_params must hold one hand; got {init_params.batch_size}")
        init_params = init_params.to(self.device, self.dtype)
        init_params.check(self.hand, "init_params")
        iterations = s.iterations if iterations is None else int(iterations)
        start = time.perf_counter()
        pose0 = init_object2camera.to(self.device, self.dtype)[None].detach()
        roi = self.region_of_interest(observation, init_params, pose0[0])
        crops = self._crops(observation, roi)
        zeros = {n: torch.zeros_like(getattr(init_params, n), requires_grad=True) for n in _PARAM_NAMES}
        d_object = torch.zeros(1, 6, device=self.device, dtype=self.dtype, requires_grad=True)
        groups = []
        if s.optimize_hand_global:
            groups += [{"params": [zeros["global_orient"]], "lr": s.lr_rotation},
                       {"params": [zeros["transl"]], "lr": s.lr_translation}]
        if s.optimize_hand_pose:
            groups.append({"params": [zeros["hand_pose"]], "lr": s.lr_hand_pose})
        if s.optimize_betas:
            groups.append({"params": [zeros["betas"]], "lr": s.lr_betas})
        if s.optimize_object:
            groups.append({"params": [d_object], "lr": 1.0})
        base_lr = [g["lr"] for g in groups]
        optimizer = torch.optim.Adam(groups) if groups else None
        object_scale = torch.tensor([s.lr_translation] * 3 + [s.lr_rotation] * 3, device=self.device,
                                    dtype=self.dtype)

        def current() -> tuple[ManoParams, torch.Tensor]:
            p = ManoParams(*(getattr(init_params, n) + zeros[n] for n in _PARAM_NAMES))
            return p, _pose_delta(pose0, d_object * object_scale)

        best = (math.inf, init_params.detach(), pose0[0].clone(), {})
        initial = math.nan
        stopped, it, flat, previous_value = "iterations", 0, 0, math.inf
        for it in range(iterations + 1):
            frac = it / max(iterations, 1)
            sigma = s.sigma_start * (s.sigma_end / s.sigma_start) ** frac
            if optimizer is not None:
                for g, lr in zip(optimizer.param_groups, base_lr):
                    g["lr"] = lr * s.lr_final_fraction ** frac
            params, pose = current()
            terms = self.losses(params, pose, observation, roi, sigma, init_params, previous, crops)
            full = self.total(terms)
            value = float(full.detach())
            ramp = min(1.0, frac / s.physics_ramp) if s.physics_ramp > 0 else 1.0
            loss = full if ramp >= 1.0 else full - (1.0 - ramp) * self.total(
                {k: v for k, v in terms.items() if k in _PHYSICS_TERMS})
            if it == 0:
                initial = value
            if not math.isfinite(value):
                stopped = "non_finite_loss"
                break
            if value < best[0]:
                best = (value, params.detach(), pose[0].detach().clone(),
                        {k: float(s.weight(k) * v.detach()) for k, v in terms.items()})
            if it == iterations:
                break
            rel = abs(previous_value - value) / max(abs(value), 1e-12)
            flat = flat + 1 if rel < s.convergence_tolerance else 0
            if flat >= 5:
                stopped = "converged"
                break
            previous_value = value
            if optimizer is None or not loss.requires_grad:
                stopped = "no_gradient"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if any(not bool(torch.isfinite(g).all()) for g in grads):
                stopped = "non_finite_gradient"
                break
            optimizer.step()
        weights, contacts = self.contact_state(best[1], best[2])
        return HandObjectResult(params=best[1], object2camera=best[2], loss=best[0], initial_loss=initial,
                                iterations=it, elapsed=time.perf_counter() - start, stopped=stopped,
                                terms=best[3], contact_weights=weights, contacts_object=contacts)

    def optimize_sequence(self, observations: Sequence[HandObjectObservation], init_params: ManoParams,
                          init_object2camera: torch.Tensor, object_init: Literal["given", "previous"] = "previous",
                          iterations: int | None = None) -> list[HandObjectResult]:
        """Optimize frames in order, each with the temporal terms against the results before it.

        Args:
            observations: ``T`` frames. init_params: ``(T)`` per-frame hand initialisations (e.g. a network's).
            init_object2camera: ``(4, 4)`` for the first frame, or ``(T, 4, 4)`` per frame.
            object_init: ``"previous"`` starts each later frame's object from the previous result;
                ``"given"`` uses ``init_object2camera[t]`` (needs ``(T, 4, 4)``).
        """
        T = len(observations)
        if init_params.batch_size != T:
            raise ShapeError(f"init_params holds {init_params.batch_size} hands for {T} observations")
        per_frame = init_object2camera.dim() == 3
        if per_frame:
            check_shape(init_object2camera, (T, 4, 4), "init_object2camera")
        elif object_init == "given" and T > 1:
            raise ShapeError("object_init='given' needs init_object2camera of shape (T, 4, 4)")
        if object_init not in ("given", "previous"):
            raise InvalidValueError(f"object_init must be 'given' or 'previous'; got {object_init!r}")
        results: list[HandObjectResult] = []
        for t, obs in enumerate(observations):
            if t == 0 or object_init == "given":
                pose = init_object2camera[t] if per_frame else init_object2camera
            else:
                pose = results[-1].object2camera
            results.append(self.optimize(obs, init_params[t], pose, results[-2:], iterations))
        return results


# ====================================================================================================== EKF

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


@dataclass
class HandObjectEKFStep:
    """What one :meth:`HandObjectEKF.step` did: whether contacts drove the object, each update's result."""

    used_contacts: bool
    updates: dict[str, StepResult]
    elapsed: float


def _pose_jacobian_to_tangent(J: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """``d pose / d p`` ``(4, 4, m)`` at ``pose (4, 4)`` -> the left tangent ``(rho, phi)`` rows ``(6, m)``:
    ``d rho = d t``, ``[d phi]x = skew part of dR R^T``."""
    A = J[:3, :3].permute(2, 0, 1) @ pose[:3, :3].transpose(0, 1)
    A = 0.5 * (A - A.transpose(1, 2))
    return torch.cat((J[:3, 3], torch.stack((A[:, 2, 1], A[:, 0, 2], A[:, 1, 0]), 0)), 0)


class HandObjectEKF:
    """EKF over ``(object2camera, global_orient, transl, hand_pose)`` (see the module docstring).

    Like the object filter, it runs on the CPU in float64 (small dense matrices; a float64 copy of the MANO
    model), whatever the device of the hand given; inputs on other devices are moved.

    Args:
        hand: the MANO model (a float64 copy is used for the filter's models).
        obj: the object model; settings: :class:`HandObjectEKFSettings`; contact_settings: SDF query settings.
        betas: ``(S,)`` hand shape held fixed (default: the hand's ``betas`` buffer, or the initial params').
    """

    def __init__(self, hand: ManoHand, obj: RigidObject, settings: HandObjectEKFSettings | None = None,
                 contact_settings: ContactSettings | None = None):
        self.settings = settings if settings is not None else HandObjectEKFSettings()
        self.hand = copy.deepcopy(hand).to(device="cpu", dtype=_F64)
        self.object = obj.to("cpu", _F64)
        self.object_sdf = ObjectSDF(self.object.verts, self.object.faces, contact_settings)
        self.centre = torch.as_tensor(self.object.center, dtype=_F64)
        self.ekf: ErrorStateEKF | None = None
        self.betas: torch.Tensor | None = None
        self._contact_ids = torch.zeros(0, dtype=torch.long)
        self.last_process_jacobian: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------ state
    @property
    def num_hand(self) -> int:
        """Number of hand extras ``6 + J``."""
        return 6 + self.hand.num_joints

    def _params_of(self, extra: torch.Tensor) -> ManoParams:
        return ManoParams.from_vector(extra[None], self.betas[None])

    @property
    def params(self) -> ManoParams:
        """Current hand estimate (batch 1, float64, CPU)."""
        return self._params_of(self.ekf.state.extra).detach()

    @property
    def object2camera(self) -> torch.Tensor:
        """``(4, 4)`` float64 current object estimate."""
        return self.ekf.pose

    @property
    def covariance(self) -> torch.Tensor:
        """``(n, n)`` float64 tangent covariance over ``(rho, phi, global_orient, transl, hand_pose)``."""
        return self.ekf.covariance

    def initialize(self, params: ManoParams, object2camera: torch.Tensor) -> None:
        """Start from hand ``params`` (batch 1) and ``object2camera (4, 4)`` with the initial uncertainties."""
        s = self.settings
        params = params.to("cpu", _F64)
        if params.batch_size != 1:
            raise ShapeError(f"params must hold one hand; got {params.batch_size}")
        params.check(self.hand, "params")
        check_shape(object2camera, (4, 4), "object2camera")
        check_finite(object2camera, "object2camera")
        self.betas = params.betas[0].clone()
        J = self.hand.num_joints
        var = [s.initial_std_translation ** 2] * 3 + [s.initial_std_rotation ** 2] * 3 + self._control_variances(J)
        state = PoseState.from_pose(object2camera.detach().to("cpu", _F64), params.vector()[0])
        self.ekf = ErrorStateEKF(state, torch.diag(torch.tensor(var, dtype=_F64)),
                                 EKFSettings(jacobian_mode="reverse_loop"))
        self._update_contacts()

    def _control_variances(self, J: int) -> list[float]:
        s = self.settings
        return [s.control_std_orient ** 2] * 3 + [s.control_std_transl ** 2] * 3 + [s.control_std_pose ** 2] * J

    def _hand_vertices(self, extra: torch.Tensor) -> torch.Tensor:
        return self._params_of(extra).forward(self.hand).vertices[0]

    def _update_contacts(self) -> None:
        """Contact vertices of the current estimate (ids into the MANO vertices)."""
        with torch.no_grad():
            verts = self._hand_vertices(self.ekf.state.extra)
            ids = self.hand.contact_vertex_ids
            d = self.object_sdf.signed_distance(verts[ids][None], self.ekf.pose[None]).distance[0]
        self._contact_ids = ids[d < self.settings.contact_distance]

    @property
    def contact_vertex_ids(self) -> torch.Tensor:
        """Ids of the MANO vertices taken as contacts for the next prediction."""
        return self._contact_ids

    # ---------------------------------------------------------------------------------------- predict
    def motion_model(self, control: ManoParams | None):
        """The motion model at the current state: ``(object_motion, f, u, valid)``.

        ``f(state, u) -> PoseState`` is the EKF's ``f``; ``object_motion(extra_prev, u, pose) -> (4, 4)`` its
        object part; ``u (6 + J,)`` the control vector; ``valid`` whether the contacts of ``t-1`` (at least
        ``min_contacts``, not collinear, moving rigidly within ``rigid_contact_tolerance``) drive the object
        (else the object is held: constant pose).
        """
        s = self.settings
        if control is not None:
            control = control.to("cpu", _F64)
            if control.batch_size != 1:
                raise ShapeError(f"control must hold one hand; got {control.batch_size}")
            control.check(self.hand, "control")
            u = control.vector()[0]
        else:
            u = self.ekf.state.extra.detach().clone()
        ids = self._contact_ids
        valid = False
        if ids.numel() >= s.quasistatic.min_contacts:
            with torch.no_grad():
                prev = self._hand_vertices(self.ekf.state.extra)[ids][None]
                cur = self._hand_vertices(u)[ids][None]
                w = torch.ones(1, ids.numel(), dtype=_F64)
                motion, ok = contact_motion(prev, cur, w, s.quasistatic)
                valid = bool(ok[0])
                if valid:
                    moved = transform_points(motion, prev)
                    rms = float(((moved - cur) ** 2).sum(-1).mean().sqrt())
                    valid = rms < s.rigid_contact_tolerance
        hand, betas = self.hand, self.betas

        def object_motion(extra_prev: torch.Tensor, u_: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
            if not valid:
                return pose
            prev_v = ManoParams.from_vector(extra_prev[None], betas[None]).forward(hand).vertices[:, ids]
            cur_v = ManoParams.from_vector(u_[None], betas[None]).forward(hand).vertices[:, ids]
            motion_, _ = contact_motion(prev_v, cur_v, torch.ones(1, ids.numel(), dtype=_F64), s.quasistatic)
            return motion_[0] @ pose

        def f(state: PoseState, u_: torch.Tensor) -> PoseState:
            return PoseState(object_motion(state.extra, u_, state.pose), u_ + 0.0 * state.extra)

        return object_motion, f, u, valid

    def predict(self, control: ManoParams | None) -> bool:
        """Motion model: hand <- control (or held), object <- contact motion of Eq. 9; returns whether contacts
        drove the object. ``control``: the external hand estimate of this frame (batch 1), or None."""
        s = self.settings
        n_hand = self.num_hand
        object_motion, f, u, valid = self.motion_model(control)
        std_t, std_r = (s.process_std_translation, s.process_std_rotation) if valid else \
            (s.free_std_translation, s.free_std_rotation)

        # Jacobians (autodiff through MANO and Kabsch): object_t = M(hand_{t-1}, u) @ object_{t-1}, so
        # F_oo = blockdiag(R_M, R_M) (left tangent), F_oh = d object_t / d hand_{t-1}, F_ho = F_hh = 0 (hand <- u).
        # Process noise: the control's noise w enters the hand (hand_t = u + w) and, through the contact motion,
        # the object: Q = G diag(var_u) G^T + object noise, G = d f / d u (so correcting the hand corrects the
        # object through their cross-covariance).
        n = 6 + n_hand
        var_u = torch.tensor(self._control_variances(n_hand - 6), dtype=_F64)
        F = torch.zeros(n, n, dtype=_F64)
        G = torch.cat((torch.zeros(6, n_hand, dtype=_F64), torch.eye(n_hand, dtype=_F64)), 0)
        extra0, pose0 = self.ekf.state.extra.detach(), self.ekf.pose.detach()
        if valid:
            with torch.enable_grad():
                J_prev, J_u = torch.autograd.functional.jacobian(
                    lambda prev_, uu: object_motion(prev_, uu, pose0), (extra0, u))  # (4, 4, m) each
            with torch.no_grad():
                pose_pred = object_motion(extra0, u, pose0)
            R_M = pose_pred[:3, :3] @ pose0[:3, :3].transpose(0, 1)
            F[:3, :3] = R_M
            F[3:6, 3:6] = R_M
            F[:6, 6:] = _pose_jacobian_to_tangent(J_prev, pose_pred)
            G[:6] = _pose_jacobian_to_tangent(J_u, pose_pred)
        else:
            F[:6, :6] = torch.eye(6, dtype=_F64)
        Q = G @ torch.diag(var_u) @ G.transpose(0, 1)
        Q[:6, :6] += torch.diag(torch.tensor([std_t ** 2] * 3 + [std_r ** 2] * 3, dtype=_F64))
        self.ekf.predict(f, u, 0.5 * (Q + Q.transpose(0, 1)), jacobian=F)
        self.last_process_jacobian = F
        return valid

    # ----------------------------------------------------------------------------------------- update
    def update(self, observation: HandObjectObservation) -> dict[str, StepResult]:
        """Apply the configured observations that ``observation`` carries; returns each one's result."""
        s = self.settings
        gate = None if s.gate_probability >= 1 else s.gate_probability
        cam = observation.camera.to("cpu", _F64)
        results: dict[str, StepResult] = {}
        for name in s.observations:
            res = None
            if name == "fingertips" and observation.keypoints is not None:
                res = self._update_keypoints(observation, cam, gate)
            elif name == "centre" and observation.object_centre is not None:
                z = observation.object_centre.to("cpu", _F64)

                def h_centre(state: PoseState, centre: torch.Tensor = self.centre) -> torch.Tensor:
                    return cam.project(transform_points(state.pose[None], centre[None, None]))[0, 0]

                res = self.ekf.update(z, h_centre, torch.full((2,), s.centre_std ** 2, dtype=_F64),
                                      gate_probability=gate)
            elif name == "contact":
                res = self._update_contact(gate)
            if res is not None:
                results[name] = res
        self._update_contacts()
        return results

    def _update_keypoints(self, observation: HandObjectObservation, cam: PinholeCamera, gate) -> StepResult | None:
        s = self.settings
        conf = observation.confidences().to("cpu", _F64)
        if s.keypoints == "fingertips":
            idx = torch.tensor(FINGERTIP_KEYPOINTS)
            idx = idx[conf[idx] > 0]
        else:
            idx = torch.nonzero(conf > 0)[:, 0]
        if idx.numel() == 0:
            return None
        z = observation.keypoints.to("cpu", _F64)[idx].reshape(-1)
        var = (s.keypoint_std ** 2 / conf[idx]).repeat_interleave(2)
        hand, betas = self.hand, self.betas

        def h_keypoints(state: PoseState) -> torch.Tensor:
            out = ManoParams.from_vector(state.extra[None], betas[None]).forward(hand)
            return cam.project(out.keypoints[:, idx])[0].reshape(-1)

        return self.ekf.update(z, h_keypoints, var, gate_probability=gate)

    def _update_contact(self, gate) -> StepResult | None:
        ids = self._contact_ids
        if ids.numel() == 0:
            return None
        hand, betas = self.hand, self.betas
        pose0 = self.ekf.pose
        with torch.no_grad():
            verts = self._hand_vertices(self.ekf.state.extra)[ids]
            sd = self.object_sdf.signed_distance(verts[None], pose0[None])
        d0 = sd.distance[0]
        n_obj = sd.normal[0] @ pose0[:3, :3]  # outward normals in the object frame
        p_obj0 = (verts - pose0[:3, 3]) @ pose0[:3, :3]

        def h_contact(state: PoseState) -> torch.Tensor:
            v = ManoParams.from_vector(state.extra[None], betas[None]).forward(hand).vertices[0, ids]
            p_obj = (v - state.pose[:3, 3]) @ state.pose[:3, :3]
            return d0 + ((p_obj - p_obj0) * n_obj).sum(-1)  # first-order signed distance [m]

        z = torch.zeros(ids.numel(), dtype=_F64)
        return self.ekf.update(z, h_contact, torch.full((ids.numel(),), self.settings.contact_std ** 2,
                                                        dtype=_F64), gate_probability=gate)

    def step(self, observation: HandObjectObservation | None, control: ManoParams | None) -> HandObjectEKFStep:
        """Predict with ``control`` (the external hand estimate), then update with ``observation``."""
        start = time.perf_counter()
        used = self.predict(control)
        updates = self.update(observation) if observation is not None else {}
        return HandObjectEKFStep(used, updates, time.perf_counter() - start)

    def track(self, observations: Sequence[HandObjectObservation], controls: ManoParams | None,
              init_params: ManoParams | None = None, init_object2camera: torch.Tensor | None = None
              ) -> tuple[ManoParams, torch.Tensor, list[HandObjectEKFStep]]:
        """Filter a whole sequence: returns hand params ``(T)``, ``object2camera (T, 4, 4)`` and the steps.

        The filter starts (when ``init_*`` are given, else from its current state) at the first frame, which
        is then only updated (no prediction); ``controls`` are the per-frame external hand estimates ``(T)``.
        """
        T = len(observations)
        if controls is not None and controls.batch_size != T:
            raise ShapeError(f"controls hold {controls.batch_size} hands for {T} observations")
        if init_params is not None or init_object2camera is not None:
            if init_params is None or init_object2camera is None:
                raise InvalidValueError("give both init_params and init_object2camera, or neither")
            self.initialize(init_params, init_object2camera)
        if self.ekf is None:
            raise InvalidValueError("the filter is not initialised: pass init_params and init_object2camera")
        params, poses, steps = [], [], []
        for t, obs in enumerate(observations):
            start = time.perf_counter()
            if t == 0 and init_params is not None:
                step = HandObjectEKFStep(False, self.update(obs), 0.0)
                step.elapsed = time.perf_counter() - start
            else:
                step = self.step(obs, controls[t] if controls is not None else None)
            steps.append(step)
            params.append(self.params)
            poses.append(self.object2camera.clone())
        return ManoParams.cat(params), torch.stack(poses), steps
