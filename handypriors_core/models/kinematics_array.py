"""Forward kinematics of a :class:`~.urdf_hand.URDFHand` in float64 numpy: the CPU per-frame fast path.

A frame poses the hand once (16 joints, 21 links, a few thousand link-fixed points); in torch that is ~60 small
tensor calls whose overhead is most of their cost. These functions do the same arithmetic as
``URDFHand._fk`` / ``_pose_points`` (Rodrigues about the unit joint axis, link-to-parent = origin times joint
motion, the tree walked level by level) on numpy arrays (``test_filter_fast_paths``: equal to the torch path to
1e-12 in float64).

The tables hold the links in tree-level order (the root, then depth 1, ...), so each level's transforms are one
slice and a level whose parents are one slice of the previous level (the Allegro's fingers) or one link (the palm)
needs no gather. The link-fixed points of a set are kept padded per link, ``(L, n_max, 4)``: posing them is one
batched matrix product over the links and one gather of the rows (:class:`LinkPointSet`), about 2.5x cheaper than
gathering each point's transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy().copy()


@dataclass(frozen=True)
class KinematicTables:
    """The hand's kinematic buffers as float64 / int64 numpy arrays, links in tree-level order.

    Attributes: ``q_index (L,)`` source joint of each link's joint (``J``: none), ``q_mult``/``q_offset (L,)``
    mimic map, ``rev``/``pri (L,)`` 1 for revolute / prismatic joints, ``axis (L, 3)`` unit axes, ``K``/``K2
    (L, 3, 3)`` ``[a]x`` and ``[a]x^2``, ``origin (L, 4, 4)`` joint origins (all in level order); ``roots`` the
    slice of the depth-0 links; ``steps`` per deeper level ``(start, stop, parents)``: its slice and its parents'
    positions (a slice where they are consecutive or one link, else an index array); ``position (L,)`` level-order
    position of each link.
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
    roots: slice
    steps: tuple[tuple[int, int, slice | np.ndarray], ...]
    position: np.ndarray

    @classmethod
    def from_hand(cls, hand) -> KinematicTables:
        """Tables of a URDF hand (its buffers, in whatever dtype it holds them, read as float64)."""
        levels = [getattr(hand, f"_level{k}").cpu().numpy() for k in range(hand._n_levels)]
        order = np.concatenate(levels)  # level order -> link
        starts = np.cumsum([0] + [len(lv) for lv in levels])
        steps = []
        for k in range(1, len(levels)):
            parent = getattr(hand, f"_level{k}_parent").cpu().numpy() + starts[k - 1]  # level-order positions
            if np.all(parent == parent[0]):
                parent = slice(int(parent[0]), int(parent[0]) + 1)  # one parent: broadcast
            elif np.array_equal(parent, np.arange(parent[0], parent[0] + len(parent))):
                parent = slice(int(parent[0]), int(parent[0]) + len(parent))
            steps.append((int(starts[k]), int(starts[k + 1]), parent))
        axis = _f64(hand._axis)[order]
        zero = np.zeros(axis.shape[0])
        K = np.stack([np.stack([zero, -axis[:, 2], axis[:, 1]], -1),
                      np.stack([axis[:, 2], zero, -axis[:, 0]], -1),
                      np.stack([-axis[:, 1], axis[:, 0], zero], -1)], -2)
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        return cls(hand._q_index.cpu().numpy()[order], _f64(hand._q_mult)[order], _f64(hand._q_offset)[order],
                   _f64(hand._rev)[order], _f64(hand._pri)[order], axis, K, K @ K, _f64(hand._origin)[order],
                   slice(0, int(starts[1])), tuple(steps), position)


def link_poses_array(tables: KinematicTables, q: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Link poses ``(B, L, 4, 4)`` [m] in the tables' level order at joint angles ``q (B, J)`` [rad or m], in the
    frame ``base (B, 4, 4)`` (the hand frame when None), float64."""
    B = q.shape[0]
    ql = np.concatenate((q, np.zeros((B, 1))), 1)[:, tables.q_index] * tables.q_mult + tables.q_offset  # (B, L)
    angle = (ql * tables.rev)[..., None, None]
    half = np.sin(0.5 * angle)
    motion = np.zeros((B, ql.shape[1], 4, 4))
    motion[..., :3, :3] = np.eye(3) + np.sin(angle) * tables.K + (2 * half * half) * tables.K2
    motion[..., :3, 3] = tables.axis * (ql * tables.pri)[..., None]
    motion[..., 3, 3] = 1.0
    world = np.matmul(tables.origin, motion)  # link2parent; each level is then made link2hand in place
    for start, stop, parent in tables.steps:
        world[:, start:stop] = world[:, parent] @ world[:, start:stop]
    return world if base is None else base[:, None] @ world


def forward_kinematics_array(tables: KinematicTables, q: np.ndarray) -> np.ndarray:
    """Link poses ``link2hand (B, L, 4, 4)`` [m] (link order) at joint angles ``q (B, J)`` [rad or m], float64."""
    return link_poses_array(tables, q)[:, tables.position]


@dataclass(frozen=True)
class LinkPointSet:
    """Points fixed in the links' frames, padded per link for one batched product.

    Attributes: ``padded (L, n_max, 4)`` homogeneous points of each link (level order; zero rows pad), ``slot
    (N,)`` each point's row in ``padded.reshape(-1, 4)``.
    """

    padded: np.ndarray
    slot: np.ndarray

    @classmethod
    def from_points(cls, points: np.ndarray, link: np.ndarray, tables: KinematicTables) -> LinkPointSet:
        """``points (N, 3)`` float64 [m] on links ``link (N,)`` (link indices)."""
        position = tables.position[link]
        L = len(tables.position)
        counts = np.bincount(position, minlength=L)
        width = max(int(counts.max(initial=0)), 1)
        order = np.argsort(position, kind="stable")
        rank = np.arange(len(order)) - np.concatenate(([0], np.cumsum(counts)[:-1]))[position[order]]
        slot = np.empty(len(order), dtype=np.int64)
        slot[order] = position[order] * width + rank
        padded = np.zeros((L * width, 4))
        padded[slot, :3] = points
        padded[slot, 3] = 1.0
        return cls(padded.reshape(L, width, 4), slot)

    def pose(self, world: np.ndarray) -> np.ndarray:
        """``(B, N, 3)`` float64 points under link poses ``world (B, L, 4, 4)`` (level order)."""
        B = world.shape[0]
        posed = np.matmul(self.padded, world[:, :, :3, :].transpose(0, 1, 3, 2))  # (B, L, n_max, 3)
        return posed.reshape(B, -1, 3).take(self.slot, 1)


def pose_points_array(poses: np.ndarray, points: np.ndarray, link: np.ndarray) -> np.ndarray:
    """Homogeneous points ``(N, 4)`` (last column 1) fixed in the frames of links ``link (N,)`` -> ``(B, N, 3)``
    under ``poses (B, L, 4, 4)`` (link order); the reference :class:`LinkPointSet` is tested against."""
    return np.einsum("bnij,nj->bni", poses[:, link, :3, :], points)


def _tables(hand):
    """The hand's kinematic tables and point sets (mesh vertices + contact candidates, surface points), made once
    per dtype."""
    cache = hand.__dict__.setdefault("_array_tables", {})
    if hand.dtype not in cache:
        tables = KinematicTables.from_hand(hand)
        front = torch.cat((hand._mesh_verts, hand._contact_points)).detach().to(torch.float64).numpy()
        front_link = torch.cat((hand.vertex_link, hand.contact_candidate_link)).numpy()
        surface = hand._points.detach().to(torch.float64).numpy()
        cache.clear()
        cache[hand.dtype] = (tables, LinkPointSet.from_points(front, front_link, tables),
                             LinkPointSet.from_points(surface, hand.point_link.numpy(), tables),
                             int(hand._mesh_verts.shape[0]), tables.position[hand.fingertip_link.numpy()],
                             torch.empty(0, dtype=hand.dtype).numpy().dtype)
    return cache[hand.dtype]


def posed_surfaces_array(hand, q: torch.Tensor, base: torch.Tensor | None, defer_surface: bool = False):
    """``URDFHand.posed_surfaces`` on the CPU in float64 numpy (no gradient; the results in the hand's dtype):
    mesh vertices, contact candidates, surface points and fingertip centres at ``q (B, J)`` (already in the hand's
    dtype) in frame ``base``. ``defer_surface``: the surface points as a function without arguments that poses them
    (a frame's filter step does not read them)."""
    tables, front, surface, n_verts, tips, dtype = _tables(hand)
    world = link_poses_array(tables, q.detach().to(torch.float64).numpy(),
                             None if base is None else base.detach().to("cpu", torch.float64).numpy())
    verts, contacts = np.split(front.pose(world).astype(dtype, copy=False), [n_verts], 1)

    def surface_points() -> torch.Tensor:
        return torch.from_numpy(surface.pose(world).astype(dtype, copy=False))

    return (torch.from_numpy(np.ascontiguousarray(verts)), torch.from_numpy(np.ascontiguousarray(contacts)),
            surface_points if defer_surface else surface_points(),
            torch.from_numpy(world[:, tips][..., :3, 3].astype(dtype)))
