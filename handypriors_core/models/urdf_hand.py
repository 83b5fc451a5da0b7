"""Articulated hand from a URDF: batched differentiable forward kinematics and a posed surface model.

:class:`URDFHand` is a ``torch.nn.Module`` **without parameters**: every tensor (joint origins, axes, limits,
the template mesh, surface points) is a registered buffer, so ``hand.to(device, dtype)`` moves it and
``state_dict`` ignores it. Joint angles are inputs, never owned state.

Kinematics. ``joint_names`` are the actuated joints (revolute, continuous, prismatic; not mimic) in URDF
document order, ``q (B, J)`` [rad or m]. ``forward_kinematics(q) -> (B, L, 4, 4)`` gives every link's pose
``link2hand`` (hand = the URDF root link), in ``link_names`` order (URDF document order). A child's pose is
``parent2hand @ origin @ motion(q)`` with ``motion`` a rotation about (revolute, continuous) or a translation
along (prismatic) the joint axis. Mimic joints follow ``multiplier * q[source] + offset``. ``floating`` and
``planar`` joints are read as fixed at their origin (a warning names them): a hand model has no use for them,
its base pose is estimated separately. Links are composed one tree level at a time (a handful of batched
matmuls, no loop over batch elements), so gradients flow to ``q`` through every output.

Surface. Geometry comes from the ``collision`` (default) or ``visual`` elements (per link, the other kind is
used when a link has none of the requested kind). Primitives are tessellated by ``primitives`` (see
``Tessellation``); meshes are read with trimesh (STL, OBJ, PLY; DAE needs pycollada) with their ``scale``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..errors import InvalidValueError, ModelFileError, ShapeError
from ..geometry.rotations import rpy_to_matrix, skew
from ..geometry.transforms import make_transform
from . import primitives
from .hand_interface import HandNames
from .kinematics_array import posed_surfaces_array
from .urdf_parsing import (
    ACTUATED_TYPES,
    DEFAULT_TESSELLATION,
    PackageResolver,
    Tessellation,
    URDFModel,
    geometry_mesh,
    parse_urdf,
    parse_urdf_string,
)

__all__ = ["ALLEGRO_CONTACT_LINKS", "Tessellation", "URDFHand"]

_PALM_SIDE = (1.0, 0.0, 0.0)
#: Contact candidate regions of the Allegro hand: link -> inward (palm-side) direction in the link frame, or
#: None for the whole surface. Fingers flex about +y, which turns their z axis towards +x, so the palm side
#: of every phalanx (and of the palm) faces +x; the fingertip spheres count as a whole.
ALLEGRO_CONTACT_LINKS: dict[str, tuple[float, float, float] | None] = {
    "base_link": _PALM_SIDE,
    **{f"link_{i}.0": _PALM_SIDE for i in (1, 2, 3, 5, 6, 7, 9, 10, 11, 14, 15)},
    **{f"link_{i}.0_tip": None for i in (3, 7, 11, 15)},
}
# a face counts as palm-side when its normal is within 60 degrees of the inward direction
_CONTACT_COS = 0.5


def _pose_points(poses: torch.Tensor, points: torch.Tensor, link: torch.Tensor, rotate_only: bool = False):
    """Points ``(N, 3)`` given in the frames of links ``link (N,)`` -> hand frame ``(B, N, 3)``."""
    B, N = poses.shape[0], link.shape[0]
    M = poses[:, :, :3, :].index_select(1, link).reshape(B * N, 3, 4)
    p = points.expand(B, -1, -1).reshape(B * N, 3, 1)
    out = torch.bmm(M[..., :3], p) if rotate_only else torch.baddbmm(M[..., 3:], M[..., :3], p)
    return out.view(B, N, 3)


class URDFHand(HandNames, torch.nn.Module):
    """Kinematic tree + surface model of a URDF robot hand (see the module docstring).

    Build with :meth:`from_urdf` or :meth:`from_urdf_string`. Attributes (Python lists): ``joint_names`` (J),
    ``link_names`` (L), ``link_parents`` (L, parent link index, -1 for the root), ``root_link``,
    ``fingertip_names`` (T link names), ``contact_link_names``. Tensors: ``lower_limits``/``upper_limits``
    ``(J,)`` [rad or m, +-inf when unlimited], ``faces (F, 3)`` long, ``vertex_link (V,)`` long,
    ``vertex_colors (V, 3)`` in [0, 1] (the link's visual material colour, grey when none),
    ``template_verts (V, 3)`` in link frames, ``point_link (P,)``, ``contact_candidate_link (C,)``,
    ``fingertip_link (T,)``.
    """

    def __init__(
        self,
        model: URDFModel,
        *,
        package_paths: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike] = (),
        geometry: str = "collision",
        points_per_link: int = 64,
        contact_points_per_link: int = 32,
        fingertip_links: Sequence[str] | None = None,
        contact_links: Mapping[str, Sequence[float] | None] | None = None,
        tessellation: Tessellation = DEFAULT_TESSELLATION,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if geometry not in ("collision", "visual"):
            raise InvalidValueError(f"geometry must be 'collision' or 'visual'; got {geometry!r}")
        if int(points_per_link) < 0 or int(contact_points_per_link) < 0:
            raise InvalidValueError("points_per_link and contact_points_per_link must be >= 0")
        self.source = model.source
        self.geometry = geometry
        self.link_names: list[str] = [link.name for link in model.links]
        self.root_link: str = model.root
        self._link_idx = {n: i for i, n in enumerate(self.link_names)}
        joint_of_child = {j.child: j for j in model.joints}
        self.link_parents: list[int] = [
            self._link_idx[joint_of_child[n].parent] if n in joint_of_child else -1 for n in self.link_names
        ]
        for j in model.joints:
            if j.type in ("floating", "planar"):
                warnings.warn(f"{model.source}: {j.type} joint {j.name!r} is treated as fixed", stacklevel=3)
        actuated = [j for j in model.joints if j.type in ACTUATED_TYPES and j.mimic is None]
        self.joint_names: list[str] = [j.name for j in actuated]
        self._joint_idx = {n: i for i, n in enumerate(self.joint_names)}
        self.mimic_joint_names: list[str] = [j.name for j in model.joints if j.type in ACTUATED_TYPES and j.mimic]
        J, L = len(self.joint_names), len(self.link_names)
        by_name = {j.name: j for j in model.joints}

        # ---- per-link joint parameters (index = link index; the root keeps the identity)
        f64 = torch.float64
        xyz = torch.zeros(L, 3, dtype=f64)
        rpy = torch.zeros(L, 3, dtype=f64)
        axis = torch.zeros(L, 3, dtype=f64)
        q_index = torch.full((L,), J, dtype=torch.long)  # J = the constant-zero column
        q_mult = torch.ones(L, dtype=f64)
        q_offset = torch.zeros(L, dtype=f64)
        rev = torch.zeros(L, dtype=f64)
        pri = torch.zeros(L, dtype=f64)
        for child, j in joint_of_child.items():
            i = self._link_idx[child]
            xyz[i], rpy[i], axis[i] = (torch.tensor(v, dtype=f64) for v in (j.xyz, j.rpy, j.axis))
            if j.type not in ACTUATED_TYPES:
                continue
            rev[i] = float(j.type in ("revolute", "continuous"))
            pri[i] = float(j.type == "prismatic")
            src, mult, off, seen = j, 1.0, 0.0, {j.name}
            while src.mimic is not None:
                nxt = by_name[src.mimic[0]]
                mult, off = mult * src.mimic[1], mult * src.mimic[2] + off
                if nxt.name in seen or nxt.type not in ACTUATED_TYPES:
                    raise ModelFileError(f"{model.source}: mimic joint {j.name!r} does not lead to an actuated joint")
                seen.add(nxt.name)
                src = nxt
            q_index[i], q_mult[i], q_offset[i] = self._joint_idx[src.name], mult, off
        origin = make_transform(rpy_to_matrix(rpy), xyz)
        lower = torch.tensor([j.lower for j in actuated], dtype=f64)
        upper = torch.tensor([j.upper for j in actuated], dtype=f64)

        # ---- tree levels: links at depth k only need poses from depth k-1
        depth = []
        for i in range(L):
            d, p = 0, self.link_parents[i]
            while p >= 0:
                d, p = d + 1, self.link_parents[p]
            depth.append(d)
        levels: list[list[int]] = [[i for i in range(L) if depth[i] == k] for k in range(max(depth) + 1)]
        self._n_levels = len(levels)
        flat = [i for lvl in levels for i in lvl]
        inv = torch.empty(L, dtype=torch.long)
        inv[torch.tensor(flat)] = torch.arange(L)
        self.register_buffer("_inv_perm", inv, persistent=False)
        for k, lvl in enumerate(levels):
            self.register_buffer(f"_level{k}", torch.tensor(lvl, dtype=torch.long), persistent=False)
            if k:
                pos = {link: p for p, link in enumerate(levels[k - 1])}
                parent_pos = torch.tensor([pos[self.link_parents[i]] for i in lvl], dtype=torch.long)
                self.register_buffer(f"_level{k}_parent", parent_pos, persistent=False)

        # ---- surface model
        resolver = PackageResolver(package_paths, base_dir=model.base_dir)
        cache: dict = {}
        link_meshes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # verts, faces, rgb per vertex
        for link in model.links:
            geoms = link.collisions if geometry == "collision" else link.visuals
            if not geoms:
                geoms = link.visuals if geometry == "collision" else link.collisions
            parts, colors = [], []
            link_rgba = next((g.rgba for g in link.visuals if g.rgba is not None), (0.5, 0.5, 0.5, 1.0))
            for g in geoms:
                v, f = geometry_mesh(g, resolver, tessellation, model.source, cache)
                parts.append((v, f))
                rgb = (link_rgba if g.rgba is None else g.rgba)[:3]
                colors.append(np.broadcast_to(np.asarray(rgb, dtype=np.float64), (len(v), 3)))
            v, f = primitives.concatenate_meshes(parts)
            link_meshes.append((v, f, np.concatenate(colors, 0) if colors else np.zeros((0, 3))))
        mv, mf = primitives.concatenate_meshes([(v, f) for v, f, _ in link_meshes])
        vlink = np.concatenate([np.full(len(v), i) for i, (v, _, _) in enumerate(link_meshes)] or [np.zeros(0)])
        vcol = np.concatenate([c for _, _, c in link_meshes] or [np.zeros((0, 3))], 0)

        pts, nrm, plink = [], [], []
        for i, (v, f, _) in enumerate(link_meshes):
            if len(f) and points_per_link:
                p, n, _ = primitives.sample_surface_even(v, f, points_per_link, seed=0)
                pts.append(p)
                nrm.append(n)
                plink.append(np.full(len(p), i))

        # ---- fingertips
        if fingertip_links is None:
            fingertip_links = [n for n in self.link_names if n.lower().endswith("tip")]
            if not fingertip_links:
                parents = set(self.link_parents)
                root = self._link_idx[self.root_link]
                fingertip_links = [n for i, n in enumerate(self.link_names) if i not in parents and i != root]
        self.fingertip_names: list[str] = list(fingertip_links)
        tip_idx = [self.link_index(n) for n in self.fingertip_names]

        # ---- contact candidates
        if contact_links is None and all(n in self._link_idx for n in ALLEGRO_CONTACT_LINKS):
            contact_links = ALLEGRO_CONTACT_LINKS
        cpts, cnrm, clink = [], [], []
        if contact_links is None:  # generic URDF: every surface point is a candidate
            cpts, cnrm, clink = pts, nrm, plink
            self.contact_link_names = [self.link_names[int(pl[0])] for pl in plink]
        else:
            self.contact_link_names = []
            for name, direction in contact_links.items():
                i = self.link_index(name)
                v, f, _ = link_meshes[i]
                if len(f) == 0 or not contact_points_per_link:
                    continue
                if direction is not None:
                    d = np.asarray(direction, dtype=np.float64)
                    if d.shape != (3,) or not np.linalg.norm(d) > 0:
                        raise InvalidValueError(f"contact_links[{name!r}] must be a non-zero 3-vector; got {direction}")
                    fn, _ = primitives.face_normals(v, f)
                    f = f[fn @ (d / np.linalg.norm(d)) >= _CONTACT_COS]
                    if len(f) == 0:
                        warnings.warn(f"link {name!r} has no faces facing {tuple(d)}: no contact candidates",
                                      stacklevel=3)
                        continue
                p, n, _ = primitives.sample_surface_even(v, f, contact_points_per_link, seed=1)
                cpts.append(p)
                cnrm.append(n)
                clink.append(np.full(len(p), i))
                self.contact_link_names.append(name)

        def cat3(arrs):
            return torch.tensor(np.concatenate(arrs, 0) if arrs else np.zeros((0, 3)), dtype=f64)

        def cat1(arrs):
            return torch.tensor(np.concatenate(arrs, 0) if arrs else np.zeros(0), dtype=torch.long)

        bufs = {
            "_origin": origin, "_axis": axis, "_q_index": q_index, "_q_mult": q_mult, "_q_offset": q_offset,
            "_rev": rev, "_pri": pri, "lower_limits": lower, "upper_limits": upper,
            "_mesh_verts": torch.tensor(mv, dtype=f64), "faces": torch.tensor(mf, dtype=torch.long),
            "vertex_link": torch.tensor(vlink, dtype=torch.long), "vertex_colors": torch.tensor(vcol, dtype=f64),
            "_points": cat3(pts), "_point_normals": cat3(nrm), "point_link": cat1(plink),
            "_contact_points": cat3(cpts), "_contact_normals": cat3(cnrm), "contact_candidate_link": cat1(clink),
            "fingertip_link": torch.tensor(tip_idx, dtype=torch.long),
        }
        for name, value in bufs.items():
            self.register_buffer(name, value, persistent=False)
        self.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------------------------------- builders

    @classmethod
    def from_urdf(
        cls,
        path: str | os.PathLike,
        package_paths: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike] = (),
        geometry: str = "collision",
        points_per_link: int = 64,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        *,
        contact_points_per_link: int = 32,
        fingertip_links: Sequence[str] | None = None,
        contact_links: Mapping[str, Sequence[float] | None] | None = None,
        tessellation: Tessellation = DEFAULT_TESSELLATION,
    ) -> URDFHand:
        """Load a URDF file.

        Args:
            path: the ``.urdf`` file (ModelFileError naming it when missing or malformed).
            package_paths: where ``package://`` URIs are looked for: directories holding package folders (or a
                package folder itself), or ``{package_name: dir}``; then ``$ROS_PACKAGE_PATH``,
                ``$AMENT_PREFIX_PATH`` share dirs and the URDF's ancestors. Relative paths are relative to
                the URDF file.
            geometry: "collision" or "visual" elements for the surface model.
            points_per_link: surface points per link with geometry (``surface_points``).
            device, dtype: of every buffer (and so of every output).
            contact_points_per_link: candidates per contact link (``contact_candidates``).
            fingertip_links: link names whose origins are the fingertips; default: links named ``*tip``
                (the Allegro ``link_*_tip``: the fingertip sphere centres), else the leaf links.
            contact_links: ``{link: inward direction (3,) in the link frame | None (whole surface)}``; default:
                :data:`ALLEGRO_CONTACT_LINKS` when those links exist, else every surface point.
            tessellation: subdivision of box / cylinder / sphere primitives.
        """
        model = parse_urdf(path)
        return cls(
            model, package_paths=package_paths, geometry=geometry, points_per_link=points_per_link,
            contact_points_per_link=contact_points_per_link, fingertip_links=fingertip_links,
            contact_links=contact_links, tessellation=tessellation, device=device, dtype=dtype,
        )

    @classmethod
    def from_urdf_string(
        cls, xml: str, base_dir: str | os.PathLike | None = None, **kwargs
    ) -> URDFHand:
        """Build from URDF XML text (e.g. the ``robot_description`` parameter); keyword args as :meth:`from_urdf`.

        ``base_dir`` resolves relative mesh paths (``package://`` URIs use ``package_paths`` and the environment).
        """
        return cls(parse_urdf_string(xml, base_dir), **kwargs)

    # ------------------------------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return self._origin.device

    @property
    def dtype(self) -> torch.dtype:
        return self._origin.dtype

    @property
    def template_verts(self) -> torch.Tensor:
        """Mesh vertices in their own link's frame, ``(V, 3)`` [m] (``vertex_link`` says which link)."""
        return self._mesh_verts

    def clamp(self, joint_angles: torch.Tensor) -> torch.Tensor:
        """Clamp ``(B, J)`` or ``(J,)`` joint values into ``[lower_limits, upper_limits]`` (differentiable inside)."""
        q, unbatched = self._prepare(joint_angles)
        q = torch.clamp(q, self.lower_limits, self.upper_limits)
        return q[0] if unbatched else q

    def default_joint_angles(self) -> torch.Tensor:
        """Zero configuration clamped into the limits: ``(J,)`` (e.g. the Allegro thumb rotation is 0.263)."""
        return self.clamp(torch.zeros(self.num_joints, dtype=self.dtype, device=self.device))

    # ----------------------------------------------------------------------------------------- kinematics

    def forward_kinematics(self, joint_angles: torch.Tensor) -> torch.Tensor:
        """Link poses ``link2hand``: ``q (B, J)`` -> ``(B, L, 4, 4)`` (``(J,)`` -> ``(L, 4, 4)``), metres."""
        q, unbatched = self._prepare(joint_angles)
        poses = self._fk(q)
        return poses[0] if unbatched else poses

    forward = forward_kinematics

    def _prepare(self, joint_angles) -> tuple[torch.Tensor, bool]:
        q = joint_angles
        if not isinstance(q, torch.Tensor):
            q = torch.as_tensor(np.asarray(q, dtype=np.float64), device=self.device)
        J = self.num_joints
        if q.dim() not in (1, 2) or q.shape[-1] != J:
            raise ShapeError(f"Expected joint_angles to have shape (B, {J}) or ({J},); got {tuple(q.shape)}")
        if q.device != self.device:
            raise InvalidValueError(f"joint_angles is on {q.device} but the hand model is on {self.device}; "
                                    f"use hand.to({q.device}) or move joint_angles")
        unbatched = q.dim() == 1
        q = (q[None] if unbatched else q).to(self.dtype)
        bad = ~torch.isfinite(q)
        if bad.any():
            names = [self.joint_names[j] for j in torch.nonzero(bad.any(0)).flatten().tolist()]
            raise InvalidValueError(f"joint_angles holds NaN/inf for joint(s) {', '.join(names)}")
        return q, unbatched

    def _axis_cross_matrices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(I, [a]x, [a]x^2)`` ``(3, 3)``, ``(L, 3, 3)``, ``(L, 3, 3)`` of the unit joint axes (URDF axes are
        normalised when parsed), cached per device and dtype."""
        key = (self._axis.device, self._axis.dtype)
        cache = self.__dict__.setdefault("_axis_cross_cache", {})
        if key not in cache:
            K = skew(self._axis)
            cache.clear()
            cache[key] = (torch.eye(3, dtype=K.dtype, device=K.device), K, K @ K)
        return cache[key]

    def _fk(self, q: torch.Tensor) -> torch.Tensor:
        B = q.shape[0]
        q_ext = torch.cat([q, q.new_zeros(B, 1)], 1)
        ql = q_ext.index_select(1, self._q_index) * self._q_mult + self._q_offset  # (B, L)
        eye, K, K2 = self._axis_cross_matrices()
        angle = (ql * self._rev)[..., None, None]
        half = torch.sin(0.5 * angle)
        # Rodrigues about the unit joint axis: I + sin(q) [a]x + (1 - cos q) [a]x^2 (prismatic / fixed: q = 0)
        R = eye + torch.sin(angle) * K + (2 * half * half) * K2
        t = self._axis * (ql * self._pri)[..., None]  # (B, L, 3)
        bottom = self._origin[:, 3:].expand(B, -1, -1, -1)  # (0, 0, 0, 1) rows
        local = self._origin @ torch.cat((torch.cat((R, t[..., None]), -1), bottom), -2)  # link2parent (B, L, 4, 4)
        world = [local.index_select(1, self._level0)]  # the root: identity
        for k in range(1, self._n_levels):
            links = getattr(self, f"_level{k}")
            parent = getattr(self, f"_level{k}_parent")
            world.append(world[-1].index_select(1, parent) @ local.index_select(1, links))
        return torch.cat(world, 1).index_select(1, self._inv_perm)

    # --------------------------------------------------------------------------------------------- surface

    def mesh(self, joint_angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posed triangle mesh of all links in the hand frame.

        Returns ``verts (B, V, 3)`` [m] (``(V, 3)`` for unbatched input), ``faces (F, 3)`` long and
        ``vertex_link (V,)`` long (the buffers themselves: do not modify them in place).
        """
        q, unbatched = self._prepare(joint_angles)
        verts = _pose_points(self._fk(q), self._mesh_verts, self.vertex_link)
        return (verts[0] if unbatched else verts), self.faces, self.vertex_link

    def surface_points(self, joint_angles: torch.Tensor, with_normals: bool = False):
        """``points_per_link`` evenly spread surface points per link: ``(B, P, 3)`` [m], hand frame.

        ``point_link (P,)`` gives each point's link. With ``with_normals`` also returns outward unit
        normals ``(B, P, 3)``.
        """
        return self._posed_points(joint_angles, self._points, self._point_normals, self.point_link, with_normals)

    def fingertips(self, joint_angles: torch.Tensor) -> torch.Tensor:
        """Origins of the ``fingertip_names`` links: ``(B, T, 3)`` [m], hand frame.

        For the Allegro these are the ``link_*_tip`` frames, i.e. the centres of the 12 mm fingertip spheres
        (not points on the surface).
        """
        q, unbatched = self._prepare(joint_angles)
        tips = self._fk(q)[:, self.fingertip_link, :3, 3]
        return tips[0] if unbatched else tips

    def contact_candidates(self, joint_angles: torch.Tensor, with_normals: bool = False):
        """Candidate contact points ``(B, C, 3)`` [m] on the palm-side surfaces (see ``contact_links``).

        ``contact_candidate_link (C,)`` gives each point's link; ``with_normals`` also returns outward normals.
        """
        return self._posed_points(joint_angles, self._contact_points, self._contact_normals,
                                  self.contact_candidate_link, with_normals)

    def posed_surfaces(self, joint_angles: torch.Tensor, base: torch.Tensor | None = None,
                       defer_surface: bool = False):
        """Everything a frame needs from one forward-kinematics pass: mesh vertices ``(B, V, 3)``, contact
        candidates ``(B, C, 3)``, surface points ``(B, P, 3)`` and fingertip centres ``(B, T, 3)`` [m], in the
        frame ``base (B, 4, 4)`` (e.g. hand2camera) or the hand frame when None; ``joint_angles (B, J)`` [rad].
        ``defer_surface``: on the CPU path without gradient the surface points come as a function without
        arguments that poses them (for a caller that may not read them; a tensor otherwise)."""
        q, _ = self._prepare(joint_angles)
        if q.device.type == "cpu" and not (torch.is_grad_enabled() and (
                q.requires_grad or (base is not None and base.requires_grad))):
            return posed_surfaces_array(self, q, base, defer_surface)
        poses = self._fk(q)
        if base is not None:
            poses = base.to(poses)[:, None] @ poses
        return (_pose_points(poses, self._mesh_verts, self.vertex_link),
                _pose_points(poses, self._contact_points, self.contact_candidate_link),
                _pose_points(poses, self._points, self.point_link),
                poses[:, self.fingertip_link, :3, 3])

    def _posed_points(self, joint_angles, points, normals, link, with_normals: bool):
        """Link-frame ``points`` / ``normals (N, 3)`` on links ``link (N,)`` posed into the hand frame."""
        q, unbatched = self._prepare(joint_angles)
        poses = self._fk(q)
        pts = _pose_points(poses, points, link)
        if not with_normals:
            return pts[0] if unbatched else pts
        nrm = _pose_points(poses, normals, link, rotate_only=True)
        return (pts[0], nrm[0]) if unbatched else (pts, nrm)

    def point_jacobian(self, joint_angles: torch.Tensor, points: torch.Tensor, link: torch.Tensor) -> torch.Tensor:
        """Closed-form derivative of hand-frame points fixed to links w.r.t. the joint angles.

        Args:
            joint_angles: ``(B, J)`` [rad] at which ``points`` were posed.
            points: ``(B, N, 3)`` hand-frame points [m] (e.g. :meth:`surface_points`).
            link: ``(N,)`` long, the link each point is attached to.
        Returns ``(B, N, 3, J)``: ``d point / d q`` (revolute: ``axis x (p - joint origin)``; prismatic: ``axis``;
        mimic joints add to their source joint with their multiplier).
        """
        q, _ = self._prepare(joint_angles)
        poses = self._fk(q)  # (B, L, 4, 4); a link's frame sits at its joint, the joint axis is fixed in it
        L, J = self.num_links, self.num_joints
        if getattr(self, "_chain_cache", None) is None or self._chain_cache.device != q.device:
            chain = torch.zeros(L, L)
            for i in range(L):
                k = i
                while k >= 0:
                    chain[i, k] = 1.0
                    k = self.link_parents[k]
            self._chain_cache = chain.to(q.device)
        axis = (poses[:, :, :3, :3] @ self._axis[None, :, :, None]).squeeze(-1)  # (B, L, 3) hand frame
        origin = poses[:, :, :3, 3]
        lever = points[:, :, None, :] - origin[:, None, :, :]  # (B, N, L, 3)
        v = torch.linalg.cross(axis[:, None].expand_as(lever), lever) * self._rev[:, None] \
            + axis[:, None] * self._pri[:, None]  # (B, N, L, 3)
        select = torch.zeros(L, J + 1, dtype=q.dtype, device=q.device)
        select[torch.arange(L, device=q.device), self._q_index] = self._q_mult * ((self._rev + self._pri) > 0)
        chain = self._chain_cache.to(q.dtype)[link]  # (N, L)
        return torch.einsum("bnlc,nl,lj->bncj", v, chain, select[:, :J])

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, joints={self.num_joints}, links={self.num_links}, "
                f"verts={self._mesh_verts.shape[0]}, faces={self.faces.shape[0]}, geometry={self.geometry!r}")

