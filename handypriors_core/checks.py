"""One place for argument checks shared by every public function.

``check_shape(x, (None, 3, 3), "R")`` raises :class:`ShapeError` naming ``R`` when the trailing
dimensions differ; ``None`` matches any size and a leading ``...`` allows extra batch dimensions.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .errors import InvalidValueError, ShapeError


def check_shape(x: torch.Tensor, shape: Sequence, name: str) -> None:
    """Raise ShapeError unless ``x.shape`` matches ``shape``.

    ``shape`` entries are ints (exact), ``None`` (any) or a leading ``...`` (any batch dims).
    Example: ``check_shape(points, (..., 3), "points")``.
    """
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"Expected {name} to be a torch.Tensor; got {type(x).__name__}")
    spec = list(shape)
    batched = bool(spec) and spec[0] is Ellipsis
    if batched:
        spec = spec[1:]
    dims = list(x.shape)
    ok = len(dims) >= len(spec) if batched else len(dims) == len(spec)
    if ok:
        tail = dims[len(dims) - len(spec):] if spec else []
        ok = all(s is None or s == d for s, d in zip(spec, tail))
    if not ok:
        pretty = "(" + ", ".join("..." if s is Ellipsis else ("*" if s is None else str(s)) for s in shape) + ")"
        raise ShapeError(f"Expected {name} to have shape {pretty}; got {tuple(dims)}")


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise InvalidValueError if ``x`` holds NaN or inf."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise InvalidValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
