"""Forward kinematics of a :class:`~.urdf_hand.URDFHand` in float64 numpy: the CPU per-frame fast path.

A frame poses the hand once (16 joints, 21 links, a few thousand link-fixed points); in torch that is ~60 small
tensor calls whose overhead is most of their cost. These functions do the same arithmetic as
``URDFHand._fk`` / ``_pose_points`` (Rodrigues about the unit joint axis, link-to-parent = origin times joint
motion, the tree walked level by level) on numpy arrays (``test_filter_fast_paths``: equal to the torch path to
1e-12 in float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy().copy()


@dataclass(frozen=True)
class KinematicTables:
    """The hand's kinematic buffers as float64 / int64 numpy arrays.

    Attributes: ``q_index (L,)`` source joint of each link's joint (``J``: none), ``q_mult``/``q_offset (L,)``
    mimic map, ``rev``/``pri (L,)`` 1 for revolute / prismatic joints, ``axis (L, 3)`` unit axes, ``K``/``K2
    (L, 3, 3)`` ``[a]x`` and ``[a]x^2``, ``origin (L, 4, 4)`` joint origins, ``levels`` (links, parent positions in
    the previous level) per tree depth, ``inv_perm (L,)`` level order -> link order.
    """

    q_index: np.ndarray
    q_mult: np.ndarray
    q_offset: np.ndarray
    rev: np.ndarray
    pri: np.ndarray
    axis: np.ndarray
    K: np.ndarray
    K2: np.ndarray
    origin: np.ndarray
    levels: tuple[tuple[np.ndarray, np.ndarray | None], ...]
    inv_perm: np.ndarray

    @classmethod
    def from_hand(cls, hand) -> KinematicTables:
        """Tables of a URDF hand (its buffers, in whatever dtype it holds them, read as float64)."""
        axis = _f64(hand._axis)
        zero = np.zeros(axis.shape[0])
        K = np.stack([np.stack([zero, -axis[:, 2], axis[:, 1]], -1),
                      np.stack([axis[:, 2], zero, -axis[:, 0]], -1),
                      np.stack([-axis[:, 1], axis[:, 0], zero], -1)], -2)
        levels = tuple((getattr(hand, f"_level{k}").cpu().numpy(),
                        getattr(hand, f"_level{k}_parent").cpu().numpy() if k else None)
                       for k in range(hand._n_levels))
        return cls(hand._q_index.cpu().numpy(), _f64(hand._q_mult), _f64(hand._q_offset), _f64(hand._rev),
                   _f64(hand._pri), axis, K, K @ K, _f64(hand._origin), levels, hand._inv_perm.cpu().numpy())


def forward_kinematics_array(tables: KinematicTables, q: np.ndarray) -> np.ndarray:
    """Link poses ``link2hand (B, L, 4, 4)`` [m] at joint angles ``q (B, J)`` [rad or m], float64."""
    B = q.shape[0]
    ql = np.concatenate((q, np.zeros((B, 1))), 1)[:, tables.q_index] * tables.q_mult + tables.q_offset  # (B, L)
    angle = (ql * tables.rev)[..., None, None]
    half = np.sin(0.5 * angle)
    motion = np.zeros((B, ql.shape[1], 4, 4))
    motion[..., :3, :3] = np.eye(3) + np.sin(angle) * tables.K + (2 * half * half) * tables.K2
    motion[..., :3, 3] = tables.axis * (ql * tables.pri)[..., None]
    motion[..., 3, 3] = 1.0
    local = tables.origin @ motion  # link2parent
    links, _ = tables.levels[0]
    world = [local[:, links]]
    for links, parent in tables.levels[1:]:
        world.append(world[-1][:, parent] @ local[:, links])
    return np.concatenate(world, 1)[:, tables.inv_perm]


def pose_points_array(poses: np.ndarray, points: np.ndarray, link: np.ndarray) -> np.ndarray:
    """Homogeneous points ``(N, 4)`` (last column 1) fixed in the frames of links ``link (N,)`` -> ``(B, N, 3)``
    under ``poses (B, L, 4, 4)``."""
    return np.einsum("bnij,nj->bni", poses[:, link, :3, :], points)


def posed_surfaces_array(hand, q: torch.Tensor, base: torch.Tensor | None):
    """``URDFHand.posed_surfaces`` on the CPU in float64 numpy (no gradient; the results in the hand's dtype):
    mesh vertices, contact candidates, surface points and fingertip centres at ``q (B, J)`` in frame ``base``."""
    cache = hand.__dict__.setdefault("_array_tables", {})
    if hand.dtype not in cache:  # the tables, the three point sets as one homogeneous (N, 4) array, their links
        surfaces = (hand._mesh_verts, hand._contact_points, hand._points)
        points = torch.cat(surfaces).detach().to(torch.float64).numpy()
        cache.clear()
        cache[hand.dtype] = (KinematicTables.from_hand(hand), np.concatenate((points, np.ones((len(points), 1))), 1),
                             torch.cat((hand.vertex_link, hand.contact_candidate_link, hand.point_link)).numpy(),
                             np.cumsum([len(s) for s in surfaces])[:2].tolist(), hand.fingertip_link.numpy())
    tables, points, link, splits, tips = cache[hand.dtype]
    poses = forward_kinematics_array(tables, q.detach().to(torch.float64).numpy())
    if base is not None:
        poses = base.detach().to("cpu", torch.float64).numpy()[:, None] @ poses
    posed = torch.from_numpy(pose_points_array(poses, points, link)).to(hand.dtype)
    return (*(p.contiguous() for p in posed.tensor_split(splits, 1)),
            torch.from_numpy(poses[:, tips][..., :3, 3]).to(hand.dtype))
