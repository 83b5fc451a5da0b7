"""Settings of the physics module (contact queries, quasistatic dynamics, interpenetration metric).

Built from the ``physics`` section of ``config/physics.yaml`` with :func:`load_physics_settings`. Lengths are in
metres unless a field name says otherwise (``_per_mm``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Literal

from ..config import find_config, load_settings, require

__all__ = [
    "ContactSettings",
    "InterpenetrationSettings",
    "PhysicsSettings",
    "QuasistaticSettings",
    "load_physics_settings",
]


@dataclass(frozen=True)
class ContactSettings:
    """Signed-distance queries and contact selection.

    Attributes:
        contact_threshold: a hand point is a contact where its signed distance to the object is below this [m].
            Default 0.001 m: the paper's "SDF values smaller than 0.1" read in centimetres (0.1 cm = 1 mm), which
            agrees with its contact value ``CO = min(1/s_mm, 1)`` saturating at 1 mm (Sec. IV-D) and ContactOpt.
        sign_method: ``"winding_number"`` (default; fast winding number, robust for non-watertight, YCB-style
            meshes with consistently oriented faces) or ``"normal"`` (angle-weighted pseudo-normal; faster, only
            correct for watertight meshes).
        winding_accuracy: accuracy (beta) of warp's fast winding number; larger is more exact and slower. Must be
            >= 1: below 1 the far-field approximation is used for points inside a BVH node and signs break
            (measured: half of the points within 1 mm of a torus misclassified at 0.5, none at 1 and 2).
        winding_threshold: winding number above which a point is inside (0.5 for closed meshes).
        max_query_distance: points farther than this from the surface get distance ``+max_query_distance`` [m]
            and no closest point; keep it larger than any object (sign is only computed within it).
        smooth_contact_sharpness_per_mm: sharpness ``k`` [1/mm] of :func:`contact_value_smooth`.
        cpu_threads: threads used to split one query on a CPU device (0 = one per CPU core). Warp runs each CPU
            launch on one thread; chunks launched from several threads use several cores.
    """

    contact_threshold: float = 0.001
    sign_method: Literal["winding_number", "normal"] = "winding_number"
    winding_accuracy: float = 2.0
    winding_threshold: float = 0.5
    max_query_distance: float = 10.0
    smooth_contact_sharpness_per_mm: float = 4.0
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        require(self.contact_threshold > 0, f"contact_threshold must be > 0 m; got {self.contact_threshold}")
        require(self.sign_method in ("winding_number", "normal"),
                f"sign_method must be 'winding_number' or 'normal'; got {self.sign_method!r}")
        require(self.winding_accuracy >= 1, f"winding_accuracy must be >= 1; got {self.winding_accuracy}")
        require(0 < self.winding_threshold < 1, f"winding_threshold must be in (0, 1); got {self.winding_threshold}")
        require(self.max_query_distance > 0, f"max_query_distance must be > 0 m; got {self.max_query_distance}")
        require(self.smooth_contact_sharpness_per_mm > 0,
                f"smooth_contact_sharpness_per_mm must be > 0; got {self.smooth_contact_sharpness_per_mm}")
        require(self.cpu_threads >= 0, f"cpu_threads must be >= 0; got {self.cpu_threads}")

    @property
    def resolved_cpu_threads(self) -> int:
        """Number of CPU threads a query uses (``cpu_threads`` with 0 resolved to the core count)."""
        return self.cpu_threads or _core_count()


@functools.cache
def _core_count() -> int:
    """The machine's core count, read once (``os.cpu_count`` reads sysfs: ~0.1 ms per query on a loaded machine)."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class QuasistaticSettings:
    """Quasistatic object motion from hand contacts (paper Eq. 9).

    Attributes:
        min_contacts: fewest contacts (positive weight) for a Kabsch estimate; at least 3.
        min_spread: second principal spread of the previous contacts [m] below which they count as collinear.
        fallback: prediction where Kabsch is not usable: ``"constant_pose"`` or ``"constant_velocity"``.
    """

    min_contacts: int = 3
    min_spread: float = 0.002
    fallback: Literal["constant_pose", "constant_velocity"] = "constant_pose"

    def __post_init__(self) -> None:
        require(self.min_contacts >= 3, f"min_contacts must be >= 3; got {self.min_contacts}")
        require(self.min_spread > 0, f"min_spread must be > 0 m; got {self.min_spread}")
        require(self.fallback in ("constant_pose", "constant_velocity"),
                f"fallback must be 'constant_pose' or 'constant_velocity'; got {self.fallback!r}")


@dataclass(frozen=True)
class InterpenetrationSettings:
    """Voxelised interpenetration volume (a metric, not a loss).

    Attributes:
        voxel_size: edge of the sampling voxels [m]; the volume error is about surface area x voxel_size / 2.
        coarse_factor: a coarse grid of ``coarse_factor * voxel_size`` cells prunes space that is certainly
            outside one of the two shapes before the fine grid is sampled.
        max_points_per_chunk: fine grid points queried per launch (bounds memory).
    """

    voxel_size: float = 0.001
    coarse_factor: int = 4
    max_points_per_chunk: int = 1_000_000

    def __post_init__(self) -> None:
        require(self.voxel_size > 0, f"voxel_size must be > 0 m; got {self.voxel_size}")
        require(self.coarse_factor >= 1, f"coarse_factor must be >= 1; got {self.coarse_factor}")
        require(self.max_points_per_chunk >= 1, f"max_points_per_chunk must be >= 1; got {self.max_points_per_chunk}")


@dataclass(frozen=True)
class PhysicsSettings:
    """All settings of ``handypriors_core.physics`` (the ``physics`` section of ``config/physics.yaml``)."""

    contact: ContactSettings = field(default_factory=ContactSettings)
    quasistatic: QuasistaticSettings = field(default_factory=QuasistaticSettings)
    interpenetration: InterpenetrationSettings = field(default_factory=InterpenetrationSettings)


def load_physics_settings(path: str | os.PathLike | None = None, section: str = "physics") -> PhysicsSettings:
    """Read :class:`PhysicsSettings` from ``path`` (default: the shipped ``physics.yaml``), section ``section``."""
    return load_settings(PhysicsSettings, path if path is not None else find_config("physics.yaml"), section=section)
