"""MANO hand model as a batched, differentiable torch layer with the robot hands' interface.

:class:`ManoHand` is a ``torch.nn.Module`` without parameters (every array is a buffer, moved by ``.to``).
It reads the official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (obtained by users under MANO's licence; the project
never ships or downloads them) through :mod:`.mano_loading`, so chumpy is never needed, or the synthetic model
of :mod:`handypriors_core.synthetic.mano_test_model`.

Model (per batch element, lengths in metres, angles in radians):

- ``full_pose (16, 3)`` axis-angle: ``global_orient`` for the wrist, then the 15 finger joints
  ``hand_pose + mean``. With ``use_pca`` the hand pose is ``coeffs @ hands_components[:num_pca_comps]``. The
  mean is ``hands_mean`` (a relaxed, slightly curled hand) unless ``flat_hand_mean=True``, where it is zero, so
  that zero ``hand_pose`` is the flat template pose (as in the common layers: smplx adds the mean by default,
  manopth's ``flat_hand_mean=True`` does not).
- ``v_shaped = v_template + shapedirs @ betas``; rest joints ``J = J_regressor @ v_shaped``.
- ``v_posed = v_shaped + posedirs @ vec(R_j - I)`` over the 15 non-root joints (row-major 3x3 entries).
- Joint transforms along ``kintree_table``: ``A_0 = [R_0 | J_0]``, ``A_j = A_parent @ [R_j | J_j - J_parent]``;
  linear blend skinning with ``weights`` of ``A_j @ [I | -J_j]``; finally ``+ transl``. ``global_orient`` turns the
  hand about the wrist joint, not the origin.

Joints follow the MANO file: 0 wrist, 1-3 index, 4-6 middle, 7-9 little, 10-12 ring, 13-15 thumb (1 = knuckle /
MCP, 3 = last joint; the thumb's 13 is its CMC joint). The 21 keypoints (:data:`MANO_KEYPOINT_NAMES`) use the
common order wrist, thumb1-3, thumb tip, index1-3, index tip, middle, ring, little; tips are mesh vertices,
by default the ones used with the official topology (manopth / HO-3D convention): thumb 745, index 317,
middle 444, ring 556, little 673. A model file may carry its own under ``fingertip_vertex_ids`` (the
synthetic model does); the ``fingertip_vertex_ids`` argument overrides both.

Hand interface (same methods as :class:`~handypriors_core.models.urdf_hand.URDFHand`, so renderer, physics and
estimators take either): the "joint angles" ``q (B, J)`` are the hand pose (``J = 45`` axis-angle components or
``num_pca_comps`` PCA coefficients; ``joint_names`` names them, limits are +-inf). The extra MANO inputs are
keyword arguments (``betas`` defaulting to the ``betas`` buffer, ``global_orient`` and ``transl`` to zero), so the
outputs are in the MANO model frame, as URDF outputs are in the hand (root link) frame. ``links`` are the 16
joints. Gradients flow to every input through every output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError, ModelFileError, ShapeError
from ..geometry.mesh import vertex_normals
from ..geometry.rotations import axis_angle_to_matrix
from ..geometry.transforms import make_transform
from . import primitives
from .hand_interface import HandNames
from .mano_loading import load_mano_pickle
from .mano_model import (
    MANO_FINGERTIP_NAMES,
    MANO_JOINT_NAMES,
    MANO_KEYPOINT_NAMES,
    MANO_KEYPOINT_SOURCES,
    MANO_PARENTS,
    OFFICIAL_FINGERTIP_VERTEX_IDS,
    read_mano_arrays,
)

__all__ = ["ManoHand", "ManoOutput"]

# tree levels of MANO_PARENTS: each level's parents are in the previous one
_LEVELS = ((0,), (1, 4, 7, 10, 13), (2, 5, 8, 11, 14), (3, 6, 9, 12, 15))
_DISTAL_JOINTS = (15, 3, 6, 12, 9)  # the joint carrying each fingertip (thumb, index, middle, ring, little)
_SKIN_RGB = (0.87, 0.70, 0.60)
# a vertex is palm-side when its rest normal is within 60 degrees of the palm normal
_CONTACT_COS = 0.5
# ... and every vertex within this distance [m] of a fingertip vertex (the finger pads) is a candidate too
_TIP_RADIUS = 0.012


@dataclass(frozen=True)
class ManoOutput:
    """Output of :meth:`ManoHand.forward` (all in the model frame shifted by ``transl``).

    ``vertices (B, V, 3)`` [m]; ``joints (B, 16, 3)`` [m] (MANO order); ``keypoints (B, 21, 3)`` [m]
    (:data:`MANO_KEYPOINT_NAMES` order); ``joint_transforms (B, 16, 4, 4)`` joint2model poses (rotation =
    the joint's accumulated rotation relative to the template, translation = the posed joint);
    ``full_pose (B, 16, 3)`` [rad] the axis-angles that were applied (global orientation + hand pose + mean).
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    keypoints: torch.Tensor
    joint_transforms: torch.Tensor
    full_pose: torch.Tensor


def _left_matmul(M: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``M (m, n) @ X (B, n, k) -> (B, m, k)`` as one 2-D matmul (a broadcast batched matmul is slower on CPU)."""
    B, n, k = X.shape
    return (M @ X.transpose(0, 1).reshape(n, B * k)).reshape(-1, B, k).transpose(0, 1)


class ManoHand(HandNames, torch.nn.Module):
    """MANO layer + hand interface (see the module docstring).

    Attributes: ``side`` ("right"/"left"), ``use_pca``, ``num_pca_comps``, ``flat_hand_mean``, ``num_betas``,
    ``joint_names`` (J pose coordinates), ``link_names`` (the 16 MANO joints), ``link_parents``,
    ``fingertip_names``, ``keypoint_names``. Buffers: ``faces (F, 3)`` long, ``vertex_link (V,)`` long (joint
    with the largest skinning weight), ``vertex_colors (V, 3)``, ``fingertip_vertex_ids (5,)``,
    ``fingertip_link (5,)``, ``contact_vertex_ids (C,)``, ``contact_candidate_link (C,)``, ``point_link (P,)``,
    ``lower_limits``/``upper_limits (J,)`` (+-inf), ``betas (num_betas,)`` (default shape, zeros).
    """

    _joint_noun = ("MANO pose coordinate", "pose coordinates")  # e.g. "index2_x" or "pca_0"
    _link_noun = ("MANO joint", "joints")

    def __init__(
        self,
        model: Mapping[str, Any],
        *,
        source: str = "<MANO model dict>",
        side: str | None = None,
        use_pca: bool = False,
        num_pca_comps: int = 6,
        flat_hand_mean: bool = False,
        fingertip_vertex_ids: Sequence[int] | None = None,
        contact_vertex_ids: Sequence[int] | None = None,
        num_surface_points: int = 512,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if not isinstance(model, Mapping):
            raise ModelFileError(f"{source}: expected a dict of MANO model arrays; got {type(model).__name__}")
        self.source = source
        self.use_pca = bool(use_pca)
        self.flat_hand_mean = bool(flat_hand_mean)

        # ---- side: argument > model entry "side" > file name
        if side is None:
            side = model.get("side") if isinstance(model.get("side"), str) else None
        if side is None:
            side = "left" if "left" in Path(source).name.lower() else "right"
        if side not in ("right", "left"):
            raise InvalidValueError(f"side must be 'right' or 'left'; got {side!r}")
        self.side = side

        # ---- arrays, checked against each other
        arrays = read_mano_arrays(model, source, self.use_pca, num_pca_comps, self.flat_hand_mean)
        v_template, faces, weights, regressor = arrays.v_template, arrays.faces, arrays.weights, arrays.J_regressor
        V = v_template.shape[0]
        self.num_betas = arrays.shapedirs.shape[2]
        self.num_pca_comps = int(num_pca_comps) if self.use_pca else 0

        # ---- keypoints, contact candidates, surface samples (from the rest template)
        tips = fingertip_vertex_ids
        if tips is None:
            tips = model.get("fingertip_vertex_ids", OFFICIAL_FINGERTIP_VERTEX_IDS)
        tips = np.asarray(tips, dtype=np.int64).reshape(-1)
        if tips.shape != (5,) or tips.min() < 0 or tips.max() >= V:
            raise InvalidValueError(f"fingertip_vertex_ids must be 5 vertex indices in [0, {V}); got {tips.tolist()}")
        vertex_link = weights.argmax(1)
        rest_joints = regressor @ v_template
        if contact_vertex_ids is None:
            across = rest_joints[1] - rest_joints[7]  # index knuckle - little knuckle
            along = rest_joints[4] - rest_joints[0]  # middle knuckle - wrist
            palm = np.cross(across, along) * (1.0 if side == "right" else -1.0)
            palm /= max(np.linalg.norm(palm), 1e-12)
            facing = primitives.vertex_normals(v_template, faces) @ palm >= _CONTACT_COS
            near_tip = np.linalg.norm(v_template[:, None] - v_template[tips][None], axis=-1).min(1) < _TIP_RADIUS
            contact = np.flatnonzero(facing | near_tip)
        else:
            contact = np.asarray(contact_vertex_ids, dtype=np.int64).reshape(-1)
            if contact.size and (contact.min() < 0 or contact.max() >= V):
                raise InvalidValueError(f"contact_vertex_ids must index vertices in [0, {V})")
        if int(num_surface_points) < 0:
            raise InvalidValueError(f"num_surface_points must be >= 0; got {num_surface_points}")
        pts, _, face_idx = primitives.sample_surface_even(v_template, faces, int(num_surface_points), seed=0)
        bary = primitives.barycentric_coordinates(pts, v_template[faces[face_idx]])
        point_link = vertex_link[faces[face_idx, bary.argmax(1)]]

        # ---- hand interface names
        if self.use_pca:
            self.joint_names = [f"pca_{i}" for i in range(self.num_pca_comps)]
        else:
            self.joint_names = [f"{n}_{a}" for n in MANO_JOINT_NAMES[1:] for a in "xyz"]
        self.link_names = list(MANO_JOINT_NAMES)
        self._index_names()
        self.link_parents = list(MANO_PARENTS)
        self.root_link = "wrist"
        self.fingertip_names = list(MANO_FINGERTIP_NAMES)
        self.keypoint_names = list(MANO_KEYPOINT_NAMES)
        self.contact_link_names = [self.link_names[i] for i in sorted(set(vertex_link[contact].tolist()))]

        f64 = torch.float64
        J = len(self.joint_names)
        bufs = {
            "_v_template": torch.tensor(v_template, dtype=f64),
            "_shapedirs": torch.tensor(arrays.shapedirs.reshape(V * 3, -1).T.copy(), dtype=f64),  # (S, V*3)
            "_posedirs": torch.tensor(arrays.posedirs.reshape(V * 3, 135).T.copy(), dtype=f64),  # (135, V*3)
            "_J_regressor": torch.tensor(regressor, dtype=f64),
            "_weights": torch.tensor(weights, dtype=f64),
            "_components": torch.tensor(arrays.components, dtype=f64),
            "_pose_mean": torch.tensor(arrays.pose_mean, dtype=f64),
            "_eye": torch.eye(3, dtype=f64),
            "_surface_face": torch.tensor(face_idx, dtype=torch.long),
            "_surface_bary": torch.tensor(bary, dtype=f64),
            "faces": torch.tensor(faces, dtype=torch.long),
            "vertex_link": torch.tensor(vertex_link, dtype=torch.long),
            "vertex_colors": torch.tensor(_SKIN_RGB, dtype=f64).expand(V, 3).clone(),
            "fingertip_vertex_ids": torch.tensor(tips, dtype=torch.long),
            "fingertip_link": torch.tensor(_DISTAL_JOINTS, dtype=torch.long),
            "contact_vertex_ids": torch.tensor(contact, dtype=torch.long),
            "contact_candidate_link": torch.tensor(vertex_link[contact], dtype=torch.long),
            "point_link": torch.tensor(point_link, dtype=torch.long),
            "lower_limits": torch.full((J,), -torch.inf, dtype=f64),
            "upper_limits": torch.full((J,), torch.inf, dtype=f64),
            "betas": torch.zeros(self.num_betas, dtype=f64),
            "_keypoint_sources": torch.tensor(MANO_KEYPOINT_SOURCES, dtype=torch.long),
        }
        for name, value in bufs.items():
            self.register_buffer(name, value, persistent=False)
        for k, level in enumerate(_LEVELS):
            self.register_buffer(f"_level{k}", torch.tensor(level, dtype=torch.long), persistent=False)
        self.register_buffer("_parents", torch.tensor([max(p, 0) for p in MANO_PARENTS]), persistent=False)
        self.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------------------------------- builders

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        use_pca: bool = False,
        num_pca_comps: int = 6,
        flat_hand_mean: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        *,
        side: str | None = None,
        fingertip_vertex_ids: Sequence[int] | None = None,
        contact_vertex_ids: Sequence[int] | None = None,
        num_surface_points: int = 512,
    ) -> ManoHand:
        """Load a MANO model pickle (official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` or a synthetic one).

        Args:
            path: the ``.pkl`` file (ModelFileError naming it when missing, corrupt, unsafe or malformed).
            use_pca: ``hand_pose`` is ``num_pca_comps`` PCA coefficients instead of 45 axis-angle components.
            num_pca_comps: 1..45.
            flat_hand_mean: zero ``hand_pose`` is the flat template hand instead of ``hands_mean``.
            device, dtype: of every buffer and so of every output (float32 or float64).
            side: "right" / "left"; default: the file's ``side`` entry, else "left" when the file name
                contains "left" (``MANO_LEFT.pkl``), else "right". Used for the palm side of the contact
                candidates; the arrays themselves come from the file.
            fingertip_vertex_ids: 5 vertex ids (thumb, index, middle, ring, little); default: the file's
                ``fingertip_vertex_ids`` entry, else :data:`OFFICIAL_FINGERTIP_VERTEX_IDS`.
            contact_vertex_ids: vertex ids of the contact candidates; default: palm-side vertices (rest normal
                within 60 degrees of the palm normal) and every vertex within 12 mm of a fingertip vertex.
            num_surface_points: evenly spread surface samples for :meth:`surface_points`.
        """
        return cls(
            load_mano_pickle(path), source=str(path), side=side, use_pca=use_pca, num_pca_comps=num_pca_comps,
            flat_hand_mean=flat_hand_mean, fingertip_vertex_ids=fingertip_vertex_ids,
            contact_vertex_ids=contact_vertex_ids, num_surface_points=num_surface_points, device=device, dtype=dtype,
        )

    # ------------------------------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return self._v_template.device

    @property
    def dtype(self) -> torch.dtype:
        return self._v_template.dtype

    @property
    def num_vertices(self) -> int:
        return self._v_template.shape[0]

    @property
    def v_template(self) -> torch.Tensor:
        """Template vertices ``(V, 3)`` [m] (a buffer: do not modify in place)."""
        return self._v_template

    @property
    def weights(self) -> torch.Tensor:
        """Skinning weights ``(V, 16)``."""
        return self._weights

    def clamp(self, joint_angles: torch.Tensor) -> torch.Tensor:
        """MANO poses are unlimited: returns ``joint_angles`` (checked, in the model's dtype)."""
        q = self._inputs(joint_angles, None, None, None)[0]
        return q[0] if np.ndim(joint_angles) == 1 else q

    def default_joint_angles(self) -> torch.Tensor:
        """Zeros ``(J,)``: the mean hand (or the flat hand with ``flat_hand_mean``)."""
        return torch.zeros(self.num_joints, dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------------------------------------ the layer

    def forward(
        self,
        global_orient: torch.Tensor | None = None,
        hand_pose: torch.Tensor | None = None,
        betas: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> ManoOutput:
        """Posed hand.

        Args:
            global_orient: ``(B, 3)`` [rad] axis-angle of the wrist (about the wrist joint); default zero.
            hand_pose: ``(B, 45)`` [rad] axis-angles of joints 1..15, or ``(B, num_pca_comps)`` PCA coefficients
                with ``use_pca``; default zero (the mean hand, or flat with ``flat_hand_mean``).
            betas: ``(B, num_betas)`` shape coefficients; default the ``betas`` buffer.
            transl: ``(B, 3)`` [m] added to every output point; default zero.

        A ``(3,)`` / ``(J,)`` / ``(num_betas,)`` input is shared by the whole batch. ShapeError names an input of
        the wrong shape (or batch size), InvalidValueError one holding NaN/inf.
        """
        hand_pose, betas, global_orient, transl = self._inputs(hand_pose, betas, global_orient, transl)
        return self._run(hand_pose, betas, global_orient, transl)

    def full_hand_pose(self, hand_pose: torch.Tensor) -> torch.Tensor:
        """Axis-angles ``(B, 45)`` [rad] of joints 1..15 that ``hand_pose (B, J)`` stands for (PCA + mean)."""
        q = self._inputs(hand_pose, None, None, None)[0]
        return self._full_hand_pose(q)

    def _full_hand_pose(self, q: torch.Tensor) -> torch.Tensor:
        pose = q @ self._components if self.use_pca else q
        return pose + self._pose_mean

    def _inputs(self, hand_pose, betas, global_orient, transl):
        """Check and batch the inputs: ``(B, J), (B, S), (B, 3), (B, 3)`` in the model's dtype."""
        spec = (("hand_pose", hand_pose, self.num_joints), ("betas", betas, self.num_betas),
                ("global_orient", global_orient, 3), ("transl", transl, 3))
        batch, batch_from, out = None, None, []
        for name, x, width in spec:
            if x is None:
                out.append(None)
                continue
            if not isinstance(x, torch.Tensor):
                x = torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.device)
            if x.dim() == 1:
                check_shape(x, (width,), name)
            else:
                check_shape(x, (None, width), name)
                if batch is not None and x.shape[0] != batch:
                    raise ShapeError(f"{name} has batch size {x.shape[0]} but {batch_from} has {batch}")
                batch, batch_from = x.shape[0], name
            if x.device != self.device:
                raise InvalidValueError(f"{name} is on {x.device} but the MANO model is on {self.device}; "
                                        f"use hand.to({x.device}) or move {name}")
            check_finite(x, name)
            out.append(x.to(self.dtype))
        B = 1 if batch is None else batch
        defaults = (None, self.betas, None, None)
        result = []
        for (name, _, width), x, default in zip(spec, out, defaults):
            if x is None:
                x = default if default is not None else torch.zeros(width, dtype=self.dtype, device=self.device)
            result.append(x.expand(B, width) if x.dim() == 1 else x)
        return result

    def _run(self, q, betas, global_orient, transl) -> ManoOutput:
        B, V = q.shape[0], self.num_vertices
        full_pose = torch.cat([global_orient, self._full_hand_pose(q)], 1).reshape(B, 16, 3)
        R = axis_angle_to_matrix(full_pose)  # (B, 16, 3, 3)
        v_shaped = self._v_template + (betas @ self._shapedirs).reshape(B, V, 3)
        J = _left_matmul(self._J_regressor, v_shaped)  # (B, 16, 3)
        pose_feature = (R[:, 1:] - self._eye).reshape(B, 135)
        v_posed = v_shaped + (pose_feature @ self._posedirs).reshape(B, V, 3)

        # kinematic chain, one tree level at a time
        rel = J - torch.cat([J.new_zeros(B, 1, 3), J[:, self._parents[1:]]], 1)  # root keeps J_0
        local = make_transform(R, rel)  # joint2parent, (B, 16, 4, 4)
        world = local.clone()
        for k in range(1, len(_LEVELS)):
            level = getattr(self, f"_level{k}")
            world[:, level] = world[:, self._parents[level]] @ local[:, level]
        # skinning transforms: world @ [I | -J]
        Rw, tw = world[..., :3, :3], world[..., :3, 3]
        # (elementwise products instead of many tiny 3x3 matmuls, which are slow on CPU)
        skin = torch.cat([Rw, (tw - (Rw * J[:, :, None]).sum(-1))[..., None]], -1)  # (B, 16, 3, 4)
        T = _left_matmul(self._weights, skin.reshape(B, 16, 12)).reshape(B, V, 3, 4)
        verts = (T[..., :3] * v_posed[:, :, None]).sum(-1) + T[..., 3] + transl[:, None]
        joints = tw + transl[:, None]
        tips = verts[:, self.fingertip_vertex_ids]
        keypoints = torch.cat([joints, tips], 1)[:, self._keypoint_sources]
        transforms = make_transform(Rw, joints)
        return ManoOutput(verts, joints, keypoints, transforms, full_pose)

    # ------------------------------------------------------------------------------------ hand interface

    def _interface(self, joint_angles, betas, global_orient, transl) -> tuple[ManoOutput, bool]:
        if joint_angles is None:
            raise ShapeError("joint_angles (the hand pose) is required")
        unbatched = np.ndim(joint_angles) == 1
        return self._run(*self._inputs(joint_angles, betas, global_orient, transl)), unbatched

    def forward_kinematics(self, joint_angles, *, betas=None, global_orient=None, transl=None) -> torch.Tensor:
        """Joint frames joint2model: ``q (B, J)`` -> ``(B, 16, 4, 4)`` (``(J,)`` -> ``(16, 4, 4)``), metres."""
        out, unbatched = self._interface(joint_angles, betas, global_orient, transl)
        return out.joint_transforms[0] if unbatched else out.joint_transforms

    def mesh(self, joint_angles, *, betas=None, global_orient=None, transl=None):
        """Posed mesh: ``verts (B, V, 3)`` [m] (``(V, 3)`` for unbatched input), ``faces (F, 3)`` long,
        ``vertex_link (V,)`` long (buffers: do not modify them in place)."""
        out, unbatched = self._interface(joint_angles, betas, global_orient, transl)
        return (out.vertices[0] if unbatched else out.vertices), self.faces, self.vertex_link

    def keypoints(self, joint_angles, *, betas=None, global_orient=None, transl=None) -> torch.Tensor:
        """The 21 keypoints ``(B, 21, 3)`` [m] in :data:`MANO_KEYPOINT_NAMES` order."""
        out, unbatched = self._interface(joint_angles, betas, global_orient, transl)
        return out.keypoints[0] if unbatched else out.keypoints

    def fingertips(self, joint_angles, *, betas=None, global_orient=None, transl=None) -> torch.Tensor:
        """Fingertip vertices ``(B, 5, 3)`` [m] (thumb, index, middle, ring, little): points on the surface."""
        out, unbatched = self._interface(joint_angles, betas, global_orient, transl)
        tips = out.vertices[:, self.fingertip_vertex_ids]
        return tips[0] if unbatched else tips

    def surface_points(self, joint_angles, with_normals: bool = False, *, betas=None, global_orient=None,
                       transl=None):
        """``num_surface_points`` evenly spread points on the posed surface ``(B, P, 3)`` [m].

        Each point keeps its barycentric coordinates in its template triangle; ``point_link (P,)`` gives its
        joint. ``with_normals`` also returns the unit normals of those triangles ``(B, P, 3)``.
        """
        out, unbatched = self._interface(joint_angles, betas, global_orient, transl)
        tri = out.vertices[:, self.faces[self._surface_face]]  # (B, P, 3, 3)
        pts = (self._surface_bary[..., None] * tri).sum(-2)
        if not with_normals:
            return pts[0] if unbatched else pts
        nrm = torch.nn.functional.normalize(torch.cross(tri[..., 1, :] - tri[..., 0, :],
                                                        tri[..., 2, :] - tri[..., 0, :], dim=-1), dim=-1)
        return (pts[0], nrm[0]) if unbatched else (pts, nrm)

    def contact_candidates(self, joint_angles, with_normals: bool = False, *, betas=None, global_orient=None,
                           transl=None):
        """Candidate contact vertices ``(B, C, 3)`` [m] (``contact_vertex_ids``: palm side and fingertips).

        ``contact_candidate_link (C,)`` gives each one's joint; ``with_normals`` also returns the posed unit
        vertex normals ``(B, C, 3)`` (area-weighted over the adjacent faces).
        """
        out, unbatched = self._interface(joint_angles, betas, global_orient, transl)
        pts = out.vertices[:, self.contact_vertex_ids]
        if not with_normals:
            return pts[0] if unbatched else pts
        nrm = self.vertex_normals(out.vertices)[:, self.contact_vertex_ids]
        return (pts[0], nrm[0]) if unbatched else (pts, nrm)

    def vertex_normals(self, vertices: torch.Tensor) -> torch.Tensor:
        """Unit area-weighted vertex normals ``(B, V, 3)`` of posed ``vertices (B, V, 3)`` (outward)."""
        check_shape(vertices, (None, self.num_vertices, 3), "vertices")
        return vertex_normals(vertices, self.faces)

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, side={self.side!r}, use_pca={self.use_pca}, "
                f"num_pca_comps={self.num_pca_comps}, flat_hand_mean={self.flat_hand_mean}, "
                f"verts={self.num_vertices}, faces={self.faces.shape[0]}")
