"""The distillation losses against hand-computed values on small tensors."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from codistill.errors import ConfigError
from codistill.losses import (
    DIVERGENCES,
    IGNORE_INDEX,
    Dense,
    DistillationLoss,
    TeacherDistribution,
    aligned,
    divergence_per_row,
    label_and_divergence,
    target_mask,
)

DENSE = TeacherDistribution


def at_every_row(logits: torch.Tensor) -> Dense:
    """A dense teacher [N, V] as one example's part of a batch whose every position holds a target."""
    return Dense(logits[None], torch.ones(1, len(logits), dtype=torch.bool))


def sparse(logits: torch.Tensor, k: int) -> TeacherDistribution:
    """The top-k form of a dense teacher, as codistill-generate stores it."""
    logp = F.log_softmax(logits.double(), -1)
    top = logp.topk(k, -1)
    return TeacherDistribution(ids=top.indices, logprobs=top.values, tail=(1 - top.values.exp().sum(-1)).clamp_min(0))


def per_row(student, teacher, divergence, **kw):
    return divergence_per_row(student, teacher, divergence, **kw)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_identical_distributions_diverge_by_nothing(divergence):
    logits = torch.randn(5, 11, dtype=torch.float64)
    assert per_row(logits, DENSE(logits=logits), divergence).abs().max() < 1e-6
    assert per_row(logits, sparse(logits, 4), divergence).abs().max() < 1e-6


def test_forward_and_reverse_kl_by_hand():
    teacher, student = torch.tensor([[0.9, 0.1]]).log(), torch.tensor([[0.5, 0.5]]).log()
    forward = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    reverse = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert per_row(student, DENSE(logits=teacher), "forward_kl").item() == pytest.approx(forward, rel=1e-5)
    assert per_row(student, DENSE(logits=teacher), "reverse_kl").item() == pytest.approx(reverse, rel=1e-5)
    assert forward != pytest.approx(reverse, rel=0.1)


def test_jsd_is_symmetric_at_half_and_bounded_by_log_two():
    a, b = torch.randn(6, 9, dtype=torch.float64), torch.randn(6, 9, dtype=torch.float64) * 3
    ab, ba = per_row(a, DENSE(logits=b), "jsd", beta=0.5), per_row(b, DENSE(logits=a), "jsd", beta=0.5)
    torch.testing.assert_close(ab, ba)
    assert (ab > 0).all() and (ab <= math.log(2)).all()
    # its ends are the two KLs (TRL's convention)
    torch.testing.assert_close(per_row(a, DENSE(logits=b), "jsd", beta=0.0), per_row(a, DENSE(logits=b), "forward_kl"))
    torch.testing.assert_close(per_row(a, DENSE(logits=b), "jsd", beta=1.0), per_row(a, DENSE(logits=b), "reverse_kl"))


def test_jsd_by_hand():
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])  # disjoint supports: JSD = ln 2
    value = per_row(q.clamp_min(1e-30).log()[None], DENSE(logits=p.clamp_min(1e-30).log()[None]), "jsd", beta=0.5)
    assert value.item() == pytest.approx(math.log(2), rel=1e-4)


def test_temperature_softens_both_sides_and_scales_by_its_square():
    s, t = torch.randn(4, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    hot = per_row(s, DENSE(logits=t), "forward_kl", temperature=2.0)
    torch.testing.assert_close(hot, per_row(s / 2, DENSE(logits=t / 2), "forward_kl"))
    labels = torch.zeros(1, 4, dtype=torch.long)
    loss = DistillationLoss("forward_kl", ce_weight=0.0, temperature=2.0)(s[None], labels, at_every_row(t), shift=False)
    assert loss["loss"].item() == pytest.approx(4 * hot.mean().item())


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_sparse_with_k_covering_the_vocabulary_equals_dense(divergence):
    s, t = torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64) * 2
    dense = per_row(s, DENSE(logits=t), divergence, temperature=1.5)
    torch.testing.assert_close(per_row(s, sparse(t, 10), divergence, temperature=1.5), dense)
    assert not torch.allclose(per_row(s, sparse(t, 2), divergence, temperature=1.5), dense)


def test_sparse_tail_bucket_by_hand():
    """Teacher [0.7, 0.2, 0.1] kept as top-1 (0.7) and tail 0.3; student [0.5, 0.25, 0.25]: buckets
    (0.7, 0.3) vs (0.5, 0.5)."""
    teacher = TeacherDistribution(
        ids=torch.tensor([[0]]), logprobs=torch.tensor([[math.log(0.7)]]), tail=torch.tensor([0.3])
    )
    student = torch.tensor([[0.5, 0.25, 0.25]]).log()
    expected = 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5)
    assert per_row(student, teacher, "forward_kl").item() == pytest.approx(expected, rel=1e-5)


def test_uld_ignores_the_vocabulary_order_and_size():
    s, t = torch.randn(3, 12, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    value = per_row(s, DENSE(logits=t), "uld")
    torch.testing.assert_close(per_row(s[:, torch.randperm(12)], DENSE(logits=t[:, torch.randperm(8)]), "uld"), value)
    # by hand: sorted [0.6, 0.4] against [0.5, 0.3, 0.2] -> |0.1| + |0.1| + 0.2
    by_hand = per_row(torch.tensor([[0.4, 0.6]]).log(), DENSE(logits=torch.tensor([[0.2, 0.5, 0.3]]).log()), "uld")
    assert by_hand.item() == pytest.approx(0.4, abs=1e-6)


def test_masked_positions_contribute_nothing():
    logits = torch.randn(2, 5, 9)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, 1, 2, 5]])
    teacher_logits = torch.randn(2, 5, 9)
    mask, shifted = target_mask(labels, shift=False)
    rows, targets = mask.reshape(-1).nonzero().squeeze(-1), shifted[mask]
    assert rows.tolist() == [1, 2, 7, 8, 9] and targets.tolist() == [3, 4, 1, 2, 5]
    teacher = Dense(teacher_logits, mask)
    loss = DistillationLoss("forward_kl", ce_weight=0.5)
    before = loss(logits, labels, teacher, shift=False)["loss"]
    changed = logits.clone()
    changed[0, 0] += 100.0
    changed[0, 4] -= 50.0
    torch.testing.assert_close(loss(changed, labels, teacher, shift=False)["loss"], before)
    _, kd = label_and_divergence(logits, rows, targets, DENSE(logits=teacher_logits[mask]))
    torch.testing.assert_close(before, 0.5 * F.cross_entropy(logits[mask], targets) + 0.5 * kd)
    expected_ce = F.cross_entropy(logits[labels != IGNORE_INDEX], labels[labels != IGNORE_INDEX])
    torch.testing.assert_close(label_and_divergence(logits, rows, targets)[0], expected_ce)


def test_causal_targets_are_shifted():
    mask, shifted = target_mask(torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, 8]]), shift=True)
    assert mask.tolist() == [[False, True, True, False]] and shifted[mask].tolist() == [7, 8]  # 1 predicts 2


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_chunking_changes_nothing(chunk_size):
    logits = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    rows, targets = torch.tensor([0, 2, 5, 7, 11]), torch.tensor([1, 2, 3, 4, 5])
    teacher = DENSE(logits=torch.randn(5, 6, dtype=torch.float64))
    ce, kd = label_and_divergence(logits, rows, targets, teacher, None, "reverse_kl", chunk_size=chunk_size)
    (ce + kd).backward()
    grad = logits.grad.clone()
    logits.grad = None
    ce1, kd1 = label_and_divergence(logits, rows, targets, teacher, None, "reverse_kl", chunk_size=5)
    (ce1 + kd1).backward()
    torch.testing.assert_close((ce, kd), (ce1, kd1))
    torch.testing.assert_close(grad, logits.grad)


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("form", ["dense", "sparse"])
def test_gradients_are_exact(divergence, form):
    torch.manual_seed(0)
    teacher_logits = torch.randn(4, 7, dtype=torch.float64)
    teacher = DENSE(logits=teacher_logits) if form == "dense" else sparse(teacher_logits, 3)
    rows, targets = torch.tensor([0, 1, 3, 5]), torch.tensor([0, 6, 2, 3])

    def loss(logits):
        ce, kd = label_and_divergence(logits, rows, targets, teacher, None, divergence, 1.3, 0.3, chunk_size=3)
        return ce + kd

    assert torch.autograd.gradcheck(loss, torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True))


def test_the_mix_by_hand():
    logits, rows, targets = torch.randn(1, 3, 5), torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    teacher = DENSE(logits=torch.randn(3, 5))
    ce, kd = label_and_divergence(logits, rows, targets, teacher)
    mix = DistillationLoss("forward_kl", ce_weight=0.25, alpha=0.6)
    out = mix(logits, targets[None], at_every_row(teacher.logits), shift=False, rationale_loss=torch.tensor(2.0))
    assert out["loss"].item() == pytest.approx(0.6 * (0.25 * ce.item() + 0.75 * kd.item()) + 0.4 * 2.0, rel=1e-6)
    assert set(out) == {"label_loss", "kd_loss", "rationale_loss", "loss"}
    plain = DistillationLoss()(logits, targets[None], shift=False)
    assert set(plain) == {"label_loss", "loss"} and plain["loss"].item() == pytest.approx(ce.item())


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
def test_step_by_step_arithmetic(alpha):
    logits = torch.tensor([[[0.0, 0.0]]])  # cross-entropy ln 2
    out = DistillationLoss(alpha=alpha)(logits, torch.tensor([[1]]), shift=False, rationale_loss=torch.tensor(3.0))
    assert out["loss"].item() == pytest.approx(alpha * math.log(2) + (1 - alpha) * 3.0)
    assert DistillationLoss(alpha=alpha).uses_rationale == (alpha < 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 1.5}, r"loss.alpha=1.5 is outside \[0, 1\]"),
        ({"divergence": "kl"}, "loss.divergence='kl' is not one of"),
        ({"ce_weight": 0.5}, "need a teacher distribution"),
        ({"divergence": "jsd", "temperature": 0}, "loss.temperature=0 must be > 0"),
        ({"kernel": "triton"}, "loss.kernel='triton' is not one of: auto, torch, liger"),
    ],
)
def test_bad_settings_name_the_fix(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DistillationLoss(**kwargs)


ONLINE, OFFLINE = SimpleNamespace(online=True), SimpleNamespace(online=False)


@pytest.mark.parametrize(
    ("loss", "device", "installed", "teacher", "whole_head", "fused"),
    [
        (("forward_kl",), "cuda", True, ONLINE, True, True),
        (("jsd", 1.0, 1.0, 1.0, 0.3), "cuda", True, ONLINE, True, True),
        (("forward_kl",), "cpu", True, ONLINE, True, False),  # Triton kernels need a GPU
        (("forward_kl",), "cuda", False, ONLINE, True, False),  # liger-kernel not installed
        (("forward_kl",), "cuda", True, OFFLINE, True, False),  # stored top-k: no teacher hidden states
        (("forward_kl",), "cuda", True, ONLINE, False, False),  # ZeRO-3 slices, or a seq2seq student
        (("uld",), "cuda", True, ONLINE, True, False),  # sorted probabilities, not token by token
        ((), "cuda", True, ONLINE, True, False),
    ],
)
def test_the_fused_kernels_are_taken_only_where_they_apply(
    monkeypatch, loss, device, installed, teacher, whole_head, fused
):
    monkeypatch.setattr("codistill.losses.distillation.liger_installed", lambda: installed)
    device = torch.device(device)
    assert DistillationLoss(*loss).fused(device, teacher, whole_head) is fused
    assert DistillationLoss(*loss, kernel="torch").fused(device, teacher, whole_head) is False
    if fused:
        assert DistillationLoss(*loss, kernel="liger").fused(device, teacher, whole_head) is True
    else:  # asked for by name, and impossible: say why and what to set
        with pytest.raises(ConfigError, match="loss.kernel=liger fuses .* set loss.kernel=auto"):
            DistillationLoss(*loss, kernel="liger").fused(device, teacher, whole_head)


def test_token_wise_losses_refuse_other_vocabularies_and_name_uld():
    student, teacher = {"a": 0, "b": 1}, {"a": 0, "b": 1, "c": 2}
    with pytest.raises(ConfigError, match="loss=uld"):
        DistillationLoss("forward_kl").check_vocabularies(student, teacher)
    DistillationLoss("uld").check_vocabularies(student, teacher)
    DistillationLoss("reverse_kl").check_vocabularies(teacher, dict(teacher))


def test_alignment_pairs_the_ith_targets_up_to_the_shorter_side():
    student = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    teacher = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    paired, t = aligned(student, teacher)
    assert paired.tolist() == [True, True, False, True, True] and t.tolist() == [0, 1, 3, 4]


def test_unpaired_student_targets_count_for_cross_entropy_only():
    logits, rows, targets = torch.randn(1, 4, 6), torch.arange(4), torch.tensor([1, 2, 3, 4])
    teacher = DENSE(logits=torch.randn(2, 6))
    paired = torch.tensor([True, False, True, False])
    ce, kd = label_and_divergence(logits, rows, targets, teacher, paired)
    torch.testing.assert_close(ce, F.cross_entropy(logits[0], targets))
    expected = per_row(logits[0, [0, 2]], teacher, "forward_kl").mean()
    torch.testing.assert_close(kd, expected)


def test_on_policy_targets_train_through_the_divergence_only():
    """The student's own samples are no labels: GKD's on-policy batches ignore ce_weight."""
    logits, rows, targets = torch.randn(1, 3, 5), torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    teacher = DENSE(logits=torch.randn(3, 5))
    _, kd = label_and_divergence(logits, rows, targets, teacher, None, "jsd", 2.0, 0.5)
    out = DistillationLoss("jsd", ce_weight=0.7, temperature=2.0, lmbda=0.5)(
        logits, targets[None], at_every_row(teacher.logits), shift=False, on_policy=True
    )
    assert out["loss"].item() == pytest.approx(4.0 * kd.item(), rel=1e-6)


def test_sampled_forward_kl_has_the_dense_gradient_in_expectation_and_top_k_does_not():
    """Random-sampling KD (Anshumann et al. 2025): the forward KL to the empirical distribution of n draws
    from the teacher has, averaged over draws, the dense forward KL's gradient; top-k's is biased."""
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(1, 1, 12, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher_logits = 2 * torch.randn(1, 12, generator=generator, dtype=torch.float64)
    rows, targets = torch.tensor([0]), torch.tensor([0])

    def gradient(teacher):
        _, kd = label_and_divergence(student, rows, targets, teacher)
        return torch.autograd.grad(kd, student)[0]

    dense = gradient(DENSE(logits=teacher_logits))
    n, trials = 8, 4000
    draws = torch.multinomial(F.softmax(teacher_logits, -1).expand(trials, -1), n, True, generator=generator)
    mean = torch.zeros_like(dense)
    for row in draws:
        ids, counts = row.unique(return_counts=True)
        empirical = TeacherDistribution(
            ids=ids[None], logprobs=(counts.double() / n).log()[None], tail=torch.zeros(1, dtype=torch.float64)
        )
        mean += gradient(empirical) / trials
    torch.testing.assert_close(mean, dense, atol=0.02, rtol=0)
    assert (gradient(sparse(teacher_logits, 2)) - dense).abs().max() > 0.05  # top-2 with its tail: biased


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_a_student_head_padded_past_the_teachers_tokens_gets_no_teacher_mass_there(divergence):
    """flan-t5's head has 28 rows past its tokenizer: the teacher puts nothing there. Forward KL is then the
    divergence over the teacher's tokens alone; every divergence charges the student for mass it puts there."""
    s, t = torch.randn(4, 12, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    value = per_row(s, DENSE(logits=t), divergence)
    if divergence == "forward_kl":
        padded = torch.cat([t, torch.full((4, 2), -1e30, dtype=torch.float64)], -1)
        torch.testing.assert_close(value, per_row(s, DENSE(logits=padded), divergence))
    more_on_padding = s.clone()
    more_on_padding[:, 10:] += 3.0
    assert (per_row(more_on_padding, DENSE(logits=t), divergence) > value).all()
    with pytest.raises(ValueError, match="need the teacher's tokens to be the student's"):
        per_row(t, DENSE(logits=s), divergence)
