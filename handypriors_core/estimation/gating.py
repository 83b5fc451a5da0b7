"""Gate statistics of EKF updates: the chi-square threshold and the projected innovation of a dense observation.

An update is rejected when its normalised innovation squared exceeds ``chi2.ppf(gate_probability, dof)``
(:func:`chi2_threshold`); dense observations given as normal equations are tested on the part of their
residual that would move the state (:func:`projected_nis`; see ``ekf`` for the math).
"""

from __future__ import annotations

import functools

import torch
from scipy.special import chdtri

from ..errors import InvalidValueError

__all__ = ["chi2_threshold", "projected_nis"]


@functools.lru_cache(maxsize=1024)
def chi2_threshold(probability: float, dof: int) -> float:
    """Quantile ``chi2.ppf(probability, dof)`` of the chi-square distribution (cached). ``scipy.special`` is
    imported with this module, not here: a lazy import cost the node's first real frame about 0.5-1 s."""
    if not 0 < probability < 1:
        raise InvalidValueError(f"gate_probability must be in (0, 1); got {probability}")
    if dof < 1:
        raise InvalidValueError(f"dof must be >= 1; got {dof}")
    return float(chdtri(dof, 1.0 - probability))  # inverse survival function: chi2.ppf(p) = chdtri(dof, 1 - p)



def projected_nis(information: torch.Tensor, information_vector: torch.Tensor, covariance: torch.Tensor,
                  rank_tolerance: float) -> tuple[float, int]:
    """The projected gate statistic of a dense observation: ``eta^T C^+ eta`` with ``C = Lambda P Lambda + Lambda``.

    Args: ``information (n, n)`` ``Lambda``, ``information_vector (n,)`` ``eta``, ``covariance (n, n)`` ``P``,
    relative eigenvalue tolerance of the pseudo-inverse. Returns ``(nis, dof = rank C)``.
    """
    Lam, eta = information, information_vector
    cov_eta = Lam @ covariance @ Lam + Lam
    evals, evecs = torch.linalg.eigh(0.5 * (cov_eta + cov_eta.transpose(0, 1)))
    keep = evals > rank_tolerance * evals.abs().max().clamp_min(1e-300)
    dof = int(keep.sum())
    proj = evecs.transpose(0, 1) @ eta
    return (float((proj[keep] ** 2 / evals[keep]).sum()) if dof > 0 else 0.0), dof

