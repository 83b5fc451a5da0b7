"""Generic error-state extended Kalman filter over a :class:`PoseState` (SE(3) pose + Euclidean extras).

The paper's Sec. III-E tracks ``x_t = f(x_{t-1}, u_t) + eps_s``, ``z_t = h(x_t) + eps_o`` with an EKF whose
Jacobians come from differentiable physics (``f``) and rendering (``h``). This module is that filter,
independent of any particular model: ``f`` and ``h`` are plain callables on :class:`PoseState`.

Error state and conventions (see ``pose_state``): the filter keeps the nominal state ``x`` and the
covariance ``P (n, n)`` of the tangent error ``delta`` with ``x_true = x [+] delta``. All Jacobians are
taken with respect to ``delta`` at 0:

- predict:  ``x- = f(x, u)``, ``F = d[f(x [+] d, u) [-] x-]/dd``, ``P- = F P F^T + Q``.
- update:   ``y = residual(z, h(x))`` (default ``z - h(x)``), ``H = -d residual(z, h(x [+] d))/dd``
  (equal to ``dh/dd`` for the default residual), ``S = H P H^T + R``, gain ``K = P H^T S^-1`` by a Cholesky
  solve (no explicit inverse), ``delta = K y``, Joseph form ``P+ = (I-KH) P (I-KH)^T + K R K^T``,
  ``x+ = x [+] delta``.
- reset:    after a correction ``delta``, the error is re-expressed at the new nominal state:
  ``P <- G P G^T`` with ``G = d[(x [+] (delta + e)) [-] (x [+] delta)]/de`` (the left Jacobian of SO(3) in
  the rotation block, identity elsewhere); switch off with ``EKFSettings.covariance_reset``.

Gating: an update is rejected when its normalised innovation squared ``y^T S^-1 y`` exceeds the chi-square
quantile ``chi2.ppf(gate_probability, dof)`` (``gating``). Rejected updates (gated, NaN/inf anywhere,
non-positive-definite ``S``) leave state and covariance untouched and say why in the returned :class:`StepResult`.

Dense observations (:meth:`ErrorStateEKF.update_information`) arrive already reduced to the normal equations
``Lambda = J^T R^-1 J (n, n)`` and ``eta = J^T R^-1 r (n,)`` (``r = z - h(x)`` of thousands of pixels,
``J = dh/dd``). The update is the information form of the same Kalman update::

    P+ = (P^-1 + Lambda)^-1,   delta = P+ eta,   x+ = x [+] delta

computed as ``P+ = L (I + L^T Lambda L)^-1 L^T`` with ``P = L L^T`` (Cholesky factorisations of ``P`` and of
``I + L^T Lambda L``, whose eigenvalues are >= 1; ``P^-1`` is never formed). For linear Gaussian models it
equals :meth:`update` exactly. Its gate uses one of two statistics:

- ``"projected"`` (default): the innovation projected onto the state, ``eta``, has covariance
  ``C = Lambda P Lambda + Lambda`` under the model, so ``eta^T C^+ eta ~ chi2(rank Lambda)``. It only tests the
  part of the residual that would move the state and does not need the per-pixel residual.
- ``"full"``: the full ``y^T S^-1 y`` over all ``k`` observations, which by the Woodbury identity is
  ``r^T R^-1 r - eta^T P+ eta`` with ``dof = k``; needs ``residual_sq = r^T R^-1 r`` and ``num_observations``.

Precision: state and covariance are kept in float64 on the device of the initial pose. ``f`` and ``h``
receive float64 states; they may compute in float32 internally (casting back), which only costs Jacobian
precision. Jacobians use ``torch.func.jacfwd`` by default (other modes in :func:`.linearization.linearize`); for the
``torch.func`` modes ``f``/``h`` must be torch operations without data-dependent Python control flow on the state.
Rotations of every new nominal state are re-orthonormalised (nearest rotation, through the SVD) so they cannot drift.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..checks import check_shape
from ..errors import ConfigError, InvalidValueError, ShapeError
from .gating import chi2_threshold, projected_nis
from .linearization import JACOBIAN_MODES, JacobianMode, linearize, motion_jacobian, pose_tangent_jacobian
from .pose_state import (
    POSE_DIM,
    PoseState,
    nearest_rotation_array,
    retract_value,
    retracted_pose_array,
    so3_left_jacobian,
    so3_left_jacobian_array,
)

__all__ = ["EKFSettings", "ErrorStateEKF", "StepResult"]

StepStatus = Literal["accepted", "gated", "non_finite", "not_positive_definite"]

_F64 = torch.float64


@dataclass
class EKFSettings:
    """Settings of :class:`ErrorStateEKF`.

    Attributes:
        jacobian_mode: how Jacobians of ``f``/``h`` over the tangent are computed when not given (see
            :func:`.linearization.linearize`): ``"forward"`` (default), ``"reverse"``, ``"reverse_loop"`` or
            ``"central_difference"``.
        difference_step: step of the central differences, in tangent units [m or rad]. Default 1e-6.
        covariance_reset: re-express the covariance at the corrected nominal state after each update
            (``P <- G P G^T``). Default True.
        rank_tolerance: relative eigenvalue threshold for the rank of the projected-innovation covariance in
            :meth:`ErrorStateEKF.update_information`. Default 1e-10.
    """

    jacobian_mode: JacobianMode = "forward"
    difference_step: float = 1e-6
    covariance_reset: bool = True
    rank_tolerance: float = 1e-10

    def __post_init__(self) -> None:
        if self.jacobian_mode not in JACOBIAN_MODES:
            raise ConfigError(f"jacobian_mode must be one of {JACOBIAN_MODES}; got {self.jacobian_mode!r}")
        if not self.difference_step > 0:
            raise ConfigError(f"difference_step must be > 0; got {self.difference_step}")
        if not 0 < self.rank_tolerance < 1:
            raise ConfigError(f"rank_tolerance must be in (0, 1); got {self.rank_tolerance}")


@dataclass(frozen=True)
class StepResult:
    """Outcome of one predict or update.

    Attributes:
        accepted: True when state and covariance were changed.
        status: ``"accepted"``, ``"gated"`` (Mahalanobis test failed), ``"non_finite"`` (NaN/inf in an input,
            model output, Jacobian or result) or ``"not_positive_definite"`` (a Cholesky factorisation failed).
        nis: normalised innovation squared (the gate statistic); NaN when not computed (predict, non-finite).
        dof: degrees of freedom of the gate statistic (0 for predict).
        threshold: chi-square gate threshold; ``inf`` when gating is off.
        correction: ``(n,)`` float64 tangent correction applied (zeros when rejected or for predict).
        jacobian: the ``F (n, n)`` or ``H (k, n)`` used (float64), when one was formed; None otherwise.
    """

    accepted: bool
    status: StepStatus
    nis: float = math.nan
    dof: int = 0
    threshold: float = math.inf
    correction: torch.Tensor | None = None
    jacobian: torch.Tensor | None = None


def _finite(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


def _cholesky(A: torch.Tensor) -> torch.Tensor | None:
    """Lower Cholesky factor of SPD ``A``, or None when ``A`` is not positive definite.

    (``torch.linalg.cholesky`` + exception rather than ``cholesky_ex``, which is ~500x slower on small CPU matrices.)
    """
    try:
        return torch.linalg.cholesky(A)
    except RuntimeError:  # torch.linalg.LinAlgError
        return None


def _orthonormalised(state: PoseState) -> PoseState:
    """Detached copy whose rotation is exactly orthonormal: the nearest rotation ``U V^T`` of its SVD ``U S V^T``
    (the rotations here stay within rounding of SO(3), so ``det(U V^T) = +1``)."""
    pose = state.pose.detach().clone()
    U, _, Vh = torch.linalg.svd(pose[:3, :3])
    pose[:3, :3] = U @ Vh
    return PoseState(pose, state.extra.detach().clone())


class ErrorStateEKF:
    """Error-state EKF on :class:`PoseState` (see the module docstring for the math).

    Attributes (all float64, on the device of the initial pose):
        state: current nominal state; ``covariance``: ``(n, n)`` tangent covariance.
        prior_state / prior_covariance: after the last :meth:`predict` (filterpy's ``x_prior``/``P_prior``).
        posterior_state / posterior_covariance: after the last accepted update.
    """

    #: CPU states: commit and rigid-motion predict in numpy (tests compare with the torch path by clearing it)
    use_arrays = True

    def __init__(self, state: PoseState, covariance: torch.Tensor, settings: EKFSettings | None = None) -> None:
        """``state``: initial state; ``covariance``: ``(n, n)`` SPD, tangent units [m^2, rad^2, ...]."""
        self.settings = settings if settings is not None else EKFSettings()
        if not state.is_finite():
            raise InvalidValueError("state contains NaN/inf")
        self.state = state.to(dtype=_F64)
        self.covariance = self._check_covariance(covariance, "covariance", require_pd=True)
        self.prior_state, self.prior_covariance = self.state, self.covariance.clone()
        self.posterior_state, self.posterior_covariance = self.state, self.covariance.clone()
        self._motion_noise: tuple[torch.Tensor | None, np.ndarray | None] = (None, None)  # Q, checked (predict_motion)

    # ------------------------------------------------------------------ helpers
    @property
    def dim(self) -> int:
        """Tangent dimension ``n``."""
        return self.state.dim

    @property
    def pose(self) -> torch.Tensor:
        """``(4, 4)`` float64 current pose (``body2parent``)."""
        return self.state.pose

    @property
    def pose_covariance(self) -> torch.Tensor:
        """``(6, 6)`` float64 covariance of the pose part, ROS ``PoseWithCovariance`` order and frame."""
        return self.covariance[:6, :6]

    def _as64(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x).to(device=self.state.pose.device, dtype=_F64)

    def _check_covariance(self, C: torch.Tensor, name: str, require_pd: bool = False, size: int | None = None):
        n = self.dim if size is None else size
        if not isinstance(C, torch.Tensor):
            raise ShapeError(f"Expected {name} to be a torch.Tensor; got {type(C).__name__}")
        check_shape(C, (n, n), name)
        C = self._as64(C)
        if not _finite(C):
            raise InvalidValueError(f"{name} contains NaN/inf")
        scale = float(C.abs().max()) if C.numel() else 0.0
        if float((C - C.transpose(0, 1)).abs().max()) > 1e-6 * max(scale, 1e-300):
            raise InvalidValueError(f"{name} must be symmetric")
        if require_pd and _cholesky(C) is None:
            raise InvalidValueError(f"{name} must be positive definite")
        return 0.5 * (C + C.transpose(0, 1))

    def _reset(self, delta: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        """``G P G^T`` with ``G = d[(x [+] (delta + e)) [-] (x [+] delta)]/de = blockdiag(I, J_l(phi), I)``."""
        if not self.settings.covariance_reset:
            return P
        G = torch.eye(P.shape[0], dtype=P.dtype, device=P.device)
        G[3:6, 3:6] = so3_left_jacobian(delta[3:6])
        P = G @ P @ G.transpose(0, 1)
        return 0.5 * (P + P.transpose(0, 1))

    def correct(self, delta: torch.Tensor | np.ndarray, covariance: torch.Tensor | np.ndarray) -> StepStatus:
        """Apply an update computed elsewhere (e.g. the iterated update): ``x [+] delta`` with ``covariance``
        ``(n, n)`` at ``x`` (then reset to the new nominal state); returns the status (refused if non-finite).
        Float64 numpy arrays go straight to the numpy commit of a CPU state."""
        if isinstance(delta, np.ndarray) and isinstance(covariance, np.ndarray) and self._on_cpu():
            return self._commit_arrays(delta.astype(np.float64, copy=False), covariance.astype(np.float64, copy=False))
        return self._commit(self._as64(torch.as_tensor(delta)), self._as64(torch.as_tensor(covariance)))

    def _on_cpu(self) -> bool:
        """Whether the state lives on the CPU: the pose algebra then runs in float64 numpy (same values; a torch call
        on matrices this small costs several times its arithmetic)."""
        return self.use_arrays and self.state.pose.device.type == "cpu"

    def _commit(self, delta: torch.Tensor, P: torch.Tensor) -> StepStatus:
        """Apply ``x [+] delta`` with covariance ``P``; refuse (return the reason) if anything is non-finite."""
        if self._on_cpu():
            return self._commit_arrays(delta.detach().cpu().numpy(), P.detach().cpu().numpy())
        if not _finite(delta, P):
            return "non_finite"
        new_state = retract_value(self.state, delta)
        P = self._reset(delta, P)
        if not (new_state.is_finite() and _finite(P)):
            return "non_finite"
        new_state = _orthonormalised(new_state)
        self.state, self.covariance = new_state, P
        self.posterior_state, self.posterior_covariance = new_state, P.clone()
        return "accepted"

    def _commit_arrays(self, delta: np.ndarray, P: np.ndarray) -> StepStatus:
        """:meth:`_commit` in numpy (CPU state)."""
        # (a NaN or inf anywhere makes the sum non-finite; so does a finite total beyond 1e308, refused alike)
        if not math.isfinite(float(delta.sum()) + float(P.sum())):
            return "non_finite"
        pose = retracted_pose_array(self.state.pose.detach().numpy(), delta)
        extra = self.state.extra.detach().numpy() + delta[POSE_DIM:] if P.shape[0] > POSE_DIM else \
            np.zeros(0)
        if self.settings.covariance_reset:
            G = np.eye(P.shape[0])
            G[3:6, 3:6] = so3_left_jacobian_array(delta[3:6])
            P = G @ P @ G.T
            P = 0.5 * (P + P.T)
        # (a finite state moved by a finite delta stays finite, barring overflow, which the covariance's sum shows)
        if not math.isfinite(float(pose.sum()) + float(P.sum())):
            return "non_finite"
        pose[:3, :3] = nearest_rotation_array(pose[:3, :3])
        self.state, self.covariance = PoseState(torch.from_numpy(pose), torch.from_numpy(extra)), torch.from_numpy(P)
        self.posterior_state, self.posterior_covariance = self.state, self.covariance.clone()
        return "accepted"

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        f: Callable[[PoseState, torch.Tensor | None], PoseState],
        u: torch.Tensor | None,
        Q: torch.Tensor,
        jacobian: torch.Tensor | None = None,
    ) -> StepResult:
        """Propagate: ``x- = f(x, u)``, ``P- = F P F^T + Q``.

        Args:
            f: motion model ``(state, u) -> PoseState`` (same extra dimension).
            u: control input passed to ``f`` unchanged (e.g. hand joint angles ``(J,)`` rad), or None.
            Q: ``(n, n)`` process noise covariance in the tangent at the predicted state.
            jacobian: ``F (n, n)``; computed with ``settings.jacobian_mode`` when None.
        Returns: :class:`StepResult` (``"non_finite"`` keeps the previous state if ``f`` or ``F`` is NaN/inf).
        """
        Q = self._check_covariance(Q, "Q")
        m = self.state.extra.shape[0]

        def raw(s: PoseState) -> torch.Tensor:
            out = f(s, u)
            if not isinstance(out, PoseState) or out.extra.shape != (m,):
                raise ShapeError(f"f must return a PoseState with extra of shape ({m},)")
            return torch.cat((out.pose.reshape(-1), out.extra)).to(_F64)

        def unflatten(v: torch.Tensor) -> PoseState:
            return PoseState(v[:16].reshape(4, 4), v[16:])

        if jacobian is None:
            # One (vectorised) pass through f: J_raw = d f(x [+] d)/dd in raw coordinates (16 pose entries,
            # extras). The local difference (. [-] x-) has derivative (dt, vee(skew(dR R-^T)), de) at x-.
            value, J_raw = linearize(raw, self.state, self.settings.jacobian_mode, self.settings.difference_step)
            x_pred = unflatten(value)
            if not x_pred.is_finite():
                return StepResult(False, "non_finite")
            dpose = J_raw[:16].transpose(0, 1).reshape(-1, 4, 4)  # (n, 4, 4)
            F = torch.cat((pose_tangent_jacobian(dpose, x_pred.rotation), J_raw[16:]), 0)
        else:
            check_shape(jacobian, (self.dim, self.dim), "jacobian")
            F = self._as64(jacobian)
            with torch.no_grad():
                x_pred = unflatten(raw(self.state).detach())
            if not x_pred.is_finite():
                return StepResult(False, "non_finite", jacobian=F)
        F = F.detach()
        P = F @ self.covariance @ F.transpose(0, 1) + Q
        P = 0.5 * (P + P.transpose(0, 1))
        if not _finite(F, P):
            return StepResult(False, "non_finite", jacobian=F)
        self.state = _orthonormalised(x_pred)
        self.covariance = P
        self.prior_state, self.prior_covariance = self.state, P.clone()
        return StepResult(True, "accepted", correction=torch.zeros(self.dim, dtype=_F64, device=P.device), jacobian=F)

    def predict_motion(self, motion: torch.Tensor, Q: torch.Tensor) -> StepResult:
        """Predict with a rigid motion of the pose: ``x- = (motion @ pose, extra)``, ``motion (4, 4)``, with the
        closed-form ``F = blockdiag(R_motion, R_motion, I)`` (:func:`~.linearization.motion_jacobian`). On the CPU the
        process noise ``Q`` is checked once per tensor (the filter passes the same one every frame: do not modify a
        ``Q`` in place between calls)."""
        check_shape(motion, (4, 4), "motion")
        M = self._as64(motion).detach()
        if self._on_cpu():
            if self._motion_noise[0] is not Q:
                self._motion_noise = (Q, self._check_covariance(Q, "Q").numpy())
            return self._predict_motion_arrays(M.numpy(), self._motion_noise[1])
        F = torch.eye(self.dim, dtype=_F64, device=M.device)
        F[:6, :6] = motion_jacobian(M[:3, :3])
        return self.predict(lambda state, _u: PoseState(M @ state.pose, state.extra), None, Q, jacobian=F)

    def _predict_motion_arrays(self, M: np.ndarray, Q: np.ndarray) -> StepResult:
        """:meth:`predict_motion` in numpy (CPU state)."""
        F = np.eye(self.dim)
        F[:3, :3] = F[3:6, 3:6] = M[:3, :3]  # motion_jacobian
        pose = M @ self.state.pose.detach().numpy()
        F_t = torch.from_numpy(F)
        if not np.isfinite(pose).all():
            return StepResult(False, "non_finite", jacobian=F_t)
        P = F @ self.covariance.detach().numpy() @ F.T + Q
        P = 0.5 * (P + P.T)
        if not (np.isfinite(F).all() and np.isfinite(P).all()):
            return StepResult(False, "non_finite", jacobian=F_t)
        pose[:3, :3] = nearest_rotation_array(pose[:3, :3])
        self.state = PoseState(torch.from_numpy(pose), self.state.extra.detach().clone())
        self.covariance = torch.from_numpy(P)
        self.prior_state, self.prior_covariance = self.state, self.covariance.clone()
        return StepResult(True, "accepted", correction=torch.zeros(self.dim, dtype=_F64), jacobian=F_t)

    # ------------------------------------------------------------------ update
    def update(
        self,
        z: torch.Tensor,
        h: Callable[[PoseState], torch.Tensor],
        R: torch.Tensor,
        residual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        jacobian: torch.Tensor | None = None,
        gate_probability: float | None = 0.999,
    ) -> StepResult:
        """Standard EKF update with observation ``z (k,)``.

        Args:
            z: observation (any shape; flattened).
            h: observation model ``state -> `` prediction of ``z`` (flattened).
            R: ``(k, k)`` noise covariance of the innovation, or ``(k,)`` variances of independent components.
            residual: ``(z, h(x)) -> (k,)`` innovation; default ``z - h(x)``. Use it for wrapped angles or
                manifold-valued observations (``k`` may then differ from ``z``'s size, e.g. 3 for a rotation
                observed as a 3x3 matrix); ``H`` is ``-d residual / d delta``.
            jacobian: ``H (k, n)`` with ``residual(z, h(x [+] d)) ~= y - H d``; autodiff when None.
            gate_probability: chi-square gate probability; None disables gating.
        Returns: :class:`StepResult` with the NIS ``y^T S^-1 y``, its ``dof = k`` and the threshold.
        """
        res = residual if residual is not None else (lambda zz, hx: zz - hx)
        z = self._as64(z).reshape(-1)
        n = self.dim
        zero = torch.zeros(n, dtype=_F64, device=z.device)
        if not _finite(z):
            k = R.shape[0] if isinstance(R, torch.Tensor) and R.dim() >= 1 else 0
            return StepResult(False, "non_finite", dof=k, correction=zero)

        def innovation(s: PoseState) -> torch.Tensor:
            return res(z, self._as64(h(s)).reshape(-1)).reshape(-1)

        if jacobian is None:
            y, H = linearize(innovation, self.state, self.settings.jacobian_mode, self.settings.difference_step)
            H = -H
        else:
            with torch.no_grad():
                y = innovation(self.state).detach()
            check_shape(jacobian, (y.shape[0], n), "jacobian")
            H = self._as64(jacobian).detach()
        k = y.shape[0]
        R = self._observation_covariance(R, k)
        if not _finite(y, H):
            return StepResult(False, "non_finite", dof=k, correction=zero, jacobian=H)

        P = self.covariance
        PHt = P @ H.transpose(0, 1)
        S = H @ PHt + R
        S = 0.5 * (S + S.transpose(0, 1))
        L = _cholesky(S)
        if L is None:
            return StepResult(False, "not_positive_definite", dof=k, correction=zero, jacobian=H)
        w = torch.linalg.solve_triangular(L, y[:, None], upper=False)
        nis = float((w * w).sum())
        threshold = math.inf if gate_probability is None else chi2_threshold(float(gate_probability), k)
        if not math.isfinite(nis):
            return StepResult(False, "non_finite", nis, k, threshold, zero, H)
        if nis > threshold:
            return StepResult(False, "gated", nis, k, threshold, zero, H)
        K = torch.cholesky_solve(PHt.transpose(0, 1), L).transpose(0, 1)  # P H^T S^-1, (n, k)
        delta = K @ y
        A = torch.eye(n, dtype=_F64, device=P.device) - K @ H
        P_new = A @ P @ A.transpose(0, 1) + K @ R @ K.transpose(0, 1)
        P_new = 0.5 * (P_new + P_new.transpose(0, 1))
        status = self._commit(delta, P_new)
        applied = delta if status == "accepted" else zero
        return StepResult(status == "accepted", status, nis, k, threshold, applied, H)

    def _observation_covariance(self, R: torch.Tensor, k: int) -> torch.Tensor:
        if not isinstance(R, torch.Tensor):
            raise ShapeError(f"Expected R to be a torch.Tensor; got {type(R).__name__}")
        if R.dim() == 1:
            check_shape(R, (k,), "R")
            R = self._as64(R)
            if not (_finite(R) and bool((R > 0).all())):
                raise InvalidValueError("R (variances) must be finite and > 0")
            return torch.diag(R)
        return self._check_covariance(R, "R", size=k)

    # ------------------------------------------------------------------ information form
    def update_information(
        self,
        information: torch.Tensor,
        information_vector: torch.Tensor,
        residual_sq: float | torch.Tensor | None = None,
        num_observations: int | None = None,
        gate: Literal["projected", "full"] = "projected",
        gate_probability: float | None = 0.999,
    ) -> StepResult:
        """Update from a dense observation given as normal equations (see module docstring).

        Args:
            information: ``Lambda = J^T R^-1 J`` ``(n, n)`` symmetric PSD, ``J = dh/d delta`` at the current state.
            information_vector: ``eta = J^T R^-1 r`` ``(n,)`` with ``r = z - h(x)``.
            residual_sq: ``r^T R^-1 r`` (scalar); needed for ``gate="full"``.
            num_observations: ``k``, number of scalar observations; needed for ``gate="full"``.
            gate: ``"projected"`` (``eta^T (Lambda P Lambda + Lambda)^+ eta ~ chi2(rank)``) or ``"full"``
                (``y^T S^-1 y = r^T R^-1 r - eta^T P+ eta ~ chi2(k)``).
            gate_probability: chi-square gate probability; None disables gating.
        Returns: :class:`StepResult`.
        """
        n = self.dim
        check_shape(information, (n, n), "information")
        check_shape(information_vector, (n,), "information_vector")
        if gate not in ("projected", "full"):
            raise InvalidValueError(f"gate must be 'projected' or 'full'; got {gate!r}")
        Lam = self._as64(information)
        eta = self._as64(information_vector)
        zero = torch.zeros(n, dtype=_F64, device=Lam.device)
        if gate == "full" and (residual_sq is None or num_observations is None):
            raise InvalidValueError("gate='full' needs residual_sq and num_observations")
        rsq = math.nan if residual_sq is None else float(residual_sq)
        if not (_finite(Lam, eta) and (residual_sq is None or math.isfinite(rsq))):
            return StepResult(False, "non_finite", correction=zero)
        Lam = 0.5 * (Lam + Lam.transpose(0, 1))

        P = self.covariance
        eye = torch.eye(n, dtype=_F64, device=P.device)
        Lp = _cholesky(P)
        if Lp is None:
            return StepResult(False, "not_positive_definite", correction=zero)
        M = eye + Lp.transpose(0, 1) @ Lam @ Lp
        C = _cholesky(0.5 * (M + M.transpose(0, 1)))
        if C is None:
            return StepResult(False, "not_positive_definite", correction=zero)
        W = torch.linalg.solve_triangular(C, Lp.transpose(0, 1), upper=False)  # C^-1 L^T
        P_new = W.transpose(0, 1) @ W  # L M^-1 L^T = (P^-1 + Lambda)^-1
        delta = P_new @ eta

        if gate == "full":
            dof = int(num_observations)
            nis = rsq - float(eta @ delta)
        else:
            nis, dof = projected_nis(Lam, eta, P, self.settings.rank_tolerance)
        threshold = math.inf if (gate_probability is None or dof == 0) else chi2_threshold(float(gate_probability), dof)
        if not math.isfinite(nis):
            return StepResult(False, "non_finite", nis, dof, threshold, zero)
        if nis > threshold:
            return StepResult(False, "gated", nis, dof, threshold, zero)
        status = self._commit(delta, P_new)
        applied = delta if status == "accepted" else zero
        return StepResult(status == "accepted", status, nis, dof, threshold, applied)
