"""The hand as an observation: its depth against the model posed by the measured joints and hand pose.

Calibration parameters (:class:`HandCalibrationState`)::

    q_true           = q_measured - joint_offsets                                (J,) [rad]
    hand2camera_true = hand2camera_measured @ hand_camera_correction             (4, 4), hand-root frame

Sparse depth modality with the shared ``(r, J, w)`` form (:class:`~.residuals.ResidualBlock`, Cauchy weights of
:func:`~.residuals.robust_weights`): hand surface points from forward kinematics (the
model's own even surface samples, with normals) are projected into the depth image (projective association);
points that face away, are hidden by the hand itself (hard z-buffer of the hand mesh in a crop around it) or by
something nearer (the object, another finger: observed depth in front by more than ``occlusion_margin``) are
skipped. Residual: point-to-plane ``r_i = n_i . (p_i(x) - o_i)`` with the model normal ``n_i`` and the observed
point ``o_i`` fixed at the linearisation point. Perturbation ``x = (d_rho (3) [m], d_phi (3) [rad], d_b (J)
[rad])`` of the current state: ``correction' = [exp(d_phi) R_c | t_c + d_rho]``, ``offsets' = offsets + d_b``;
closed-form Jacobian ``d r / d x = n^T [R_m, -R_m [R_c p_h]x, -R_m R_c dp_h/dq]`` (``dp_h/dq`` from
:meth:`URDFHand.point_jacobian`). Robust (Cauchy) weights ``w = 1 / (1 + (r / c)^2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..geometry.camera import PinholeCamera
from ..geometry.rotations import axis_angle_to_matrix, skew
from ..geometry.transforms import make_transform
from ..render.renderer import Renderer
from .calibration_settings import CalibrationSettings
from .residuals import ResidualBlock, robust_weights

__all__ = ["HandAssociation", "HandCalibrationState", "HandDepthModality"]

F64 = torch.float64


@dataclass
class HandCalibrationState:
    """Current calibration estimate (float64, CPU or the modality's device).

    Attributes:
        correction: ``(4, 4)`` hand-camera correction (``hand2camera_true = hand2camera_measured @ correction``).
        offsets: ``(J,)`` joint-encoder offsets [rad] (``q_true = q_measured - offsets``).
    """

    correction: torch.Tensor
    offsets: torch.Tensor

    @staticmethod
    def identity(num_joints: int, device: torch.device | str = "cpu") -> HandCalibrationState:
        return HandCalibrationState(torch.eye(4, dtype=F64, device=device), torch.zeros(num_joints, dtype=F64,
                                                                                        device=device))

    def perturbed(self, x: torch.Tensor) -> HandCalibrationState:
        """The state moved by ``x = (d_rho, d_phi, d_b) (6 + J,)`` (see the module docstring)."""
        x = x.to(self.correction)
        R = axis_angle_to_matrix(x[3:6]) @ self.correction[:3, :3]
        return HandCalibrationState(make_transform(R, self.correction[:3, 3] + x[:3]), self.offsets + x[6:])

    def apply(self, joint_angles: torch.Tensor, hand2camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Measured ``(J,)`` joints and ``(4, 4)`` hand pose -> corrected ones (same dtype and device)."""
        q = joint_angles - self.offsets.to(joint_angles)
        return q, hand2camera @ self.correction.to(hand2camera)


@dataclass(frozen=True)
class HandAssociation:
    """Model points associated with observed depth (float64, camera frame unless noted).

    Attributes:
        index: ``(N,)`` long, indices into the modality's model points.
        observed: ``(N, 3)`` back-projected depth at the points' pixels [m]; normals: ``(N, 3)`` model normals.
        candidates: model points facing the camera inside the image; visible: those not hidden by the hand
            itself; occluded: hidden by something nearer (object / other fingers).
        self_visible: ``(P,)`` bool over all model points, not hidden by the hand itself (reusable for the
            next association of the same frame).
    """

    index: torch.Tensor
    observed: torch.Tensor
    normals: torch.Tensor
    candidates: int
    visible: int
    occluded: int
    self_visible: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.index.numel())


class HandDepthModality:
    """Point-to-plane residuals of the hand surface against aligned depth (see the module docstring).

    Args:
        hand: :class:`~handypriors_core.models.URDFHand` (its dtype is used for FK; algebra is float64).
        settings: :class:`CalibrationSettings` (association gates, robust scale, point budget, z-buffer size).
        renderer: the hard rasteriser for self-occlusion (a default :class:`Renderer` when None).
        excluded_links: links whose points are not observed (they still hide what lies behind them).
    """

    def __init__(self, hand, settings: CalibrationSettings | None = None, renderer: Renderer | None = None,
                 excluded_links: Sequence[str] = ()) -> None:
        self.hand = hand
        self.settings = settings if settings is not None else CalibrationSettings()
        self.renderer = renderer if renderer is not None else Renderer()
        unknown = sorted(set(excluded_links) - set(hand.link_names))
        if unknown:
            raise ConfigError(f"calibration: excluded links {unknown} are not links of the hand model "
                              f"({', '.join(hand.link_names)})")
        excluded = torch.tensor([hand.link_names.index(n) for n in excluded_links], dtype=torch.long,
                                device=hand.point_link.device)
        usable = torch.nonzero(~torch.isin(hand.point_link, excluded)).flatten()
        step = max(1, -(-int(usable.numel()) // self.settings.max_points))
        self.point_index = usable[::step]  # model points observed (evenly subsampled, excluded links left out)
        self._posed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (q, points, normals): last FK

    @property
    def dof(self) -> int:
        return 6 + int(self.hand.num_joints)

    # ------------------------------------------------------------------------------------------ model
    def model_points(self, q: torch.Tensor, with_jacobian: bool = False, index: torch.Tensor | None = None):
        """Hand-frame points ``(P, 3)``, normals ``(P, 3)`` (float64) at joint angles ``q (J,)``; with
        ``with_jacobian`` also ``d p / d q (P, 3, J)``; ``index`` selects a subset of the model points."""
        qb = q.to(self.hand.device, self.hand.dtype)[None]
        cached = self._posed
        if cached is not None and cached[0].shape == qb.shape and torch.equal(cached[0], qb):
            pts, nrm = cached[1], cached[2]  # association and linearisation at the same state share one FK pass
        else:
            pts, nrm = self.hand.surface_points(qb, with_normals=True)
            self._posed = (qb.clone(), pts, nrm)
        sel = self.point_index if index is None else self.point_index[index.to(self.point_index.device)]
        pts, nrm = pts[:, sel], nrm[:, sel]
        if not with_jacobian:
            return pts[0].to(F64), nrm[0].to(F64)
        jac = self.hand.point_jacobian(qb, pts, self.hand.point_link[sel])
        return pts[0].to(F64), nrm[0].to(F64), jac[0].to(F64)

    def _self_visible(self, q: torch.Tensor, hand2camera: torch.Tensor, camera: PinholeCamera,
                      points: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """``(P,)`` bool: points on the hand's own nearest surface (hard z-buffer of the hand mesh, in a square
        crop around the projected points at ``render_size`` px)."""
        hand = self.hand
        verts, faces, _ = hand.mesh(q.to(hand.device, hand.dtype)[None])
        T = hand2camera.to(verts)
        verts = verts @ T[:3, :3].T + T[:3, 3]
        lo, hi = uv.min(0).values, uv.max(0).values
        half = 0.5 * float((hi - lo).max()) + 4.0
        centre = 0.5 * (lo + hi)
        box = (float(centre[0]) - half, float(centre[1]) - half, float(centre[0]) + half, float(centre[1]) + half)
        size = self.settings.render_size
        crop = camera.crop_and_resize(box, size, size).to(verts.device, verts.dtype)
        out = self.renderer.hard(verts.float(), faces, crop.to(verts.device, torch.float32))
        zbuf = out.zbuf[0]
        uvc = crop.project(points[None].to(verts.dtype))[0].round().long().clamp(0, size - 1)
        z_model = zbuf[uvc[:, 1], uvc[:, 0]].to(F64)
        # a point is visible when it is (within a few mm, a coarse z-buffer) the nearest hand surface there
        return (z_model <= 0) | (points[:, 2].to(F64) <= z_model + 0.004)

    # ------------------------------------------------------------------------------------------ association
    def associate(self, depth: torch.Tensor, camera: PinholeCamera, q_measured: torch.Tensor,
                  hand2camera_measured: torch.Tensor, state: HandCalibrationState,
                  self_visible: torch.Tensor | None = None) -> HandAssociation:
        """Associate the model points posed by ``state`` with ``depth (H, W)`` [m, NaN invalid].

        ``self_visible (P,)`` bool: points known not to be hidden by the hand itself (e.g. :attr:`HandAssociation
        .self_visible` of an earlier association of the same frame); rendered when None.
        """
        s = self.settings
        q, T = state.apply(q_measured.to(F64), hand2camera_measured.to(F64))
        ph, nh = self.model_points(q)
        T = T.to(ph.device)
        p = ph @ T[:3, :3].T + T[:3, 3]
        n = nh @ T[:3, :3].T
        cam = camera.to(p.device, F64)
        facing = (n * p).sum(-1) < -0.15 * p.norm(dim=-1)
        front = p[:, 2] > 0.05
        uv = cam.project(p[None].clamp_min(-1e3))[0]
        pix = uv.round().long()
        H, W = depth.shape
        inside = front & facing & (pix[:, 0] >= 0) & (pix[:, 0] < W) & (pix[:, 1] >= 0) & (pix[:, 1] < H)
        if int(inside.sum()) < 3:
            return HandAssociation(torch.zeros(0, dtype=torch.long, device=p.device), p.new_zeros(0, 3),
                                   p.new_zeros(0, 3), int(inside.sum()), 0, 0, torch.zeros_like(inside))
        if self_visible is None:
            self_visible = torch.zeros_like(inside)
            self_visible[inside] = self._self_visible(q, T, camera, p[inside], uv[inside])
        visible = inside & self_visible.to(inside.device)
        u, v = pix[:, 0].clamp(0, W - 1), pix[:, 1].clamp(0, H - 1)
        z_obs = depth.to(p.device, F64)[v, u]
        valid = visible & torch.isfinite(z_obs) & (z_obs > 0)
        occluded = valid & (z_obs < p[:, 2] - s.occlusion_margin)
        o = cam.unproject(torch.stack((u, v), -1)[None].to(F64), torch.nan_to_num(z_obs)[None])[0]
        r = (n * (p - o)).sum(-1)
        keep = valid & ~occluded & ((z_obs - p[:, 2]).abs() < s.association_gate) & (r.abs() < s.association_gate)
        idx = torch.nonzero(keep).flatten()
        return HandAssociation(idx, o[idx], n[idx], int(inside.sum()), int(visible.sum()), int(occluded.sum()),
                               self_visible)

    # ------------------------------------------------------------------------------------------ residuals
    def residuals(self, assoc: HandAssociation, q_measured: torch.Tensor, hand2camera_measured: torch.Tensor,
                  state: HandCalibrationState, x: torch.Tensor | None = None) -> torch.Tensor:
        """``r (N,)`` [m] at the state moved by ``x (6 + J,)`` (association and normals held fixed)."""
        moved = state if x is None else state.perturbed(x)
        q, T = moved.apply(q_measured.to(F64), hand2camera_measured.to(F64))
        ph, _ = self.model_points(q, index=assoc.index)
        T = T.to(ph.device)
        p = ph @ T[:3, :3].T + T[:3, 3]
        return (assoc.normals * (p - assoc.observed)).sum(-1)

    def linearize(self, assoc: HandAssociation, q_measured: torch.Tensor, hand2camera_measured: torch.Tensor,
                  state: HandCalibrationState, robust_scale: float | None = None) -> ResidualBlock:
        """``(r (N,), J (N, 6 + J), w (N,))`` at ``state`` (closed form, see the module docstring); ``std`` is the
        per-point noise inflated for correlated pixels; Cauchy weights at ``robust_scale`` [m] (default: the
        settings')."""
        q, _ = state.apply(q_measured.to(F64), hand2camera_measured.to(F64))
        ph, _, dph = self.model_points(q, with_jacobian=True, index=assoc.index)
        Rm = hand2camera_measured.to(ph.device, F64)[:3, :3]
        C = state.correction.to(ph.device, F64)
        pc = ph @ C[:3, :3].T + C[:3, 3]  # measured-hand frame
        p = pc @ Rm.T + hand2camera_measured.to(ph.device, F64)[:3, 3]
        r = (assoc.normals * (p - assoc.observed)).sum(-1)
        nm = assoc.normals @ Rm  # n^T R_m, (N, 3)
        d_rho = nm
        d_phi = -(nm[:, None, :] @ skew(ph @ C[:3, :3].T)).squeeze(1)
        d_b = -((nm @ C[:3, :3])[:, None, :] @ dph).squeeze(1)
        s = self.settings
        scale = s.robust_scale if robust_scale is None else robust_scale
        return ResidualBlock("hand_depth", r, torch.cat((d_rho, d_phi, d_b), 1), robust_weights(r, scale, "cauchy"),
                             s.point_std * s.correlation_inflation ** 0.5)
