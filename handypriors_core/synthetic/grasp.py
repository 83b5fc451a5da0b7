"""Contact-consistent grasps of the Allegro hand on a known object (kinematic: no forces are simulated).

:class:`GraspModel` closes fingers on the object by moving each finger along a straight line in joint space,
``q(s) = open + s (closed - open)`` with ``s`` in [0, 1], until the finger first touches the object: the
smallest signed distance between the finger's moving links and the object (:meth:`GraspModel.link_distances`)
reaches ``-contact_overlap``. The first crossing is bracketed on a grid of ``grid_steps + 1`` curl values
evaluated as one batch, then each bracket is split into ``refine_points + 1`` parts per iteration
(``refine_iterations`` batches). Everything runs for all fingers at once (fingers are independent kinematic
chains, so one joint vector holds every finger at its own ``s``) and for several object poses at once (the
rotate / pivot motions re-close the fingers on every frame in one call).

Distance between a hand link and the object, three tests (smallest wins): the link's surface points and
palm-side contact candidates against the object's signed distance; the fingertip as the exact sphere of
``tip_radius`` about the tip link origin; object surface samples against the posed hand mesh
(:class:`~handypriors_core.physics.HandGeometry`), so object edges poking between hand samples are caught.

Ground-truth contacts (:meth:`GraspModel.contacts`): one per hand link whose distance is below
``contact_threshold``, at the object surface point where that distance is reached, with the unit normal from
the hand into the object. :meth:`GraspModel.penetration` is the largest overlap over all links.

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
from ..physics import ContactSettings, HandGeometry, ObjectSDF
from .objects import ObjectMesh
from .scenario import FINGERS, GraspSettings

__all__ = ["GraspModel", "HandContacts", "load_allegro_hand"]

PALM = len(FINGERS)  # group index of the palm and of links that do not move while closing


@functools.lru_cache(maxsize=4)
def load_allegro_hand(device: str = "cpu", dtype: torch.dtype = torch.float32) -> URDFHand:
    """The shipped Allegro URDF hand with dense surface sampling (cached per device and dtype)."""
    return URDFHand.from_urdf(allegro_urdf(), points_per_link=96, contact_points_per_link=48,
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
        hand: the Allegro :class:`URDFHand` (see :func:`load_allegro_hand`; float32 is precise to ~1e-7 m here).
        mesh: the object.
        settings: placement and closing settings.
    Signs: winding numbers of accuracy 1 (exact classification 1 mm from the surface) for the hand (its link
    meshes overlap) and for non-watertight objects; the normal test for watertight objects (faster).
    """

    def __init__(self, hand: URDFHand, mesh: ObjectMesh, settings: GraspSettings):
        self.hand = hand
        self.settings = settings
        self.device, self.dtype = hand.device, hand.dtype
        self.mesh = mesh
        verts = torch.as_tensor(mesh.verts, dtype=self.dtype, device=self.device)
        faces = torch.as_tensor(mesh.faces, dtype=torch.long, device=self.device)
        import trimesh

        watertight = trimesh.Trimesh(mesh.verts, mesh.faces, process=False).is_watertight
        self.sdf = ObjectSDF(verts, faces, ContactSettings(sign_method="normal" if watertight else "winding_number",
                                                           winding_accuracy=1.0))
        self._hand_settings = ContactSettings(winding_accuracy=1.0)
        self._hand_geometries: dict[int, HandGeometry] = {}
        pts, _, _ = primitives.sample_surface_even(mesh.verts, mesh.faces, settings.object_samples, seed=0)
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
        # subsets used while closing: geometry of the links that move along the curl path
        self._moving_points = torch.nonzero(self.link_group[self._point_link] < PALM).flatten()
        face_link = hand.vertex_link[hand.faces[:, 0]]
        self._faces = {False: hand.faces, True: hand.faces[self.link_group[face_link] < PALM]}

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

    def _hand_geometry(self, batch: int, moving_only: bool) -> HandGeometry:
        # one instance per batch size: HandGeometry refits its warp meshes only while the batch size is unchanged
        key = (batch, moving_only)
        if key not in self._hand_geometries:
            self._hand_geometries[key] = HandGeometry(self._faces[moving_only], self._hand_settings)
        return self._hand_geometries[key]

    def link_distances(self, q: torch.Tensor, object2hand, with_points: bool = False, moving_only: bool = False,
                       sample_index: torch.Tensor | None = None):
        """Smallest signed distance [m] between every hand link and the object: ``(B, L)`` for ``q (B, J)``.

        Three tests, the smallest value wins per link: the link's surface points and contact candidates against
        the object's signed distance (the fingertip links: the exact sphere of ``tip_radius``), and the object
        surface samples against the posed hand mesh (attributed to the link of their closest hand face).
        With ``with_points`` also returns, per link, the object surface point ``(B, L, 3)`` [object frame]
        where that minimum is reached and the object's outward normal there ``(B, L, 3)``. ``moving_only``
        tests only the links that move while closing (the others get ``inf``), which is what closing needs;
        ``sample_index`` restricts the reverse test to those object samples (the ones a finger can reach).
        """
        T = self._as_pose(object2hand)
        B, L = q.shape[0], self.hand.num_links
        inf = torch.full((B, L), float("inf"), dtype=self.dtype, device=self.device)
        points = torch.cat([self.hand.surface_points(q), self.hand.contact_candidates(q)], 1)
        point_link = self._point_link
        if moving_only:
            points, point_link = points[:, self._moving_points], point_link[self._moving_points]
        fwd = self._object_query(points, T)
        d_fwd = inf.clone().scatter_reduce_(1, point_link.expand(B, -1), fwd.distance.detach(), "amin")
        tip = self._object_query(self.hand.fingertips(q), T)
        d_fwd[:, self.tip_link] = tip.distance.detach() - self.settings.tip_radius
        verts = self.hand.mesh(q)[0]
        object_samples = self.object_samples if sample_index is None else self.object_samples[sample_index]
        samples = transform_points(T.expand(B, 4, 4), object_samples.expand(B, -1, -1))
        rev = self._hand_geometry(B, moving_only).signed_distance(samples, verts)
        rev_link = self.hand.vertex_link[self._faces[moving_only][rev.face.clamp_min(0), 0]]
        d_rev = inf.clone().scatter_reduce_(1, rev_link, rev.distance.detach(), "amin")
        d = torch.minimum(d_fwd, d_rev)
        if not with_points:
            return d
        # argmin per link of each test (first index reaching the minimum)
        P, S = points.shape[1], samples.shape[1]
        fwd_idx = torch.where(fwd.distance.detach() <= d_fwd.gather(1, point_link.expand(B, -1)),
                              torch.arange(P, device=self.device).expand(B, -1), P)
        fwd_arg = torch.full((B, L), P, device=self.device).scatter_reduce_(1, point_link.expand(B, -1),
                                                                            fwd_idx, "amin").clamp_max(P - 1)
        fwd_pos = fwd.closest_point.gather(1, fwd_arg[..., None].expand(-1, -1, 3))
        fwd_nrm = fwd.normal.gather(1, fwd_arg[..., None].expand(-1, -1, 3))
        fwd_pos[:, self.tip_link], fwd_nrm[:, self.tip_link] = tip.closest_point, tip.normal
        rev_idx = torch.where(rev.distance.detach() <= d_rev.gather(1, rev_link),
                              torch.arange(S, device=self.device).expand(B, -1), S)
        rev_arg = torch.full((B, L), S, device=self.device).scatter_reduce_(1, rev_link, rev_idx,
                                                                            "amin").clamp_max(S - 1)
        rev_pos = object_samples[rev_arg]
        rev_nrm = self.sdf.query(rev_pos).normal
        use_rev = (d_rev < d_fwd)[..., None]
        return d, torch.where(use_rev, rev_pos, fwd_pos), torch.where(use_rev, rev_nrm, fwd_nrm)

    def group_distance(self, q: torch.Tensor, object2hand, moving_only: bool = False,
                       sample_index: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 5)`` smallest signed distance [m] of each finger's moving links (and, last, of the palm and the
        links that do not move while closing; ``inf`` with ``moving_only``) to the object, for ``q (B, J)``
        (see :meth:`link_distances`)."""
        d = self.link_distances(q, object2hand, moving_only=moving_only, sample_index=sample_index)
        out = torch.full((q.shape[0], PALM + 1), float("inf"), dtype=self.dtype, device=self.device)
        return out.scatter_reduce_(1, self.link_group.expand(q.shape[0], -1), d, "amin")

    # ------------------------------------------------------------------------------------------ closing
    def close(self, object2hand) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Close the ``fingers`` of the settings on the object at ``object2hand (4, 4)`` or, for several object
        poses at once, ``(N, 4, 4)``.

        Returns ``q (N, J)`` [rad], ``s (N, 4)`` (each finger's curl; 0 = open, 1 = closed pose) and
        ``touching (N, 4)`` bool (the finger reached the object before its closed pose); unbatched for a
        ``(4, 4)`` input. InvalidValueError names a finger that already overlaps the object at its open pose,
        or the palm/static links when they do.
        """
        cfg = self.settings
        target = -cfg.contact_overlap
        unbatched = torch.as_tensor(object2hand).dim() == 2
        T = self._as_pose(object2hand)
        N = T.shape[0]
        lo = torch.zeros(N, PALM, dtype=self.dtype, device=self.device)
        hi = torch.ones_like(lo)
        palm = self.group_distance(self.open_q.expand(N, -1), T)[:, PALM]
        if float(palm.min()) < -cfg.contact_threshold:
            i = int(torch.argmin(palm))
            raise InvalidValueError(f"the object overlaps the palm / static finger links by {-float(palm[i]) * 1e3:.2f}"
                                    f" mm (pose {i}); change grasp.object_yz or object_rpy")
        near = self._reachable_samples(T)
        # iteration 0 evaluates s = 0, 1/K, ..., 1 (first crossing); every further one splits each bracket into
        # refine_points + 1 parts and keeps the part holding the first crossing; all poses and fingers at once
        for it in range(cfg.refine_iterations + 1):
            n = cfg.grid_steps if it == 0 else cfg.refine_points + 1
            frac = torch.linspace(0.0, 1.0, n + 1, dtype=self.dtype, device=self.device)
            s_k = lo + (hi - lo) * frac[:, None, None]  # (n + 1, N, 4)
            if it > 0:  # the bracket ends are known already
                s_k = s_k[1:-1]
            M = s_k.shape[0]
            q = self.q_at(s_k).reshape(M * N, -1)
            D = self.group_distance(q, T.repeat(M, 1, 1), moving_only=True, sample_index=near).reshape(M, N, -1)
            hit = (D[..., :PALM] <= target) & self.closing
            found = hit.any(0)
            k = torch.argmax(hit.to(torch.uint8), 0)  # first hit (0 when none)
            if it == 0:
                bad = hit[0].any(0)
                if bool(bad.any()):
                    raise InvalidValueError(f"finger(s) {[FINGERS[f] for f in torch.nonzero(bad).flatten().tolist()]}"
                                            f" overlap the object at their open pose; change grasp.open_pose or the "
                                            f"object placement")
                touching = found
                new_lo = s_k.gather(0, (k - 1).clamp_min(0)[None])[0]
                new_hi = s_k.gather(0, k[None])[0]
            else:  # inner points 1..M of the bracket were evaluated; none hit -> the crossing is in the last part
                inner = torch.cat([lo[None], s_k, hi[None]], 0)
                k = torch.where(found, k + 1, torch.full_like(k, M + 1))
                new_lo, new_hi = inner.gather(0, (k - 1)[None])[0], inner.gather(0, k[None])[0]
            lo = torch.where(touching, new_lo, lo)
            hi = torch.where(touching, new_hi, hi)
            if not bool(((hi - lo) > 1e-6).any()):
                break
        s = torch.where(self.closing, torch.where(touching, hi, torch.ones_like(hi)), torch.zeros_like(hi))
        q = self.q_at(s)
        return (q[0], s[0], touching[0]) if unbatched else (q, s, touching)

    def _reachable_samples(self, object2hand: torch.Tensor, margin: float = 0.03) -> torch.Tensor:
        """Indices of the object samples that lie, for some pose of ``object2hand (N, 4, 4)``, within ``margin``
        [m] of the bounding box of a moving link at some grid step of the curl path (only those can end up
        inside a finger while closing)."""
        K = self.settings.grid_steps
        grid = torch.linspace(0.0, 1.0, K + 1, dtype=self.dtype, device=self.device)
        q = self.q_at(grid[:, None].expand(-1, PALM))
        points = torch.cat([self.hand.surface_points(q), self.hand.contact_candidates(q)], 1)[:, self._moving_points]
        link = self._point_link[self._moving_points].expand(K + 1, -1)[..., None].expand(-1, -1, 3)
        L = self.hand.num_links
        lo = torch.full((K + 1, L, 3), float("inf"), dtype=self.dtype, device=self.device)
        hi = torch.full_like(lo, -float("inf"))
        lo = lo.scatter_reduce_(1, link, points, "amin").reshape(-1, 3) - margin
        hi = hi.scatter_reduce_(1, link, points, "amax").reshape(-1, 3) + margin
        samples = transform_points(object2hand, self.object_samples.expand(object2hand.shape[0], -1, -1))
        inside = torch.zeros(samples.shape[1], dtype=torch.bool, device=self.device)
        for pose_samples in samples:  # loop over object poses (frames), not points
            inside |= ((pose_samples[:, None] >= lo) & (pose_samples[:, None] <= hi)).all(-1).any(-1)
        return torch.nonzero(inside).flatten()

    # ------------------------------------------------------------------------------------------ contacts
    def contacts(self, q: torch.Tensor, object2hand) -> HandContacts | list[HandContacts]:
        """Ground-truth contacts of ``q (J,)`` with the object at ``object2hand (4, 4)``: one per hand link whose
        distance to the object (:meth:`link_distances`) is below ``contact_threshold``, at the object surface
        point where it is reached, with the normal from the hand into the object. Batched input ``q (N, J)``,
        ``object2hand (N, 4, 4)`` gives a list of N results (one batched query)."""
        q = torch.as_tensor(q, dtype=self.dtype, device=self.device)
        unbatched = q.dim() == 1
        q = q[None] if unbatched else q
        T = self._as_pose(object2hand).expand(q.shape[0], 4, 4)
        d, pos, nrm = self.link_distances(q, T, with_points=True)
        out = []
        for i in range(q.shape[0]):  # loop over configurations (frames)
            keep = torch.nonzero(d[i] < self.settings.contact_threshold).flatten()
            normal = -nrm[i, keep]
            normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            out.append(HandContacts(
                links=tuple(self.hand.link_names[j] for j in keep.tolist()),
                pos_obj=pos[i, keep].cpu().numpy().astype(np.float64),
                normal_obj=normal.cpu().numpy().astype(np.float64),
                penetration=(-d[i, keep]).cpu().numpy().astype(np.float64),
            ))
        return out[0] if unbatched else out

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
