"""Divergences between a student's and a teacher's next-token distributions, per row, as functions on tensors
(after TRL's `generalized_jsd_loss`).

The teacher at N rows is a `TeacherDistribution`: dense logits, or sparse ids and log-probabilities with the
probability mass outside them (the tail). A sparse teacher is compared with the student over k + 1 buckets
(the k ids, and everything else as one), which is exact when k covers the vocabulary and is how
DistillKit-style offline logits keep the tail's mass.

On log-probabilities `s` (student) and `t` (teacher):
- `forward_kl`: KL(t || s), Hinton et al. 2015 (mode covering);
- `reverse_kl`: KL(s || t), MiniLLM (Gu et al. 2024; mode seeking);
- `jsd`: generalized JSD with `beta`, GKD (Agarwal et al. 2024): beta KL(t || m) + (1 - beta) KL(s || m),
  m = beta t + (1 - beta) s; beta 0 is forward KL, 1 reverse KL (TRL's convention);
- `uld`: Universal Logit Distillation (Boizard et al. 2024): L1 between the sorted probability vectors,
  so teacher and student may have different vocabularies (the shorter padded with zeros).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "uld")
TOKEN_WISE = ("forward_kl", "reverse_kl", "jsd")  # compare token i of one vocabulary with token i of the other
EMPTY = -1e4  # the log-probability of an empty tail bucket: exp() is 0, and no inf reaches a gradient
TAIL_NOISE = 1e-6  # a tail below this is the rounding of 1 - sum(top k), not mass: the bucket is empty


@dataclass
class TeacherDistribution:
    """The teacher's next-token distribution at N rows (leading dims of any shape): dense `logits` [..., V],
    or sparse `ids` [..., k], `logprobs` [..., k] and `tail` [...] (1 - the mass of the k)."""

    logits: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    logprobs: torch.Tensor | None = None
    tail: torch.Tensor | None = None

    def __post_init__(self):
        if (self.logits is None) == (self.ids is None):
            raise ValueError("a TeacherDistribution is dense (logits) or sparse (ids, logprobs, tail), not both")

    @property
    def dense(self) -> bool:
        return self.logits is not None


def wide(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision model outputs; float64 stays (gradcheck)."""
    return x if x.dtype == torch.float64 else x.float()


def as_wide_as(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Dense teacher logits over the student's vocabulary width: a student head padded past the tokenizer
    (flan-t5's 32,128 rows over 32,100 tokens) has rows no teacher token maps to, where the teacher puts no
    mass (`EMPTY`). The teacher's own padding rows are cut before (codistill.teacher_logits.OnlineTeacher)."""
    missing = student_logits.shape[-1] - teacher_logits.shape[-1]
    if missing < 0:
        raise ValueError(
            f"the teacher's distribution has {teacher_logits.shape[-1]} tokens, the student's head "
            f"{student_logits.shape[-1]}: token-wise divergences need the teacher's tokens to be the student's"
        )
    return F.pad(teacher_logits, (0, missing), value=EMPTY) if missing else teacher_logits


def forward_kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """KL(t || s) per row of log-probabilities; a bucket the teacher gives no mass contributes nothing."""
    p = t.exp()
    return torch.where(p > 0, p * (t - s), 0.0).sum(-1)


def reverse_kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """KL(s || t) per row of log-probabilities."""
    return forward_kl(t, s)


def generalized_jsd(s: torch.Tensor, t: torch.Tensor, beta: float) -> torch.Tensor:
    """beta KL(t || m) + (1 - beta) KL(s || m) with m = beta t + (1 - beta) s, per row; beta 0 and 1 are the
    forward and reverse KL themselves (as in TRL's generalized_jsd_loss)."""
    if beta == 0:
        return forward_kl(s, t)
    if beta == 1:
        return reverse_kl(s, t)
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), dim=0)
    return beta * forward_kl(m, t) + (1 - beta) * forward_kl(m, s)


def sorted_l1(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """ULD's distance per row: L1 between the two probability vectors sorted in decreasing order, the
    shorter padded with zeros (so the vocabularies need not match, nor even their sizes)."""
    p, q = p.sort(-1, descending=True).values, q.sort(-1, descending=True).values
    width = max(p.shape[-1], q.shape[-1])
    p, q = F.pad(p, (0, width - p.shape[-1])), F.pad(q, (0, width - q.shape[-1]))
    return (p - q).abs().sum(-1)


def buckets(student_logits: torch.Tensor, teacher: TeacherDistribution, temperature: float = 1.0):
    """(student, teacher) log-probabilities over a shared support, per row: the vocabulary for a dense
    teacher; for a sparse one, its k ids plus one tail bucket (the student's mass outside the k ids, the
    teacher's `tail`). Temperature divides the logits (dense), or the bucket log-probabilities before they
    are renormalised (sparse: the tail bucket is tempered as one token, exact when k covers the vocabulary)."""
    if teacher.dense:
        return (
            F.log_softmax(wide(student_logits) / temperature, -1),
            F.log_softmax(wide(as_wide_as(teacher.logits, student_logits)) / temperature, -1),
        )
    s = F.log_softmax(wide(student_logits), -1)
    ids = teacher.ids.long()
    s_top = s.gather(-1, ids)
    s_tail = torch.logsumexp(s.scatter(-1, ids, float("-inf")), -1, keepdim=True).clamp_min(EMPTY)
    s = torch.cat([s_top, s_tail], -1)
    if temperature != 1:
        s = F.log_softmax(s / temperature, -1)
    return s, teacher_buckets(teacher, temperature)


def teacher_buckets(teacher: TeacherDistribution, temperature: float = 1.0) -> torch.Tensor:
    """A sparse teacher's log-probabilities over its k ids and the tail bucket, tempered as `buckets` says."""
    tail = wide(teacher.tail)
    t_tail = torch.where(tail > TAIL_NOISE, tail.clamp_min(TAIL_NOISE).log(), EMPTY).unsqueeze(-1)
    t = torch.cat([wide(teacher.logprobs), t_tail], -1)
    return F.log_softmax(t / temperature, -1) if temperature != 1 else t


def divergence_per_row(
    student_logits: torch.Tensor, teacher: TeacherDistribution, divergence: str, temperature=1.0, beta=0.5
) -> torch.Tensor:
    """The divergence between student and teacher at each row (no temperature-squared scale)."""
    if divergence == "uld":
        p = F.softmax(wide(student_logits) / temperature, -1)
        if teacher.dense:
            return sorted_l1(p, F.softmax(wide(teacher.logits) / temperature, -1))
        t = teacher_buckets(teacher, temperature)  # the teacher's k probabilities, then its tail
        q = t[..., :-1].exp().sort(-1, descending=True).values
        p_top = p.topk(min(q.shape[-1], p.shape[-1]), -1).values
        p_rest, q_rest = (1 - p_top.sum(-1)).clamp_min(0), t[..., -1].exp()
        return sorted_l1(p_top, q) + (p_rest - q_rest).abs()  # the tails compared as one bucket
    s, t = buckets(student_logits, teacher, temperature)
    if divergence == "forward_kl":
        return forward_kl(s, t)
    if divergence == "reverse_kl":
        return reverse_kl(s, t)
    return generalized_jsd(s, t, beta)
