"""Gate statistics of EKF updates: the chi-square threshold and the projected innovation of a dense observation.

An update is rejected when its normalised innovation squared exceeds ``chi2.ppf(gate_probability, dof)``
(:func:`chi2_threshold`); dense observations given as normal equations are tested on the part of their
residual that would move the state (:func:`projected_nis`; see ``ekf`` for the math).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy.special import chdtri

from ..errors import InvalidValueError
from ..geometry import small_linalg

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



def _float64(a) -> np.ndarray:
    """A CPU float64 numpy array of a tensor or array (no copy where it already is one)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
    return np.asarray(a, dtype=np.float64)


def projected_nis(information, information_vector, covariance, rank_tolerance: float) -> tuple[float, int]:
    """The projected gate statistic of a dense observation: ``eta^T C^+ eta`` with ``C = Lambda P Lambda + Lambda``.

    Args: ``information (n, n)`` ``Lambda``, ``information_vector (n,)`` ``eta``, ``covariance (n, n)`` ``P``
    (tensors or numpy arrays; evaluated in float64 numpy: n is small), relative eigenvalue tolerance of the
    pseudo-inverse. Returns ``(nis, dof = rank C)``.
    """
    Lam, eta, P = _float64(information), _float64(information_vector), _float64(covariance)
    cov_eta = Lam @ P @ Lam + Lam
    evals, evecs = small_linalg.eigh(0.5 * (cov_eta + cov_eta.T))
    keep = evals > rank_tolerance * max(float(np.abs(evals).max()), 1e-300)
    dof = int(keep.sum())
    proj = evecs.T @ eta
    return (float((proj[keep] ** 2 / evals[keep]).sum()) if dof > 0 else 0.0), dof
