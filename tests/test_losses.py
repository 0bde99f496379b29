"""The loss math against dense references, a hand-computed case, and autograd."""

import math

import pytest
import torch
import torch.nn.functional as F

from raft_trainer.losses import (
    LMHead,
    gather_logits,
    nll_and_topk_logits,
    row_chunks,
    teacher_topk,
    token_nll_sum,
    topk_forward_kl,
    topk_forward_kl_per_token,
)


def dense_forward_kl(student_logits, teacher_logits, mask, temperature):
    """Full-vocabulary T²·KL(softmax(u/T) ‖ softmax(v/T)), mean over tokens per sequence."""
    q = F.log_softmax(teacher_logits / temperature, -1)
    p = F.log_softmax(student_logits / temperature, -1)
    token_kl = (q.exp() * (q - p)).sum(-1)
    return temperature**2 * (token_kl * mask).sum(-1) / mask.sum(-1)


def topk_kl_from_logits(student_logits, teacher_logits, mask, k, temperature, chunk_size=3):
    b, c, h = student_logits.shape[0], student_logits.shape[1], student_logits.shape[2]
    head = LMHead(torch.nn.Identity())  # hidden states are the logits
    top = teacher_topk(teacher_logits.reshape(-1, h), head, k=k, temperature=temperature, chunk_size=chunk_size)
    gathered = gather_logits(student_logits.reshape(-1, h), head, top.indices, chunk_size=chunk_size)
    return topk_forward_kl(gathered.view(b, c, -1), top.logprobs.view(b, c, -1), mask, temperature=temperature)


def test_kl_equals_dense_reference_when_k_is_vocab():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 5, 11), torch.randn(3, 5, 11)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float)
    ours = topk_kl_from_logits(student, teacher, mask, k=11, temperature=1.5)
    torch.testing.assert_close(ours, dense_forward_kl(student, teacher, mask, 1.5))


def test_kl_matches_hand_computed_example():
    # V = 3, K = 2, T = 1. Teacher top-2 = tokens {0, 1} with q̃ = (3/4, 1/4); student p̃ over {0, 1} = (1/2, 1/2).
    teacher = torch.log(torch.tensor([[[0.6, 0.2, 0.2]]]))
    student = torch.log(torch.tensor([[[0.25, 0.25, 0.5]]]))
    ours = topk_kl_from_logits(student, teacher, torch.ones(1, 1), k=2, temperature=1.0)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert ours.item() == pytest.approx(expected, rel=1e-5)
    # With T = 2 the same support is tempered, and the T² factor applies.
    ours_t2 = topk_kl_from_logits(student, teacher, torch.ones(1, 1), k=2, temperature=2.0)
    q = torch.tensor([0.6, 0.2]).sqrt()
    q, p = q / q.sum(), torch.tensor([0.5, 0.5])
    assert ours_t2.item() == pytest.approx(4 * (q * (q / p).log()).sum().item(), rel=1e-5)


def test_kl_gradient_matches_autograd_through_dense_reference():
    torch.manual_seed(1)
    teacher = torch.randn(2, 4, 9)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float)
    student_a = torch.randn(2, 4, 9, requires_grad=True)
    student_b = student_a.detach().clone().requires_grad_(True)
    topk_kl_from_logits(student_a, teacher, mask, k=9, temperature=1.5).sum().backward()
    dense_forward_kl(student_b, teacher, mask, 1.5).sum().backward()
    torch.testing.assert_close(student_a.grad, student_b.grad)


def test_topk_kl_differs_from_dense_when_k_is_small_and_ignores_tokens_outside_support():
    torch.manual_seed(2)
    student, teacher = torch.randn(1, 3, 10), torch.randn(1, 3, 10)
    mask = torch.ones(1, 3)
    small = topk_kl_from_logits(student, teacher, mask, k=3, temperature=1.0)
    assert not torch.allclose(small, dense_forward_kl(student, teacher, mask, 1.0))
    top3 = teacher.topk(3, -1).indices
    bumped = student.clone().scatter_add_(-1, top3, torch.zeros_like(top3, dtype=torch.float))
    outside = torch.ones_like(student).scatter_(-1, top3, 0.0)
    bumped = bumped + 5.0 * outside  # change only tokens outside the teacher's support
    torch.testing.assert_close(topk_kl_from_logits(bumped, teacher, mask, k=3, temperature=1.0), small)


def test_teacher_topk_mass_and_renormalisation():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top = teacher_topk(logits, LMHead(torch.nn.Identity()), k=2, temperature=1.0)
    assert top.indices.tolist() == [[0, 1]]
    assert top.mass.item() == pytest.approx(0.8, rel=1e-6)
    torch.testing.assert_close(top.logprobs.exp(), torch.tensor([[0.625, 0.375]]))


def test_kl_of_sequence_without_tokens_is_zero_and_connected():
    student = torch.randn(1, 2, 4, requires_grad=True)
    kl = topk_kl_from_logits(student, torch.randn(1, 2, 4), torch.zeros(1, 2), k=4, temperature=1.5)
    assert kl.item() == 0.0
    kl.sum().backward()
    assert student.grad is not None and torch.all(student.grad == 0)


def test_chunking_does_not_change_results():
    torch.manual_seed(3)
    hidden, linear = torch.randn(10, 6), torch.nn.Linear(6, 50)
    head = LMHead(linear, softcap=5.0, logit_scale=0.5)
    a = teacher_topk(hidden, head, k=7, temperature=1.5, chunk_size=3)
    b = teacher_topk(hidden, head, k=7, temperature=1.5, chunk_size=100)
    torch.testing.assert_close(a.logprobs, b.logprobs)
    torch.testing.assert_close(
        gather_logits(hidden, head, a.indices, chunk_size=4), head(hidden).gather(-1, a.indices)
    )


def test_token_nll_sum_matches_cross_entropy_with_gradients():
    torch.manual_seed(4)
    linear = torch.nn.Linear(8, 20, bias=False)
    hidden = torch.randn(12, 8, requires_grad=True)
    labels = torch.randint(0, 20, (12,))
    labels[[0, 5]] = -100
    ours = token_nll_sum(hidden, labels, LMHead(linear), chunk_size=5)
    ours.backward()
    grads = hidden.grad.clone(), linear.weight.grad.clone()
    hidden.grad = linear.weight.grad = None
    F.cross_entropy(linear(hidden), labels, ignore_index=-100, reduction="sum").backward()
    torch.testing.assert_close(ours, F.cross_entropy(linear(hidden), labels, ignore_index=-100, reduction="sum"))
    torch.testing.assert_close(grads[0], hidden.grad)
    torch.testing.assert_close(grads[1], linear.weight.grad)


@pytest.mark.parametrize("recompute", [True, False])
def test_padding_to_a_fixed_chunk_count_calls_the_head_that_often_and_changes_nothing(recompute):
    """ZeRO-3 needs every rank to call the LM head equally often: extra empty chunks are real (empty) calls, in
    forward and in backward, and leave values and gradients as they were."""
    torch.manual_seed(5)
    linear = torch.nn.Linear(8, 20, bias=False)
    calls = {"forward": 0, "backward": 0}
    linear.register_forward_pre_hook(lambda *_: calls.__setitem__("forward", calls["forward"] + 1))
    linear.register_full_backward_pre_hook(lambda *_: calls.__setitem__("backward", calls["backward"] + 1))
    hidden = torch.randn(7, 8, requires_grad=True)
    labels = torch.randint(0, 20, (7,))
    reference = token_nll_sum(hidden, labels, LMHead(linear), chunk_size=3)
    (ref_grad,) = torch.autograd.grad(reference, hidden)
    calls.update(forward=0, backward=0)
    padded = token_nll_sum(hidden, labels, LMHead(linear), chunk_size=3, num_chunks=5, recompute=recompute)
    (grad,) = torch.autograd.grad(padded, hidden)
    torch.testing.assert_close(padded, reference)
    torch.testing.assert_close(grad, ref_grad)
    assert calls == {"forward": 5 * (2 if recompute else 1), "backward": 5}  # recompute runs each forward again
    indices = torch.randint(0, 20, (7, 4))
    calls.update(forward=0, backward=0)
    gathered = gather_logits(hidden, LMHead(linear), indices, chunk_size=3, num_chunks=4)
    gathered.sum().backward()
    assert calls == {"forward": 8, "backward": 4}  # chunks are recomputed in backward
    torch.testing.assert_close(gathered, linear(hidden).gather(-1, indices))
    assert [len(c) for c in row_chunks(hidden, 3, 4)] == [3, 3, 1, 0]
    with pytest.raises(ValueError, match="more than 2"):
        row_chunks(hidden, 3, 2)


@pytest.mark.parametrize("recompute", [True, False])
def test_one_head_pass_for_both_terms_equals_separate_passes(recompute):
    """SFT rows and rollout rows share chunks (one chunk here holds both): same NLL, logits and gradients as computing
    the two terms separately, with one head call per chunk."""
    torch.manual_seed(6)
    linear = torch.nn.Linear(8, 30, bias=False)
    head = LMHead(linear, softcap=4.0, logit_scale=0.7)
    calls = []
    linear.register_forward_pre_hook(lambda *_: calls.append(1))
    sft, rollout = torch.randn(6, 8, requires_grad=True), torch.randn(5, 8, requires_grad=True)
    labels, indices = torch.randint(0, 30, (6,)), torch.randint(0, 30, (5, 4))
    labels[2] = -100

    def grads(nll, logits):
        return torch.autograd.grad(nll + (logits * torch.arange(4.0)).sum(), (sft, rollout, linear.weight))

    nll, logits = nll_and_topk_logits(sft, labels, rollout, indices, head, chunk_size=4, recompute=recompute)
    assert len(calls) == 3  # ceil((5 labelled + 5 rollout rows) / 4), before any recomputation
    merged = grads(nll, logits)
    separate_nll = token_nll_sum(sft, labels, head, chunk_size=4)
    separate_logits = gather_logits(rollout, head, indices, chunk_size=4)
    torch.testing.assert_close(nll, separate_nll)
    torch.testing.assert_close(logits, separate_logits)
    for a, b in zip(merged, grads(separate_nll, separate_logits)):
        torch.testing.assert_close(a, b)


def test_loss_module_imports_no_transformers():
    import subprocess
    import sys

    code = "import sys, raft_trainer.losses; print(sorted({'transformers', 'trl'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def reference_topk_kl_float64(student_logits, teacher_logits, mask, k, temperature):
    """An independent float64 reference, one position at a time: S = the teacher's top-K tokens that have mass, q̃ and
    p̃ the tempered softmaxes renormalised over S, T²·KL(q̃‖p̃), mean per sequence."""
    out = []
    for b in range(student_logits.size(0)):
        values = []
        for t in range(student_logits.size(1)):
            if not mask[b, t]:
                continue
            q = torch.softmax(teacher_logits[b, t].double() / temperature, -1)
            support = [i for i in q.topk(k).indices.tolist() if q[i] > 0]
            q_s = q[support] / q[support].sum()
            p_s = torch.softmax(student_logits[b, t, support].double() / temperature, -1)
            values.append(temperature**2 * sum(float(x * (x / y).log()) for x, y in zip(q_s, p_s) if x > 0))
        out.append(sum(values) / len(values) if values else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def test_minus_inf_teacher_logits_inside_the_top_k_give_the_reference_kl():
    """A model that masks tokens with -inf (suppressed ids): K larger than the number of finite logits."""
    torch.manual_seed(3)
    student, teacher = torch.randn(2, 4, 10), torch.randn(2, 4, 10)
    teacher[..., 4:] = float("-inf")  # 4 finite logits, K = 6: two zero-mass entries inside the top-K
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    student = student.requires_grad_(True)
    ours = topk_kl_from_logits(student, teacher, mask, k=6, temperature=1.5)
    assert torch.isfinite(ours).all()
    expected = reference_topk_kl_float64(student.detach(), teacher, mask, 6, 1.5)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-6)
    ours.sum().backward()
    assert torch.isfinite(student.grad).all()


def test_non_finite_values_at_masked_positions_do_not_reach_the_loss_or_gradient():
    torch.manual_seed(4)
    k = 5
    student, teacher_logits = torch.randn(2, 3, k), torch.randn(2, 3, k)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    reference = reference_topk_kl_float64(student, teacher_logits, mask, k, 1.5)
    top = teacher_topk(teacher_logits.reshape(-1, k), LMHead(torch.nn.Identity()), k=k, temperature=1.5)
    student_at_top = student.reshape(-1, k).gather(-1, top.indices).view(2, 3, k)
    teacher_logprobs = top.logprobs.view(2, 3, k).clone()
    student_at_top[0, 2], student_at_top[1, 1] = float("inf"), float("nan")  # garbage at padding
    teacher_logprobs[0, 2], teacher_logprobs[1, 2] = float("inf"), float("-inf")
    student_at_top = student_at_top.requires_grad_(True)
    ours = topk_forward_kl(student_at_top, teacher_logprobs, mask, temperature=1.5)
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=1e-6)
    ours.sum().backward()
    assert torch.isfinite(student_at_top.grad).all()
    assert (student_at_top.grad[~mask.bool()] == 0).all()
    per_token = topk_forward_kl_per_token(student_at_top.detach(), teacher_logprobs, mask, temperature=1.5)
    assert (per_token[~mask.bool()] == 0).all() and torch.isfinite(per_token).all()
