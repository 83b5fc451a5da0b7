"""Contact-consistent grasps of the Allegro hand on a known object (kinematic: no forces are simulated).

:class:`GraspModel` closes fingers on the object by moving each finger along a straight line in joint space,
``q(s) = open + s (closed - open)`` with ``s`` in [0, 1], until the finger first touches the object: the
smallest signed distance of the finger's moving geometry to the object (surface points and palm-side contact
candidates of its links; the fingertip as the exact sphere of ``tip_radius`` about the tip link origin)
reaches ``-contact_overlap``. The first crossing is bracketed on a grid of ``grid_steps`` curl values
evaluated as one batch, then refined by ``bisection_steps`` bisections run for all fingers at once (fingers
are independent kinematic chains, so one joint vector holds every finger at its own ``s``).

Ground-truth contacts (:meth:`GraspModel.contacts`): per hand contact link (palm-side candidates of the palm
and phalanges, the fingertip spheres) the candidate closest to the object surface, kept when its signed
distance is below ``contact_threshold``; the contact point is its closest point on the object surface.

Penetration (:meth:`GraspModel.penetration`) is measured both ways: dense hand surface points and fingertip
spheres against the object's signed distance, and object surface samples against the posed hand mesh
(:class:`~handypriors_core.physics.HandGeometry`), so object edges poking between hand samples are caught.

Frames: joint angles ``q (..., J)`` [rad] in ``URDFHand.joint_names`` order; ``object2hand (..., 4, 4)``;
lengths in metres; every distance is signed, negative inside.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np
import torch

from ..errors import InvalidValueError
from ..geometry.transforms import invert_transform, transform_points
from ..models import URDFHand, allegro_urdf, primitives
from ..physics import HandGeometry, ObjectSDF
from .objects import ObjectMesh
from .scenario import FINGERS, GraspSettings

__all__ = ["GraspModel", "HandContacts", "load_allegro_hand"]

PALM = len(FINGERS)  # group index of the palm and of links that do not move while closing


@functools.lru_cache(maxsize=4)
def load_allegro_hand(device: str = "cpu", dtype: torch.dtype = torch.float64) -> URDFHand:
    """The shipped Allegro URDF hand with dense surface sampling (cached per device and dtype)."""
    return URDFHand.from_urdf(allegro_urdf(), points_per_link=160, contact_points_per_link=64,
                              device=device, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class HandContacts:
    """Hand-object contacts of one configuration (``C`` may be 0), object frame.

    Attributes:
        links: ``C`` URDF link names (palm = ``base_link``).
        pos_obj: ``(C, 3)`` float64 contact points on the object surface [m, object frame].
        normal_obj: ``(C, 3)`` unit normals from the hand into the object [object frame].
        penetration: ``(C,)`` [m], > 0 means overlap.
    """

    links: tuple[str, ...]
    pos_obj: np.ndarray
    normal_obj: np.ndarray
    penetration: np.ndarray

    def __len__(self) -> int:
        return len(self.links)


def _finger_of_link(name: str) -> int:
    match = re.fullmatch(r"link_(\d+)\.0(_tip)?", name)
    return int(match.group(1)) // 4 if match else PALM


def _finger_of_joint(name: str) -> int:
    match = re.fullmatch(r"joint_(\d+)\.0", name)
    if not match:
        raise InvalidValueError(f"the grasp model needs Allegro joint names joint_<k>.0; got {name!r}")
    return int(match.group(1)) // 4


class GraspModel:
    """Finger closing, contacts and penetration of one hand and one object (see the module docstring).

    Args:
        hand: the Allegro :class:`URDFHand` (float64 recommended; see :func:`load_allegro_hand`).
        mesh: the object.
        settings: placement and closing settings.
        samples: object surface samples for the reverse penetration test.
    """

    def __init__(self, hand: URDFHand, mesh: ObjectMesh, settings: GraspSettings, samples: int = 3000):
        self.hand = hand
        self.settings = settings
        self.device, self.dtype = hand.device, hand.dtype
        self.mesh = mesh
        verts = torch.as_tensor(mesh.verts, dtype=self.dtype, device=self.device)
        faces = torch.as_tensor(mesh.faces, dtype=torch.long, device=self.device)
        self.sdf = ObjectSDF(verts, faces)
        self._hand_geometries: dict[int, HandGeometry] = {}
        pts, _, _ = primitives.sample_surface_even(mesh.verts, mesh.faces, samples, seed=0)
        self.object_samples = torch.as_tensor(pts, dtype=self.dtype, device=self.device)

        J = hand.num_joints
        self.joint_finger = torch.tensor([_finger_of_joint(n) for n in hand.joint_names], device=self.device)
        self.open_q = self._pose_vector(settings.open_pose)
        self.closed_q = self._pose_vector(settings.closed_pose)
        closing = torch.tensor([f in settings.fingers for f in FINGERS], device=self.device)
        self.closing = closing
        self.delta = torch.where(closing[self.joint_finger], self.closed_q - self.open_q,
                                 torch.zeros(J, dtype=self.dtype, device=self.device))
        lo, hi = hand.lower_limits, hand.upper_limits
        for label, q in (("open_pose", self.open_q), ("closed_pose", self.closed_q)):
            bad = [hand.joint_names[j] for j in torch.nonzero((q < lo - 1e-9) | (q > hi + 1e-9)).flatten().tolist()]
            if bad:
                raise InvalidValueError(f"grasp.{label} is outside the joint limits for {bad}")

        # group of every link: its finger when it moves along the curl path, else the palm group
        moving_joint = self.delta != 0
        link_group = []
        for name in hand.link_names:
            finger = _finger_of_link(name)
            group = PALM
            if finger < PALM:
                k = int(re.fullmatch(r"link_(\d+)\.0(_tip)?", name).group(1))
                chain = [hand.joint_index(f"joint_{j}.0") for j in range(4 * finger, k + 1)]
                if bool(moving_joint[chain].any()):
                    group = finger
            link_group.append(group)
        self.link_group = torch.tensor(link_group, device=self.device)
        self.tip_link = hand.fingertip_link
        self._point_link = torch.cat([hand.point_link, hand.contact_candidate_link])

    # ------------------------------------------------------------------------------------------ helpers
    def _pose_vector(self, pose: dict[str, list[float]]) -> torch.Tensor:
        q = torch.zeros(self.hand.num_joints, dtype=self.dtype, device=self.device)
        for f, finger in enumerate(FINGERS):
            idx = torch.nonzero(self.joint_finger == f).flatten()
            q[idx] = torch.as_tensor(pose[finger], dtype=self.dtype, device=self.device)
        return q

    def _as_pose(self, object2hand) -> torch.Tensor:
        T = torch.as_tensor(object2hand, dtype=self.dtype, device=self.device)
        return T if T.dim() == 3 else T[None]

    def _object_query(self, points_hand: torch.Tensor, object2hand: torch.Tensor):
        """Signed distance of hand-frame points ``(B, N, 3)`` to the object posed by ``object2hand (B|1, 4, 4)``."""
        hand2object = invert_transform(object2hand).expand(points_hand.shape[0], 4, 4)
        return self.sdf.query(transform_points(hand2object, points_hand))

    def q_at(self, s: torch.Tensor) -> torch.Tensor:
        """Joint angles ``(..., J)`` with finger ``f`` at curl ``s[..., f]`` (``s (..., 4)``)."""
        s = torch.as_tensor(s, dtype=self.dtype, device=self.device)
        return self.open_q + s[..., self.joint_finger] * self.delta

    def _hand_geometry(self, batch: int) -> HandGeometry:
        # one instance per batch size: HandGeometry refits its warp meshes only while the batch size is unchanged
        if batch not in self._hand_geometries:
            self._hand_geometries[batch] = HandGeometry(self.hand.faces)
        return self._hand_geometries[batch]

    def link_distances(self, q: torch.Tensor, object2hand, with_points: bool = False):
        """Smallest signed distance [m] between every hand link and the object: ``(B, L)`` for ``q (B, J)``.

        Three tests, the smallest value wins per link: the link's surface points and contact candidates against
        the object's signed distance (the fingertip links: the exact sphere of ``tip_radius``), and the object
        surface samples against the posed hand mesh (attributed to the link of their closest hand face).
        With ``with_points`` also returns, per link, the object surface point ``(B, L, 3)`` [object frame]
        where that minimum is reached and the object's outward normal there ``(B, L, 3)``.
        """
        T = self._as_pose(object2hand)
        B, L = q.shape[0], self.hand.num_links
        inf = torch.full((B, L), float("inf"), dtype=self.dtype, device=self.device)
        points = torch.cat([self.hand.surface_points(q), self.hand.contact_candidates(q)], 1)
        fwd = self._object_query(points, T)
        d_fwd = inf.clone().scatter_reduce_(1, self._point_link.expand(B, -1), fwd.distance.detach(), "amin")
        tip = self._object_query(self.hand.fingertips(q), T)
        d_fwd[:, self.tip_link] = tip.distance.detach() - self.settings.tip_radius
        verts = self.hand.mesh(q)[0]
        samples = transform_points(T.expand(B, 4, 4), self.object_samples.expand(B, -1, -1))
        rev = self._hand_geometry(B).signed_distance(samples, verts)
        rev_link = self.hand.vertex_link[self.hand.faces[rev.face.clamp_min(0), 0]]
        d_rev = inf.clone().scatter_reduce_(1, rev_link, rev.distance.detach(), "amin")
        d = torch.minimum(d_fwd, d_rev)
        if not with_points:
            return d
        # argmin per link of each test (first index reaching the minimum)
        P, S = points.shape[1], samples.shape[1]
        fwd_idx = torch.where(fwd.distance.detach() <= d_fwd.gather(1, self._point_link.expand(B, -1)),
                              torch.arange(P, device=self.device).expand(B, -1), P)
        fwd_arg = torch.full((B, L), P, device=self.device).scatter_reduce_(1, self._point_link.expand(B, -1),
                                                                            fwd_idx, "amin").clamp_max(P - 1)
        fwd_pos = fwd.closest_point.gather(1, fwd_arg[..., None].expand(-1, -1, 3))
        fwd_nrm = fwd.normal.gather(1, fwd_arg[..., None].expand(-1, -1, 3))
        fwd_pos[:, self.tip_link], fwd_nrm[:, self.tip_link] = tip.closest_point, tip.normal
        rev_idx = torch.where(rev.distance.detach() <= d_rev.gather(1, rev_link),
                              torch.arange(S, device=self.device).expand(B, -1), S)
        rev_arg = torch.full((B, L), S, device=self.device).scatter_reduce_(1, rev_link, rev_idx,
                                                                            "amin").clamp_max(S - 1)
        rev_pos = self.object_samples[rev_arg]
        rev_nrm = self.sdf.query(rev_pos).normal
        use_rev = (d_rev < d_fwd)[..., None]
        return d, torch.where(use_rev, rev_pos, fwd_pos), torch.where(use_rev, rev_nrm, fwd_nrm)

    def group_distance(self, q: torch.Tensor, object2hand) -> torch.Tensor:
        """``(B, 5)`` smallest signed distance [m] of each finger's moving links (and, last, of the palm and the
        links that do not move while closing) to the object, for ``q (B, J)`` (see :meth:`link_distances`)."""
        d = self.link_distances(q, object2hand)
        out = torch.full((q.shape[0], PALM + 1), float("inf"), dtype=self.dtype, device=self.device)
        return out.scatter_reduce_(1, self.link_group.expand(q.shape[0], -1), d, "amin")

    # ------------------------------------------------------------------------------------------ closing
    def close(self, object2hand) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Close the ``fingers`` of the settings on the object at ``object2hand (4, 4)``.

        Returns ``q (J,)`` [rad], ``s (4,)`` (each finger's curl; 0 = open, 1 = closed pose) and ``touching (4,)``
        bool (the finger reached the object before its closed pose). InvalidValueError names a finger that
        already overlaps the object at its open pose, or the palm/static links when they do.
        """
        cfg = self.settings
        target = -cfg.contact_overlap
        T = self._as_pose(object2hand)
        grid = torch.linspace(0.0, 1.0, cfg.grid_steps + 1, dtype=self.dtype, device=self.device)
        D = self.group_distance(self.q_at(grid[:, None].expand(-1, PALM)), T)  # (K + 1, 5)
        if float(D[0, PALM]) < -cfg.contact_threshold:
            raise InvalidValueError(f"the object overlaps the palm / static finger links by "
                                    f"{-float(D[0, PALM]) * 1e3:.2f} mm; change grasp.object_yz or object_rpy")
        hit = (D[:, :PALM] <= target) & self.closing
        bad = [FINGERS[f] for f in range(PALM) if bool(hit[0, f])]
        if bad:
            raise InvalidValueError(f"finger(s) {bad} overlap the object at their open pose; change grasp.open_pose "
                                    f"or the object placement")
        touching = hit.any(0)
        first = torch.argmax(hit.to(torch.uint8), 0).clamp_min(1)
        hi = torch.where(touching, grid[first], torch.ones_like(grid[first]))
        lo = torch.where(touching, grid[first - 1], torch.ones_like(hi))
        for _ in range(cfg.bisection_steps):
            mid = 0.5 * (lo + hi)
            inside = self.group_distance(self.q_at(mid)[None], T)[0, :PALM] <= target
            hi = torch.where(touching & inside, mid, hi)
            lo = torch.where(touching & ~inside, mid, lo)
        s = torch.where(self.closing, hi, torch.zeros_like(hi))
        return self.q_at(s), s, touching

    # ------------------------------------------------------------------------------------------ contacts
    def contacts(self, q: torch.Tensor, object2hand) -> HandContacts:
        """Ground-truth contacts of ``q (J,)`` with the object at ``object2hand (4, 4)``: one per hand link whose
        distance to the object (:meth:`link_distances`) is below ``contact_threshold``, at the object surface
        point where it is reached, with the normal from the hand into the object."""
        q = torch.as_tensor(q, dtype=self.dtype, device=self.device)[None]
        d, pos, nrm = self.link_distances(q, object2hand, with_points=True)
        keep = torch.nonzero(d[0] < self.settings.contact_threshold).flatten()
        normal = -nrm[0, keep]
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return HandContacts(
            links=tuple(self.hand.link_names[i] for i in keep.tolist()),
            pos_obj=pos[0, keep].cpu().numpy().astype(np.float64),
            normal_obj=normal.cpu().numpy().astype(np.float64),
            penetration=(-d[0, keep]).cpu().numpy().astype(np.float64),
        )

    def penetration(self, q: torch.Tensor, object2hand) -> torch.Tensor:
        """``(B,)`` largest overlap [m] (>= 0) between any hand link and the object for ``q (B, J)`` and
        ``object2hand (B|1, 4, 4)`` (both directions, see :meth:`link_distances`)."""
        q = torch.as_tensor(q, dtype=self.dtype, device=self.device)
        q = q[None] if q.dim() == 1 else q
        T = self._as_pose(object2hand).expand(q.shape[0], 4, 4)
        return (-self.link_distances(q, T).amin(1)).clamp_min(0.0)

    # ------------------------------------------------------------------------------------------ placement
    def rest_on_palm(self, rotation: torch.Tensor, yz: tuple[float, float]) -> torch.Tensor:
        """``object2hand (4, 4)`` for an object rotated by ``rotation (3, 3)`` whose bounding-box centre sits at
        hand ``(y, z) = yz`` and whose lowest point along the palm normal presses ``rest_overlap`` into the palm
        face (hand ``x`` = the palm box's front face)."""
        R = torch.as_tensor(rotation, dtype=self.dtype, device=self.device)
        verts = torch.as_tensor(self.mesh.verts, dtype=self.dtype, device=self.device) @ R.T
        lo, hi = verts.amin(0), verts.amax(0)
        palm_x = self.palm_face_x()
        t = torch.stack([
            torch.as_tensor(palm_x - self.settings.rest_overlap, dtype=self.dtype, device=self.device) - lo[0],
            torch.as_tensor(yz[0], dtype=self.dtype, device=self.device) - 0.5 * (lo[1] + hi[1]),
            torch.as_tensor(yz[1], dtype=self.dtype, device=self.device) - 0.5 * (lo[2] + hi[2]),
        ])
        T = torch.eye(4, dtype=self.dtype, device=self.device)
        T[:3, :3], T[:3, 3] = R, t
        return T

    def palm_face_x(self) -> float:
        """Hand-frame ``x`` of the palm's front (palm-side) face [m]: the largest ``x`` of the ``base_link`` mesh."""
        verts = self.hand.mesh(self.hand.default_joint_angles()[None])[0][0]
        palm = self.hand.vertex_link == self.hand.link_index(self.hand.root_link)
        return float(verts[palm, 0].max())
