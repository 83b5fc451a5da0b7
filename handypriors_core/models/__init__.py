"""Hand and object models: URDF hand (batched differentiable FK + posed surface), joint-name maps, rigid objects.

``URDFHand.from_urdf(path, package_paths=...)`` -> ``forward_kinematics(q (B, J)) -> (B, L, 4, 4)`` link2hand,
``mesh(q)``, ``surface_points(q)``, ``fingertips(q)``, ``contact_candidates(q)``; ``JointMap`` maps driver joint
names to URDF joint names; ``RigidObject.from_mesh(path)`` / ``.box`` / ``.cylinder`` / ``.sphere``;
``ManoHand.from_file(MANO_RIGHT.pkl)`` is the MANO human hand with the same hand interface as ``URDFHand``.
May import geometry (and errors/checks/config).
"""

from pathlib import Path

from .joint_maps import JointMap
from .mano import ManoHand, ManoOutput
from .rigid_object import RigidObject
from .urdf_hand import ALLEGRO_CONTACT_LINKS, URDFHand
from .urdf_parsing import PackageResolver, Tessellation

#: The Allegro v4 right hand URDF of the source checkout (primitive geometry); see :func:`allegro_urdf`.
ALLEGRO_URDF = Path(__file__).resolve().parent.parent.parent / "urdf" / "allegro_hand_right.urdf"


def allegro_urdf() -> Path:
    """Path of the shipped ``allegro_hand_right.urdf``: source checkout, else ``share/handypriors_ros/urdf``."""
    if ALLEGRO_URDF.is_file():
        return ALLEGRO_URDF
    try:  # installed with colcon
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        path = Path(get_package_share_directory("handypriors_ros")) / "urdf" / ALLEGRO_URDF.name
    except Exception:  # noqa: BLE001 - ament index absent or package not installed
        path = None
    if path is not None and path.is_file():
        return path
    from ..errors import ModelFileError

    raise ModelFileError(f"shipped URDF {ALLEGRO_URDF.name} not found (looked in {ALLEGRO_URDF.parent})")

__all__ = ["ALLEGRO_CONTACT_LINKS", "ALLEGRO_URDF", "JointMap", "ManoHand", "ManoOutput", "PackageResolver",
           "RigidObject", "Tessellation", "URDFHand", "allegro_urdf"]
