"""The in-training quality scores (what Tune optimises) and the images they are computed on.

Rank 0 scores with the spec's ``evaluate`` hook. The reference set is the dataset's held-out
split where the spec reads one (``spec.held_out``, read once per run, at the first
evaluation), else the first ``train.eval_samples`` training rows seen. Those rows are kept as
uint8, a quarter of float32's memory and exact, since they were decoded from 8-bit files; the
hooks convert a chunk at a time. The scores say which split they were computed on
(``eval_split``): a score on training rows flatters a model that memorises them.
"""

from __future__ import annotations

import torch

from genart import images, registry
from genart.config import Config
from genart.train import ema
from genart.train.rng import side_effect_free

TRAINING_SPLIT = "train"


class Evaluation:
    """The reference set and scores of one worker's attempt at a run (``enabled`` on rank 0)."""

    def __init__(
        self, spec: registry.TrainedSpec, cfg: Config, device: torch.device, enabled: bool
    ):
        self.spec, self.cfg, self.device = spec, cfg, device
        self.n = cfg.train.eval_samples if enabled and spec.evaluate is not None else 0
        self.rows: dict[str, list[torch.Tensor]] = {}
        self.joined: registry.Batch | None = None  # ``rows`` concatenated
        self.count = 0
        self.held_out: tuple[registry.Batch, str] | None = None
        self.looked = spec.held_out is None  # whether the held-out split was looked for

    def add(self, batch: registry.Batch) -> None:
        """Keep the first rows of a training batch while the reference may still need them."""
        if self.count >= self.n or self.held_out is not None:
            return
        take = min(self.n - self.count, next(iter(batch.values())).shape[0])
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                self.rows.setdefault(key, []).append(images.quantise(value[:take]).cpu())
        self.count += take

    def reference(self) -> tuple[registry.Batch, str] | None:
        """(reference batch, its split name), or None when there is nothing to score on."""
        if not self.looked:
            self.looked = True
            self.held_out = self.spec.held_out(self.cfg, self.n)
            if self.held_out is not None:
                self.rows, self.joined, self.count = {}, None, 0  # training rows: not needed
        if self.held_out is not None:
            return self.held_out
        if not self.count:
            return None
        if self.joined is None or len(next(iter(self.joined.values()))) != self.count:
            # Joined once per new row count: once every row is kept, evaluations reuse it.
            self.joined = {k: torch.cat(v) for k, v in self.rows.items()}
        return self.joined, TRAINING_SPLIT

    def scores(
        self, nets: registry.Nets, average: ema.WeightAverage | None = None
    ) -> dict[str, float | str]:
        """``eval_`` prefixed scores of the serving weights and the ``eval_split`` they were
        computed on, without side effects on training; {} where nothing is scored (rank > 0, no
        ``evaluate`` hook, no reference rows). ``nets`` are the live single-device modules;
        with their ``average``, both are scored and the better serves from now on
        (:func:`genart.train.ema.judge`), each side's score recorded."""
        found = self.reference() if self.n else None
        if found is None:
            return {}
        batch, split = found

        def score(candidate: registry.Nets) -> dict[str, float]:
            with side_effect_free(self.device):
                return self.spec.evaluate(candidate, self.cfg.params, batch)

        if average is None:
            scores, record = score(nets), {}
        else:
            metric, mode = (
                self.spec.pick(self.cfg.params)
                if self.spec.pick
                else (self.spec.metric, self.spec.mode)
            )
            scores, record = ema.judge(average, score, nets, metric, mode)
        return {f"eval_{k}": v for k, v in (scores | record).items()} | {"eval_split": split}
