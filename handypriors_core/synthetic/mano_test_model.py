"""A synthetic hand model in the MANO file format, for tests, the demo and benchmarks.

It is **not** MANO: a hand-like mesh built from scratch, stored with the keys, shapes and dtypes of the official
``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` so that :class:`~handypriors_core.models.mano.ManoHand` and the loader
run on it exactly as on the real files (which the project never ships, downloads or asks for).

Keys (official ones first): ``v_template (778, 3)`` f64 [m], ``shapedirs (778, 3, 10)`` f64,
``posedirs (778, 3, 135)`` f64, ``J_regressor`` ``scipy.sparse.csc_matrix (16, 778)`` f64,
``weights (778, 16)`` f64, ``kintree_table (2, 16)`` int64 (root parent 4294967295), ``J (16, 3)`` f64,
``hands_components (45, 45)`` f64 (orthonormal rows), ``hands_mean (45,)`` f64, ``f (1538, 3)`` uint32,
``bs_style`` "lbs", ``bs_type`` "lrotmin"; extra (optional for the loader): ``fingertip_vertex_ids (5,)`` int64
(thumb, index, middle, ring, little) and ``side`` ("right" / "left").

Geometry of the right hand (metres): wrist opening at ``y = 0``, fingers along ``+y``, index on the ``-x`` side,
little finger on ``+x``, back of the hand ``+z``, palm facing ``-z``, thumb leaving the ``-x`` side of the palm.
The left hand is the exact mirror image ``x -> -x`` (faces re-wound, ``shapedirs``/``posedirs``/pose vectors
mirrored), so a left hand posed with mirrored axis-angles ``(a_x, -a_y, -a_z)`` is the mirror of the right.

How exactly 778 vertices and 1538 faces come out (by construction, checked at build time):

1. The palm is the surface of a ``13 x 5 x 2`` lattice box (vertex columns placed so that four 2-column
   blocks carry the fingers, with 1-column webs between them), shaped to taper towards the wrist.
2. Holes: a ``6 x 2`` block of the wrist face (the open wrist: one 16-edge boundary loop, as in MANO), a
   ``2 x 2`` block on the knuckle face per finger and one on the ``-x`` side face for the thumb.
3. Each finger is a tube of 8-vertex rings glued to its hole's 8-vertex boundary (a rectangle blending into
   octagons), with rings at the joints, a rounded tip closing through a 4-vertex ring and an apex vertex
   (the fingertip vertex).
4. The result is one connected, consistently oriented surface with a single boundary loop of 16 edges, so
   ``F = 2 V - 18``. Rings give 771 vertices; the remaining 7 come from splitting the 7 palm quads nearest the
   palm centre into 4 triangles around a centre vertex (+1 vertex, +2 faces each), which yields 778 / 1538.

Joints (``J_regressor``): the wrist is the mean of the wrist loop, every finger joint the mean of its ring
(knuckle = the glued hole loop). Skinning ``weights`` follow the chains: palm vertices belong to the wrist and
finger rings blend between neighbouring bones over +-5 mm around each joint (compact smoothstep, so far
vertices have exactly zero weight). ``shapedirs`` hold size, finger length, palm width, thickness/girth and six
smooth random fields; ``posedirs`` are small random correctives localised around each joint (fixed seed).
``hands_components`` are orthonormal with flexion / spread / curl first; ``hands_mean`` is a relaxed curl.

:func:`write_synthetic_mano` writes either a plain numpy pickle or a *chumpy-style* one like the official files
(:mod:`.mano_pickle`), so the loader's chumpy path is exercised without chumpy installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from ..errors import InvalidValueError
from .mano_pickle import write_mano_pickle

__all__ = [
    "NUM_FACES",
    "NUM_VERTS",
    "build_synthetic_mano",
    "mirror_pose",
    "write_synthetic_mano",
]

NUM_VERTS = 778
NUM_FACES = 1538
_ROOT_PARENT = 4294967295
_PARENTS = (_ROOT_PARENT, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

# ---- palm lattice (right hand). Column widths along x from the thumb side (-x) to the little finger (+x).
_COLUMN_WIDTHS = (0.003, 0.0095, 0.0095, 0.002, 0.0098, 0.0098, 0.002, 0.0092, 0.0092, 0.002, 0.0082, 0.0082, 0.003)
_ROWS_Y = (0.0, 0.016, 0.026, 0.036, 0.066, 0.094)  # lattice rows along y [m], wrist -> knuckles
_THICKNESS = (0.022, 0.025, 0.026, 0.026, 0.024, 0.018)  # palm thickness along z at each row [m]
_WIDTH_SCALE = (0.82, 0.9, 0.96, 1.0, 1.0, 1.0)  # palm narrows towards the wrist
_WRIST_COLUMNS = (3, 9)  # lattice x range of the wrist opening (6 columns x full thickness -> 16 edges)
_THUMB_ROWS = (1, 3)  # lattice y range of the thumb hole on the -x side face
_SKIN_HALF_WIDTH = 0.005  # [m] bones blend over +-5 mm around each joint


class _Finger:
    """One kinematic chain: MANO joint ids, segment lengths [m], base radius [m], direction, ring counts."""

    def __init__(self, name, joints, lengths, radius, direction, rings, column=None):
        self.name, self.joints, self.lengths, self.radius = name, joints, lengths, radius
        d = np.asarray(direction, dtype=np.float64)
        self.direction = d / np.linalg.norm(d)
        self.rings = rings  # intermediate 8-rings in (segment 1, segment 2, segment 3 incl. its end, tip)
        self.column = column  # first lattice column of the knuckle hole (None: the thumb)


def _splay(angle: float) -> tuple[float, float, float]:
    return (np.sin(angle), np.cos(angle), 0.0)


# Order = fingertip order of the 21 keypoints (thumb, index, middle, ring, little).
_FINGERS = (
    _Finger("thumb", (13, 14, 15), (0.034, 0.030, 0.027), 0.0105, (-0.8, 0.55, -0.25), (3, 3, 2, 3)),
    _Finger("index", (1, 2, 3), (0.040, 0.024, 0.021), 0.0088, _splay(-0.08), (4, 3, 2, 3), column=1),
    _Finger("middle", (4, 5, 6), (0.044, 0.028, 0.022), 0.0092, _splay(0.0), (4, 3, 2, 3), column=4),
    _Finger("ring", (10, 11, 12), (0.041, 0.026, 0.021), 0.0087, _splay(0.06), (4, 3, 2, 3), column=7),
    _Finger("little", (7, 8, 9), (0.032, 0.020, 0.019), 0.0078, _splay(0.13), (4, 3, 2, 3), column=10),
)
_PALM_NORMAL = np.array([0.0, 0.0, -1.0])  # palm side of the right hand


# ------------------------------------------------------------------------------------------------ the mesh


def _box_quads(n: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Outward-oriented quads of the lattice box ``[0,nx] x [0,ny] x [0,nz]``: corners ``(Q, 4, 3)`` int, face ids.

    Face id ``2 * axis + (side is the max side)``; corners run counter-clockwise seen from outside.
    """
    quads, ids = [], []
    for a in range(3):
        u, v = (a + 1) % 3, (a + 2) % 3
        for side in (0, n[a]):
            uu, vv = (v, u) if side == 0 else (u, v)
            i, j = (g.ravel() for g in np.meshgrid(np.arange(n[uu]), np.arange(n[vv]), indexing="ij"))
            corners = np.zeros((len(i), 4, 3), dtype=np.int64)
            corners[:, :, a] = side
            for c, (di, dj) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
                corners[:, c, uu] = i + di
                corners[:, c, vv] = j + dj
            quads.append(corners)
            ids.append(np.full(len(i), 2 * a + (side > 0)))
    return np.concatenate(quads), np.concatenate(ids)


def _lattice_positions(lattice: np.ndarray) -> np.ndarray:
    """Shaped palm positions ``(N, 3)`` [m] of integer lattice points ``(N, 3)``."""
    xs = np.concatenate([[0.0], np.cumsum(_COLUMN_WIDTHS)])
    xs = xs - xs[-1] / 2
    i, j, k = lattice.T
    x = xs[i] * np.asarray(_WIDTH_SCALE)[j]
    y = np.asarray(_ROWS_Y)[j]
    z = (k - 1) * np.asarray(_THICKNESS)[j] / 2
    return np.stack([x, y, z], 1)


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Boundary loops of a triangle mesh, each ordered along its directed edges as they occur in ``faces``."""
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    directed = {(int(a), int(b)) for a, b in edges}
    nxt = {a: b for a, b in directed if (b, a) not in directed}
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop = [start]
        seen.add(start)
        while nxt[loop[-1]] != start:
            loop.append(nxt[loop[-1]])
            seen.add(loop[-1])
        loops.append(np.array(loop))
    return loops


def _ring_faces(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Triangles joining ring ``prev (n,)`` (directed as in the faces already built) to ``nxt`` (n or n/2)."""
    n = len(prev)
    i = np.arange(n)
    if len(nxt) == n:
        p0, p1, q0, q1 = prev[i], prev[(i + 1) % n], nxt[i], nxt[(i + 1) % n]
        return np.concatenate([np.stack([p1, p0, q0], 1), np.stack([p1, q0, q1], 1)])
    j = np.arange(n // 2)  # halve the ring: q_j sits next to p_2j
    p0, p1, p2 = prev[2 * j], prev[(2 * j + 1) % n], prev[(2 * j + 2) % n]
    q0, q1 = nxt[j], nxt[(j + 1) % (n // 2)]
    return np.concatenate([np.stack([p1, p0, q0], 1), np.stack([p2, p1, q1], 1), np.stack([p1, q0, q1], 1)])


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _build_right_mesh() -> dict[str, Any]:
    """Right-hand mesh, joints and skinning (see the module docstring)."""
    n = (len(_COLUMN_WIDTHS), len(_ROWS_Y) - 1, 2)
    corners, face_id = _box_quads(n)
    centre = corners.mean(1)  # quad centres in lattice units
    hole = np.full(len(corners), -1)  # -1 palm, 0 wrist, 1.. finger index + 1
    hole[(face_id == 2) & (centre[:, 0] > _WRIST_COLUMNS[0]) & (centre[:, 0] < _WRIST_COLUMNS[1])] = 0
    for f, finger in enumerate(_FINGERS):
        if finger.column is None:
            sel = (face_id == 0) & (centre[:, 1] > _THUMB_ROWS[0]) & (centre[:, 1] < _THUMB_ROWS[1])
        else:
            sel = (face_id == 3) & (centre[:, 0] > finger.column) & (centre[:, 0] < finger.column + 2)
        hole[sel] = f + 1
    keep = corners[hole < 0]
    keep_face = face_id[hole < 0]

    # vertex ids of the lattice points still in use (hole interiors vanish)
    lattice, inverse = np.unique(keep.reshape(-1, 3), axis=0, return_inverse=True)
    quad_ids = inverse.reshape(-1, 4)
    verts = [_lattice_positions(lattice)]
    n_verts = len(lattice)

    # pad with centre vertices in palm quads until the rings below bring the count to exactly NUM_VERTS
    ring_verts = sum(8 * (sum(f.rings) + 2) + 4 + 1 for f in _FINGERS)
    n_split = NUM_VERTS - n_verts - ring_verts
    palmar = np.flatnonzero(keep_face == 4)
    mid = np.array([n[0] / 2, n[1] / 2 + 0.5])
    dist = np.linalg.norm(keep[palmar].mean(1)[:, :2] - mid, axis=1)
    if not 0 <= n_split <= len(palmar):  # pragma: no cover - a construction constant changed
        raise AssertionError(f"synthetic MANO layout gives {n_split} padding vertices")
    split = palmar[np.argsort(dist, kind="stable")[:n_split]]
    is_split = np.zeros(len(keep), dtype=bool)
    is_split[split] = True
    q = quad_ids[~is_split]
    faces = [np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])]
    s = quad_ids[is_split]
    mids = np.arange(n_verts, n_verts + len(s))
    verts.append(verts[0][s].mean(1))
    n_verts += len(s)
    faces.append(np.concatenate([np.stack([s[:, c], s[:, (c + 1) % 4], mids], 1) for c in range(4)]))

    # the holes' boundary loops, matched to the holes by their centres
    palm_verts = np.concatenate(verts)
    loops = _boundary_loops(np.concatenate(faces))
    hole_centres = _lattice_positions(np.array(
        [[(_WRIST_COLUMNS[0] + _WRIST_COLUMNS[1]) // 2, 0, 1]]
        + [[0, sum(_THUMB_ROWS) // 2, 1] if f.column is None else [f.column + 1, n[1], 1] for f in _FINGERS]
    ))
    loop_of_hole = {}
    for loop in loops:
        c = palm_verts[loop].mean(0)
        loop_of_hole[int(np.argmin(np.linalg.norm(hole_centres - c, axis=1)))] = loop
    wrist_loop = loop_of_hole[0]

    chain = np.full(NUM_VERTS, -1)  # finger index of every tube vertex, -1 for the palm
    arc = np.zeros(NUM_VERTS)  # distance along the finger axis from the knuckle loop [m]
    axis_point = np.zeros((NUM_VERTS, 3))
    joint_rings = {0: wrist_loop}
    tips = []
    for f, finger in enumerate(_FINGERS):
        loop = loop_of_hole[f + 1]
        base = palm_verts[loop]
        c, d = base.mean(0), finger.direction
        ref = np.array([0.0, 0.0, 1.0]) if finger.column is None else np.array([1.0, 0.0, 0.0])
        e1 = ref - (ref @ d) * d
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(d, e1)
        rel = base - c
        phi = np.arctan2(rel @ e2, rel @ e1)
        l1, l2, l3 = finger.lengths
        n1, n2, n3, nt = finger.rings
        total = l1 + l2 + l3

        def radius(at, r0=finger.radius, total=total):
            return r0 * (1 - 0.15 * at / total)

        tip_radius = radius(total)
        cap = total - tip_radius
        rings = [(l1 * (i + 1) / (n1 + 1), None) for i in range(n1)] + [(l1, None)]
        rings += [(l1 + l2 * (i + 1) / (n2 + 1), None) for i in range(n2)] + [(l1 + l2, None)]
        rings += [(l1 + l2 + (cap - l1 - l2) * (i + 1) / n3, None) for i in range(n3)]
        rings += [(cap + tip_radius * np.sin(t), tip_radius * np.cos(t)) for t in np.radians(np.linspace(25, 70, nt))]
        prev = loop
        chain[loop], arc[loop], axis_point[loop] = f, rel @ d, c + np.outer(rel @ d, d)
        joint_rings[finger.joints[0]] = loop
        for at, r in rings:
            r = radius(at) if r is None else r
            ids = np.arange(n_verts, n_verts + 8)
            centre_at = c + at * d
            verts.append(centre_at + r * (np.outer(np.cos(phi), e1) + np.outer(np.sin(phi), e2)))
            faces.append(_ring_faces(prev, ids))
            chain[ids], arc[ids], axis_point[ids] = f, at, centre_at
            for joint, joint_at in zip(finger.joints[1:], (l1, l1 + l2)):
                if at == joint_at:
                    joint_rings[joint] = ids
            prev, n_verts = ids, n_verts + 8
        # rounded tip: a 4-ring, then the apex (the fingertip vertex)
        t4 = np.radians(83.0)
        ids = np.arange(n_verts, n_verts + 4)
        centre_at = c + (cap + tip_radius * np.sin(t4)) * d
        verts.append(centre_at + tip_radius * np.cos(t4) * (np.outer(np.cos(phi[::2]), e1)
                                                            + np.outer(np.sin(phi[::2]), e2)))
        faces.append(_ring_faces(prev, ids))
        chain[ids], arc[ids], axis_point[ids] = f, cap + tip_radius * np.sin(t4), centre_at
        apex = n_verts + 4
        verts.append((c + total * d)[None])
        faces.append(np.stack([ids[(np.arange(4) + 1) % 4], ids, np.full(4, apex)], 1))
        chain[apex], arc[apex], axis_point[apex] = f, total, c + total * d
        tips.append(apex)
        n_verts += 5

    v = np.concatenate(verts)
    faces = np.concatenate(faces)
    if v.shape != (NUM_VERTS, 3) or faces.shape != (NUM_FACES, 3):  # pragma: no cover - construction invariant
        raise AssertionError(f"synthetic MANO mesh has {len(v)} vertices and {len(faces)} faces")

    # skinning: palm -> wrist; tubes blend bone k-1 -> bone k over +-h around joint k (telescoping weights)
    weights = np.zeros((NUM_VERTS, 16))
    weights[chain < 0, 0] = 1.0
    for f, finger in enumerate(_FINGERS):
        sel = chain == f
        l1, l2, _ = finger.lengths
        alpha = [_smoothstep((arc[sel] - at) / (2 * _SKIN_HALF_WIDTH) + 0.5) for at in (0.0, l1, l1 + l2)]
        weights[sel, 0] = 1 - alpha[0]
        weights[sel, finger.joints[0]] = alpha[0] - alpha[1]
        weights[sel, finger.joints[1]] = alpha[1] - alpha[2]
        weights[sel, finger.joints[2]] = alpha[2]

    rows = np.concatenate([np.full(len(joint_rings[j]), j) for j in range(16)])
    cols = np.concatenate([joint_rings[j] for j in range(16)])
    vals = np.concatenate([np.full(len(joint_rings[j]), 1.0 / len(joint_rings[j])) for j in range(16)])
    regressor = scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(16, NUM_VERTS))
    return {
        "v": v, "faces": faces, "weights": weights, "J_regressor": regressor, "tips": np.array(tips),
        "chain": chain, "arc": arc, "axis_point": axis_point,
    }


# --------------------------------------------------------------------------------------- blend shapes, pose


def _smooth_field(points: np.ndarray, rng: np.random.Generator, amplitude: float, terms: int = 4) -> np.ndarray:
    """A smooth random displacement field ``(N, 3)`` [m]: a few random sinusoids of position."""
    k = rng.normal(0.0, 30.0, (terms, 3))  # [rad/m]
    phase = rng.uniform(0, 2 * np.pi, terms)
    coef = rng.normal(0.0, amplitude / np.sqrt(terms), (terms, 3))
    return np.sin(points @ k.T + phase) @ coef


def _shapedirs(mesh: dict, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v, chain, arc, axis_point = mesh["v"], mesh["chain"], mesh["arc"], mesh["axis_point"]
    dirs = np.zeros((NUM_VERTS, 3, 10))
    dirs[:, :, 0] = 0.03 * (v - joints[0])  # overall size about the wrist
    on_finger = chain >= 0
    finger_dir = np.zeros((NUM_VERTS, 3))
    finger_dir[on_finger] = np.stack([f.direction for f in _FINGERS])[chain[on_finger]]
    dirs[:, :, 1] = 0.06 * np.clip(arc, 0, None)[:, None] * finger_dir  # finger length
    dirs[:, 0, 2] = 0.05 * v[:, 0]  # palm width
    girth = 0.05 * (v - axis_point)
    dirs[:, :, 3] = np.where(on_finger[:, None], girth, 0.0)  # finger girth
    dirs[~on_finger, 2, 3] = 0.08 * v[~on_finger, 2]  # palm thickness
    for c in range(4, 10):
        dirs[:, :, c] = _smooth_field(v, rng, 0.001)
    return dirs


def _posedirs(v: np.ndarray, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Correctives ``(V, 3, 135)``: per joint and rotation-matrix entry a random 3-vector [m] under a Gaussian bump."""
    bump = np.exp(-np.sum((v[:, None] - joints[None, 1:]) ** 2, -1) / (2 * 0.012**2))  # (V, 15)
    coef = rng.normal(0.0, 0.002, (15, 9, 3))
    return np.einsum("vj,jec->vcje", bump, coef).reshape(NUM_VERTS, 3, 135)


def _pose_basis(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``hands_components (45, 45)`` (orthonormal rows: flexion, spread, distal curl, then random) and the mean."""
    flex = np.zeros((16, 3))
    spread = np.zeros((16, 3))
    curl = np.zeros((16, 3))
    for finger in _FINGERS:
        d = finger.direction
        if finger.column is None:  # the thumb flexes towards the palm's centre line and the palm side
            target = np.array([1.0, 0.0, -1.0]) / np.sqrt(2)
            axis = np.cross(d, target - (target @ d) * d)
        else:  # fingers curl towards the palm side
            axis = np.cross(d, _PALM_NORMAL)
        axis /= np.linalg.norm(axis)
        flex[list(finger.joints)] = axis
        curl[list(finger.joints[1:])] = axis
        spread[finger.joints[0]] = _PALM_NORMAL * np.sin(4 * finger.direction[0] + 0.3)
    basis = np.stack([flex[1:].ravel(), spread[1:].ravel(), curl[1:].ravel()] + list(rng.normal(size=(42, 45))), 1)
    q, r = np.linalg.qr(basis)
    components = (q * np.sign(np.diag(r))).T  # rows orthonormal, first three along flex / spread / curl
    mean = 0.15 * flex[1:].ravel() + 0.05 * curl[1:].ravel()
    return components, mean


def mirror_pose(axis_angles: np.ndarray) -> np.ndarray:
    """Mirror axis-angle vectors ``(..., 3k)`` across the ``x = 0`` plane: ``(a_x, a_y, a_z) -> (a_x, -a_y, -a_z)``."""
    a = np.asarray(axis_angles)
    return a * np.tile([1.0, -1.0, -1.0], a.shape[-1] // 3)


def _mirror(model: dict[str, Any]) -> dict[str, Any]:
    """The left hand: ``x -> -x`` for geometry, re-wound faces, mirrored correctives and pose vectors."""
    m = np.array([-1.0, 1.0, 1.0])
    out = dict(model)
    out["v_template"] = model["v_template"] * m
    out["J"] = model["J"] * m
    out["shapedirs"] = model["shapedirs"] * m[None, :, None]
    # R' = M R M  =>  (R' - I)_ab = m_a m_b (R - I)_ab, and the offset's component c flips with m_c
    sign = (m[:, None, None] * (m[:, None] * m[None, :])[None]).reshape(3, 1, 9)  # (c, 1, a*3+b)
    out["posedirs"] = (model["posedirs"].reshape(NUM_VERTS, 3, 15, 9) * sign).reshape(NUM_VERTS, 3, 135)
    out["hands_components"] = mirror_pose(model["hands_components"])
    out["hands_mean"] = mirror_pose(model["hands_mean"])
    out["f"] = np.ascontiguousarray(model["f"][:, ::-1])
    out["side"] = "left"
    return out


def build_synthetic_mano(side: str = "right", seed: int = 0) -> dict[str, Any]:
    """The synthetic model as the dict a MANO pickle holds (see the module docstring for keys and layout).

    Args:
        side: "right" or "left" (the exact mirror image of the right hand).
        seed: seed of the random parts (``shapedirs`` fields, ``posedirs``, higher PCA components).
    """
    if side not in ("right", "left"):
        raise InvalidValueError(f"side must be 'right' or 'left'; got {side!r}")
    rng = np.random.default_rng(seed)
    mesh = _build_right_mesh()
    v = mesh["v"]
    joints = mesh["J_regressor"] @ v
    components, mean = _pose_basis(rng)
    model = {
        "v_template": v,
        "shapedirs": _shapedirs(mesh, joints, rng),
        "posedirs": _posedirs(v, joints, rng),
        "J_regressor": mesh["J_regressor"],
        "weights": mesh["weights"],
        "kintree_table": np.array([_PARENTS, range(16)], dtype=np.int64),
        "J": joints,
        "hands_components": components,
        "hands_mean": mean,
        "f": mesh["faces"].astype(np.uint32),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "fingertip_vertex_ids": mesh["tips"].astype(np.int64),
        "side": "right",
    }
    return _mirror(model) if side == "left" else model


def write_synthetic_mano(
    path: str | os.PathLike,
    side: str = "right",
    *,
    style: str = "numpy",
    protocol: int = 4,
    seed: int = 0,
    model: dict[str, Any] | None = None,
) -> Path:
    """Write a synthetic MANO model pickle and return its path.

    Args:
        path: output file (parent directories must exist).
        side: "right" or "left" (ignored when ``model`` is given).
        style: "numpy" (plain arrays, pickle ``protocol``) or "chumpy" (protocol 2, Python-2-era names,
            ``shapedirs`` as a ``chumpy.ch.Ch`` object; see the module docstring).
        protocol: pickle protocol of the "numpy" style.
        seed: seed of :func:`build_synthetic_mano`.
        model: write this dict instead of building one (e.g. a modified copy).
    """
    return write_mano_pickle(path, build_synthetic_mano(side, seed) if model is None else model, style, protocol)
