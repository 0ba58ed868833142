"""GAN losses against values computed by hand."""

import math

import pytest
import torch

from genart import losses

REAL = torch.tensor([2.0, 0.0])
FAKE = torch.tensor([-1.0, 1.0])


def softplus(x):
    return math.log1p(math.exp(x))


def test_bce():
    # -log sigmoid(x) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x)
    real_term = (softplus(-2.0) + softplus(0.0)) / 2
    fake_term = (softplus(-1.0) + softplus(1.0)) / 2
    assert losses.d_loss("bce", REAL, FAKE).item() == pytest.approx((real_term + fake_term) / 2)
    assert losses.g_loss("bce", FAKE).item() == pytest.approx((softplus(1.0) + softplus(-1.0)) / 2)


def test_lsgan():
    real_term = ((2 - 1) ** 2 + (0 - 1) ** 2) / 2
    fake_term = ((-1) ** 2 + 1**2) / 2
    assert losses.d_loss("lsgan", REAL, FAKE).item() == pytest.approx(0.5 * (real_term + fake_term))
    assert losses.g_loss("lsgan", FAKE).item() == pytest.approx(((-2) ** 2 + 0**2) / 2)


@pytest.mark.parametrize("mode", ["wgan", "wgan-gp"])
def test_wasserstein(mode):
    assert losses.d_loss(mode, REAL, FAKE).item() == pytest.approx(0.0 - 1.0)
    assert losses.g_loss(mode, FAKE).item() == pytest.approx(0.0)


def test_hinge():
    # relu(1 - [2, 0]) = [0, 1]; relu(1 + [-1, 1]) = [0, 2]
    assert losses.d_loss("hinge", REAL, FAKE).item() == pytest.approx(0.5 + 1.0)
    assert losses.g_loss("hinge", FAKE).item() == pytest.approx(0.0)


def test_unknown_mode():
    with pytest.raises(ValueError, match="valid"):
        losses.d_loss("nope", REAL, FAKE)


def test_gradient_penalty_of_a_linear_critic():
    # critic(x) = sum(w * x): gradient w everywhere, penalty (||w|| - 1)^2
    w = torch.tensor([3.0, 4.0])
    penalty = losses.gradient_penalty(
        lambda x: (x * w).sum(1), torch.randn(5, 2), torch.randn(5, 2)
    )
    assert penalty.item() == pytest.approx((5.0 - 1.0) ** 2)


def test_gradient_penalty_under_a_grad_scaler_is_unscaled():
    # fp16 training takes the inner gradient of scaled scores (no underflow), then unscales it.
    critic = torch.nn.Conv2d(3, 1, 3)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    torch.manual_seed(0)
    plain = losses.gradient_penalty(critic, real, fake)
    torch.manual_seed(0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    scaled = losses.gradient_penalty(critic, real, fake, scaler)
    torch.testing.assert_close(scaled, plain)
    scaled.backward()  # the penalty still back-propagates into the critic
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_cycle_and_identity_are_l1():
    a, b = torch.zeros(2, 3), torch.full((2, 3), 0.5)
    assert losses.cycle_loss(a, b).item() == pytest.approx(0.5)
    assert losses.identity_loss(b, a).item() == pytest.approx(0.5)
