"""Distillation losses as functions on tensors (after TRL's `generalized_jsd_loss`), and the one loss object
the LightningModules call.

A student predicts N target tokens (the label's tokens, flattened over the batch); the teacher's
distribution at the same N positions is a `TeacherDistribution`: dense logits, or sparse top-k ids and
log-probabilities with the probability mass outside them (the tail). A sparse teacher is compared with the
student over k + 1 buckets (the k ids, and everything else as one), which is exact when k covers the
vocabulary and is how DistillKit-style offline logits keep the tail's mass.

Divergences, per position, on log-probabilities `s` (student) and `t` (teacher):
- `forward_kl`: KL(t || s), Hinton et al. 2015 (mode covering);
- `reverse_kl`: KL(s || t), MiniLLM (Gu et al. 2024; mode seeking);
- `jsd`: generalized JSD with `beta`, GKD (Agarwal et al. 2024): beta KL(t || m) + (1 - beta) KL(s || m),
  m = beta t + (1 - beta) s; beta 0 is forward KL, 1 reverse KL (TRL's convention);
- `uld`: Universal Logit Distillation (Boizard et al. 2024): L1 between the sorted probability vectors,
  so teacher and student may have different vocabularies (the shorter padded with zeros).
"""

import importlib.util
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from codistill.errors import ConfigError

IGNORE_INDEX = -100
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "uld")
TOKEN_WISE = ("forward_kl", "reverse_kl", "jsd")  # compare token i of one vocabulary with token i of the other
EMPTY = -1e4  # the log-probability of an empty tail bucket: exp() is 0, and no inf reaches a gradient
TAIL_NOISE = 1e-6  # a tail below this is the rounding of 1 - sum(top k), not mass: the bucket is empty
KERNELS = ("auto", "torch", "liger")


@dataclass
class TeacherDistribution:
    """The teacher's next-token distribution at N positions (leading dims of any shape): dense `logits`
    [..., V], or sparse `ids` [..., k], `logprobs` [..., k] and `tail` [...] (1 - the mass of the k)."""

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

    def rows(self, index) -> "TeacherDistribution":
        """The positions `index` selects (over the leading dims, flattened)."""
        parts = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                flat = value.reshape(-1) if f.name == "tail" else value.reshape(-1, value.shape[-1])
                parts[f.name] = flat[index]
        return TeacherDistribution(**parts)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision model outputs; float64 stays (gradcheck)."""
    return x if x.dtype == torch.float64 else x.float()


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
            F.log_softmax(_wide(student_logits) / temperature, -1),
            F.log_softmax(_wide(teacher.logits) / temperature, -1),
        )
    s = F.log_softmax(_wide(student_logits), -1)
    ids = teacher.ids.long()
    s_top = s.gather(-1, ids)
    s_tail = torch.logsumexp(s.scatter(-1, ids, float("-inf")), -1, keepdim=True).clamp_min(EMPTY)
    s = torch.cat([s_top, s_tail], -1)
    if temperature != 1:
        s = F.log_softmax(s / temperature, -1)
    return s, teacher_buckets(teacher, temperature)


def teacher_buckets(teacher: TeacherDistribution, temperature: float = 1.0) -> torch.Tensor:
    """A sparse teacher's log-probabilities over its k ids and the tail bucket, tempered as `buckets` says."""
    tail = _wide(teacher.tail)
    t_tail = torch.where(tail > TAIL_NOISE, tail.clamp_min(TAIL_NOISE).log(), EMPTY).unsqueeze(-1)
    t = torch.cat([_wide(teacher.logprobs), t_tail], -1)
    return F.log_softmax(t / temperature, -1) if temperature != 1 else t


def divergence_per_row(
    student_logits: torch.Tensor, teacher: TeacherDistribution, divergence: str, temperature=1.0, beta=0.5
) -> torch.Tensor:
    """The divergence between student and teacher at each row (no temperature-squared scale)."""
    if divergence == "uld":
        p = F.softmax(_wide(student_logits) / temperature, -1)
        if teacher.dense:
            return sorted_l1(p, F.softmax(_wide(teacher.logits) / temperature, -1))
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


def _chunk_sums(logits, rows, targets, teacher, paired, divergence, temperature, beta):
    """(cross-entropy sum, divergence sum) over one chunk of rows, the divergence over its `paired` rows; run
    under activation checkpointing, so only one chunk's log-softmax is alive at a time."""
    chunk = logits[rows]
    ce = F.cross_entropy(_wide(chunk), targets, reduction="sum")
    if teacher is None:
        return ce, torch.zeros_like(ce)
    return ce, divergence_per_row(chunk[paired], teacher, divergence, temperature, beta).sum()


def label_and_divergence(
    logits: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    teacher: TeacherDistribution | None = None,
    paired: torch.Tensor | None = None,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    chunk_size: int = 1024,
):
    """(mean cross-entropy of `targets`, mean divergence from `teacher`) at the N positions `rows` of
    `logits` [..., V] (flat row indices). `teacher` holds, in order, the positions of the rows that
    `paired` [N] marks (all when None; see `aligned`). Positions are taken `chunk_size` at a time under
    checkpointing: a [B, L, V] float32 tensor exists at most once, as the model's output, whatever the
    vocabulary and length."""
    flat = logits.reshape(-1, logits.shape[-1])
    n = len(rows)
    if paired is None:
        paired = torch.ones(n, dtype=torch.bool, device=rows.device)
    teacher_index = paired.long().cumsum(0) - 1  # row i's position in `teacher`
    ce = kd = flat.sum() * 0.0  # keeps the graph with no targets: every rank must call backward under DDP
    for start in range(0, n, chunk_size):
        part = slice(start, start + chunk_size)
        mine = None if teacher is None else teacher.rows(teacher_index[part][paired[part]])
        args = (flat, rows[part], targets[part], mine, paired[part], divergence, temperature, beta)
        if torch.is_grad_enabled() and flat.requires_grad:
            c, k = checkpoint(_chunk_sums, *args, use_reentrant=False)
        else:
            c, k = _chunk_sums(*args)
        ce, kd = ce + c, kd + k
    return ce / max(n, 1), kd / max(int(paired.sum()), 1)


@dataclass
class Projection:
    """A causal LM's output before its last layer: hidden states [..., H] and the output embeddings [V, H]
    whose product are its logits. Fused kernels take this instead of logits, and never hold [N, V] whole."""

    hidden: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def of(cls, model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> "Projection":
        head = model.get_output_embeddings()
        if getattr(head, "bias", None) is not None:
            raise ConfigError(
                f"{type(model).__name__}'s output layer has a bias, which the fused path does not "
                "add: set loss.kernel=torch"
            )
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return cls(hidden, head.weight)


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def fused_label_and_divergence(
    student: Projection,
    rows: torch.Tensor,
    targets: torch.Tensor,
    teacher: Projection,
    teacher_rows: torch.Tensor,
    paired: torch.Tensor,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
):
    """`label_and_divergence` for a dense teacher, by liger-kernel's fused linear cross-entropy and generalized
    JSD (Triton, GPU only): the logits of both models are made a chunk at a time inside the kernels and
    their gradients folded into the hidden states and the student's output embeddings, so no [N, V] tensor
    outlives a chunk. `teacher_rows` are the teacher's flat positions of the targets `paired` marks. Beta 0
    and 1 are forward and reverse KL, as here (checked against the torch path in tests/test_liger.py)."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss, LigerFusedLinearJSD

    hidden = student.hidden.reshape(-1, student.hidden.shape[-1])[rows]
    ce = LigerFusedLinearCrossEntropyLoss()(student.weight, hidden, targets)
    beta = {"forward_kl": 0.0, "reverse_kl": 1.0}.get(divergence, beta)
    t_hidden = teacher.hidden.reshape(-1, teacher.hidden.shape[-1])[teacher_rows]
    jsd = LigerFusedLinearJSD(jsd_beta=beta, temperature=temperature)
    return ce, jsd(hidden[paired], student.weight, t_hidden.to(hidden.dtype), teacher.weight.to(hidden.dtype), None)


class DistillationLoss:
    """The loss of every student, from its label logits, the teacher's distribution, and the rationale
    task's loss (seq2seq students):

        loss = alpha * (ce_weight * CE(label) + (1 - ce_weight) * T^2 * D(teacher, student)) + (1 - alpha) * rationale

    With no `divergence` it is label cross-entropy (`alpha` 1: `label_only`) or Distilling Step-by-Step
    (Hsieh et al. 2023; `alpha` < 1: `step_by_step`); with one, the student also matches the teacher's
    distribution (see the module docstring), and `step_by_step` + KD is one config. `lmbda` is GKD's
    on-policy fraction: that share of training batches has targets the student samples itself, scored by
    the online teacher. `kernel`: `torch` (chunked, any device), `liger` (liger-kernel's fused linear
    kernels, see `fused_label_and_divergence`), or `auto` (liger where it applies and is installed)."""

    def __init__(
        self,
        divergence: str | None = None,
        ce_weight: float = 1.0,
        alpha: float = 1.0,
        temperature: float = 1.0,
        beta: float = 0.5,
        lmbda: float = 0.0,
        chunk_size: int = 1024,
        kernel: str = "auto",
    ):
        if kernel not in KERNELS:
            raise ConfigError(f"loss.kernel={kernel!r} is not one of: {', '.join(KERNELS)}")
        if divergence is not None and divergence not in DIVERGENCES:
            raise ConfigError(f"loss.divergence={divergence!r} is not one of: {', '.join(DIVERGENCES)} (or null)")
        for name, value in (("alpha", alpha), ("ce_weight", ce_weight), ("beta", beta), ("lmbda", lmbda)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"loss.{name}={value} is outside [0, 1]: set loss.{name} between 0 and 1")
        if temperature <= 0:
            raise ConfigError(f"loss.temperature={temperature} must be > 0")
        if divergence is None and (ce_weight != 1 or lmbda != 0):
            raise ConfigError(
                "loss.ce_weight < 1 or loss.lmbda > 0 need a teacher distribution: set loss.divergence "
                f"(one of {', '.join(DIVERGENCES)}), e.g. loss=forward_kl"
            )
        self.divergence, self.ce_weight, self.alpha = divergence, float(ce_weight), float(alpha)
        self.temperature, self.beta, self.lmbda, self.chunk_size = float(temperature), float(beta), lmbda, chunk_size
        self.kernel = kernel

    @property
    def uses_rationale(self) -> bool:
        return self.alpha < 1

    @property
    def needs_teacher(self) -> bool:
        return self.divergence is not None

    def check_vocabularies(self, student: dict[str, int], teacher: dict[str, int]) -> None:
        """Token-wise divergences need one vocabulary (token -> id maps); ULD does not."""
        if self.divergence in TOKEN_WISE and student != teacher:
            raise ConfigError(
                f"loss.divergence={self.divergence} compares the distributions token by token, but the teacher's "
                f"vocabulary ({len(teacher)} tokens) is not the student's ({len(student)}): use loss=uld for "
                "students with their own tokenizer, or a student with the teacher's tokenizer"
            )

    def __call__(
        self,
        logits: torch.Tensor,
        rows: torch.Tensor,
        targets: torch.Tensor,
        teacher: TeacherDistribution | None = None,
        paired: torch.Tensor | None = None,
        rationale_loss: torch.Tensor | None = None,
        on_policy: bool = False,
    ) -> dict[str, torch.Tensor]:
        """{"label_loss", "kd_loss" (with a divergence), "rationale_loss" (when used), "loss"}; the arguments
        are `label_and_divergence`'s. `on_policy`: the targets are the student's own samples, which are no
        labels: only the divergence trains (GKD), whatever `ce_weight` says."""
        if self.needs_teacher and teacher is None:
            raise ConfigError(f"loss.divergence={self.divergence} needs the teacher's distribution: set teacher_logits")
        ce, kd = label_and_divergence(
            logits,
            rows,
            targets,
            teacher if self.needs_teacher else None,
            paired,
            self.divergence or "forward_kl",
            self.temperature,
            self.beta,
            self.chunk_size,
        )
        return self.mix(ce, kd, rationale_loss, on_policy)

    def fused(self, device: torch.device, teacher, whole_head: bool) -> bool:
        """Whether a step takes liger-kernel's fused path: a token-wise divergence from an online teacher
        (dense, its hidden states at hand), on a GPU with liger-kernel installed, for a student whose logits
        are its output embeddings times its last hidden states, all on this rank (`whole_head`: a causal
        student, not under ZeRO-3)."""
        applies = self.divergence in TOKEN_WISE and getattr(teacher, "online", False) and whole_head
        available = device.type == "cuda" and liger_installed()
        if self.kernel == "liger" and not (applies and available):
            raise ConfigError(
                "loss.kernel=liger fuses a token-wise divergence from teacher_logits=online into a causal student on "
                "a CUDA GPU with liger-kernel installed (pip install 'codistill[liger]'), not under ZeRO-3: set "
                "loss.kernel=auto"
            )
        return self.kernel != "torch" and applies and available

    def mix(self, ce, kd, rationale_loss=None, on_policy=False) -> dict[str, torch.Tensor]:
        """The losses from the label's cross-entropy `ce`, the divergence `kd` and the rationale's loss."""
        out = {"label_loss": ce}
        label = ce
        if self.needs_teacher:
            scale = self.temperature**2 if self.divergence in TOKEN_WISE else 1.0
            out["kd_loss"] = kd
            label = scale * kd if on_policy else self.ce_weight * ce + (1 - self.ce_weight) * scale * kd
        out["loss"] = self.alpha * label
        if self.uses_rationale:
            out["rationale_loss"] = rationale_loss
            out["loss"] = out["loss"] + (1 - self.alpha) * rationale_loss
        return out


def batch_losses(
    loss: "DistillationLoss",
    logits: "torch.Tensor | Projection",
    labels: torch.Tensor,
    shift: bool,
    teacher: "tuple[TeacherDistribution | Projection, torch.Tensor] | None" = None,
    rationale_loss: torch.Tensor | None = None,
    on_policy: bool = False,
) -> dict[str, torch.Tensor]:
    """`loss` on a batch as the LightningModules hold it: the student's `logits` [B, L, V] and `labels`
    [B, L] (-100: no target), and the teacher's (distribution, mask) over its own positions, paired with the
    student's targets in order (`aligned`); `on_policy` as `DistillationLoss` says. Both sides as
    `Projection`s take the fused path (`DistillationLoss.fused` says when)."""
    mask, shifted = target_mask(labels, shift)
    rows, targets = mask.reshape(-1).nonzero().squeeze(-1), shifted[mask]
    distribution = paired = None
    if teacher is not None and loss.needs_teacher:
        paired, teacher_rows = aligned(mask, teacher[1].to(mask.device))
        if isinstance(logits, Projection):
            args = (loss.divergence, loss.temperature, loss.beta)
            ce, kd = fused_label_and_divergence(logits, rows, targets, teacher[0], teacher_rows, paired, *args)
            return loss.mix(ce, kd, rationale_loss, on_policy)
        distribution = teacher[0].rows(teacher_rows)
    return loss(logits, rows, targets, distribution, paired, rationale_loss, on_policy)


@torch.no_grad()
def sequence_nll(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> torch.Tensor:
    """Each example's summed negative log-likelihood (nats) of its labels [B]; one example's log-softmax at a
    time, so validation on a large vocabulary holds one [L, V] copy at most."""
    mask, shifted = target_mask(labels, shift)
    out = []
    for b in range(len(labels)):
        logp = F.log_softmax(_wide(logits[b]), -1)
        picked = logp.gather(-1, shifted[b].clamp_min(0).unsqueeze(-1)).squeeze(-1)
        out.append(-(picked * mask[b]).sum())
    return torch.stack(out)


def target_mask(labels: torch.Tensor, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(which logits [B, L] predict a label, the labels [B, L] they predict). `shift`: causal models predict
    token j + 1 at position j; encoder-decoders predict label j at j."""
    if shift:
        labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    return labels != IGNORE_INDEX, labels


def aligned(student_mask: torch.Tensor, teacher_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs the i-th target of each example on both sides, up to the shorter of the two (one tokenizer gives
    equal counts unless a side was truncated; ULD's two tokenizers cut the same text into different numbers
    of tokens). Returns (`paired`: which of the student's targets, in flat order, have a teacher position;
    the teacher's flat positions, in the same order)."""
    keep = torch.minimum(student_mask.sum(1), teacher_mask.sum(1)).unsqueeze(1)
    s_keep = student_mask & (student_mask.long().cumsum(1) <= keep)
    t_keep = teacher_mask & (teacher_mask.long().cumsum(1) <= keep)
    return s_keep.reshape(-1)[student_mask.reshape(-1)], t_keep.reshape(-1).nonzero().squeeze(-1)
