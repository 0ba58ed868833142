"""Shared translation layers: PatchGAN, its receptive field, U-Net skip block, test-time dropout."""

import pytest
import torch
from torch import nn

from genart.models import layers


def test_receptive_field_default_is_70():
    assert layers.receptive_field() == 70
    assert layers.receptive_field(3) == 70
    assert layers.receptive_field(1) == 16  # the paper's 16x16 PatchGAN


@pytest.mark.parametrize("n_layers", [1, 3])
def test_receptive_field_matches_gradient_support(n_layers):
    """One output's gradient reaches exactly receptive_field(n) input rows and columns."""
    torch.manual_seed(0)
    disc = layers.PatchDiscriminator(1, ndf=2, n_layers=n_layers, norm="none")
    image = torch.randn(1, 1, 160, 160, requires_grad=True)
    scores = disc(image)
    mid_h, mid_w = scores.shape[-2] // 2, scores.shape[-1] // 2
    scores[0, 0, mid_h, mid_w].backward()
    rows = image.grad[0, 0].abs().sum(1).nonzero().flatten()
    cols = image.grad[0, 0].abs().sum(0).nonzero().flatten()
    expected = layers.receptive_field(n_layers)
    assert rows.max() - rows.min() + 1 == expected
    assert cols.max() - cols.min() + 1 == expected


def test_patch_layers_keep_the_papers_field_from_256_px_and_shrink_it_below():
    assert {size: layers.patch_layers(size) for size in (32, 64, 128, 256, 512)} == {
        32: 0, 64: 0, 128: 1, 256: 3, 512: 3,
    }  # fmt: skip
    assert layers.receptive_field(layers.patch_layers(64)) == 10


def test_patch_layers_leave_the_random_stream_alone():
    """Working out the field must not draw from torch's RNG: a model whose default calls it
    would otherwise start from other weights than the same model with the value given."""
    torch.manual_seed(0)
    state = torch.get_rng_state()
    layers.patch_layers(64)
    assert torch.equal(torch.get_rng_state(), state)


def test_patch_discriminator_is_c64_c128_c256_c512():
    disc = layers.PatchDiscriminator(6, norm="batch")
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    # No norm on the first layer: three batch norms for four hidden convs.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in disc.modules()) == 3
    slopes = {m.negative_slope for m in disc.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}
    assert disc(torch.zeros(2, 6, 64, 64)).shape == (2, 1, 6, 6)


@pytest.mark.parametrize("norm, kind", [("instance", nn.InstanceNorm2d), ("none", None)])
def test_patch_discriminator_norms(norm, kind):
    disc = layers.PatchDiscriminator(3, ndf=4, norm=norm)
    norms = [m for m in disc.modules() if isinstance(m, nn.InstanceNorm2d | nn.BatchNorm2d)]
    assert len(norms) == (3 if kind else 0)
    assert all(isinstance(m, kind) for m in norms)


def test_unet_skip_blocks_concatenate_their_input():
    torch.manual_seed(0)
    inner = layers.UNetSkipBlock(8, 16, norm="instance")  # innermost: no sub-block
    middle = layers.UNetSkipBlock(4, 8, inner=inner, norm="instance")
    outer = layers.UNetSkipBlock(3, 4, inner=middle, in_ch=2, outermost=True)
    x = torch.randn(2, 4, 8, 8)
    y = middle(x)
    assert y.shape == (2, 8, 8, 8)
    assert torch.equal(y[:, :4], x)  # the skip half is the input itself
    out = outer(torch.randn(2, 2, 16, 16))
    assert out.shape == (2, 3, 16, 16)
    assert out.abs().max() <= 1  # tanh output


def test_noise_dropout_stays_on_in_eval_unless_switched_off():
    torch.manual_seed(0)
    net = nn.Sequential(layers.NoiseDropout(0.5, at_test=True)).eval()
    x = torch.ones(1000)
    assert (net(x) == 0).any()
    with layers.without_test_dropout(net):
        assert torch.equal(net(x), x)
    assert net[0].at_test  # restored
    net[0].at_test = False
    assert torch.equal(net(x), x)
    assert (net.train()(x) == 0).any()  # always on in training


def test_forward_split_matches_separate_calls():
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)
    for norm in ("instance", "batch"):
        net = layers.PatchDiscriminator(3, ndf=4, norm=norm)
        split = layers.forward_split(net, a, b)
        assert [s.shape[0] for s in split] == [2, 3]
        torch.testing.assert_close(split[0], net(a))
        torch.testing.assert_close(split[1], net(b))


def test_has_batch_norm():
    assert layers.has_batch_norm(layers.PatchDiscriminator(3, norm="batch"))
    assert not layers.has_batch_norm(layers.PatchDiscriminator(3, norm="instance"))
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(layers.PatchDiscriminator(3, norm="batch"))
    assert layers.has_batch_norm(synced)


def test_pad_to_multiple_reaches_a_minimum_side_replicating_where_reflection_cannot():
    image = torch.arange(6, dtype=torch.float32).view(1, 1, 2, 3)
    padded = layers.pad_to_multiple(image, 8, min_side=16)
    assert padded.shape[-2:] == (16, 16)
    torch.testing.assert_close(padded[..., :2, :3], image)  # the image stays top left
    assert (padded[..., 2:, :3] == image[..., 1:, :]).all()  # its last row, repeated
    assert layers.pad_to_multiple(torch.zeros(1, 1, 20, 17), 8, 16).shape[-2:] == (24, 24)
    square = torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3)
    reflected = layers.pad_to_multiple(square, 4)  # a pad narrower than the image reflects
    assert reflected.shape[-2:] == (4, 4) and reflected[0, 0, 3, 0] == square[0, 0, 1, 0]
