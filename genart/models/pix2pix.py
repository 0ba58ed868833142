"""Pix2Pix: paired image-to-image translation with a conditional GAN (Isola et al. 2017).

Generator: a U-Net (encoder-decoder with skip connections) whose depth follows the image
size, so the bottleneck is 1x1 (``unet_256`` = 8 down-samplings, ``unet_128`` = 7). Its only
noise is dropout in the innermost decoder blocks, kept on at test time as in the paper.
Discriminator: a 70x70 PatchGAN that sees the input and the output side by side,
``D(concat(A, B))``, so it judges whether B is a plausible translation *of this A*.

Objective (eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L1(G), lambda = 100. The L1 term
gets the low frequencies right; the patch discriminator only has to model high-frequency
structure (section 3.2.2).

Data: ``paired`` batches ``{"A": source, "B": target}`` in [-1, 1]. The ``direction`` field is
applied by the data pipeline (:func:`dataset`), so the step always translates ``A`` into ``B``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genart import losses, metrics
from genart.data import datasets
from genart.errors import ConfigError
from genart.images import float_chunks
from genart.models.layers import (
    PatchDiscriminator,
    UNetSkipBlock,
    adam,
    forward_any_size,
    forward_split,
    image_stats_at_test,
    init_weights,
)
from genart.registry import IMAGE, StepContext, TrainedSpec, frozen, register, unwrap

TranslationLoss = Literal["bce", "lsgan", "wgan-gp", "hinge"]


@dataclass
class Pix2PixConfig:
    """Pix2Pix hyper-parameters (YAML section ``pix2pix:``; CLI ``--set pix2pix.key=value``)."""

    direction: Literal["AtoB", "BtoA"] = "AtoB"  # which half of each A|B image is the input
    ngf: int = 64  # generator channels after the first down-sampling; doubles up to 8x
    ndf: int = 64  # discriminator channels at its first layer
    depth: int = 0  # U-Net down-samplings; 0 = log2(data.size), a 1x1 bottleneck
    d_layers: int = 3  # PatchGAN strided layers; 3 = the 70x70 receptive field
    norm: Literal["batch", "instance", "none"] = "batch"  # in G and D, as in the paper
    sync_bn: bool = False  # batch norm statistics over all GPU workers (SyncBatchNorm)
    dropout: float = 0.5  # in the innermost ``dropout_blocks`` decoder blocks (the noise z)
    dropout_blocks: int = 3  # paper: the first 3 decoder layers (CD512-CD1024-CD1024)
    dropout_at_test: bool = True  # keep dropout on at inference, as the paper does
    # G's batch norm at inference: "image" = each image's own statistics, as the paper's test
    # batches of one (layers.ImageStatsBatchNorm); "running" = PyTorch's eval-mode default;
    # "auto" = image when trained on batches of one (what G then learnt with), else running:
    # trained on batches of 4, running statistics scored 0.4 dB higher on held-out pairs
    # (docs/benchmarks.md, quality ablations). With sync_bn, SyncBatchNorm replaces these
    # layers in training: mid-run samples then use running statistics; exports (rebuilt from
    # this config) use the setting.
    test_norm_stats: Literal["auto", "image", "running"] = "auto"
    gan_loss: TranslationLoss = "bce"  # bce = the paper's vanilla cGAN objective
    l1_weight: float = 100.0  # lambda of eq. 4
    gp_weight: float = 10.0  # wgan-gp penalty weight
    # Adam's rate for G and D. The paper's 2e-4 is tuned for 200 epochs; 8x that scored 0.5-2.6
    # dB higher on held-out pairs in all 7 quality matrix cells measured (600-2,000 steps, 64-128
    # px, batch 1 and 4; 4e-4 and 8e-4 fell in between) and draws sharper images (docs/models.md)
    lr: float = 1.6e-3
    beta1: float = 0.5
    # Fraction of the steps, at the end, over which lr falls linearly to 0; the paper's 0.5
    # (100 + 100 epochs) lost 0.2-0.8 dB of held-out PSNR to a constant rate in every quality
    # matrix cell measured (600-2,000 steps, 64-128 px, batch 1 and 4; docs/models.md)
    lr_decay: float = 0.0


def unet_depth(size: int, depth: int = 0) -> int:
    """U-Net down-samplings for images of side ``size`` (``depth`` 0 = log2(size))."""
    depth = depth or int(math.log2(size))
    if depth < 2:
        raise ConfigError(f"pix2pix.depth must be >= 2, got {depth}")
    return depth


class UNetGenerator(nn.Module):
    """U-Net from ``in_ch`` to ``out_ch`` channels with ``depth`` 2x down-samplings.

    Channels per level: ngf, 2 ngf, 4 ngf, then 8 ngf down to the bottleneck (appendix 6.1.1).
    Inputs need sides that are multiples of ``stride`` = 2 ** depth;
    ``layers.forward_any_size`` pads other sizes and crops back.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        depth: int,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_blocks: int = 3,
        dropout_at_test: bool = True,
    ):
        super().__init__()
        self.stride = 2**depth
        block = None
        for level in reversed(range(depth)):  # innermost first; each wraps the previous
            outermost = level == 0
            drop = dropout if level >= depth - dropout_blocks and not outermost else 0.0
            block = UNetSkipBlock(
                outer_ch=out_ch if outermost else ngf * min(2 ** (level - 1), 8),
                inner_ch=ngf * min(2**level, 8),
                inner=block,
                in_ch=in_ch if outermost else None,
                norm=norm,
                dropout=drop,
                dropout_at_test=dropout_at_test,
                outermost=outermost,
            )
        self.net = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and (x.shape[-2] % self.stride or x.shape[-1] % self.stride):
            raise ValueError(
                f"U-Net input sides must be multiples of {self.stride}, got {tuple(x.shape[-2:])}"
                " (layers.forward_any_size pads and crops back)"
            )
        return self.net(x)


def build(p: Pix2PixConfig, data) -> dict[str, nn.Module]:
    """U-Net G for ``data.size`` and a conditional PatchGAN D on (A, B), both N(0, 0.02)-init."""
    if p.gan_loss == "wgan-gp" and p.norm == "batch":
        # The penalty is per sample; batch norm couples samples (Gulrajani et al. section 4).
        raise ConfigError("pix2pix.gan_loss=wgan-gp needs pix2pix.norm=instance or none")
    G = build_exported(p, data)["G"]
    D = PatchDiscriminator(2 * data.channels, p.ndf, p.d_layers, p.norm)
    return {"G": init_weights(G), "D": init_weights(D)}


def build_exported(p: Pix2PixConfig, data) -> dict[str, nn.Module]:
    """The U-Net G alone (what an export holds), uninitialised."""
    depth = unet_depth(data.size, p.depth)
    G = UNetGenerator(data.channels, data.channels, depth, p.ngf, p.norm, p.dropout,
                      p.dropout_blocks, p.dropout_at_test)  # fmt: skip
    return {"G": image_stats_at_test(G) if test_norm_stats(p, data) == "image" else G}


def test_norm_stats(p: Pix2PixConfig, data) -> str:
    """The batch-norm statistics G uses at inference: ``p.test_norm_stats``, "auto" resolved
    by the per-worker training batch size."""
    if p.test_norm_stats != "auto":
        return p.test_norm_stats
    return "image" if data.batch_size == 1 else "running"


# --- optimisation: shared with CycleGAN --------------------------------------------------------


def optimizers(nets, p: Pix2PixConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam(``p.lr``, beta1 0.5) for G and for D (Isola et al. section 3.3 use 2e-4)."""
    betas = (p.beta1, 0.999)
    return {"G": adam([nets["G"]], p.lr, betas), "D": adam([nets["D"]], p.lr, betas)}


def linear_decay(total_steps: int, fraction: float) -> Callable[[int], float]:
    """LR factor: 1 until the last ``fraction`` of ``total_steps``, then linearly down to 0.

    The reference schedule (n_epochs at the base rate, then n_epochs_decay falling to zero)
    expressed in optimizer steps; fraction 0.5 = 100 + 100 epochs.
    """
    decay_steps = max(1, round(total_steps * fraction)) if fraction > 0 else 0
    start = total_steps - decay_steps

    def factor(step: int) -> float:
        if decay_steps == 0 or step < start:
            return 1.0
        return max(0.0, (total_steps - step) / decay_steps)

    return factor


def schedulers(opts, p, total_steps: int) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
    """One LambdaLR per optimizer with :func:`linear_decay` (stepped once per train step)."""
    factor = linear_decay(total_steps, p.lr_decay)
    return {name: torch.optim.lr_scheduler.LambdaLR(opt, factor) for name, opt in opts.items()}


def discriminator_loss(p, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, scaler=None):
    """D's loss on a real and a (detached) fake batch, with the WGAN-GP term when asked for.

    Returns ``(loss, metrics)``; ``D`` may be a DDP wrapper (its backward follows in the step).
    ``scaler``: the step's fp16 grad scaler, if any (see ``losses.gradient_penalty``).
    """
    d_real, d_fake = forward_split(D, real, fake.detach())
    loss = losses.d_loss(p.gan_loss, d_real, d_fake)
    metrics = {"d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}
    if p.gan_loss == "wgan-gp":
        penalty = losses.gradient_penalty(unwrap(D), real, fake, scaler)
        loss = loss + p.gp_weight * penalty
        metrics["gp"] = penalty.detach()
    return loss, metrics


def train_step(nets, opts, batch, p: Pix2PixConfig, ctx: StepContext) -> dict[str, torch.Tensor]:
    """One D update, then one G update, on a batch of aligned pairs (A -> B)."""
    G, D = nets["G"], nets["D"]
    real_a, real_b = batch["A"], batch["B"]
    # G's backward comes in this same step (the G update), as DDP requires.
    fake_b = G(real_a)

    # D update: the conditional discriminator sees (input, output) pairs (eq. 1).
    fake_pair = torch.cat([real_a, fake_b], 1)
    loss_d, metrics = discriminator_loss(
        p, D, torch.cat([real_a, real_b], 1), fake_pair, ctx.scaler
    )
    ctx.update(opts["D"], loss_d)

    # G update against the updated D, plus lambda * L1 to the target (eq. 3, 4).
    with frozen(D) as critic:
        loss_gan = losses.g_loss(p.gan_loss, critic(fake_pair))
    loss_l1 = F.l1_loss(fake_b, real_b)
    ctx.update(opts["G"], loss_gan + p.l1_weight * loss_l1)
    return metrics | {
        "loss_d": loss_d.detach(),
        "loss_g_gan": loss_gan.detach(),
        "loss_l1": loss_l1.detach(),
    }


# --- samples and evaluation -------------------------------------------------------------------


def sample_inputs(p, first_batch, n: int, generator: torch.Generator | None = None):
    """The first ``n`` pairs of the first batch: every sample grid of a run translates these."""
    return {key: first_batch[key][:n].detach().cpu() for key in ("A", "B")}


def sample(nets, p: Pix2PixConfig, inputs) -> torch.Tensor:
    """One image per pair, input | output | target side by side: (n, C, H, 3W)."""
    translated = forward_any_size(nets["G"], inputs["A"])
    return torch.cat([inputs["A"], translated, inputs["B"]], dim=-1)


def evaluate(nets, p: Pix2PixConfig, reference) -> dict[str, float]:
    """PSNR/SSIM of G(A) against B over the reference pairs, and of the identity baseline A.

    Scored chunk by chunk: memory stays that of one chunk however many pairs there are.
    """
    G = nets["G"]
    model = metrics.mean_quality(
        (forward_any_size(G, a), b) for a, b in float_chunks(reference["A"], reference["B"])
    )
    identity = metrics.mean_quality(float_chunks(reference["A"], reference["B"]))
    return model | {f"{name}_identity": value for name, value in identity.items()}


def dataset(cfg):
    """Aligned pairs from ``data.uri`` (its ``train/`` split), A the input of ``direction``."""
    return datasets.paired(cfg, cfg.params.direction)


def held_out(cfg, n: int):
    """Up to ``n`` pairs of the dataset's ``val/`` (else ``test/``) split, or None."""
    return datasets.paired_held_out(cfg, n, cfg.params.direction)


SPEC = register(
    TrainedSpec(
        name="pix2pix",
        config=Pix2PixConfig,
        pipeline="genart.pipelines.translate:TranslationPipeline",
        serve=IMAGE,
        verbs=("translate", "stylize video", "onnx", "eval translation"),
        build=build,
        build_exported=build_exported,
        optimizers=optimizers,
        train_step=train_step,
        dataset=dataset,
        held_out=held_out,
        sample_inputs=sample_inputs,
        sample=sample,
        evaluate=evaluate,
        schedulers=schedulers,
        export=("G",),
        graph_safe=lambda p: True,
        sync_bn=lambda p: p.sync_bn,
        metric="psnr",
        mode="max",
    )
)
