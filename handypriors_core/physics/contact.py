"""Contact values and contact selection (paper Sec. III-C and IV-D, following ContactOpt).

* :func:`contact_value`: ``CO = min(1 / s_mm, 1)`` with ``s_mm`` the signed distance in millimetres, clamped
  at 0 so points inside the object count as in contact (``CO = 1`` within 1 mm and inside).
* :func:`contact_value_smooth`: a smooth surrogate with the same limits, for gradients.
* :func:`select_contacts`: contact points are those with signed distance below ``contact_threshold`` (default
  1 mm, the paper's "SDF smaller than 0.1" read in cm; see :class:`.settings.ContactSettings`).
* :func:`compute_contacts`: object signed distance of hand points plus all of the above in one record.

Gradients: ``contact_value`` and ``contact_value_smooth`` are differentiable in the signed distance
(``contact_value`` has zero gradient inside 1 mm); masks are boolean and carry none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_shape
from ..errors import InvalidValueError, ShapeError
from .sdf import ObjectSDF
from .settings import ContactSettings

__all__ = [
    "ContactResult",
    "compute_contacts",
    "contact_value",
    "contact_value_array",
    "contact_value_smooth",
    "persistent_contact_weights",
    "select_contacts",
]

_MM_PER_M = 1000.0


def contact_value(signed_distance: torch.Tensor) -> torch.Tensor:
    """ContactOpt contact value ``CO = min(1 / s_mm, 1)`` in ``(0, 1]``, same shape as the input.

    Args:
        signed_distance: ``(...)`` [m], negative inside the object (inside counts as distance 0, ``CO = 1``).
    """
    s_mm = signed_distance * _MM_PER_M
    return 1.0 / torch.clamp(s_mm, min=1.0)


def contact_value_array(signed_distance: np.ndarray) -> np.ndarray:
    """:func:`contact_value` of a CPU array in numpy, the same operations in the array's dtype (float32: the same
    values): ``(...)`` [m] -> ``(...)`` in ``(0, 1]``."""
    one = signed_distance.dtype.type(1.0)
    return one / np.maximum(signed_distance * signed_distance.dtype.type(_MM_PER_M), one)


def contact_value_smooth(signed_distance: torch.Tensor, sharpness_per_mm: float = 4.0) -> torch.Tensor:
    """Smooth contact value ``1 / (1 + softplus_k(s_mm - 1))`` in ``(0, 1)``, same shape as the input.

    ``softplus_k(x) = log(1 + exp(k x)) / k``. It tends to 1 inside the object and within 1 mm (deep inside:
    exactly 1 up to ``exp(-k)``), to ``1 / s_mm`` far outside, and is smooth and strictly decreasing everywhere,
    so its gradient never vanishes abruptly. At ``s = 1 mm`` it is ``1 / (1 + ln 2 / k)``.

    Args:
        signed_distance: ``(...)`` [m], negative inside.
        sharpness_per_mm: ``k`` [1/mm]; larger follows :func:`contact_value` more closely.
    """
    if sharpness_per_mm <= 0:
        raise InvalidValueError(f"sharpness_per_mm must be > 0; got {sharpness_per_mm}")
    s_mm = signed_distance * _MM_PER_M
    return 1.0 / (1.0 + F.softplus(s_mm - 1.0, beta=sharpness_per_mm))


def select_contacts(signed_distance: torch.Tensor, threshold: float = 0.001) -> torch.Tensor:
    """Contact mask ``signed_distance < threshold`` (bool, same shape); points inside the object are contacts.

    Args:
        signed_distance: ``(...)`` [m], negative inside.
        threshold: [m], default 1 mm (``ContactSettings.contact_threshold``).
    """
    if threshold <= 0:
        raise InvalidValueError(f"threshold must be > 0 m; got {threshold}")
    return signed_distance < threshold


def persistent_contact_weights(
    mask_prev: torch.Tensor, mask_cur: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Weights ``(B, N)`` of contacts held in both frames: ``mask_prev & mask_cur`` (times ``weights``).

    Contacts made or lost between ``t-1`` and ``t`` get weight 0, so they neither drive the quasistatic
    motion (:func:`.quasistatic.quasistatic_step`) nor count in the sliding loss.

    Args:
        mask_prev, mask_cur: ``(B, N)`` bool contact masks of the same hand points at ``t-1`` and ``t``.
        weights: optional ``(B, N)`` non-negative per-point weights (e.g. a contact value); differentiable.
    """
    check_shape(mask_prev, (None, None), "mask_prev")
    if mask_cur.shape != mask_prev.shape:
        raise ShapeError(f"Expected mask_cur to have shape {tuple(mask_prev.shape)}; got {tuple(mask_cur.shape)}")
    held = (mask_prev & mask_cur)
    if weights is None:
        return held.to(torch.get_default_dtype())
    check_shape(weights, tuple(mask_prev.shape), "weights")
    return torch.where(held, weights, torch.zeros_like(weights))


@dataclass(frozen=True)
class ContactResult:
    """Contact state of hand points against the object (camera frame).

    Attributes:
        signed_distance: ``(B, N)`` [m], negative inside the object; gradients to points and object pose.
        closest_point: ``(B, N, 3)`` [m] closest object surface point; no gradient.
        normal: ``(B, N, 3)`` unit outward object normal at the closest point; no gradient.
        contact_value: ``(B, N)`` :func:`contact_value_smooth` of ``signed_distance``; differentiable.
        contact_mask: ``(B, N)`` bool, ``signed_distance < contact_threshold``.
    """

    signed_distance: torch.Tensor
    closest_point: torch.Tensor
    normal: torch.Tensor
    contact_value: torch.Tensor
    contact_mask: torch.Tensor


def compute_contacts(
    object_sdf: ObjectSDF,
    hand_points_cam: torch.Tensor,
    object2camera: torch.Tensor,
    settings: ContactSettings | None = None,
) -> ContactResult:
    """Signed distance, contact value and contact mask of hand points against the posed object.

    Args:
        object_sdf: the object's mesh.
        hand_points_cam: ``(B, N, 3)`` [m] hand surface points or contact candidates, camera frame.
        object2camera: ``(B, 4, 4)`` object pose.
        settings: threshold and smooth-contact sharpness; ``object_sdf.settings`` if ``None``.
    """
    settings = settings if settings is not None else object_sdf.settings
    sd = object_sdf.signed_distance(hand_points_cam, object2camera)
    return ContactResult(
        signed_distance=sd.distance,
        closest_point=sd.closest_point,
        normal=sd.normal,
        contact_value=contact_value_smooth(sd.distance, settings.smooth_contact_sharpness_per_mm),
        contact_mask=select_contacts(sd.distance.detach(), settings.contact_threshold),
    )
