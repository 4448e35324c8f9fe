"""The label's cross-entropy and the divergence from the teacher, a chunk of positions at a time.

A [B, L, V] float32 tensor exists at most once, as the model's output, whatever the vocabulary and length:
each chunk's log-softmax is recomputed in the backward pass (activation checkpointing) instead of kept.
"""

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from codistill.losses.divergences import TeacherDistribution, divergence_per_row, wide
from codistill.losses.targets import target_mask


def _chunk_sums(logits, rows, targets, teacher, paired, divergence, temperature, beta):
    """(cross-entropy sum, divergence sum) over one chunk of rows, the divergence over its `paired` rows."""
    chunk = logits[rows]
    ce = F.cross_entropy(wide(chunk), targets, reduction="sum")
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
    `paired` [N] marks (all when None; see `codistill.losses.targets.aligned`), `chunk_size` at a time."""
    flat = logits.reshape(-1, logits.shape[-1])
    n = len(rows)
    if paired is None:
        paired = torch.ones(n, dtype=torch.bool, device=rows.device)
    teacher_index = paired.long().cumsum(0) - 1  # row i's position in `teacher`
    ce = kd = flat.sum() * 0.0  # keeps the graph with no targets: every rank must call backward under DDP
    for start in range(0, n, chunk_size):
        part = slice(start, start + chunk_size)
        mine = None if teacher is None else rows_of(teacher, teacher_index[part][paired[part]])
        args = (flat, rows[part], targets[part], mine, paired[part], divergence, temperature, beta)
        if torch.is_grad_enabled() and flat.requires_grad:
            c, k = checkpoint(_chunk_sums, *args, use_reentrant=False)
        else:
            c, k = _chunk_sums(*args)
        ce, kd = ce + c, kd + k
    return ce / max(n, 1), kd / max(int(paired.sum()), 1)


def rows_of(teacher: TeacherDistribution, index: torch.Tensor) -> TeacherDistribution:
    """The rows `index` selects (over the leading dims, flattened)."""
    parts = {}
    for name in ("logits", "ids", "logprobs", "tail"):
        value = getattr(teacher, name)
        if value is not None:
            flat = value.reshape(-1) if name == "tail" else value.reshape(-1, value.shape[-1])
            parts[name] = flat[index]
    return TeacherDistribution(**parts)


@torch.no_grad()
def sequence_nll(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> torch.Tensor:
    """Each example's summed negative log-likelihood (nats) of its labels [B]; one example's log-softmax at a
    time, so validation on a large vocabulary holds one [L, V] copy at most."""
    mask, shifted = target_mask(labels, shift)
    out = []
    for b in range(len(labels)):
        logp = F.log_softmax(wide(logits[b]), -1)
        picked = logp.gather(-1, shifted[b].clamp_min(0).unsqueeze(-1)).squeeze(-1)
        out.append(-(picked * mask[b]).sum())
    return torch.stack(out)
