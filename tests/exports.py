"""Test helper: a randomly initialised model exported as ``genart export`` writes it."""

import torch

from genart import config, registry
from genart import export as exports
from genart.train import checkpoint

# The smallest fast-style network the tests run (the style image is not read by build).
TINY_FAST_STYLE = ["fast_style.style_image=unused.png", "fast_style.width=8",
                   "fast_style.residual_blocks=1"]  # fmt: skip


def variance_keeping(nets: dict) -> None:
    """Kaiming-normal conv weights: torch's default init shrinks the signal at every layer, and
    an untrained AdaIN decoder then draws the same flat colour for any input."""
    for net in nets.values():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")


def make_export(folder, model: str, overrides: list[str], init=None) -> str:
    """``model`` built with seed 0 from its config with ``overrides`` (then ``init(nets)`` if
    given), checkpointed under ``folder/<model>-ckpt`` and exported to ``folder/<model>``;
    returns the export's path."""
    cfg = config.load(model, overrides=overrides)
    torch.manual_seed(0)
    spec = registry.trained(model)
    nets = spec.build(cfg.params, cfg.data)
    if init is not None:
        init(nets)
    state = {"step": 0, "nets": {name: nets[name].state_dict() for name in spec.export}}
    checkpoint.write(folder / f"{model}-ckpt", state, cfg, [])
    exports.from_checkpoint(str(folder / f"{model}-ckpt"), str(folder / model))
    return str(folder / model)
