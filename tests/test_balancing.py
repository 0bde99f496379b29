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


def test_raft_loss_balancer_owns_the_window_the_first_step_and_the_ranks():
    """`RAFTLossBalancer`: per micro-batch `observe`, `end_step` once per optimizer step, the first window's λ, ranks
    summed through `reduce_sum`, non-finite micro-batches left out and the rest rescaled to the whole window."""
    import torch

    from raft_trainer import RAFTLossBalancer

    two_ranks = RAFTLossBalancer(beta=0.9)
    two_ranks.distribute(lambda totals: totals * 2, num_processes=2, counts_cover_all_ranks=False)  # a twin rank
    assert two_ranks.needs_first_window
    two_ranks.first_window(torch.tensor([6.0, 3.0, 1.0, 4.0], dtype=torch.float64))  # NLL 2/token, KL 0.25/rollout
    lam = two_ranks.observe(torch.tensor(5.0), torch.tensor(5.0), window_share=0.5)  # its own ratio would be 1
    assert lam == pytest.approx(8.0)  # the first window's ratio, not this micro-batch's
    assert two_ranks.observe(torch.tensor(float("nan")), torch.tensor(1.0), window_share=0.5) == pytest.approx(8.0)
    assert two_ranks.end_step() == pytest.approx((5.0, 5.0))  # finite half rescaled to the window; ranks averaged
    assert two_ranks.step == 1 and two_ranks.lam == pytest.approx(1.0)
    assert two_ranks.observe(torch.tensor(1.0), torch.tensor(1.0)) == pytest.approx(1.0)  # from the EMAs now

    alone = RAFTLossBalancer()  # a direct compute_loss call without a first window: this micro-batch's ratio
    assert alone.observe(torch.tensor(3.0), torch.tensor(1.5)) == pytest.approx(2.0)
    assert alone.observe(torch.tensor(float("inf")), torch.tensor(1.0)) == 0.0
    assert RAFTLossBalancer(mode="fixed", fixed_lambda=0.1).observe(torch.tensor(3.0), torch.tensor(1.0)) == 0.1

    nothing_finite = RAFTLossBalancer()
    nothing_finite.observe(torch.tensor(float("nan")), torch.tensor(1.0))
    nothing_finite.end_step()
    assert nothing_finite.step == 0 and nothing_finite.needs_first_window  # the EMAs were not touched


def test_raft_loss_balancer_restores_its_state_also_from_the_earlier_callback_name():
    from types import SimpleNamespace

    from raft_trainer import RAFTLossBalancer

    saved = {"step": 3, "ema_sft": 2.0, "ema_kl": 0.5}
    for name in ("RAFTLossBalancer", "RAFTCallback"):
        balancer = RAFTLossBalancer()
        state = SimpleNamespace(global_step=5, stateful_callbacks={name: {"attributes": {"balancer_state": saved}}})
        balancer.on_train_begin(None, state, None)
        assert balancer.state_dict() == saved
    assert RAFTLossBalancer().state()["attributes"]["balancer_state"] == {"step": 0, "ema_sft": 0.0, "ema_kl": 0.0}
