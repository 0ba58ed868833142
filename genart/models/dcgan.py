"""DCGAN (Radford et al. 2016) with the loss variants the source articles compare.

Generator: a latent vector z (as a 1x1 map) grows through strided transposed convolutions with
batch norm and ReLU to a tanh image. Discriminator: strided convolutions with LeakyReLU(0.2),
batch norm on every layer but the first, optional dropout, and a final conv to one score.

Losses (``genart.losses``): ``bce`` (non-saturating), ``lsgan``, ``wgan`` (critic weight
clipping + RMSprop + several critic steps per generator step, Arjovsky et al. 2017),
``wgan-gp`` (gradient penalty, Gulrajani et al. 2017) and ``hinge``.

One ``train_step`` is one discriminator update; the generator is updated on every
``n_critic``-th step, so ``train.steps`` counts discriminator updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genart import losses
from genart.config import at_least, fraction, share
from genart.data import datasets
from genart.models.layers import (
    ConvNormAct,
    MinibatchStdDev,
    adam,
    init_weights,
    spectral_normed,
)
from genart.registry import LATENT, StepContext, TrainedSpec, evaluating, frozen, register, unwrap


@dataclass
class DCGANConfig:
    """DCGAN hyper-parameters (YAML section ``dcgan:``; CLI ``--set dcgan.key=value``)."""

    latent_dim: int = 100
    g_width: int = 64  # generator channels at the last hidden layer (ngf); doubles per level
    d_width: int = 64  # discriminator channels at the first layer (ndf)
    kernel: Literal[4, 5] = 4  # 4x4 as in Radford et al.; 5x5 as in the TensorFlow DCGAN
    d_dropout: float = 0.0  # dropout after each discriminator activation
    # Normalisation in D; auto = batch norm, except none for wgan-gp (the penalty is per sample,
    # which batch norm's cross-sample coupling breaks; Gulrajani et al. section 4).
    d_norm: Literal["auto", "batch", "instance", "none"] = "auto"
    # Minibatch standard deviation before D's last conv (Karras et al. 2018), in groups of this
    # many images; 0 = off.
    d_mbstd_group: int = 0
    d_spectral_norm: bool = False  # spectral normalisation of D's weights (Miyato et al. 2018)
    loss: losses.GanMode = "bce"
    # auto = RMSprop for wgan (momentum destabilises the clipped critic), Adam otherwise
    optimizer: Literal["auto", "adam", "rmsprop"] = "auto"
    # Learning rates; 0 = auto: with the bce loss 8e-4 for G and 4e-4 for D (4x and 2x Radford
    # et al.'s 2e-4), chosen on the quality matrix (docs/models.md: at 600 steps on the 16-mode
    # set G drew 12 modes where 2e-4 drew 1, on MNIST a third of 2e-4's Frechet distance, and
    # at 2,000 steps 14 modes against 13); with the other losses, not measured so, 2e-4.
    lr_g: float = 0.0
    lr_d: float = 0.0
    beta1: float = 0.5  # Adam beta1 = 0.5 (Radford et al.: 0.9 oscillated)
    beta2: float = 0.999  # Gulrajani et al. train WGAN-GP with (0, 0.9): jobs/dcgan-wgan-gp.yaml
    n_critic: int = 0  # D steps per G step; 0 = auto (5 for wgan/wgan-gp, else 1)
    clip_value: float = 0.01  # wgan critic weight clipping range
    gp_weight: float = 10.0  # wgan-gp penalty weight (lambda)
    # Decay of a moving average of G's weights that a run scores, samples and exports where
    # it scores at least as well as the live weights (genart.train.ema); 0 = the weights of the
    # last step, as the reference. Off by default: at a constant learning rate G moves on
    # quickly, and in runs of up to 2,000 steps no average beat the live weights for long
    # (benchmarks/average_pick.py, docs/models.md). 0.995 spans about 200 steps
    ema_decay: float = 0.0
    # The average's horizon grows by this share of the steps made, up to the decay's
    # (genart.train.ema), as Karras et al.'s: a short run's average stays near its newest
    # weights instead of blending the generators of its first few hundred steps
    ema_rampup: float = 0.05
    eval_digits: bool = False  # add the digit classifier's coverage/Frechet to the final metrics
    # add the 16-mode classifier's scores (genart.modes_classifier: modes covered, ...) for
    # data drawn by `genart data synth modes`
    eval_modes: bool = False

    def __post_init__(self):
        at_least(self, "dcgan", 0.0, "lr_g", "lr_d")
        fraction(self, "dcgan", "ema_decay")
        share(self, "dcgan", "ema_rampup")


# bce's rates (G, D) under lr 0 = auto, measured on the quality matrix; the other losses keep 2e-4
AUTO_RATES = {"bce": (8e-4, 4e-4)}
PAPER_RATE = 2e-4  # Radford et al.


def learning_rates(p: DCGANConfig) -> tuple[float, float]:
    """(G's, D's) learning rate: ``lr_g`` and ``lr_d`` where set, else the loss's auto rates."""
    auto_g, auto_d = AUTO_RATES.get(p.loss, (PAPER_RATE, PAPER_RATE))
    return p.lr_g or auto_g, p.lr_d or auto_d


def critic_steps(p: DCGANConfig) -> int:
    """Discriminator updates per generator update."""
    if p.n_critic > 0:
        return p.n_critic
    return 5 if p.loss in ("wgan", "wgan-gp") else 1


def _levels(size: int) -> int:
    """Number of 2x up/down-samplings between 4x4 and ``size``."""
    levels = int(math.log2(size)) - 2
    if size < 16 or 2 ** (levels + 2) != size:
        raise ValueError(f"DCGAN needs a power-of-two image size >= 16, got {size}")
    return levels


def _stride2(kernel: int) -> dict:
    """Padding for exact 2x resizing: k4 p1, or k5 p2 (+ output_padding 1 when transposed)."""
    return {"kernel": kernel, "stride": 2, "padding": (kernel - 1) // 2}


class Generator(nn.Module):
    """z (B, latent, 1, 1) -> image (B, C, size, size) in [-1, 1]."""

    def __init__(self, latent_dim: int, channels: int, size: int, width: int = 64, kernel=4):
        super().__init__()
        levels = _levels(size)
        widths = [width * 2 ** (levels - 1 - i) for i in range(levels)]  # e.g. 512 256 128 64
        extra = {"output_padding": 1} if kernel == 5 else {}
        layers = [ConvNormAct(latent_dim, widths[0], 4, 1, 0, transpose=True)]  # 1 -> 4
        for w_in, w_out in zip(widths, widths[1:]):
            layers.append(ConvNormAct(w_in, w_out, transpose=True, **_stride2(kernel), **extra))
        out = ConvNormAct(
            widths[-1],
            channels,
            norm="none",
            act="tanh",
            transpose=True,
            **_stride2(kernel),
            **extra,
        )
        self.net = nn.Sequential(*layers, out)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class Discriminator(nn.Module):
    """image (B, C, size, size) -> one score (logit or critic value) per image, shape (B,).

    ``mbstd_group`` > 0 appends :class:`~genart.models.layers.MinibatchStdDev`'s map to the 4x4
    features before the last conv.
    """

    def __init__(self, channels: int, size: int, width=64, kernel=4, norm="batch", dropout=0.0,
                 mbstd_group: int = 0):  # fmt: skip
        super().__init__()
        levels = _levels(size)
        widths = [width * 2**i for i in range(levels)]  # e.g. 64 128 256 512
        layers = [
            ConvNormAct(
                channels, widths[0], norm="none", act="lrelu", dropout=dropout, **_stride2(kernel)
            )
        ]
        for w_in, w_out in zip(widths, widths[1:]):
            layers.append(
                ConvNormAct(
                    w_in, w_out, norm=norm, act="lrelu", dropout=dropout, **_stride2(kernel)
                )
            )
        if mbstd_group > 0:
            layers.append(MinibatchStdDev(mbstd_group))
        layers.append(nn.Conv2d(widths[-1] + (mbstd_group > 0), 1, 4, 1, 0))  # 4x4 -> 1x1 score
        self.net = nn.Sequential(*layers)
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 4x4 feature maps (B, C, 4, 4) the score is read from, before any minibatch
        statistic (which would make one image's features depend on the others')."""
        return self.net[: self.levels](x)


def build(p: DCGANConfig, data) -> dict[str, nn.Module]:
    """The generator and discriminator for ``data.size`` / ``data.channels``, DCGAN-initialised."""
    norm = p.d_norm if p.d_norm != "auto" else ("none" if p.loss == "wgan-gp" else "batch")
    G = init_weights(build_exported(p, data)["G"])
    D = init_weights(Discriminator(data.channels, data.size, p.d_width, p.kernel, norm,
                                   p.d_dropout, p.d_mbstd_group))  # fmt: skip
    # Normalised after initialising: the init draws the raw weights SN then rescales.
    return {"G": G, "D": spectral_normed(D) if p.d_spectral_norm else D}


def build_exported(p: DCGANConfig, data) -> dict[str, nn.Module]:
    """The generator alone (what an export holds), uninitialised."""
    return {"G": Generator(p.latent_dim, data.channels, data.size, p.g_width, p.kernel)}


def optimizers(nets, p: DCGANConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam(beta1, beta2) (fused) or RMSprop (foreach: torch has no fused RMSprop) per net."""
    kind = p.optimizer if p.optimizer != "auto" else ("rmsprop" if p.loss == "wgan" else "adam")

    def make(net: nn.Module, lr: float) -> torch.optim.Optimizer:
        if kind == "rmsprop":
            return torch.optim.RMSprop(unwrap(net).parameters(), lr=lr, foreach=True)
        return adam([net], lr, (p.beta1, p.beta2))

    lr_g, lr_d = learning_rates(p)
    return {"G": make(nets["G"], lr_g), "D": make(nets["D"], lr_d)}


def train_step(nets, opts, batch, p: DCGANConfig, ctx: StepContext) -> dict[str, torch.Tensor]:
    """One discriminator update, plus a generator update every ``n_critic``-th step."""
    G, D = nets["G"], nets["D"]
    real = batch["image"]
    update_g = (ctx.step + 1) % critic_steps(p) == 0
    z = torch.randn(real.shape[0], p.latent_dim, 1, 1, device=real.device)
    # Under DDP, a generator forward must be followed by its backward in the same step: only
    # build the graph when the generator is updated now; reuse the fakes for its loss then.
    with torch.set_grad_enabled(update_g):
        fake = G(z)

    d_real, d_fake = D(real), D(fake.detach())
    loss_d = losses.d_loss(p.loss, d_real, d_fake)
    metrics = {"loss_d": loss_d.detach(), "d_real": d_real.detach().mean()}
    if p.loss == "wgan-gp":
        penalty = losses.gradient_penalty(unwrap(D), real, fake, ctx.scaler)
        loss_d = loss_d + p.gp_weight * penalty
        metrics["gp"] = penalty.detach()
    ctx.update(opts["D"], loss_d)
    if p.loss == "wgan":
        with torch.no_grad():
            for param in unwrap(D).parameters():
                param.clamp_(-p.clip_value, p.clip_value)
    metrics["d_fake"] = d_fake.detach().mean()

    if update_g:
        with frozen(D) as critic:
            loss_g = losses.g_loss(p.loss, critic(fake))
        ctx.update(opts["G"], loss_g)
        metrics["loss_g"] = loss_g.detach()
    return metrics


def graph_safe(p: DCGANConfig) -> bool:
    """One D and one G update every step (no critic counting) and no double backward; and no
    spectral norm, whose power iteration updates buffers inside parametrized forwards (not
    checked under CUDA-graph capture, so replay is not risked)."""
    return critic_steps(p) == 1 and p.loss != "wgan-gp" and not p.d_spectral_norm


def sample_inputs(p: DCGANConfig, first_batch, n: int, generator: torch.Generator):
    """The fixed noise batch every sample grid of a run is drawn from."""
    return torch.randn(n, p.latent_dim, generator=generator)


def generate(G: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images in [-1, 1] (float32, on ``z``'s device) for latents ``z``, G in eval mode."""
    with evaluating(G) as module:
        device = next(module.parameters()).device
        images = [module(chunk.to(device)).float() for chunk in z.split(batch_size)]
    return torch.cat(images).to(z.device)


def sample(nets, p: DCGANConfig, z: torch.Tensor) -> torch.Tensor:
    """Generated images for the fixed noise batch."""
    return generate(nets["G"], z)


def evaluate(nets, p: DCGANConfig, reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """SWD of generated images against real ones and, where the run keeps a weight average and
    ``nets`` hold its discriminator, their KID in its features (what picks between the live
    weights and the average; not comparable across steps); digit or mode coverage when asked
    for, with the KID of the generated images against the real ones in that judge's features."""
    from genart import metrics

    real = reference["image"].cpu()  # uint8 or float: the scores convert chunk by chunk
    noise = torch.randn(real.shape[0], p.latent_dim, generator=torch.Generator().manual_seed(0))
    fake = generate(nets["G"], noise).cpu()
    scores = metrics.swd(real, fake)
    if "D" in nets and p.ema_decay > 0:
        scores |= _discriminator_kid(real, fake, unwrap(nets["D"]))
    if p.eval_digits:
        from genart import digits

        judge = digits.load_classifier()
        scores |= {f"digits_{k}": v for k, v in digits.digit_scores(fake, judge).items()}
        scores |= _judge_kid(real, fake, "digits", judge)
    if p.eval_modes:
        from genart import modes_classifier

        judge = modes_classifier.load_classifier()
        found = modes_classifier.mode_scores(fake, judge)
        scores |= {f"modes_{k}": v for k, v in found.items()}
        scores |= _judge_kid(real, fake, "modes", judge)
    return scores


def _judge_kid(real: torch.Tensor, fake: torch.Tensor, space: str, judge) -> dict[str, float]:
    """``kid_<space>`` and its std: KID of ``fake`` against the run's own ``real`` images in the
    judge's features. Unbiased at the few hundred images the loop keeps, where a Fréchet distance
    grows as the set shrinks; a tiny CNN's forward pass and 100 small kernel sums: cheap."""
    from genart import fid

    found = fid.scores(real, fake, space, judge.features)
    return {key: value for key, value in found.items() if key.startswith("kid_")}


def _discriminator_kid(real: torch.Tensor, fake: torch.Tensor, D: Discriminator) -> dict:
    """``kid_discriminator``: KID of ``fake`` against ``real`` in the run's own discriminator's
    4x4 features. Only comparable within one run at one step (another step's D is another
    feature space): it decides between that step's live and averaged generators."""
    from genart import fid, images, judges

    device = next(D.parameters()).device

    def features(batch: torch.Tensor) -> torch.Tensor:
        with evaluating(D) as critic:
            return critic.features(images.as_float(batch).to(device)).flatten(1).float().cpu()

    real, fake = (judges.batched(features, x, 256) for x in (real, fake))
    return {"kid_discriminator": fid.whole_set_kid(real, fake)}


def pick(p: DCGANConfig) -> tuple[str, Literal["min", "max"]]:
    """The score that decides between G's live weights and their average: the judge
    classifier's Fréchet distance where one scores the run, else the KID in the run's own
    discriminator's features.

    A distance in pixels (SWD) rewards blur: on real digits it preferred an average whose
    strokes were blurred, and on the 16-mode set one that blended modes, where a classifier
    trained on real images preferred the live weights. The discriminator is trained to tell
    those apart: its KID chose as the classifier did at 32 of 39 scored steps, SWD at 25
    (benchmarks/average_pick.py, docs/models.md).
    """
    if p.eval_modes:
        return "modes_frechet", "min"
    if p.eval_digits:
        return "digits_frechet", "min"
    return "kid_discriminator", "min"


SPEC = register(
    TrainedSpec(
        name="dcgan",
        config=DCGANConfig,
        pipeline="genart.pipelines.latent:LatentPipeline",
        serve=LATENT,
        verbs=("sample", "interpolate", "arithmetic"),
        build=build,
        build_exported=build_exported,
        optimizers=optimizers,
        train_step=train_step,
        dataset=datasets.images,
        sample_inputs=sample_inputs,
        sample=sample,
        evaluate=evaluate,
        export=("G",),
        graph_safe=graph_safe,
        ema_decay=lambda p: p.ema_decay,
        ema_rampup=lambda p: p.ema_rampup,
        pick=pick,
        metric="swd",
        mode="min",
    )
)
