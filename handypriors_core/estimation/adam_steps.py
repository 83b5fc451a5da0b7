"""Bookkeeping shared by the Adam loops (the refiner, the hand-object optimizer, the offline windows): one
:class:`AdamRun` per run records the initial loss and why the run stopped, tests for the plateau that ends it as
converged and takes guarded optimizer steps that say why a run must stop instead.

Stop reasons (``stopped`` of the results): ``"converged"``, ``"no_gradient"``, ``"non_finite_gradient"`` (and,
decided by the loops themselves, ``"iterations"``, ``"non_finite_loss"``, ``"time_budget"``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["AdamRun", "Plateau", "guarded_step"]


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


class AdamRun:
    """One Adam run: its initial loss, why it stopped (``stopped``, ``"iterations"`` until something else ends it),
    the plateau test (when ``tolerance`` is given: ``patience`` flat iterations) and the guarded steps.

    The loop::

        run = AdamRun(optimizer, tolerance, patience)
        for it in range(iterations + 1):
            value = float(loss)
            if not run.finite(value):
                break
            ...  # keep the result of this iterate
            if it == iterations or not run.step(value, loss):
                break
    """

    def __init__(self, optimizer: torch.optim.Optimizer | None, tolerance: float | None = None,
                 patience: int = 1) -> None:
        self.optimizer = optimizer
        self.plateau = Plateau(tolerance, patience) if tolerance is not None else None
        self.initial = math.nan
        self.stopped = "iterations"
        self._first = True

    def finite(self, value: float) -> bool:
        """Record an iterate's loss (the first one is :attr:`initial`); False (``"non_finite_loss"``) on NaN/inf."""
        if self._first:
            self.initial, self._first = value, False
        if not math.isfinite(value):
            self.stopped = "non_finite_loss"
            return False
        return True

    def step(self, value: float, loss: torch.Tensor) -> bool:
        """The plateau test, then one :func:`guarded_step`; False (with :attr:`stopped` set) when the run ends."""
        if self.plateau is not None and self.plateau.reached(value):
            self.stopped = "converged"
            return False
        reason = guarded_step(self.optimizer, loss)
        if reason is not None:
            self.stopped = reason
            return False
        return True
