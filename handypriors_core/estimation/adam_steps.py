"""Bookkeeping shared by the Adam loops (the refiner, the hand-object optimizer, the offline windows): the plateau
test that ends a run as converged, and one guarded optimizer step that says why a run must stop instead.

Stop reasons (``stopped`` of the results): ``"converged"``, ``"no_gradient"``, ``"non_finite_gradient"`` (and,
decided by the loops themselves, ``"iterations"``, ``"non_finite_loss"``, ``"time_budget"``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["Plateau", "guarded_step"]


class Plateau:
    """The loss has stopped moving: its relative change stayed below ``tolerance`` for ``patience`` iterations in
    a row."""

    def __init__(self, tolerance: float, patience: int) -> None:
        self.tolerance = tolerance
        self.patience = patience
        self._previous = math.inf
        self._flat = 0

    def reached(self, value: float) -> bool:
        """Record the loss of one iteration; True once the plateau is reached."""
        rel = abs(self._previous - value) / max(abs(value), 1e-12)
        self._flat = self._flat + 1 if rel < self.tolerance else 0
        self._previous = value
        return self._flat >= self.patience


def guarded_step(optimizer: torch.optim.Optimizer | None, loss: torch.Tensor) -> str | None:
    """Back-propagate ``loss`` and step ``optimizer``; returns None, or the stop reason when there is nothing to
    optimise (``"no_gradient"``) or a gradient holds NaN/inf or none arrived (``"non_finite_gradient"``; the
    parameters are then left as they were)."""
    if optimizer is None or not loss.requires_grad:
        return "no_gradient"
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not grads or any(not bool(torch.isfinite(g).all()) for g in grads):
        return "non_finite_gradient"
    optimizer.step()
    return None
