"""EMA balancing: the bias-corrected formula, state round trip, non-finite protection."""

import math

import pytest

from raft_trainer import EMALossBalancer
from raft_trainer.balancing import ema_lambda


def test_lambda_equals_bias_corrected_ema_ratio():
    beta, eps = 0.9, 1e-8
    balancer = EMALossBalancer(beta=beta, eps=eps)
    losses = [(2.0, 0.5), (1.5, 0.4), (1.2, 0.45), (1.0, 0.2)]
    m_sft = m_kl = 0.0
    for step, (sft, kl) in enumerate(losses, start=1):
        balancer.update(sft, kl)
        m_sft, m_kl = beta * m_sft + (1 - beta) * sft, beta * m_kl + (1 - beta) * kl
        expected = (m_sft / (1 - beta**step)) / (m_kl / (1 - beta**step) + eps)
        assert balancer.lam == pytest.approx(expected, rel=1e-12)
    assert balancer.lam == pytest.approx(ema_lambda(m_sft, m_kl, 4, beta=beta, eps=eps))
    # The bias-corrected EMAs (what gets logged) are the losses themselves after one update, not (1 − β)·L.
    first = EMALossBalancer(beta=beta)
    first.update(2.0, 0.5)
    assert first.bias_corrected == pytest.approx((2.0, 0.5))


def test_lambda_is_a_plain_float_without_gradient():
    import torch

    balancer = EMALossBalancer()
    sft, kl = torch.tensor(2.0, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    balancer.update(sft.item(), kl.item())
    assert type(balancer.lam) is float
    (sft + balancer.lam * kl).backward()
    assert kl.grad.item() == pytest.approx(balancer.lam) and sft.grad.item() == 1.0


def test_state_dict_round_trip_gives_identical_lambda():
    a = EMALossBalancer(beta=0.8)
    for sft, kl in [(3.0, 1.0), (2.0, 0.7), (1.7, 0.9)]:
        a.update(sft, kl)
    b = EMALossBalancer(beta=0.8)
    assert b.lam != a.lam
    b.load_state_dict(a.state_dict())
    assert b.lam == a.lam
    a.update(1.0, 0.5), b.update(1.0, 0.5)
    assert b.lam == a.lam


def test_non_finite_losses_are_skipped():
    balancer = EMALossBalancer()
    balancer.update(2.0, 1.0)
    before = balancer.state_dict()
    assert balancer.update(float("nan"), 1.0) is False
    assert balancer.update(1.0, float("inf")) is False
    assert balancer.state_dict() == before and math.isfinite(balancer.lam)


def test_fixed_mode_and_first_step_ratio():
    assert EMALossBalancer(mode="fixed", fixed_lambda=0.1).lam == 0.1
    fresh = EMALossBalancer()
    assert fresh.lam is None
    assert fresh.lam_or_ratio(2.0, 0.5) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="beta"):
        EMALossBalancer(beta=1.0)


def test_a_numerically_zero_kl_does_not_enter_the_emas():
    """Plain on-policy distillation from the original model starts with student = teacher (KL ~1e-8): that step must
    not make the next steps' λ ~1e8."""
    balancer = EMALossBalancer()
    assert balancer.lam_or_ratio(3.95, 6.6e-8) == 0.0
    assert balancer.update(3.95, 6.6e-8) is False and balancer.lam is None and balancer.step == 0
    assert balancer.update(3.86, 0.83) is True
    assert balancer.lam == pytest.approx(3.86 / 0.83)
    assert balancer.update(3.5, 0.0) is False and balancer.lam == pytest.approx(3.86 / 0.83)
