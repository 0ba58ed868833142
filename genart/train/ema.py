"""An exponential moving average of the exported networks' weights, what a run serves.

A GAN generator's weights keep moving between modes and artefacts as G and D chase each
other; the average over the last few hundred steps is a better generator than any one step's
(Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training"; Karras et al.
2018 sample from such an average). The loop updates it after every optimizer step, scores,
samples and exports it, and keeps it in every checkpoint; training itself never reads it.

The decay warms up as ``min(decay, 1 - 1 / (2 + rampup * t))`` after ``t`` updates: the
average's horizon (``1 / (1 - decay)`` updates) grows by ``rampup`` per update, up to the
decay's own. With ``rampup`` 1 the average is the plain mean of every weight so far (no step,
the first included, weighs more than another) until the run reaches the horizon. CycleGAN
keeps that: TensorFlow's faster warm-up, ``(1 + t) / (10 + t)``, never reaches a 0.999 decay
in a few thousand steps and averaged too little (0.8 dB less held-out PSNR over four seeds,
docs/models.md). A smaller ramp-up (Karras et al. 2019 average over at most the last 5 % of
the images seen) keeps a short run's average near its newest weights: a DCGAN generator moves
fast early on, and the plain mean of its first few hundred steps blends what they drew.
Floating-point buffers (batch-norm running
statistics) are averaged like the weights; integer ones (batch counts) are copied.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn


def warmed_decay(decay: float, updates: int, rampup: float = 1.0) -> float:
    """The decay of the ``updates``-th update (0-based) of an average with ``decay`` whose
    horizon grows by ``rampup`` updates per update."""
    return min(decay, 1 - 1 / (2 + rampup * updates))


def for_spec(spec, nets: dict[str, nn.Module], params) -> WeightAverage | None:
    """The average a ``spec`` (a ``registry.TrainedSpec``) keeps of its exported ``nets`` under
    ``params``, or None where its ``ema_decay`` is 0."""
    decay = spec.ema_decay(params)
    return WeightAverage(nets, spec.export, decay, spec.ema_rampup(params)) if decay > 0 else None


class WeightAverage:
    """Averaged copies of some of a run's networks (``names``), updated from the live ones."""

    def __init__(self, nets: dict[str, nn.Module], names: tuple[str, ...], decay: float,
                 rampup: float = 1.0):  # fmt: skip
        if not 0 < decay < 1:
            raise ValueError(f"an average's decay must lie in (0, 1), got {decay}")
        if not 0 < rampup <= 1:
            raise ValueError(f"an average's ramp-up must lie in (0, 1], got {rampup}")
        self.live = {name: nets[name] for name in names}
        self.nets = {name: copy.deepcopy(live) for name, live in self.live.items()}
        for net in self.nets.values():
            net.requires_grad_(False)
        self.decay, self.rampup = decay, rampup
        self.updates = 0
        # Which weights serve: the average until an evaluation finds the live ones better.
        self.serves: Literal["average", "live"] = "average"

    @torch.no_grad()
    def update(self) -> None:
        """Move every average towards its live network by one step."""
        weight = 1 - warmed_decay(self.decay, self.updates, self.rampup)
        for name, live in self.live.items():
            average = self.nets[name]
            # One fused kernel per net, not one per tensor (a GPU step may take milliseconds);
            # torch.optim's own foreach implementations call the same function.
            torch._foreach_lerp_(_averaged(average), _averaged(live), weight)
            for mine, theirs in zip(average.buffers(), live.buffers()):
                if not mine.is_floating_point():
                    mine.copy_(theirs)
        self.updates += 1

    def state_dict(self) -> dict:
        """The averaged weights, the number of updates and which weights serve (part of a
        checkpoint's state)."""
        return {
            "updates": self.updates,
            "serves": self.serves,
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s averages."""
        self.updates = state["updates"]
        self.serves = state.get("serves", "average")  # saved before the choice existed
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])

    def restart(self) -> None:
        """Start the averages again from the live weights (a state saved without averages)."""
        for name, net in self.nets.items():
            net.load_state_dict(self.live[name].state_dict())
        self.updates = 0
        self.serves = "average"

    def averaged(self, nets: dict[str, nn.Module]) -> dict[str, nn.Module]:
        """``nets`` with each averaged network in place of its live one."""
        return {**nets, **self.nets}

    def serving(self, nets: dict[str, nn.Module]) -> dict[str, nn.Module]:
        """``nets`` as they serve: :meth:`averaged` unless the live weights scored better."""
        return self.averaged(nets) if self.serves == "average" else nets


def judge(
    average: WeightAverage,
    score: Callable[[dict[str, nn.Module]], dict[str, float]],
    nets: dict[str, nn.Module],
    metric: str,
    mode: Literal["min", "max"],
) -> tuple[dict[str, float], dict[str, float | str]]:
    """Score the live ``nets`` and their average with ``score``; make the better by ``metric``
    (``mode``: lower or higher is better) serve, the average on a tie. Returns (the serving
    weights' scores, what to record beside them: each side's ``metric`` and which served).
    """
    live, averaged = score(nets), score(average.averaged(nets))
    better = _no_worse(averaged[metric], live[metric], mode)
    average.serves = "average" if better else "live"
    record = {
        f"live_{metric}": live[metric],
        f"average_{metric}": averaged[metric],
        "served": average.serves,
    }
    return (averaged if better else live), record


def _no_worse(mine: float, theirs: float, mode: Literal["min", "max"]) -> bool:
    """Whether score ``mine`` is at least as good as ``theirs``; a NaN is worse than any."""
    if math.isnan(theirs):
        return True
    return mine >= theirs if mode == "max" else mine <= theirs  # False for a NaN ``mine``


def _averaged(net: nn.Module) -> list[torch.Tensor]:
    """The tensors of ``net`` an average follows: its weights and floating-point buffers."""
    return [*net.parameters(), *(b for b in net.buffers() if b.is_floating_point())]
