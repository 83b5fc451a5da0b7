"""MANO hand parameters (:class:`ManoParams`: JSON in and out) and what an image says about the hand and the
object (:class:`HandObjectObservation`, 2D keypoints from :func:`load_keypoints`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...checks import check_finite, check_shape
from ...errors import InvalidValueError, ModelFileError, ShapeError
from ...geometry.camera import PinholeCamera
from ...geometry.rotations import axis_angle_to_matrix
from ...geometry.transforms import make_transform
from ...io.json_file import read_json
from ...models.mano import ManoHand
from ...models.mano_model import MANO_KEYPOINT_NAMES

#: Indices of the 5 fingertips (thumb, index, middle, ring, little) among the 21 keypoints.
FINGERTIP_KEYPOINTS: tuple[int, ...] = tuple(MANO_KEYPOINT_NAMES.index(f"{f}_tip")
                                             for f in ("thumb", "index", "middle", "ring", "little"))
_F64 = torch.float64
_PARAM_NAMES = ("global_orient", "hand_pose", "betas", "transl")





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
    :data:`~handypriors_core.models.mano_model.MANO_KEYPOINT_NAMES`; missing names get confidence 0) or
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
