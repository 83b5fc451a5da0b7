"""Self-calibration of the hand-camera transform (6 DoF) and the joint-encoder offsets (J) while tracking.

Slow states with a prior and a long time constant: a recursive (information-form, iterated) Gauss-Newton
estimate of ``x = (hand-camera correction, joint offsets)``, i.e. an augmented EKF whose states only drift by a
tiny random walk. One frame's update (:meth:`HandCalibrator.update`):

1. the frame is used only if the hand moved since the last used frame (``min_joint_motion`` /
   ``min_hand_motion``): a still hand repeats the same information, so the estimate stays where it is (no drift);
2. covariance ``P += Q`` (process noise per used frame);
3. ``iterations`` Gauss-Newton steps on ``|x - x_prior|^2_{P^-1} + sum w r^2 / (sigma^2 k)`` with the hand-depth
   modality (:mod:`.hand_depth`), re-associating each time; ``P = (P^-1 + J^T W J / (sigma^2 k))^-1``;
4. frozen (nothing changes) when too few hand points are associated (hand hidden, no depth) or the step is
   not finite.

:meth:`HandCalibrator.correct` turns a frame's measured hand state into the corrected one that the object
estimation uses. The estimate, its covariance and the recalibration check go to the node and ``handypriors
calibrate`` through :class:`~handypriors_core.io.calibration_file.HandCalibration`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..geometry.rotations import matrix_to_axis_angle
from ..io.calibration_file import HandCalibration
from ..io.frame import Frame
from ..render.renderer import Renderer
from .calibration_settings import CalibrationSettings
from .hand_depth import F64, HandCalibrationState, HandDepthModality

__all__ = ["CalibrationUpdate", "HandCalibrator", "state_deviation"]


def state_deviation(state: HandCalibrationState, reference: HandCalibrationState) -> torch.Tensor:
    """``(6 + J,)`` tangent of ``state`` about ``reference`` (the inverse of
    :meth:`HandCalibrationState.perturbed`): translation difference [m], ``log(R R_ref^T)`` [rad], offset
    difference [rad]."""
    dt = state.correction[:3, 3] - reference.correction[:3, 3]
    dphi = matrix_to_axis_angle(state.correction[:3, :3] @ reference.correction[:3, :3].T)
    return torch.cat((dt, dphi, state.offsets - reference.offsets))


def _embed_covariance(base: torch.Tensor, posterior: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``base (D, D)`` with its ``active (D,)`` block replaced by ``posterior``, no cross terms between estimated
    and fixed states, symmetrised."""
    idx, fixed = active.nonzero()[:, 0], (~active).nonzero()[:, 0]
    cov = torch.zeros_like(base)
    cov[idx[:, None], idx[None, :]] = posterior
    cov[fixed[:, None], fixed[None, :]] = base[fixed[:, None], fixed[None, :]]
    return 0.5 * (cov + cov.T)


@dataclass(frozen=True)
class CalibrationUpdate:
    """What one frame did: ``status`` (``updated``, ``still``, ``frozen: ...``), associated ``points``, the
    RMS point-to-plane residual [m] at the last iteration and the size of the change (``step``)."""

    status: str
    points: int = 0
    rms: float = math.nan
    step: float = 0.0


class HandCalibrator:
    """Estimates the hand-camera correction and joint offsets from the hand's depth (see the module docstring).

    Args:
        hand: the URDF hand model (joint order = ``Frame.joint_angles``).
        settings: :class:`CalibrationSettings`.
        renderer: hard rasteriser for the hand's self-occlusion (default: a new one).
        initial: starting calibration (a loaded file); its values are the prior mean.
    """

    def __init__(self, hand, settings: CalibrationSettings | None = None, renderer: Renderer | None = None,
                 initial: HandCalibration | None = None, keep_frames: bool = False) -> None:
        self.settings = settings if settings is not None else CalibrationSettings()
        self.modality = HandDepthModality(hand, self.settings, renderer)
        self.fine_modality = HandDepthModality(hand, self.settings, self.modality.renderer,
                                               self.settings.smoothing_excluded_links)  # smooth()'s observation
        self.joint_names = list(hand.joint_names)
        self.keep_frames = keep_frames
        self.reset(initial)

    # ------------------------------------------------------------------------------------------ state
    def reset(self, initial: HandCalibration | None = None) -> None:
        """Back to ``initial`` (or no correction) with the prior covariance."""
        s = self.settings
        J = len(self.joint_names)
        if initial is not None:
            initial.check_joint_names(self.joint_names)
            self.state = HandCalibrationState(initial.correction.to(F64).clone(),
                                              initial.joint_offsets.to(F64).clone())
        else:
            self.state = HandCalibrationState.identity(J)
        std = torch.tensor([s.prior_std_translation] * 3 + [s.prior_std_rotation] * 3 + [s.prior_std_offset] * J,
                           dtype=F64)
        self.covariance = torch.diag(std**2)
        wide = torch.tensor([s.prior_std_translation] * 3 + [s.prior_std_rotation] * 3
                            + [s.smoothing_prior_std_offset] * J, dtype=F64)
        self._prior = (self.state, torch.diag(wide**2))  # the batch re-solve's prior (mean, covariance)
        self.kept_frames: list[Frame] = []  # used frames for smooth() (only with keep_frames)
        self._process = torch.tensor([s.process_std_translation] * 3 + [s.process_std_rotation] * 3
                                     + [s.process_std_offset] * J, dtype=F64) ** 2
        active = torch.ones(6 + J, dtype=torch.bool)
        active[:6] = s.estimate_hand_camera
        active[6:] = s.estimate_joint_offsets
        self.active = active
        self.frames_used = 0
        self.frames_seen = 0
        self.last_update = CalibrationUpdate("no frame yet")
        self._last_q: torch.Tensor | None = None
        self._last_pose: torch.Tensor | None = None

    def result(self) -> HandCalibration:
        """The current estimate with its covariance (hand-camera block in (x, y, z, rot x, rot y, rot z) of the
        hand-root frame, then the offsets) as a :class:`HandCalibration`."""
        return HandCalibration(correction=self.state.correction.clone(), joint_offsets=self.state.offsets.clone(),
                               joint_names=list(self.joint_names), covariance=self.covariance.clone(),
                               frames_used=self.frames_used)

    def correct(self, frame: Frame) -> Frame:
        """``frame`` with the corrected joint angles and hand pose (the object estimation's input)."""
        q, T = self.state.apply(frame.joint_angles.to(F64), frame.hand2camera.to(F64))
        return dataclasses.replace(frame, joint_angles=q.to(frame.joint_angles.dtype),
                                   hand2camera=T.to(frame.hand2camera.dtype))

    def needs_recalibration(self) -> str:
        """Empty when the estimated errors are within the warning thresholds, else what exceeds them."""
        s = self.settings
        t = float(self.state.correction[:3, 3].norm())
        a = float(matrix_to_axis_angle(self.state.correction[:3, :3]).norm())
        worst = int(self.state.offsets.abs().argmax()) if self.state.offsets.numel() else 0
        b = float(self.state.offsets.abs().max()) if self.state.offsets.numel() else 0.0
        out = []
        if t > s.warn_translation:
            out.append(f"hand-camera translation {t * 1e3:.1f} mm > {s.warn_translation * 1e3:.1f} mm")
        if a > s.warn_rotation:
            out.append(f"hand-camera rotation {math.degrees(a):.2f} deg > {math.degrees(s.warn_rotation):.2f} deg")
        if b > s.warn_offset:
            out.append(f"joint {self.joint_names[worst]} offset {math.degrees(b):.2f} deg > "
                       f"{math.degrees(s.warn_offset):.2f} deg")
        return "; ".join(out)

    def summary(self) -> dict[str, float | int | str]:
        """Key values for diagnostics: correction (mm, deg), its 1-sigma, frames used, last status, offsets (deg)."""
        t = self.state.correction[:3, 3]
        sd = self.covariance.diag().clamp_min(0).sqrt()
        out: dict[str, float | int | str] = {
            "calibration_status": self.last_update.status,
            "calibration_frames_used": self.frames_used,
            "hand_camera_translation_mm": float(t.norm()) * 1e3,
            "hand_camera_rotation_deg": math.degrees(float(matrix_to_axis_angle(self.state.correction[:3, :3])
                                                           .norm())),
            "hand_camera_sigma_mm": float(sd[:3].max()) * 1e3,
            "hand_camera_sigma_deg": math.degrees(float(sd[3:6].max())),
            "joint_offset_max_deg": math.degrees(float(self.state.offsets.abs().max())) if self.joint_names else 0.0,
        }
        for name, value in zip(self.joint_names, self.state.offsets.tolist(), strict=True):
            out[f"offset_{name}_deg"] = math.degrees(value)
        return out

    # ------------------------------------------------------------------------------------------ update
    def observe(self, frame: Frame) -> Frame:
        """The tracker's hook: update from ``frame`` (when ``settings.enabled``, every ``update_every``-th frame)
        and return it with the corrected hand state."""
        if self.settings.enabled and self.frames_seen % self.settings.update_every == 0:
            self.update(frame)
        elif self.settings.enabled:
            self.frames_seen += 1
        return self.correct(frame)

    def _moved(self, q: torch.Tensor, pose: torch.Tensor) -> bool:
        if self._last_q is None:
            return True
        s = self.settings
        dq = float((q - self._last_q).abs().max()) if q.numel() else 0.0
        dt = float((pose[:3, 3] - self._last_pose[:3, 3]).norm())
        dR = pose[:3, :3].T @ self._last_pose[:3, :3]
        da = math.acos(max(-1.0, min(1.0, (float(dR.trace()) - 1) / 2)))
        return dq >= s.min_joint_motion or dt >= s.min_hand_motion or da * 0.1 >= s.min_hand_motion

    def update(self, frame: Frame) -> CalibrationUpdate:
        """Use ``frame``'s depth to refine the estimate (see the module docstring); returns what happened."""
        self.frames_seen += 1
        q_meas = frame.joint_angles.to(F64)
        pose_meas = frame.hand2camera.to(F64)
        if frame.depth is None:
            self.last_update = CalibrationUpdate("frozen: no depth")
            return self.last_update
        if not self._moved(q_meas, pose_meas):
            self.last_update = CalibrationUpdate("still", step=0.0)
            return self.last_update
        s = self.settings
        act = self.active
        D = 6 + len(self.joint_names)
        prior_state = self.state
        P = self.covariance + torch.diag(self._process)
        info_prior = torch.linalg.inv(P[act][:, act])
        x = torch.zeros(D, dtype=F64)
        state = prior_state
        H = None
        count = 0
        rms = math.nan
        visible = None  # the hand's self-occlusion is rendered once per frame
        for _ in range(s.iterations):
            assoc = self.modality.associate(frame.depth, frame.camera, q_meas, pose_meas, state, visible)
            visible = assoc.self_visible
            count = assoc.count
            if count < s.min_points:
                break
            block = self.modality.linearize(assoc, q_meas, pose_meas, state)
            rms = float(block.residual.square().mean().sqrt())
            H_all, g_all = block.normal_equations()
            H, g = H_all.cpu()[act][:, act], g_all.cpu()[act]
            step = torch.linalg.solve(info_prior + H, -(info_prior @ x[act] + g))
            if not bool(torch.isfinite(step).all()):
                H = None
                break
            x[act] = x[act] + step
            state = prior_state.perturbed(x)
        if H is None or count < s.min_points:
            self.last_update = CalibrationUpdate(f"frozen: {count} hand points (< {s.min_points})"
                                                 if count < s.min_points else "frozen: ill-conditioned", count)
            return self.last_update
        self.covariance = _embed_covariance(P, torch.linalg.inv(info_prior + H), act)
        self.state = state
        self.frames_used += 1
        self._last_q, self._last_pose = q_meas, pose_meas
        if self.keep_frames and self.settings.smoothing_frames > 0:
            self.kept_frames.append(frame)
            if len(self.kept_frames) > self.settings.smoothing_frames:
                self.kept_frames = self.kept_frames[1::2]  # thin evenly, newest kept
        self.last_update = CalibrationUpdate("updated", count, rms, float(x.norm()))
        return self.last_update

    # ------------------------------------------------------------------------------------------ batch re-solve
    def smooth(self, frames: list[Frame] | None = None) -> CalibrationUpdate:
        """Re-solve over all ``frames`` at once (default: :attr:`kept_frames`, with ``keep_frames``): MAP over the
        prior of :meth:`reset` and every frame's hand depth, re-linearised and re-associated at the current
        estimate each of ``smoothing_iterations`` Gauss-Newton steps (robust scale from ``robust_scale`` halving
        down to ``smoothing_robust_scale``). The recursive update fixes each frame's information where it was
        linearised (far off at the start with large faults); this removes that. Covariance: the MAP's.
        """
        frames = self.kept_frames if frames is None else frames
        s = self.settings
        act = self.active
        prior_state, prior_cov = self._prior
        info_prior = torch.linalg.inv(prior_cov[act][:, act])
        state = self.state
        visible: list[torch.Tensor | None] = [None] * len(frames)
        info = None
        count = 0
        for k in range(s.smoothing_iterations):
            scale = max(s.smoothing_robust_scale, s.robust_scale * 0.5 ** k)
            info = info_prior.clone()
            grad = info_prior @ state_deviation(state, prior_state)[act]
            count = 0
            for i, f in enumerate(frames):
                q, T = f.joint_angles.to(F64), f.hand2camera.to(F64)
                assoc = self.fine_modality.associate(f.depth, f.camera, q, T, state, visible[i])
                visible[i] = assoc.self_visible
                if assoc.count < s.min_points:
                    continue
                H, g = self.fine_modality.linearize(assoc, q, T, state, scale).normal_equations()
                info, grad = info + H.cpu()[act][:, act], grad + g.cpu()[act]
                count += 1
            step = torch.linalg.solve(info, -grad)
            if not bool(torch.isfinite(step).all()):
                self.last_update = CalibrationUpdate("frozen: ill-conditioned", count)
                return self.last_update
            x = torch.zeros(len(act), dtype=F64)
            x[act] = step
            state = state.perturbed(x)
        if info is None or count == 0:  # nothing observed: the estimate stays as it is
            self.last_update = CalibrationUpdate("frozen: no usable frame", 0)
            return self.last_update
        change = float(state_deviation(state, self.state).norm())
        self.covariance = _embed_covariance(prior_cov, torch.linalg.inv(info), act)
        self.state = state
        self.last_update = CalibrationUpdate("smoothed", count, step=change)
        return self.last_update
