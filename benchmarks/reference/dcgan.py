"""pytorch/examples ``dcgan/main.py``, re-implemented: the DCGAN as that script trains it.

Generator (64x64): ConvTranspose(nz -> 8 ngf, 4, 1, 0) then three ConvTranspose(4, 2, 1)
halving the channels, each with batch norm and ReLU, and ConvTranspose(ngf -> nc) + Tanh; no
biases. Discriminator: Conv(nc -> ndf, 4, 2, 1) + LeakyReLU(0.2), three Conv(4, 2, 1) doubling
the channels with batch norm and LeakyReLU(0.2), Conv(8 ndf -> 1, 4, 1, 0) + Sigmoid; no biases.
The script's nets are for 64x64 images only; ``size=32`` drops the widest level of each (G
starts at 4 ngf, D stops at 4 ndf), which is how the script is commonly cut down for 32 px.
``weights_init``: conv weights N(0, 0.02), batch-norm scales N(1, 0.02) and shifts 0. Loss:
``nn.BCELoss`` on the sigmoid outputs, real label 1 and fake label 0 (the generator's target 1:
the non-saturating loss). Optimizers: Adam(lr 2e-4, betas (0.5, 0.999)) for each net. A step:
D's gradients from the real batch and from the fake batch (two backward passes, D in training
mode: each batch normalised by its own statistics), one D step; then G's step against the
updated D on the same fakes. Samples are drawn from G in training mode, as the script draws
its ``fixed_noise`` grids.
"""

from __future__ import annotations

import torch
from torch import nn


def weights_init(m: nn.Module) -> None:
    """By class name, as the script matches them."""
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def levels(size: int) -> int:
    """Stride-2 layers between 4x4 and ``size`` besides the outermost one: 3 at 64 px."""
    if size not in (32, 64):
        raise ValueError(f"the script's DCGAN is for 64 px (or 32 px, cut down), got {size}")
    return 3 if size == 64 else 2


class Generator(nn.Sequential):
    """z (B, nz, 1, 1) -> (B, nc, size, size) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, size: int = 64):
        layers: list[nn.Module] = []
        widths = [nz, *(ngf * 2**i for i in reversed(range(levels(size) + 1)))]
        for i, (w_in, w_out) in enumerate(zip(widths, widths[1:])):
            stride, padding = (1, 0) if i == 0 else (2, 1)
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, stride, padding, bias=False),
                       nn.BatchNorm2d(w_out), nn.ReLU(True)]  # fmt: skip
        super().__init__(*layers, nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


class Discriminator(nn.Module):
    """(B, nc, size, size) -> D(x) in (0, 1), shape (B,)."""

    def __init__(self, ndf: int = 64, nc: int = 3, size: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        mults = [2**i for i in range(levels(size))]
        for mult in mults:
            layers += [nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ndf * mult * 2), nn.LeakyReLU(0.2, True)]  # fmt: skip
        layers += [nn.Conv2d(ndf * mults[-1] * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


class DCGAN:
    """The two nets, their optimizers and the script's training step."""

    real_label, fake_label = 1.0, 0.0

    def __init__(self, nz=100, ngf=64, ndf=64, nc=3, size=64, lr=2e-4, beta1=0.5):
        self.nz = nz
        self.netG, self.netD = Generator(nz, ngf, nc, size), Discriminator(ndf, nc, size)
        self.netG.apply(weights_init)
        self.netD.apply(weights_init)
        self.criterion = nn.BCELoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=lr, betas=(beta1, 0.999))

    def step(self, real: torch.Tensor) -> None:
        """(1) D: maximise log D(x) + log(1 - D(G(z))); (2) G: maximise log D(G(z))."""
        self.netD.zero_grad()
        batch_size = real.size(0)
        label = torch.full((batch_size,), self.real_label, dtype=real.dtype)
        self.criterion(self.netD(real), label).backward()
        fake = self.netG(torch.randn(batch_size, self.nz, 1, 1))
        label.fill_(self.fake_label)
        self.criterion(self.netD(fake.detach()), label).backward()
        self.optimizerD.step()
        self.netG.zero_grad()
        label.fill_(self.real_label)  # fake labels are real for the generator cost
        self.criterion(self.netD(fake), label).backward()
        self.optimizerG.step()

    @torch.no_grad()
    def sample(self, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Images for latents ``z`` (N, nz), G in training mode as the script samples."""
        return torch.cat([self.netG(c.view(-1, self.nz, 1, 1)) for c in z.split(batch_size)])
