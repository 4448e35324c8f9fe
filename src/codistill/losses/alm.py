"""Approximate likelihood matching (ALM; Minixhofer, Vulić and Ponti, "Universal Cross-Tokenizer Distillation
via Approximate Likelihood Matching", NeurIPS 2025): distillation between models with different tokenizers.

Both tokenize the same target text; `codistill.losses.alignment` cuts the two tokenizations into chunks that
spell the same characters, and a chunk's log-likelihood under a model is the sum of its tokens'
log-probabilities. The student matches the teacher's chunk likelihoods through a binarised divergence: each
likelihood p is read as a Bernoulli probability p^(1/T) and the two Bernoullis are compared by KL, so the loss
is 0 exactly where the student reproduces the teacher's chunk likelihoods. The temperature T keeps long or
unlikely chunks away from p = 0, where the gradient vanishes (the paper's default is 100); the divergence is
scaled by T, which keeps its gradient's size as T grows (its T -> infinity limit is finite), as KD's T^2 does.
Every chunk with tokens on both sides counts once, whatever its length (the paper's chunk-count normalisation).
"""

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from codistill.losses.divergences import wide

EPSILON = 1e-6  # keeps a scaled log-likelihood below 0, so log(1 - p) stays finite at p = 1


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Mächler 2012)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def binary_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T * KL(Bernoulli(q_t) || Bernoulli(q_s)) elementwise, q = p^(1/T), from log-likelihoods <= 0."""
    a = (teacher / temperature).clamp_max(0) - EPSILON
    c = (student / temperature).clamp_max(0) - EPSILON
    q = a.exp()
    return temperature * (q * (a - c) + (1 - q) * (log1mexp(a) - log1mexp(c)))


def chunk_sums(logprobs: torch.Tensor, chunks: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-likelihood, token count) of each of `n` chunks, from per-token `logprobs` [N] and their chunk [N]
    (-1: none)."""
    keep = chunks >= 0
    sums = torch.zeros(n, dtype=logprobs.dtype, device=logprobs.device).index_add(0, chunks[keep], logprobs[keep])
    return sums, torch.bincount(chunks[keep], minlength=n)


def alm_divergence(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_chunks: torch.Tensor,
    teacher_chunks: torch.Tensor,
    n_chunks: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The mean binarised divergence over the chunks with tokens on both sides, from each side's per-token
    log-probabilities of its targets ([N_s], [N_t]) and the chunk of each target (numbered across the batch)."""
    s, s_count = chunk_sums(wide(student), student_chunks, n_chunks)
    t, t_count = chunk_sums(wide(teacher), teacher_chunks, n_chunks)
    valid = (s_count > 0) & (t_count > 0)
    if not valid.any():
        return student.sum() * 0.0  # keeps the graph: every rank must call backward under DDP
    return binary_kl(s[valid], t[valid], temperature).mean()


def _chunk_logprobs(logits: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(wide(logits[rows]), targets, reduction="none")


def token_logprobs(logits: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024):
    """log p(target) at the N positions `rows` of `logits` [..., V] (flat row indices), `chunk_size` rows at a
    time, each chunk's log-softmax recomputed in the backward pass instead of kept (as codistill.losses.chunked)."""
    flat = logits.reshape(-1, logits.shape[-1])
    parts = []
    for start in range(0, len(rows), chunk_size):
        args = (flat, rows[start : start + chunk_size], targets[start : start + chunk_size])
        grad = torch.is_grad_enabled() and flat.requires_grad
        parts.append(checkpoint(_chunk_logprobs, *args, use_reentrant=False) if grad else _chunk_logprobs(*args))
    return torch.cat(parts) if parts else flat[:0, 0]  # no targets: empty, still in the graph
