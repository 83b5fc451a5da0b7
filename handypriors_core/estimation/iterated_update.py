"""Iterated EKF update: Gauss-Newton over ``(r, J, w)`` modalities with the prediction as prior.

At the prior ``x-`` with covariance ``P``, iteration ``i`` linearises every modality at the iterate ``x_i``
(:class:`~.residuals.ResidualBlock`, coarse-to-fine: the modality picks its association range and noise from
``i``) and solves

    (P^-1 + Lambda) Delta = -(g + P^-1 e),   Lambda = sum J^T W J / s^2,  g = sum J^T W r / s^2,  e = x_i [-] x-

then ``x_{i+1} = x- [+] (e + Delta)``: the iterates are kept as tangent vectors ``e`` at the prior (to first
order ``x_i [+] Delta``; no local differences are formed). Modalities that are expensive to re-linearise
(signed-distance queries) say so (``relinearize = False``) and are carried to later iterates to first order:
``r_i = r_0 + J_0 e``.

Gating as in :meth:`~.ekf.ErrorStateEKF.update_information`: each modality is tested once, at the prior,
with the projected statistic ``eta^T (Lambda P Lambda + Lambda)^+ eta ~ chi2(rank)``; a gated modality takes
no part in the update. Covariance at the final iterate in Joseph form,
``P+ = (I - K H) P (I - K H)^T + K R K^T`` with ``K H = P+ Lambda`` and ``K R K^T = P+ Lambda P+``
(``P+ = (P^-1 + Lambda)^-1``), followed by the filter's covariance reset to the new nominal state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ..geometry import small_linalg
from .ekf import ErrorStateEKF, StepResult
from .gating import chi2_threshold, projected_nis
from .pose_state import retracted_pose_array
from .residuals import NormalEquations, ResidualBlock

__all__ = ["CovarianceOptions", "PoseModality", "UpdateDiagnostics", "iterated_update", "reverses",
           "with_estimated_noise"]

_F64 = torch.float64


class PoseModality(Protocol):
    """What the iterated update needs of a modality.

    Attributes:
        name: the modality's name (keys of the returned results).
        relinearize: True when :meth:`linearize` is cheap enough to call at every iteration.

    A modality may also offer ``normal_equations(object2camera: np.ndarray (4, 4), iteration) -> NormalEquations |
    None``: the same linearisation built in one pass in numpy (the update then calls it instead of
    :meth:`linearize`; :class:`~.sparse_depth.SparseDepthModality` does).
    """

    name: str
    relinearize: bool

    def linearize(self, object2camera: torch.Tensor, iteration: int) -> ResidualBlock | None:
        """``(r, J, w)`` at ``object2camera (4, 4)`` float64 for Gauss-Newton iteration ``iteration``; None when
        the modality has nothing to say this frame."""
        ...


def _linearized(modality: PoseModality, pose: np.ndarray, device: torch.device, iteration: int
                ) -> NormalEquations | None:
    """``modality``'s linearisation at ``pose (4, 4)`` float64 numpy as :class:`~.residuals.NormalEquations`."""
    fused = getattr(modality, "normal_equations", None)
    if fused is not None:
        return fused(pose, iteration)
    block = modality.linearize(torch.from_numpy(pose).to(device), iteration)
    return None if block is None else NormalEquations.from_block(block)


@dataclass(frozen=True)
class CovarianceOptions:
    """How the iterated update stops and what covariance it reports (:func:`iterated_update`).

    Attributes:
        max_iterations: Gauss-Newton iterations go on past ``iterations`` (at the finest level) until the step
            falls below ``converged_step`` or this many were done.
        converged_step: ``(translation [m], rotation [rad])`` norms of a step below which the update has converged.
        estimate_noise: blocks with a ``noise_floor`` are weighed with the noise their own residuals show
            (:func:`with_estimated_noise`) and the covariance's ``K R K^T`` uses the noise at the final iterate.
        keep_prior_unconverged: an update that did not converge moves the state but leaves the covariance at the
            prior's (it has not shown where the minimum is).
        cycle_factor: past the coarse-to-fine iterations, two successive steps that turn back on each other
            (:func:`reverses`), each below ``cycle_factor`` times ``converged_step``, are a 2-cycle between two
            iterates (e.g. a noise estimate that alternates with the iterate against another block's pull): the
            update stops there as converged, at the midpoint of the two iterates, with the covariance of their two
            linearisations averaged (0 = off: such an update runs to ``max_iterations`` unconverged).
    """

    max_iterations: int = 0
    converged_step: tuple[float, float] = (2e-4, 2e-3)
    estimate_noise: bool = False
    keep_prior_unconverged: bool = False
    cycle_factor: float = 0.0


@dataclass
class UpdateDiagnostics:
    """What one iterated update did: Gauss-Newton iterations, whether it converged, each block's noise.

    Attributes: iterations; converged; cycled: it converged as a 2-cycle (:attr:`CovarianceOptions.cycle_factor`);
    noise_std: block name -> per-residual noise [block units] its residuals
    show at the final iterate; variance_factor: block name -> that noise over the one it was weighed with
    (times its ``correlation``).
    """

    iterations: int = 0
    converged: bool = False
    cycled: bool = False
    noise_std: dict[str, float] = field(default_factory=dict)
    variance_factor: dict[str, float] = field(default_factory=dict)


def with_estimated_noise(block: NormalEquations) -> NormalEquations:
    """``block`` weighed with the noise its own residuals show (:meth:`~.residuals.NormalEquations.noise_std`, times
    ``sqrt(correlation)``), never with more than its configured ``std``; unchanged for blocks without a
    ``noise_floor`` (those whose residuals say nothing of their noise, e.g. contacts held at zero)."""
    if block.noise_floor <= 0 or block.weight_sum <= block.rows.shape[0]:
        return block
    return block.with_std(min(block.std, block.noise_std() * math.sqrt(block.correlation)))


def reverses(step: np.ndarray, previous: np.ndarray, converged_step: tuple[float, float], factor: float) -> bool:
    """Whether the pose step ``step (D,)`` (tangent, translation [m] then rotation [rad] first) turns back on
    ``previous (D,)``: both translation and rotation parts of each below ``factor * converged_step`` and, with
    translation and rotation measured in units of ``converged_step``, ``|step + previous|`` at most half their mean
    norm (``step`` about ``-previous``)."""
    scale = np.array([converged_step[0]] * 3 + [converged_step[1]] * 3)
    if not np.all(scale > 0):
        return False
    s, p = step[:6] / scale, previous[:6] / scale
    for v in (s, p):
        if np.linalg.norm(v[:3]) > factor or np.linalg.norm(v[3:]) > factor:
            return False
    return bool(np.linalg.norm(s + p) <= 0.25 * (np.linalg.norm(s) + np.linalg.norm(p)))


def iterated_update(ekf: ErrorStateEKF, modalities: list[PoseModality], iterations: int,
                    gate_probability: float | None, min_step: float = 1e-7,
                    options: CovarianceOptions | None = None,
                    diagnostics: UpdateDiagnostics | None = None) -> dict[str, StepResult]:
    """One iterated update of ``ekf`` (pose-only state) by ``modalities``; returns each modality's result.

    Args:
        ekf: the filter after its prediction (state = prior); changed in place when an update is accepted.
        modalities: the observations (see :class:`PoseModality`).
        iterations: Gauss-Newton iterations (>= 1).
        gate_probability: chi-square gate probability; None disables gating.
        min_step: stop when the step's norm (m and rad together) falls below this.
        options: stopping and covariance options (default: none of them: ``iterations`` steps, configured noise).
        diagnostics: filled in when given.
    """
    opt = options if options is not None else CovarianceOptions()
    diag = diagnostics if diagnostics is not None else UpdateDiagnostics()
    # the 6 x 6 algebra in float64 numpy (the filter's state lives on the CPU; a torch call on matrices this small
    # costs several times its arithmetic); every modality's linearisation is read as its normal equations
    prior = ekf.state
    prior_pose = prior.pose.detach().to("cpu", _F64).numpy()
    device = prior.pose.device
    P = ekf.covariance.detach().to("cpu", _F64).numpy()
    n = P.shape[0]
    zero = torch.zeros(n, dtype=_F64) if modalities else None  # the correction of a result that moved nothing
    np.linalg.cholesky(P)  # positive definite (raises otherwise, as before)
    P_inv = small_linalg.inv(P)
    results: dict[str, StepResult] = {}
    frozen: dict[str, NormalEquations] = {}  # first linearisation of the modalities not re-linearised
    active = list(modalities)
    pose = prior_pose
    e = np.zeros(n)  # x = prior [+] e
    step = np.zeros(n)
    converged = False
    # the linearisations the covariance is taken from: (blocks with their Lambda, A = P^-1 + Lambda, the tangent
    # step from the blocks' linearisation point to the final state); two when the iterates cycle
    linearisations: list[tuple[list[tuple[NormalEquations, np.ndarray]], np.ndarray, np.ndarray]] = []
    for it in range(max(1, iterations, opt.max_iterations)):
        blocks: list[tuple[NormalEquations, np.ndarray, np.ndarray]] = []  # (block, Lambda_b, g_b)
        kept = []
        for modality in active:
            if it > 0 and not modality.relinearize:
                if modality.name in frozen:
                    block = frozen[modality.name].moved(e)
                    blocks.append((block, *block.scaled()))
                    kept.append(modality)
                continue
            block = _linearized(modality, pose, device, it)
            if block is not None and opt.estimate_noise:
                block = with_estimated_noise(block)
            if block is None or block.count == 0 or block.weight_sum <= 0:
                if it == 0:
                    continue
                kept.append(modality)  # lost its correspondences at this iterate: sits out this iteration
                continue
            # (a non-finite residual, Jacobian entry or weight makes its normal equations non-finite)
            if not math.isfinite(block.information.sum() + block.vector.sum()):
                results[modality.name] = StepResult(False, "non_finite", correction=zero)
                continue
            Lb, gb = block.scaled()
            if it == 0:
                nis, dof = projected_nis(Lb, -gb, P, ekf.settings.rank_tolerance)
                threshold = math.inf if (gate_probability is None or dof == 0) else \
                    chi2_threshold(float(gate_probability), dof)
                if not math.isfinite(nis) or nis > threshold:
                    results[modality.name] = StepResult(False, "gated" if math.isfinite(nis) else "non_finite",
                                                        nis, dof, threshold, zero)
                    continue
                results[modality.name] = StepResult(True, "accepted", nis, dof, threshold, zero)
                if not modality.relinearize:
                    frozen[modality.name] = block
            blocks.append((block, Lb, gb))
            kept.append(modality)
        active = kept
        if not blocks:
            break
        Lam, g = blocks[0][1], blocks[0][2]
        for _, Lb, gb in blocks[1:]:
            Lam, g = Lam + Lb, g + gb
        A = P_inv + Lam
        step = small_linalg.solve(A, (g + P_inv @ e) if it else g)
        step = -step
        sx, sy, sz, rx, ry, rz = step[:6].tolist()
        step_squared = sx * sx + sy * sy + sz * sz + rx * rx + ry * ry + rz * rz + (
            float(step[6:] @ step[6:]) if n > 6 else 0.0)
        if not math.isfinite(step_squared):
            return {name: StepResult(False, "non_finite", correction=zero) for name in results}
        previous = linearisations[0] if linearisations else None
        e = e + step
        pose = retracted_pose_array(prior_pose, e)
        final_blocks = [(b, Lb) for b, Lb, _ in blocks]
        linearisations = [(final_blocks, A, step)]
        diag.iterations = it + 1
        step_t, step_r = math.sqrt(sx * sx + sy * sy + sz * sz), math.sqrt(rx * rx + ry * ry + rz * rz)
        converged = step_t <= opt.converged_step[0] and step_r <= opt.converged_step[1]
        if (not converged and opt.cycle_factor > 0 and previous is not None and it >= iterations
                and reverses(step, previous[2], opt.converged_step, opt.cycle_factor)):
            # a 2-cycle: stop at the midpoint of the last two iterates, covariance from both linearisations
            e = e - 0.5 * step
            linearisations = [(previous[0], previous[1], previous[2] + 0.5 * step), (final_blocks, A, 0.5 * step)]
            converged = diag.cycled = True
        diag.converged = converged
        if math.sqrt(step_squared) < min_step or (it + 1 >= iterations and converged):
            break
    accepted = [name for name, r in results.items() if r.accepted]
    if not accepted:
        return results
    # K R K^T with the noise each block's residuals show at the final iterate (the Joseph form holds for any gain)
    # (a cycle's two linearisations each weigh 1/2: Lambda_R and A are their means)
    Lam_R = P_inv  # P^-1 + sum of the blocks' Lambda_R
    share = 1.0 / len(linearisations)
    for lin_blocks, _, to_final in linearisations:
        for b, Lb in lin_blocks:
            noise = b.noise_std(b.residual_at(to_final))
            f = b.correlation * noise ** 2 / b.std ** 2 if (opt.estimate_noise and b.noise_floor > 0) else 1.0
            diag.noise_std[b.name] = noise
            diag.variance_factor[b.name] = f  # (the block's variance_factor at the final iterate)
            f = f * share
            Lam_R = Lam_R + (f * Lb if f != 1.0 else Lb)
    if len(linearisations) > 1:
        A = sum(lin[1] for lin in linearisations) * share
    if opt.keep_prior_unconverged and not converged:
        P_new = P  # (the prior's, symmetric: the EKF keeps it so)
    else:
        # Joseph form (I - K H) P (I - K H)^T + K R K^T with K H = P+ Lambda, K R K^T = P+ Lambda_R P+: since
        # I - P+ Lambda = P+ P^-1 it is P+ (P^-1 + Lambda_R) P+, P+ = (P^-1 + Lambda)^-1 (A: the last iteration's)
        P_plus = small_linalg.inv(A)
        P_new = P_plus @ Lam_R @ P_plus
        P_new = 0.5 * (P_new + P_new.T)
    delta = torch.from_numpy(e)
    status = ekf.correct(e, P_new)
    for name in accepted:
        r = results[name]
        results[name] = StepResult(status == "accepted", status, r.nis, r.dof, r.threshold,
                                   delta if status == "accepted" else zero)
    return results
