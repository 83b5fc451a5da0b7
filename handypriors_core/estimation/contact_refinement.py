"""Contact refinement (paper Sec. IV-D): pose the hand so that its contact map matches a target.

The contact module gives every hand vertex ``i`` its signed distance ``s_i`` to the object and the object's
outward normal ``n_i`` at the closest point; the contact value is ``CO_i = min(1 / s_mm, 1)`` (ContactOpt's
definition, :func:`~handypriors_core.physics.contact_value`). Given a target map ``CO*_i`` (e.g. from
ContactPose) and optionally target normals ``n*_i``, :class:`ContactRefiner` optimises the hand articulation and
its rigid pose relative to the object (and the object pose when asked) with Adam on

- ``contact``: ``mean_i (CO~(s_i) - CO*_i)^2`` with the smooth contact value ``CO~``
  (:func:`~handypriors_core.physics.contact_value_smooth`): the contact module's output against the target;
- ``distance``: the same target read as distances, which keeps a useful gradient where ``CO`` is flat (far
  vertices, ``dCO/ds = -1/s^2``): ``CO* = 1`` asks ``s_i <= 1 mm`` (one-sided), ``floor < CO* < 1`` asks
  ``s_i = 1 / CO*`` mm, ``CO* <= floor`` asks ``s_i >= 1 / floor`` mm (one-sided); residuals are weighted by
  ``max(CO*, floor)`` and robust (Charbonnier, ``distance_scale``); they are the shared signed-distance
  residuals (:func:`~.residuals.hand_point_residuals`) with a target offset per vertex;
- ``penetration`` (Eq. 3, both directions): hand vertices inside the object, object samples inside the hand
  (:func:`~.modalities.penetration_penalty`, the object tracker's term);
- ``normal`` (with target normals): at target contacts the hand's outward vertex normal opposes the object
  normal: ``mean (1 + n_hand . n*)``;
- ``prior``: ``mean (q - q_init)^2`` on the articulation (off by default).

Hands: anything with the hand interface (``mesh(q) -> verts, faces, vertex_link``, ``lower_limits`` /
``upper_limits``): the MANO layer (parameters :class:`~.hand_object.ManoParams`; the articulation is
``hand_pose``, the rigid part ``global_orient`` / ``transl``) and URDF hands such as the Allegro hand (joint
angles, kept inside their limits, and ``hand2object``). The rigid correction ``R_d, rho`` turns the hand about
its wrist (MANO) or its root link origin (URDF) and is folded back into the parameters at the end.

Everything is in the object's parent frame ("world"; the object sits at ``object2world``, identity by
default), metres. The contact queries and object samples are those of a :class:`~.scene.HandObjectScene`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..checks import check_finite, check_shape
from ..config import check_ranges, ranged
from ..errors import InvalidValueError, ShapeError
from ..geometry.mesh import vertex_normals
from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..geometry.transforms import make_transform, transform_points
from ..models.mano import ManoHand
from ..models.rigid_object import RigidObject
from ..physics.contact import contact_value, contact_value_smooth
from ..physics.settings import ContactSettings
from . import modalities, residuals
from .contact_maps import (
    _check_normals,
    _check_target,
    contact_agreement,
    contact_colors,
    load_contact_target,
    render_contact_image,
)
from .hand_object import ManoParams
from .refiner import apply_pose_delta
from .scene import HandObjectScene

__all__ = [
    "ContactRefineResult",
    "ContactRefineSettings",
    "ContactRefiner",
    "contact_agreement",
    "contact_colors",
    "load_contact_target",
    "render_contact_image",
]

_MM = 0.001


@dataclass
class ContactRefineSettings:
    """Settings of :class:`ContactRefiner`.

    Attributes:
        iterations: Adam steps.
        lr_pose [rad or PCA units], lr_rotation [rad], lr_translation [m]: Adam step sizes of the articulation,
            of the hand's (and object's) rotation and translation; decaying geometrically to
            ``lr_final_fraction`` of themselves.
        optimize_hand_pose, optimize_hand_global, optimize_object: which parameters move.
        lambda_contact, lambda_distance [1/m], lambda_penetration [1/m], lambda_normal, lambda_prior [1/rad^2]:
            term weights (see the module docstring).
        contact_floor: target values at or below this count as "at least ``1 / floor`` mm away".
        distance_scale: [m] Charbonnier scale of the distance residuals.
        sharpness_per_mm: sharpness of the smooth contact value.
        normal_threshold: target values at or above this are contacts for the normal term.
        object_samples: object surface samples of the reverse penetration test.
        penetration_reverse_weight: weight of object samples inside the hand.
    """

    iterations: int = ranged(250, 0, 1_000_000)
    lr_pose: float = ranged(0.02, 0.0, 1e9)
    lr_rotation: float = ranged(0.01, 0.0, 1e9)
    lr_translation: float = ranged(0.001, 0.0, 1e9)
    lr_final_fraction: float = ranged(0.05, 0.0, 1.0, low_open=True)
    optimize_hand_pose: bool = True
    optimize_hand_global: bool = True
    optimize_object: bool = False
    lambda_contact: float = ranged(1.0, 0.0, 1e9)
    lambda_distance: float = ranged(10.0, 0.0, 1e9)
    lambda_penetration: float = ranged(100.0, 0.0, 1e9)
    lambda_normal: float = ranged(0.01, 0.0, 1e9)
    lambda_prior: float = ranged(0.0, 0.0, 1e9)
    contact_floor: float = ranged(0.02, 0.0, 1.0, low_open=True, high_open=True)
    distance_scale: float = ranged(0.001, 0.0, 1e9, low_open=True)
    sharpness_per_mm: float = ranged(4.0, 0.0, 1e9, low_open=True)
    normal_threshold: float = 0.5
    object_samples: int = ranged(400, 1, 1_000_000)
    penetration_reverse_weight: float = ranged(1.0, 0.0, 1e9)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class ContactRefineResult:
    """Outcome of :meth:`ContactRefiner.refine` (detached, on the refiner's device).

    Attributes:
        joint_angles: ``(J,)`` refined articulation (MANO ``hand_pose`` or URDF joint angles).
        params: refined :class:`ManoParams` (MANO hands) or None.
        hand2object: ``(4, 4)`` refined hand root pose in the world frame (URDF hands) or None.
        object2world: ``(4, 4)`` object pose.
        vertices: ``(V, 3)`` [m] refined hand vertices (world).
        contact_map: ``(V,)`` exact contact values of the result; signed_distance: ``(V,)`` [m];
        normals: ``(V, 3)`` object normals at the closest points (world).
        loss, initial_loss: weighted totals at the best and the first iterate; terms: best weighted terms.
        iterations, elapsed [s], history: total loss per iteration.
        initial_agreement, agreement: :func:`contact_agreement` of the start and of the result.
    """

    joint_angles: torch.Tensor
    params: ManoParams | None
    hand2object: torch.Tensor | None
    object2world: torch.Tensor
    vertices: torch.Tensor
    contact_map: torch.Tensor
    signed_distance: torch.Tensor
    normals: torch.Tensor
    loss: float
    initial_loss: float
    terms: dict[str, float]
    iterations: int
    elapsed: float
    history: list[float] = field(default_factory=list)
    initial_agreement: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)


class ContactRefiner:
    """Refine a hand pose (and optionally the object pose) towards a target contact map.

    Args:
        hand: :class:`~handypriors_core.models.ManoHand` or a URDF hand (the hand interface).
        obj: the object (object frame, metres).
        settings: :class:`ContactRefineSettings`; contact_settings: SDF query settings.
    """

    def __init__(self, hand, obj: RigidObject, settings: ContactRefineSettings | None = None,
                 contact_settings: ContactSettings | None = None):
        self.hand = hand
        self.is_mano = isinstance(hand, ManoHand)
        self.settings = settings if settings is not None else ContactRefineSettings()
        self.device, self.dtype = hand.device, hand.dtype
        #: the contact queries and object samples of the object tracker's terms
        self.scene = HandObjectScene(hand, obj, self.device, contact_settings=contact_settings,
                                     object_samples=self.settings.object_samples, dtype=self.dtype)
        self.object = self.scene.object
        self.object_sdf = self.scene.object_sdf
        self.faces = self.scene.hand_faces
        self.hand_geometry = self.scene.hand_geometry
        self.object_samples = self.scene.object_samples

    @property
    def num_vertices(self) -> int:
        """Vertices of the hand mesh (the length of a contact map)."""
        if self.is_mano:
            return self.hand.num_vertices
        return int(self.hand.mesh(self.hand.default_joint_angles()[None])[0].shape[1])

    # ------------------------------------------------------------------------------------------ queries
    def contact_map(self, vertices: torch.Tensor, object2world: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The contact module: ``vertices (B, V, 3)`` [m, world] -> exact contact values ``(B, V)``, object
        normals at the closest points ``(B, V, 3)`` and signed distances ``(B, V)`` [m] (differentiable)."""
        check_shape(vertices, (None, None, 3), "vertices")
        B = vertices.shape[0]
        pose = self._object_pose(object2world).expand(B, 4, 4).to(vertices)
        sd = self.object_sdf.signed_distance(vertices, pose)
        return contact_value(sd.distance), sd.normal, sd.distance

    def _object_pose(self, object2world: torch.Tensor | None) -> torch.Tensor:
        if object2world is None:
            return torch.eye(4, dtype=self.dtype, device=self.device)[None]
        check_shape(object2world, (4, 4), "object2world")
        check_finite(object2world, "object2world")
        return object2world.to(self.device, self.dtype)[None]

    def hand_vertices(self, init, joint_angles: torch.Tensor | None = None) -> torch.Tensor:
        """World vertices ``(1, V, 3)`` of ``init`` (:class:`ManoParams`, or ``(q (J,), hand2object (4, 4))``
        for a URDF hand), optionally with other ``joint_angles (J,)``."""
        hand_pose, rigid, _ = self._unpack(init)
        q = hand_pose if joint_angles is None else joint_angles.to(self.device, self.dtype)[None]
        return self._posed(q, rigid)

    # ---------------------------------------------------------------------------------------- internals
    def _unpack(self, init):
        """-> articulation ``(1, J)``, the fixed rigid inputs, the pivot ``(3,)`` of the rigid correction."""
        if self.is_mano:
            if not isinstance(init, ManoParams):
                raise InvalidValueError("a MANO hand is initialised with ManoParams")
            p = init.to(self.device, self.dtype)
            if p.batch_size != 1:
                raise ShapeError(f"init must hold one hand; got {p.batch_size}")
            p.check(self.hand, "init")
            with torch.no_grad():
                wrist = p.forward(self.hand).joints[0, 0]
            return p.hand_pose, p, wrist
        if not (isinstance(init, tuple | list) and len(init) == 2):
            raise InvalidValueError("a URDF hand is initialised with (joint_angles (J,), hand2object (4, 4))")
        q, T = init
        check_shape(q, (self.hand.num_joints,), "joint_angles")
        check_finite(q, "joint_angles")
        check_shape(T, (4, 4), "hand2object")
        check_finite(T, "hand2object")
        T = T.to(self.device, self.dtype)
        return q.to(self.device, self.dtype)[None], T, T[:3, 3].clone()

    def _posed(self, q: torch.Tensor, rigid) -> torch.Tensor:
        if self.is_mano:
            return self.hand(global_orient=rigid.global_orient, hand_pose=q, betas=rigid.betas,
                             transl=rigid.transl).vertices
        verts, _, _ = self.hand.mesh(q)
        return transform_points(rigid[None], verts)

    def _fold(self, q: torch.Tensor, rigid, pivot: torch.Tensor, delta: torch.Tensor):
        """Fold the rigid correction ``delta (6,) = (rho, phi)`` about ``pivot`` into the parameters."""
        R_d = axis_angle_to_matrix(delta[3:])
        if self.is_mano:
            R = R_d @ axis_angle_to_matrix(rigid.global_orient[0])
            return ManoParams(matrix_to_axis_angle(R)[None], q.detach().clone(), rigid.betas.clone(),
                              rigid.transl + delta[:3]), None
        R = R_d @ rigid[:3, :3]
        return None, make_transform(R, rigid[:3, 3] + delta[:3])

    # --------------------------------------------------------------------------------------------- refine
    def losses(self, verts: torch.Tensor, object2world: torch.Tensor, target: torch.Tensor,
               target_normals: torch.Tensor | None, q: torch.Tensor, q_init: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted terms for world vertices ``verts (B, V, 3)`` and ``object2world (B, 4, 4)``."""
        s = self.settings
        sd = self.object_sdf.signed_distance(verts, object2world)
        d = sd.distance  # (B, V)
        terms: dict[str, torch.Tensor] = {}
        if s.lambda_contact > 0:
            co = contact_value_smooth(d, s.sharpness_per_mm)
            terms["contact"] = ((co - target) ** 2).mean()
        if s.lambda_distance > 0:
            floor = s.contact_floor
            contact = target >= 0.999  # at most 1 mm away
            far = target <= floor  # at least 1 / floor mm away
            goal = torch.where(contact, torch.full_like(target, _MM), _MM / target.clamp_min(floor))
            r = residuals.hand_point_residuals(d, goal, below=far, above=contact)
            w = target.clamp_min(floor)
            eps = s.distance_scale
            rho = eps * residuals.robust_loss(r, eps, "charbonnier")  # sqrt(r^2 + eps^2) - eps [m]
            terms["distance"] = (w * rho).sum(-1).mean() / w.sum()
        if s.lambda_penetration > 0:
            reverse = s.penetration_reverse_weight
            terms["penetration"] = modalities.penetration_penalty(self.scene, d, verts, object2world, reverse)
        if s.lambda_normal > 0 and target_normals is not None:
            sel = target >= s.normal_threshold
            if bool(sel.any()):
                n_hand = vertex_normals(verts, self.faces)
                n_goal = target_normals @ object2world[:, :3, :3].transpose(-1, -2)
                terms["normal"] = (1 + (n_hand * n_goal).sum(-1))[:, sel].mean()
        if s.lambda_prior > 0:
            terms["prior"] = ((q - q_init) ** 2).mean()
        return terms

    def _weight(self, name: str) -> float:
        return getattr(self.settings, f"lambda_{name}")

    def refine(self, target: torch.Tensor, init, target_normals: torch.Tensor | None = None,
               object2world: torch.Tensor | None = None, iterations: int | None = None) -> ContactRefineResult:
        """Refine from ``init`` towards ``target (V,)`` contact values (optionally ``target_normals (V, 3)``,
        object-frame outward normals at the contacts).

        Args:
            init: :class:`ManoParams` (batch 1) for MANO, ``(joint_angles (J,), hand2object (4, 4))`` for a URDF
                hand; world frame.
            object2world: ``(4, 4)`` object pose (identity if None); optimised with ``optimize_object``.
        """
        s = self.settings
        V = self.num_vertices
        _check_target(target, V)
        target = target.to(self.device, self.dtype)
        if target_normals is not None:
            _check_normals(target_normals, V)
            target_normals = torch.nn.functional.normalize(target_normals.to(self.device, self.dtype), dim=-1)
        q0, rigid, pivot = self._unpack(init)
        pose0 = self._object_pose(object2world)
        iterations = s.iterations if iterations is None else int(iterations)
        start = time.perf_counter()
        dq = torch.zeros_like(q0, requires_grad=True)
        d_rigid = torch.zeros(1, 6, dtype=self.dtype, device=self.device, requires_grad=True)
        d_obj = torch.zeros(1, 6, dtype=self.dtype, device=self.device, requires_grad=True)
        scale = torch.tensor([s.lr_translation] * 3 + [s.lr_rotation] * 3, dtype=self.dtype, device=self.device)
        groups = []
        if s.optimize_hand_pose:
            groups.append({"params": [dq], "lr": s.lr_pose})
        if s.optimize_hand_global:
            groups.append({"params": [d_rigid], "lr": 1.0})
        if s.optimize_object:
            groups.append({"params": [d_obj], "lr": 1.0})
        base = [g["lr"] for g in groups]
        optimizer = torch.optim.Adam(groups) if groups else None
        lower = self.hand.lower_limits.to(self.device, self.dtype)
        upper = self.hand.upper_limits.to(self.device, self.dtype)

        def evaluate():
            q = q0 + dq
            delta = d_rigid * scale
            verts = self._posed(q, rigid)
            R_d = axis_angle_to_matrix(delta[:, 3:])
            verts = (verts - pivot) @ R_d.transpose(-1, -2) + pivot + delta[:, None, :3]
            pose = apply_pose_delta(pose0, d_obj * scale)
            return q, delta, verts, pose

        best = None
        history: list[float] = []
        initial = math.nan
        it = 0
        for it in range(iterations + 1):
            if optimizer is not None:
                frac = it / max(iterations, 1)
                for g, lr in zip(optimizer.param_groups, base):
                    g["lr"] = lr * s.lr_final_fraction ** frac
            q, delta, verts, pose = evaluate()
            terms = self.losses(verts, pose, target, target_normals, q, q0)
            loss = sum(self._weight(k) * v for k, v in terms.items()) if terms else verts.sum() * 0
            value = float(loss.detach())
            history.append(value)
            if it == 0:
                initial = value
            if not math.isfinite(value):
                break
            if best is None or value < best[0]:
                best = (value, q.detach().clone(), delta.detach()[0].clone(), pose.detach()[0].clone(),
                        {k: float(self._weight(k) * v.detach()) for k, v in terms.items()})
            if it == iterations or optimizer is None or not loss.requires_grad:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if any(p.grad is not None and not bool(torch.isfinite(p.grad).all())
                   for g in optimizer.param_groups for p in g["params"]):
                break
            optimizer.step()
            with torch.no_grad():  # joint limits (MANO: unlimited)
                dq.copy_(torch.maximum(torch.minimum(q0 + dq, upper), lower) - q0)
        value, q, delta, pose, terms = best
        params, hand2object = self._fold(q, rigid, pivot, delta)
        with torch.no_grad():
            if params is not None:
                verts = params.forward(self.hand).vertices
            else:
                verts = transform_points(hand2object[None], self.hand.mesh(q)[0])
            co, normals, d = self.contact_map(verts, pose)
            co0 = self.contact_map(self._posed(q0, rigid), pose0[0])[0]
        return ContactRefineResult(
            joint_angles=q[0], params=params, hand2object=hand2object, object2world=pose, vertices=verts[0],
            contact_map=co[0], signed_distance=d[0], normals=normals[0], loss=value, initial_loss=initial,
            terms=terms, iterations=it, elapsed=time.perf_counter() - start, history=history,
            initial_agreement=contact_agreement(co0[0], target), agreement=contact_agreement(co[0], target))
