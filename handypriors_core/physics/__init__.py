"""Contact queries (warp signed distance), quasistatic dynamics and interpenetration metrics.

Signed distances are negative inside, in metres. See each module for which outputs carry gradients:
:mod:`.sdf` (object), :mod:`.hand_geometry` (reverse query against the hand), :mod:`.contact`,
:mod:`.quasistatic` (Eq. 9), :mod:`.interpenetration` (metrics, no gradients). Warp is reached only through
:mod:`.warp_bridge`. May import geometry (and errors/checks/config).
"""

from .contact import (
    ContactResult,
    compute_contacts,
    contact_value,
    contact_value_smooth,
    persistent_contact_weights,
    select_contacts,
)
from .hand_geometry import HandGeometry
from .interpenetration import interpenetration_volume, max_penetration_depth, overlap_volume
from .quasistatic import contact_motion, quasistatic_step
from .sdf import ObjectSDF, SignedDistance
from .settings import (
    ContactSettings,
    InterpenetrationSettings,
    PhysicsSettings,
    QuasistaticSettings,
    load_physics_settings,
)

__all__ = [
    "ContactResult",
    "ContactSettings",
    "HandGeometry",
    "InterpenetrationSettings",
    "ObjectSDF",
    "PhysicsSettings",
    "QuasistaticSettings",
    "SignedDistance",
    "compute_contacts",
    "contact_motion",
    "contact_value",
    "contact_value_smooth",
    "interpenetration_volume",
    "load_physics_settings",
    "max_penetration_depth",
    "overlap_volume",
    "persistent_contact_weights",
    "quasistatic_step",
    "select_contacts",
]
