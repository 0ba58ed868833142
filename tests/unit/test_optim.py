"""genart.optim.lbfgs: torch.optim.LBFGS's iterates, computed without host syncs."""

import pytest
import torch

from genart.optim import lbfgs


def problem(n: int, seed: int):
    """A smooth, strictly convex objective in float64 and a start point."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = a @ a.T / n + 0.05 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)

    def f(x):
        return 0.5 * x @ a @ x - b @ x + 0.01 * (x**4).sum()

    return f, torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(("history", "evaluations"), [(100, 40), (5, 60)])
def test_iterates_match_torch_lbfgs(history, evaluations):
    f, start = problem(80, seed=history)
    x_torch = start.clone().requires_grad_(True)
    budget = {"max_iter": evaluations, "max_eval": evaluations, "history_size": history}
    optimizer = torch.optim.LBFGS([x_torch], lr=1, tolerance_grad=0, tolerance_change=0, **budget)
    torch_calls = []

    def closure():
        optimizer.zero_grad()
        loss = f(x_torch)
        loss.backward()
        torch_calls.append(float(loss.detach()))
        return loss

    optimizer.step(closure)
    x = start.clone().requires_grad_(True)
    calls = []

    def objective():
        x.grad = None
        loss = f(x)
        loss.backward()
        calls.append(float(loss.detach()))

    # history 5 < evaluations: the oldest pairs are dropped (slots reused) along the way.
    assert lbfgs(x, objective, evaluations, history=history) == evaluations
    assert calls == pytest.approx(torch_calls, rel=1e-10)
    torch.testing.assert_close(x.detach(), x_torch.detach(), rtol=1e-9, atol=1e-10)
    assert calls[-1] < calls[0]


def test_a_pair_without_positive_curvature_is_skipped():
    # A linear objective: y = 0 for every step, so no pair is ever kept and every direction is
    # the steepest descent one, with torch's first-step scaling and then the full step.
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    slope = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def objective():
        x.grad = None
        (slope @ x).backward()

    lbfgs(x, objective, evaluations=3, lr=0.5)
    first = 0.5 / slope.abs().sum()
    torch.testing.assert_close(x.detach(), -slope * (first + 0.5))
