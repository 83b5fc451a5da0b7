"""The Adam loops' shared bookkeeping: the plateau test and the guarded step."""

from __future__ import annotations

import torch

from handypriors_core.estimation.adam_steps import AdamRun, Plateau, guarded_step


def test_plateau_needs_patience_flat_iterations_in_a_row():
    plateau = Plateau(tolerance=1e-3, patience=3)
    values = [10.0, 5.0, 4.9999, 4.9998, 3.0, 2.99999, 2.99998]  # a real move in between restarts the count
    reached = [plateau.reached(v) for v in values]
    assert reached == [False, False, False, False, False, False, False]
    assert plateau.reached(2.99997)  # third flat iteration in a row
    assert not Plateau(tolerance=1e-3, patience=1).reached(1.0)  # the first value has nothing to compare with


def test_guarded_step_steps_or_says_why_not():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=0.1)
    assert guarded_step(optimizer, (x ** 2).sum()) is None
    assert not torch.equal(x.detach(), torch.tensor([1.0, -2.0]))  # it stepped
    before = x.detach().clone()
    assert guarded_step(optimizer, (x * torch.tensor([float("nan"), 1.0])).sum()) == "non_finite_gradient"
    assert torch.equal(x.detach(), before)  # no step on a NaN gradient
    assert guarded_step(optimizer, torch.tensor(3.0)) == "no_gradient"
    assert guarded_step(None, (x ** 2).sum()) == "no_gradient"
    y = torch.zeros(2, requires_grad=True)
    unrelated = torch.optim.Adam([y], lr=0.1)
    assert guarded_step(unrelated, (x ** 2).sum()) == "non_finite_gradient"  # nothing of its own got a gradient
    assert torch.equal(y.detach(), torch.zeros(2))


def test_adam_run_records_the_initial_loss_and_why_it_stopped():
    x = torch.tensor([3.0], requires_grad=True)
    run = AdamRun(torch.optim.Adam([x], lr=0.5), tolerance=1e-3, patience=2)
    assert run.stopped == "iterations"
    assert run.finite(9.0) and run.initial == 9.0
    assert run.step(9.0, (x ** 2).sum()) and x.item() != 3.0
    assert run.finite(4.0) and run.initial == 9.0  # only the first loss is the initial one
    assert not run.finite(float("nan")) and run.stopped == "non_finite_loss"
    flat = AdamRun(torch.optim.Adam([x], lr=0.5), tolerance=1e-3, patience=2)
    assert flat.step(1.0, (x ** 2).sum()) and flat.step(1.0, (x ** 2).sum())
    assert not flat.step(1.0, (x ** 2).sum()) and flat.stopped == "converged"
    no_plateau = AdamRun(torch.optim.Adam([x], lr=0.5))  # the offline windows: steps until told otherwise
    assert all(no_plateau.step(1.0, (x ** 2).sum()) for _ in range(5)) and no_plateau.stopped == "iterations"
    assert not no_plateau.step(1.0, torch.tensor(1.0)) and no_plateau.stopped == "no_gradient"
