"""What a MANO model is: its joint tree and keypoints (tables), and its arrays read from a model dict (the
official pickle through :mod:`.mano_loading`, or the synthetic model) and checked against each other.

Every problem is a :class:`~handypriors_core.errors.ModelFileError` naming the file and the entry (or an
InvalidValueError naming the argument).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from ..errors import InvalidValueError, ModelFileError

__all__ = [
    "MANO_FINGERTIP_NAMES",
    "MANO_JOINT_NAMES",
    "MANO_KEYPOINT_NAMES",
    "MANO_KEYPOINT_SOURCES",
    "MANO_PARENTS",
    "OFFICIAL_FINGERTIP_VERTEX_IDS",
    "ManoArrays",
    "read_mano_arrays",
]

#: The 16 joints in MANO's file order.
MANO_JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "little1", "little2", "little3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)
#: Parent joint of each joint (-1 for the wrist), as in the official ``kintree_table``.
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
#: Fingertip keypoints, in the order of ``fingertip_vertex_ids``.
MANO_FINGERTIP_NAMES: tuple[str, ...] = ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip")
#: Fingertip vertices of the official MANO topology (thumb, index, middle, ring, little).
OFFICIAL_FINGERTIP_VERTEX_IDS: tuple[int, ...] = (745, 317, 444, 556, 673)
#: The 21 keypoints: wrist, then per finger (thumb, index, middle, ring, little) joints 1-3 and the tip.
MANO_KEYPOINT_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}{k}" if k != 4 else f"{finger}_tip"
    for finger in ("thumb", "index", "middle", "ring", "little")
    for k in (1, 2, 3, 4)
)
#: Source of each keypoint in ``cat(joints (16), fingertip vertices (5))``.
MANO_KEYPOINT_SOURCES: tuple[int, ...] = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)

_ROOT_PARENT_VALUES = (-1, 4294967295)


@dataclass(frozen=True)
class ManoArrays:
    """The arrays of one MANO model (float64 / int64 numpy), consistent with each other.

    Attributes:
        v_template: ``(V, 3)`` [m] rest vertices. shapedirs: ``(V, 3, S)`` shape blend shapes. posedirs:
            ``(V, 3, 135)`` pose blend shapes. J_regressor: ``(16, V)``. weights: ``(V, 16)`` skinning weights.
        faces: ``(F, 3)`` vertex indices. components: ``(num_pca_comps, 45)`` PCA rows (``(0, 45)`` without PCA).
        pose_mean: ``(45,)`` [rad] mean hand pose (zeros for a flat mean).
    """

    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    faces: np.ndarray
    components: np.ndarray
    pose_mean: np.ndarray


def _model_array(model: Mapping[str, Any], key: str, source: str, dtype=np.float64) -> np.ndarray:
    if key not in model:
        raise ModelFileError(f"{source}: MANO model has no entry {key!r}")
    value = model[key]
    if scipy.sparse.issparse(value):
        value = value.toarray()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: entry {key!r} is not a numeric array ({exc})") from exc
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ModelFileError(f"{source}: entry {key!r} holds NaN/inf")
    return arr


def _expect_shape(arr: np.ndarray, shape: tuple, key: str, source: str) -> None:
    ok = arr.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, arr.shape))
    if not ok:
        pretty = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ModelFileError(f"{source}: entry {key!r} should have shape {pretty}; got {arr.shape}")


def read_mano_arrays(model: Mapping[str, Any], source: str, use_pca: bool, num_pca_comps: int,
                     flat_hand_mean: bool) -> ManoArrays:
    """The checked arrays of ``model`` (``source`` names it in errors); PCA rows only with ``use_pca``
    (``num_pca_comps`` in [1, 45]), the mean hand pose unless ``flat_hand_mean``."""
    v_template = _model_array(model, "v_template", source)
    _expect_shape(v_template, (None, 3), "v_template", source)
    V = v_template.shape[0]
    kintree = _model_array(model, "kintree_table", source, dtype=np.int64)
    _expect_shape(kintree, (2, 16), "kintree_table", source)
    parents = dict(zip(kintree[1].tolist(), kintree[0].tolist()))
    parents = [parents.get(j, -2) for j in range(16)]
    parents = [-1 if p in _ROOT_PARENT_VALUES else p for p in parents]
    if parents != list(MANO_PARENTS):
        raise ModelFileError(f"{source}: kintree_table is not MANO's 16-joint hand tree (parents {parents})")
    shapedirs = _model_array(model, "shapedirs", source)
    _expect_shape(shapedirs, (V, 3, None), "shapedirs", source)
    posedirs = _model_array(model, "posedirs", source)
    _expect_shape(posedirs, (V, 3, 135), "posedirs", source)
    regressor = _model_array(model, "J_regressor", source)
    _expect_shape(regressor, (16, V), "J_regressor", source)
    weights = _model_array(model, "weights", source)
    _expect_shape(weights, (V, 16), "weights", source)
    faces = _model_array(model, "f", source, dtype=np.int64)
    _expect_shape(faces, (None, 3), "f", source)
    if faces.size and (faces.min() < 0 or faces.max() >= V):
        raise ModelFileError(f"{source}: entry 'f' indexes vertices outside [0, {V})")

    pose_mean = np.zeros(45)
    components = np.zeros((0, 45))
    if use_pca:
        if not 1 <= int(num_pca_comps) <= 45:
            raise InvalidValueError(f"num_pca_comps must be in [1, 45]; got {num_pca_comps}")
        components = _model_array(model, "hands_components", source)
        _expect_shape(components, (None, 45), "hands_components", source)
        if components.shape[0] < int(num_pca_comps):
            raise ModelFileError(f"{source}: hands_components has {components.shape[0]} rows; "
                                 f"num_pca_comps={num_pca_comps} requested")
        components = components[: int(num_pca_comps)]
    if not flat_hand_mean:
        pose_mean = _model_array(model, "hands_mean", source)
        _expect_shape(pose_mean, (45,), "hands_mean", source)
    return ManoArrays(v_template, shapedirs, posedirs, regressor, weights, faces, components, pose_mean)
