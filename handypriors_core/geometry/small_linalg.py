"""``numpy.linalg`` for the filter step's small finite matrices (3 x 3, 6 x 6) without its per-call wrapper.

``numpy.linalg.svd`` / ``solve`` / ``inv`` / ``eigh`` / ``eigvalsh`` / ``det`` each spend 4-8 us converting, checking
and setting up error handling around a LAPACK call of about 1-5 us on such matrices, and the filter step makes about
a dozen of them per frame (Kabsch of the contacts, nearest rotations, the iterated update's solves, the gate's
eigenvalues). On float64 arrays these call the same compiled routines (numpy's ``_umath_linalg`` gufuncs, which the
public functions call), so the results are the same bit for bit (``test/test_geometry_small_linalg.py``); other
dtypes, and a numpy that does not expose the routines, go through the public functions. They are for inputs the
callers already know finite (a non-finite result comes back as it is, without the public functions' ``LinAlgError``).
"""

from __future__ import annotations

import numpy as np

try:  # the compiled routines numpy.linalg calls (a private module: the public functions when it is missing)
    from numpy.linalg import _umath_linalg as _gufuncs

    _ROUTINES = all(hasattr(_gufuncs, name) for name in ("svd_f", "solve1", "inv", "eigh_lo", "eigvalsh_lo", "det"))
except ImportError:  # pragma: no cover - numpy without the module
    _gufuncs, _ROUTINES = None, False

__all__ = ["det", "eigh", "eigvalsh", "inv", "solve", "svd"]

_F64 = np.dtype(np.float64)


def svd(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.linalg.svd(a)`` of a finite float64 ``(n, n)`` matrix: ``(U, s, Vh)``."""
    if _ROUTINES and a.dtype == _F64:
        return _gufuncs.svd_f(a, signature="d->ddd")
    return np.linalg.svd(a)


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve(a, b)`` of a finite non-singular float64 ``(n, n)`` matrix and a vector ``b (n,)``."""
    if _ROUTINES and a.dtype == _F64 and b.dtype == _F64:
        return _gufuncs.solve1(a, b, signature="dd->d")
    return np.linalg.solve(a, b)


def inv(a: np.ndarray) -> np.ndarray:
    """``np.linalg.inv(a)`` of a finite non-singular float64 ``(n, n)`` matrix."""
    if _ROUTINES and a.dtype == _F64:
        return _gufuncs.inv(a, signature="d->d")
    return np.linalg.inv(a)


def eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh(a)`` (lower triangle) of a finite symmetric float64 ``(n, n)`` matrix: ascending
    eigenvalues ``(n,)`` and eigenvectors ``(n, n)`` (columns)."""
    if _ROUTINES and a.dtype == _F64:
        return _gufuncs.eigh_lo(a, signature="d->dd")
    return tuple(np.linalg.eigh(a))


def eigvalsh(a: np.ndarray) -> np.ndarray:
    """``np.linalg.eigvalsh(a)`` (lower triangle) of a finite symmetric float64 ``(n, n)`` matrix, ascending."""
    if _ROUTINES and a.dtype == _F64:
        return _gufuncs.eigvalsh_lo(a, signature="d->d")
    return np.linalg.eigvalsh(a)


def det(a: np.ndarray) -> float:
    """``np.linalg.det(a)`` of a finite float64 ``(n, n)`` matrix."""
    if _ROUTINES and a.dtype == _F64:
        return float(_gufuncs.det(a, signature="d->d"))
    return float(np.linalg.det(a))
