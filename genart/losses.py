"""Loss functions shared by every model, as pure functions of tensors.

GAN losses take discriminator outputs (logits or critic scores) of any shape (a single score per
image for DCGAN, a patch map for PatchGAN) and average over everything.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

GanMode = Literal["bce", "lsgan", "wgan", "wgan-gp", "hinge"]
GAN_MODES: tuple[str, ...] = ("bce", "lsgan", "wgan", "wgan-gp", "hinge")


def d_loss(mode: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator (critic) loss on its outputs for real and generated images.

    - bce: -log D(x) - log(1 - D(G(z)))            (Goodfellow et al. 2014)
    - lsgan: (D(x) - 1)^2 + D(G(z))^2, halved       (Mao et al. 2017, a=0, b=c=1)
    - wgan / wgan-gp: D(G(z)) - D(x)                (Arjovsky et al. 2017; GP added separately)
    - hinge: relu(1 - D(x)) + relu(1 + D(G(z)))     (Lim & Ye 2017; Miyato et al. 2018)
    """
    if mode == "bce":
        return (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        ) / 2
    if mode == "lsgan":
        real_term = F.mse_loss(real, torch.ones_like(real))
        return 0.5 * (real_term + F.mse_loss(fake, torch.zeros_like(fake)))
    if mode in ("wgan", "wgan-gp"):
        return fake.mean() - real.mean()
    if mode == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ValueError(f"unknown GAN loss '{mode}'; valid: {GAN_MODES}")


def g_loss(mode: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss on the discriminator's outputs for generated images.

    bce uses the non-saturating form -log D(G(z)) (Goodfellow et al. 2014, section 3), which
    gives strong gradients early in training when D rejects every sample.
    """
    if mode == "bce":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if mode == "lsgan":
        # No 1/2 here: the reference CycleGAN/pix2pix code weighs the adversarial term 1 against
        # cycle λ = 10, and users tune λ against that scale.
        return F.mse_loss(fake, torch.ones_like(fake))
    if mode in ("wgan", "wgan-gp", "hinge"):
        return -fake.mean()
    raise ValueError(f"unknown GAN loss '{mode}'; valid: {GAN_MODES}")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, scaler=None) -> torch.Tensor:
    """WGAN-GP term E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates (Gulrajani 2017).

    With an fp16 ``scaler`` (``torch.amp.GradScaler``) the inner gradient is taken of the
    scaled scores and unscaled afterwards, as PyTorch's AMP guide does for gradient penalties:
    unscaled fp16 gradients can underflow to zero. An overflow gives an infinite penalty, and
    the scaler then skips the step as for any other overflow.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed).sum()
    if scaler is None:
        (grads,) = torch.autograd.grad(scores, mixed, create_graph=True)
    else:
        (scaled,) = torch.autograd.grad(scaler.scale(scores), mixed, create_graph=True)
        grads = scaled / scaler.get_scale()
    return ((grads.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def gram_matrix(features: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
    """Gram matrix of (B, C, H, W) features, normalised by C*H*W (Johnson et al. eq. 3).

    ``guide`` ((B or 1, 1, H, W) weights in [0, 1]) makes it the guided Gram matrix of Gatys et
    al. 2017: of the features times the guide, normalised by C * sum(guide^2) rather
    than C*H*W, so that it is the mean over the guided region, comparable with an unguided
    Gram of a style image (a guide of ones gives the unguided Gram).
    """
    b, c, h, w = features.shape
    if guide is None:
        flat = features.reshape(b, c, h * w)
        return flat @ flat.transpose(1, 2) / (c * h * w)
    flat = (features * guide).reshape(b, c, h * w)
    # An empty region (an all-black guide) has a zero Gram, not a division by zero.
    energy = guide.square().sum(dim=(1, 2, 3)).clamp_min(1e-8).reshape(-1, 1, 1)
    return flat @ flat.transpose(1, 2) / (c * energy)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Feature reconstruction loss: mean squared error between feature maps."""
    return F.mse_loss(features, target)


def style_loss(
    features: torch.Tensor, target_gram: torch.Tensor, guide: torch.Tensor | None = None
) -> torch.Tensor:
    """Style reconstruction loss: MSE between the Gram matrix of ``features`` (guided by
    ``guide`` if given, see :func:`gram_matrix`) and a target Gram."""
    gram = gram_matrix(features, guide)
    return F.mse_loss(gram, target_gram.expand(features.shape[0], -1, -1))


def tv_loss(images: torch.Tensor) -> torch.Tensor:
    """Total variation (anisotropic, mean absolute difference of neighbours): spatial smoothness."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    return dh + dw


def cycle_loss(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """CycleGAN cycle-consistency ||F(G(x)) - x||_1 (Zhu et al. 2017, eq. 2)."""
    return F.l1_loss(reconstructed, original)


def identity_loss(mapped: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """CycleGAN identity loss ||G(y) - y||_1 (Zhu et al. 2017, section 5.2; Taigman et al.)."""
    return F.l1_loss(mapped, original)
