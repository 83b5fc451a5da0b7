"""Quasistatic object dynamics from hand contacts (paper Sec. III-E, Eq. 9): the EKF's motion model ``f``.

The hand is the actuator and the object is passive: the object is assumed to move rigidly with the hand
points that touch it in both frames. The rigid motion ``M`` (camera frame) that best maps the contacts at
``t-1`` onto the same hand points at ``t`` is found with weighted Kabsch, and the predicted pose is
``object2camera_t = M @ object2camera_{t-1}``.

Relation to Eq. 9: the paper writes ``R_t = (U V^T)^T R_{t-1}`` and ``T_t = v_t - v_{t-1} (U V^T) + T_{t-1}``
(row vectors, centroids ``v``). The rotation is the same; composing the motion with the pose also rotates the
previous translation (``T_t = R_M T_{t-1} + v_t - R_M v_{t-1}``), which the paper's translation omits (exact
only for small rotations). We implement the exact composition.

Fallbacks (per batch element, chosen with tensor ops, no per-element Python branching): where fewer than
``min_contacts`` contacts have positive weight, or they are (nearly) collinear (second principal spread below
``min_spread`` metres, so the rotation about their line is undetermined), the prediction is

* ``"constant_pose"``: ``object2camera_t = object2camera_{t-1}``, or
* ``"constant_velocity"``: ``object2camera_t = V @ object2camera_{t-1}`` with the last frame's motion
  ``V = object2camera_{t-1} @ object2camera_{t-2}^-1`` (camera frame).

Contacts lost or made between the frames must get weight 0 (:func:`.contact.persistent_contact_weights`).

Gradients: the prediction is differentiable with respect to both contact sets, the weights and the previous
pose(s) (the rotation's derivative comes from :func:`..geometry.kabsch.weighted_kabsch_with_spread`);
``used_contacts`` is boolean. Its Jacobian feeds the EKF.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError
from ..geometry.kabsch import weighted_kabsch_array, weighted_kabsch_with_spread
from ..geometry.transforms import invert_transform, make_transform
from .settings import QuasistaticSettings

__all__ = [
    "contact_motion",
    "contact_motion_array",
    "contact_motion_fit",
    "contact_motion_fit_array",
    "quasistatic_step",
]


def contact_motion(
    contacts_prev: torch.Tensor,
    contacts_cur: torch.Tensor,
    weights: torch.Tensor,
    settings: QuasistaticSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid motion carrying the contacts of ``t-1`` onto those of ``t``, where it is determined.

    Args:
        contacts_prev, contacts_cur: ``(B, N, 3)`` [m] the same hand points at ``t-1`` and ``t`` (any common frame).
        weights: ``(B, N)`` non-negative contact weights (0 = not a contact in both frames).
        settings: ``min_contacts`` and ``min_spread``; defaults if ``None``.
    Returns:
        ``motion (B, 4, 4)`` (identity where not determined; differentiable) and ``valid (B,)`` bool.
    """
    settings = settings if settings is not None else QuasistaticSettings()
    check_shape(contacts_prev, (None, None, 3), "contacts_prev")
    check_shape(contacts_cur, tuple(contacts_prev.shape), "contacts_cur")
    check_shape(weights, tuple(contacts_prev.shape[:2]), "weights")
    for tensor, name in ((contacts_prev, "contacts_prev"), (contacts_cur, "contacts_cur"), (weights, "weights")):
        check_finite(tensor, name)
    if (weights < 0).any():
        raise InvalidValueError("weights must be non-negative")
    B = contacts_prev.shape[0]
    dtype, device = contacts_prev.dtype, contacts_prev.device
    valid = (weights > 0).sum(-1) >= settings.min_contacts
    eye = torch.eye(4, dtype=dtype, device=device)
    motion = eye.expand(B, 4, 4)
    enough = valid.nonzero()[:, 0]
    if enough.numel() > 0:  # one weighted centring gives the spread test and the motion
        R, t, spread = weighted_kabsch_with_spread(contacts_prev[enough], contacts_cur[enough],
                                                   weights[enough].to(dtype))
        spread_ok = spread > settings.min_spread
        valid = valid.index_put((enough,), spread_ok)
        motion = motion.index_put((enough,), torch.where(spread_ok[:, None, None], make_transform(R, t), eye))
    return motion, valid


def contact_motion_fit(
    contacts_prev: torch.Tensor,
    contacts_cur: torch.Tensor,
    weights: torch.Tensor,
    motion: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How well a rigid ``motion`` explains the contacts' displacement: weighted RMS misfit and displacement.

    Args:
        contacts_prev, contacts_cur: ``(B, N, 3)`` [m] the same hand points at ``t-1`` and ``t``.
        weights: ``(B, N)`` non-negative contact weights.
        motion: ``(B, 4, 4)`` rigid motion (e.g. from :func:`contact_motion`).
    Returns:
        ``misfit (B,)`` [m]: weighted RMS of ``|motion(prev) - cur|``; ``displacement (B,)`` [m]: weighted RMS of
        ``|cur - prev|``. Contacts that carry the object move rigidly: misfit << displacement. A finger closing
        on a held object, or fingers rolling it against a fixed palm, leaves a misfit of the order of the
        displacement: the contacts' motion is then no rigid motion of the object.
    """
    moved = contacts_prev @ motion[:, :3, :3].transpose(1, 2) + motion[:, None, :3, 3]
    w = weights.to(contacts_prev.dtype)
    total = w.sum(-1).clamp_min(1e-12)
    misfit = torch.sqrt((w * ((moved - contacts_cur) ** 2).sum(-1)).sum(-1) / total)
    displacement = torch.sqrt((w * ((contacts_cur - contacts_prev) ** 2).sum(-1)).sum(-1) / total)
    return misfit, displacement


def contact_motion_array(contacts_prev: np.ndarray, contacts_cur: np.ndarray, weights: np.ndarray,
                         settings: QuasistaticSettings | None = None) -> tuple[np.ndarray, bool]:
    """:func:`contact_motion` of one contact set in float64 numpy (the filter's CPU prediction; same values):
    ``(N, 3)``, ``(N, 3)`` [m], ``(N,)`` -> ``(motion (4, 4), valid)``."""
    settings = settings if settings is not None else QuasistaticSettings()
    for array, name in ((contacts_prev, "contacts_prev"), (contacts_cur, "contacts_cur"), (weights, "weights")):
        if not np.isfinite(array).all():
            raise InvalidValueError(f"{name} contains NaN/inf")
    if (weights < 0).any():
        raise InvalidValueError("weights must be non-negative")
    motion = np.eye(4)
    if int((weights > 0).sum()) < settings.min_contacts:
        return motion, False
    R, t, spread = weighted_kabsch_array(contacts_prev, contacts_cur, weights)
    if not spread > settings.min_spread:
        return motion, False
    motion[:3, :3], motion[:3, 3] = R, t
    return motion, True


def contact_motion_fit_array(contacts_prev: np.ndarray, contacts_cur: np.ndarray, weights: np.ndarray,
                             motion: np.ndarray) -> tuple[float, float]:
    """:func:`contact_motion_fit` of one contact set in float64 numpy: ``(misfit, displacement)`` [m]."""
    moved = contacts_prev @ motion[:3, :3].T + motion[:3, 3]
    total = max(float(weights.sum()), 1e-12)
    misfit = math.sqrt(float((weights * ((moved - contacts_cur) ** 2).sum(-1)).sum()) / total)
    displacement = math.sqrt(float((weights * ((contacts_cur - contacts_prev) ** 2).sum(-1)).sum()) / total)
    return misfit, displacement


def quasistatic_step(
    contacts_prev_cam: torch.Tensor,
    contacts_cur_cam: torch.Tensor,
    weights: torch.Tensor,
    object2camera_prev: torch.Tensor,
    object2camera_prevprev: torch.Tensor | None = None,
    settings: QuasistaticSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predict the object pose at ``t`` from the hand contacts (Eq. 9), with the documented fallback.

    Args:
        contacts_prev_cam: ``(B, N, 3)`` [m] contact hand points at ``t-1``, camera frame.
        contacts_cur_cam: ``(B, N, 3)`` [m] the same hand points at ``t`` (hand moved), camera frame.
        weights: ``(B, N)`` non-negative; 0 for points not in contact in both frames.
        object2camera_prev: ``(B, 4, 4)`` object pose at ``t-1``.
        object2camera_prevprev: ``(B, 4, 4)`` pose at ``t-2``; required for the ``"constant_velocity"`` fallback.
        settings: ``min_contacts``, ``min_spread`` [m], ``fallback``; defaults (constant pose) if ``None``.
    Returns:
        ``object2camera_pred (B, 4, 4)`` (differentiable) and ``used_contacts (B,)`` bool (False: fallback used).
    """
    settings = settings if settings is not None else QuasistaticSettings()
    motion, valid = contact_motion(contacts_prev_cam, contacts_cur_cam, weights, settings)
    check_shape(object2camera_prev, (motion.shape[0], 4, 4), "object2camera_prev")
    check_finite(object2camera_prev, "object2camera_prev")
    if object2camera_prev.dtype != motion.dtype:
        raise InvalidValueError(f"object2camera_prev dtype {object2camera_prev.dtype} differs from the contacts' "
                                f"{motion.dtype}")
    if settings.fallback == "constant_velocity":
        if object2camera_prevprev is None:
            raise InvalidValueError("object2camera_prevprev is required for the 'constant_velocity' fallback "
                                    "(pass object2camera_prev again to get a constant pose on the first frame)")
        check_shape(object2camera_prevprev, tuple(object2camera_prev.shape), "object2camera_prevprev")
        check_finite(object2camera_prevprev, "object2camera_prevprev")
        fallback_motion = object2camera_prev @ invert_transform(object2camera_prevprev)
    else:
        fallback_motion = torch.eye(4, dtype=motion.dtype, device=motion.device).expand_as(motion)
    motion = torch.where(valid[:, None, None], motion, fallback_motion)
    return motion @ object2camera_prev, valid
