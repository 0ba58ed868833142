"""L-BFGS over one tensor in a few large kernels, for optimisers that run on a GPU.

``torch.optim.LBFGS`` computes each direction with the two-loop recursion: four small kernels
per stored pair and two loops, and it passes 0-dim tensors as ``alpha``, so every pair also
waits for the device. With its default history of 100 that is ~800 launches and ~200 host
synchronisations per iteration, which on a GPU cost more than the Gatys loss evaluation itself
(docs/benchmarks.md has the figures).

This module runs the same algorithm as torch's (no line search: a fixed step ``lr``, the first
one scaled by ``1 / |g|_1``; pairs with ``y.s <= 1e-10`` skipped; H0 = ``y.s / y.y`` of the
newest pair) but computes the direction with the compact representation of Byrd, Nocedal and
Schnabel (1994), which gives the same H_k g as the two-loop recursion:

    H g = γ g + S u - γ Y p,   p = R⁻¹ Sᵀg,   u = R⁻ᵀ((D + γ YᵀY) p - γ Yᵀg)

where S, Y hold the stored pairs as columns, R is the upper triangle of SᵀY and D its
diagonal. Pairs live in fixed slots of one (2m, n) buffer, so a direction is two matrix-vector
products plus m x m algebra (in float64), and an iteration waits on the device once: to decide
whether to keep the new pair.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def lbfgs(
    x: torch.Tensor,
    objective: Callable[[], object],
    evaluations: int,
    lr: float = 1.0,
    history: int = 100,
) -> int:
    """Minimise ``objective`` over the leaf tensor ``x`` in place; returns evaluations made.

    ``objective()`` evaluates the loss at the current ``x`` and leaves its gradient in
    ``x.grad`` (it calls ``backward``). Runs until ``evaluations`` calls have been made.
    """
    memory = _Memory(history, x.numel(), x.device, x.dtype)
    objective()
    grad = x.grad.detach().flatten().clone()
    direction = -grad
    step_size = torch.clamp(1.0 / grad.abs().sum(), max=1.0) * lr  # torch's first step
    count = 1
    while count < evaluations:
        step = direction * step_size
        with torch.no_grad():
            x.add_(step.view_as(x))
        objective()
        count += 1
        new_grad = x.grad.detach().flatten().clone()
        memory.add(step, new_grad - grad)
        grad, step_size = new_grad, lr
        direction = -memory.times(grad)
    return count


class _Memory:
    """The last ``size`` curvature pairs (s, y) and their inner products, in slots."""

    def __init__(self, size: int, n: int, device: torch.device, dtype: torch.dtype):
        self.size, self.order = size, []  # order: slots, oldest pair first
        self.pairs = torch.zeros(2 * size, n, device=device, dtype=dtype)  # S rows, then Y rows
        self.s_dot_y = torch.zeros(size, size, device=device, dtype=torch.float64)  # s_i . y_j
        self.y_dot_y = torch.zeros(size, size, device=device, dtype=torch.float64)
        self.gamma = torch.ones((), device=device, dtype=torch.float64)

    def add(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Store the pair if its curvature y.s is positive, as torch's L-BFGS does."""
        curvature = y.dot(s)
        if not curvature > 1e-10:  # the one host synchronisation per iteration
            return
        slot = self.order.pop(0) if len(self.order) == self.size else len(self.order)
        self.order.append(slot)
        self.pairs[slot], self.pairs[self.size + slot] = s, y
        # Inner products of the new pair with every stored vector, in one matrix product.
        products = (self.pairs @ torch.stack([s, y], 1)).double()  # (2m, 2): [S; Y] @ [s, y]
        s_all, y_all = products[: self.size], products[self.size :]
        self.s_dot_y[:, slot], self.s_dot_y[slot, :] = s_all[:, 1], y_all[:, 0]
        self.y_dot_y[:, slot] = self.y_dot_y[slot, :] = y_all[:, 1]
        self.gamma = curvature.double() / y_all[slot, 1]

    def times(self, g: torch.Tensor) -> torch.Tensor:
        """H g for the inverse-Hessian approximation of the stored pairs."""
        if not self.order:
            return g
        slots = torch.tensor(self.order, device=g.device)
        products = (self.pairs @ g).double()
        s_g, y_g = products[: self.size][slots], products[self.size :][slots]
        s_dot_y = self.s_dot_y[slots][:, slots]
        upper = torch.triu(s_dot_y)
        p = torch.linalg.solve_triangular(upper, s_g[:, None], upper=True)
        inner = torch.diag(torch.diagonal(s_dot_y)) + self.gamma * self.y_dot_y[slots][:, slots]
        rhs = inner @ p - self.gamma * y_g[:, None]
        u = torch.linalg.solve_triangular(upper.T, rhs, upper=False)
        coefficients = torch.zeros(2 * self.size, device=g.device, dtype=torch.float64)
        coefficients[slots], coefficients[self.size + slots] = u[:, 0], -self.gamma * p[:, 0]
        return self.gamma.to(g.dtype) * g + coefficients.to(g.dtype) @ self.pairs
