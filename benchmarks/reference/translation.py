"""junyanz/pytorch-CycleGAN-and-pix2pix, re-implemented: Pix2Pix and CycleGAN as its defaults
train and test them.

Networks (``models/networks.py``): ``UnetGenerator`` built from ``UnetSkipConnectionBlock``\\ s
(dropout 0.5 after the up-sampling of the ``num_downs - 5`` blocks between the 8 ngf level and
the innermost one; biases only where the norm is instance norm, plus the outermost transposed
conv), ``ResnetGenerator`` (reflection padding, ``ResnetBlock``\\ s, transposed convs),
``NLayerDiscriminator`` (the 70x70 PatchGAN); batch norm with learned affine and running
statistics, instance norm without either; ``init_weights('normal', 0.02)``. Losses: ``GANLoss``
(vanilla = BCE with logits for Pix2Pix, lsgan = MSE for CycleGAN), D's loss halved. Optimizers:
Adam(lr, (beta1, 0.999)), one over both CycleGAN generators and one over both discriminators.
Schedule: ``lr_policy='linear'``, a ``LambdaLR`` of the factor ``1 - max(0, e + epoch_count -
n_epochs) / (n_epochs_decay + 1)``, ``e`` the epochs finished: ``train.py`` steps it at the end
of each epoch (again since their cb0ebe9, 2025-07-30; from 2020 it stepped at the start, which
ran a 600-step cell at half the rate: the upstream check in docs/benchmarks.md found that
difference). Data (``data/base_dataset.py``): resize to ``load_size`` (bicubic), random crop to
``crop_size``, random horizontal flip, the same for A and B of an aligned pair; unaligned B
drawn at random for each A. Test (``test.py``): the model is not put in eval mode (no
``--eval``), so batch norm uses each test image's statistics (batches of one) and dropout stays
on; outputs are written as 8-bit images (``util.tensor2im``: truncated, not rounded).

The step order and the image pool follow ``optimize_parameters`` exactly; the small pieces the
step-time benchmark already re-implements (``GANLoss``, ``ImagePool``, ``set_requires_grad``)
are imported from :mod:`benchmarks.translation`.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from benchmarks.translation import ReferenceGANLoss, ReferenceImagePool, set_requires_grad

LOAD_OVER_CROP = 286 / 256  # the defaults --load_size 286 --crop_size 256, kept at any size


# --- networks -----------------------------------------------------------------------------------


def norm_layer(kind: str):
    """``get_norm_layer``: batch norm (affine, running stats) or instance norm (neither)."""
    if kind == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if kind == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    raise ValueError(kind)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """``init_weights(net, 'normal', 0.02)``: by class name, as the reference matches them."""

    def init(m: nn.Module) -> None:
        name = m.__class__.__name__
        if hasattr(m, "weight") and ("Conv" in name or "Linear" in name):
            nn.init.normal_(m.weight, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0.0)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.constant_(m.bias, 0.0)

    return net.apply(init)


class UnetSkipConnectionBlock(nn.Module):
    """X -> [down -> submodule -> up] concatenated with X (the outermost returns only the
    branch)."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False,
                 innermost=False, norm="batch", use_dropout=False):  # fmt: skip
        super().__init__()
        self.outermost = outermost
        make_norm = norm_layer(norm)
        use_bias = norm == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=use_bias)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=use_bias)
            model = [downrelu, downconv, uprelu, upconv, make_norm(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=use_bias)
            down = [downrelu, downconv, make_norm(inner_nc)]
            up = [uprelu, upconv, make_norm(outer_nc)]
            model = down + [submodule] + up + ([nn.Dropout(0.5)] if use_dropout else [])
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """``num_downs`` down-samplings: a 1x1 bottleneck when 2 ** num_downs is the image side."""

    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm="batch", use_dropout=False):
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm,
                                            use_dropout=use_dropout)  # fmt: skip
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                             outermost=True, norm=norm)  # fmt: skip

    def forward(self, x):
        return self.model(x)


class ResnetBlock(nn.Module):
    """Reflection pad, 3x3 conv, norm, ReLU, [dropout], reflection pad, 3x3 conv, norm; + x."""

    def __init__(self, dim, norm="instance", use_dropout=False, use_bias=True):
        super().__init__()
        make_norm = norm_layer(norm)
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), make_norm(dim),
                 nn.ReLU(True)]  # fmt: skip
        block += [nn.Dropout(0.5)] if use_dropout else []
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Sequential):
    """c7s1-ngf, two stride-2 convs, ``n_blocks`` ResnetBlocks, two transposed convs, c7s1-out."""

    def __init__(self, input_nc, output_nc, ngf=64, norm="instance", use_dropout=False,
                 n_blocks=6):  # fmt: skip
        make_norm, use_bias = norm_layer(norm), norm == "instance"
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=use_bias),
                 make_norm(ngf), nn.ReLU(True)]  # fmt: skip
        for i in range(2):
            mult = 2**i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=use_bias),
                      make_norm(ngf * mult * 2), nn.ReLU(True)]  # fmt: skip
        model += [ResnetBlock(ngf * 4, norm, use_dropout, use_bias) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1,
                                         bias=use_bias),
                      make_norm(ngf * mult // 2), nn.ReLU(True)]  # fmt: skip
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        super().__init__(*model)


class NLayerDiscriminator(nn.Sequential):
    """The PatchGAN: C64 (no norm) then ``n_layers`` conv-norm-LeakyReLU, then a 1-channel conv."""

    def __init__(self, input_nc, ndf=64, n_layers=3, norm="batch"):
        make_norm, use_bias = norm_layer(norm), norm == "instance"
        seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            seq += [nn.Conv2d(ndf * previous, ndf * mult, 4, stride, 1, bias=use_bias),
                    make_norm(ndf * mult), nn.LeakyReLU(0.2, True)]  # fmt: skip
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        super().__init__(*seq)


# --- options, schedule and the models' training steps -------------------------------------------


@dataclass
class Options:
    """The command-line options that matter here, at the reference's defaults for each model."""

    size: int = 256  # --crop_size (test: --load_size = --crop_size, so images are not cropped)
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9  # resnet_9blocks / resnet_6blocks
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_l1: float = 100.0
    lambda_cycle: float = 10.0  # lambda_A = lambda_B
    lambda_identity: float = 0.5
    pool_size: int = 50
    n_epochs: int = 100
    n_epochs_decay: int = 100

    @property
    def load_size(self) -> int:
        return round(self.size * LOAD_OVER_CROP)


def linear_factor(opt: Options, finished: int, epoch_count: int = 1) -> float:
    """``lr_policy='linear'``: the learning-rate factor after ``finished`` epochs."""
    return 1.0 - max(0, finished + epoch_count - opt.n_epochs) / float(opt.n_epochs_decay + 1)


def adam(nets: list[nn.Module], opt: Options) -> torch.optim.Adam:
    params = itertools.chain(*(net.parameters() for net in nets))
    return torch.optim.Adam(params, lr=opt.lr, betas=(opt.beta1, 0.999))


class Model:
    """What ``BaseModel`` gives both models: optimizers and the per-epoch learning rate."""

    optimizers: list[torch.optim.Optimizer]
    opt: Options

    def update_learning_rate(self, epoch: int) -> None:
        """Set the rate in force during ``epoch`` (from 1): the ``LambdaLR`` that ``train.py``
        steps at the end of each epoch, so epoch 1 runs at the factor of 0 epochs finished."""
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.opt.lr * linear_factor(self.opt, epoch - 1)


class Pix2Pix(Model):
    """``Pix2PixModel``: unet (``num_downs = log2(size)``), batch norm, dropout, vanilla GAN."""

    def __init__(self, opt: Options, channels: int = 3):
        self.opt = opt
        depth = int(math.log2(opt.size))
        self.netG = init_weights(UnetGenerator(channels, channels, depth, opt.ngf, "batch", True))
        self.netD = init_weights(NLayerDiscriminator(2 * channels, opt.ndf, 3, "batch"))
        self.gan, self.l1 = ReferenceGANLoss("vanilla"), nn.L1Loss()
        self.opt_G, self.opt_D = adam([self.netG], opt), adam([self.netD], opt)
        self.optimizers = [self.opt_G, self.opt_D]

    def optimize_parameters(self, batch: dict[str, torch.Tensor]) -> None:
        real_a, real_b = batch["A"], batch["B"]
        fake_b = self.netG(real_a)
        set_requires_grad([self.netD], True)
        self.opt_D.zero_grad()
        loss_fake = self.gan(self.netD(torch.cat((real_a, fake_b), 1).detach()), False)
        loss_real = self.gan(self.netD(torch.cat((real_a, real_b), 1)), True)
        ((loss_fake + loss_real) * 0.5).backward()
        self.opt_D.step()
        set_requires_grad([self.netD], False)
        self.opt_G.zero_grad()
        loss_gan = self.gan(self.netD(torch.cat((real_a, fake_b), 1)), True)
        (loss_gan + self.l1(fake_b, real_b) * self.opt.lambda_l1).backward()
        self.opt_G.step()

    def generator(self, direction: str) -> nn.Module:
        return self.netG


class CycleGAN(Model):
    """``CycleGANModel``: resnet generators, instance norm, LSGAN, cycle 10, identity 0.5, pool 50.

    ``netG_A``: A -> B, ``netG_B``: B -> A; ``netD_A`` judges domain B, ``netD_B`` domain A.
    """

    def __init__(self, opt: Options, channels: int = 3, seed: int = 0):
        self.opt = opt

        def generator():
            net = ResnetGenerator(channels, channels, opt.ngf, "instance", False, opt.n_blocks)
            return init_weights(net)

        self.netG_A, self.netG_B = generator(), generator()
        self.netD_A, self.netD_B = (
            init_weights(NLayerDiscriminator(channels, opt.ndf, 3, "instance")) for _ in range(2)
        )
        self.gan, self.l1 = ReferenceGANLoss("lsgan"), nn.L1Loss()
        self.opt_G = adam([self.netG_A, self.netG_B], opt)
        self.opt_D = adam([self.netD_A, self.netD_B], opt)
        self.optimizers = [self.opt_G, self.opt_D]
        self.pool_A = ReferenceImagePool(opt.pool_size, seed)  # fake A images, for netD_B
        self.pool_B = ReferenceImagePool(opt.pool_size, seed + 1)

    def backward_d_basic(self, netD, real, fake) -> None:
        loss = (self.gan(netD(real), True) + self.gan(netD(fake.detach()), False)) * 0.5
        loss.backward()

    def optimize_parameters(self, batch: dict[str, torch.Tensor]) -> None:
        real_a, real_b = batch["A"], batch["B"]
        lam, lam_idt = self.opt.lambda_cycle, self.opt.lambda_identity
        fake_b = self.netG_A(real_a)
        rec_a = self.netG_B(fake_b)
        fake_a = self.netG_B(real_b)
        rec_b = self.netG_A(fake_a)
        set_requires_grad([self.netD_A, self.netD_B], False)
        self.opt_G.zero_grad()
        idt_a = self.netG_A(real_b)
        loss_idt_a = self.l1(idt_a, real_b) * lam * lam_idt
        idt_b = self.netG_B(real_a)
        loss_idt_b = self.l1(idt_b, real_a) * lam * lam_idt
        loss_g_a = self.gan(self.netD_A(fake_b), True)
        loss_g_b = self.gan(self.netD_B(fake_a), True)
        loss_cycle = (self.l1(rec_a, real_a) + self.l1(rec_b, real_b)) * lam
        (loss_g_a + loss_g_b + loss_cycle + loss_idt_a + loss_idt_b).backward()
        self.opt_G.step()
        set_requires_grad([self.netD_A, self.netD_B], True)
        self.opt_D.zero_grad()
        self.backward_d_basic(self.netD_A, real_b, self.pool_B.query(fake_b))
        self.backward_d_basic(self.netD_B, real_a, self.pool_A.query(fake_a))
        self.opt_D.step()

    def generator(self, direction: str) -> nn.Module:
        return self.netG_A if direction == "AtoB" else self.netG_B


# --- data: resize_and_crop + flip, aligned and unaligned ----------------------------------------


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``ToTensor`` then ``Normalize((0.5,) * 3, (0.5,) * 3)``: uint8 HWC -> CHW in [-1, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1


def resized(images: np.ndarray, load_size: int) -> np.ndarray:
    """``transforms.Resize([load, load], BICUBIC)`` of each uint8 HWC image (done once: it is
    deterministic, unlike the crop and flip drawn per sample)."""
    return np.stack([np.asarray(Image.fromarray(im).resize((load_size, load_size),
                                                           Image.Resampling.BICUBIC))
                     for im in images])  # fmt: skip


def crop_flip(image: np.ndarray, x: int, y: int, size: int, flip: bool) -> np.ndarray:
    out = image[y : y + size, x : x + size]
    return out[:, ::-1] if flip else out


class Loader:
    """Batches as the reference's ``DataLoader`` gives them: a shuffled pass per epoch (the last
    batch may be short), each image cropped and flipped with Python's ``random``.

    ``images``: {"A": uint8 (N, H, W, C), "B": ...}. ``aligned``: A[i] and B[i] form a pair
    sharing one crop and flip (``AlignedDataset``); otherwise each A is matched with a random B,
    each with its own crop and flip (``UnalignedDataset``).
    """

    def __init__(self, images: dict[str, np.ndarray], opt: Options, batch_size: int,
                 aligned: bool, seed: int):  # fmt: skip
        self.images = {k: resized(v, opt.load_size) for k, v in images.items()}
        self.opt, self.batch_size, self.aligned = opt, batch_size, aligned
        self.random = random.Random(seed)
        self.shuffle = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.images["A"]) / self.batch_size)

    def _corner(self) -> tuple[int, int]:
        room = max(0, self.opt.load_size - self.opt.size)
        return self.random.randint(0, room), self.random.randint(0, room)

    def _item(self, index: int) -> dict[str, torch.Tensor]:
        size = self.opt.size
        if self.aligned:  # get_params: one crop corner and flip for both halves
            (x, y), flip = self._corner(), self.random.random() > 0.5
            return {k: to_tensor(crop_flip(self.images[k][index], x, y, size, flip))
                    for k in ("A", "B")}  # fmt: skip
        # RandomCrop and RandomHorizontalFlip on each image; B is any image of its domain.
        other = self.random.randint(0, len(self.images["B"]) - 1)
        images = {"A": self.images["A"][index], "B": self.images["B"][other]}
        return {k: to_tensor(crop_flip(im, *self._corner(), size, self.random.random() < 0.5))
                for k, im in images.items()}  # fmt: skip

    def epoch(self):
        """One pass: batches of {"A", "B"} float tensors (B, C, size, size) in [-1, 1]."""
        order = torch.randperm(len(self.images["A"]), generator=self.shuffle).tolist()
        for start in range(0, len(order), self.batch_size):
            items = [self._item(i) for i in order[start : start + self.batch_size]]
            yield {k: torch.stack([item[k] for item in items]) for k in ("A", "B")}


def train(model: Model, loader: Loader, steps: int) -> int:
    """``train.py``'s loop for ``opt.n_epochs + opt.n_epochs_decay`` epochs, cut at ``steps``
    optimizer steps; returns the steps run."""
    done = 0
    for epoch in itertools.count(1):
        model.update_learning_rate(epoch)
        for batch in loader.epoch():
            model.optimize_parameters(batch)
            done += 1
            if done == steps:
                return done
    return done


@torch.no_grad()
def translate(model: Model, direction: str, images: list[np.ndarray]) -> list[np.ndarray]:
    """``test.py``: each image alone through the generator left in training mode, then
    ``util.tensor2im`` (uint8 by truncation)."""
    net = model.generator(direction)
    net.train()
    outputs = []
    for image in images:
        out = net(to_tensor(np.ascontiguousarray(image))[None])[0]
        array = (out.permute(1, 2, 0).numpy() + 1) / 2.0 * 255.0
        outputs.append(array.astype(np.uint8))
    return outputs
