"""The teacher's part of a batch: one typed form per teacher source, built by the datamodule's collate
(`codistill.teacher_logits`) and handed whole to `DistillationLoss`.

Every form has `mask` [B, L]: which of the teacher's positions predict the label's targets, in order
(`codistill.losses.targets.aligned` pairs them with the student's). `rows(index)` gives the distribution at
the flat positions `index`.

- `TeacherTokens` (online): the teacher's own tokens of each row; the teacher's model turns them into
  `Dense` logits (at its target positions only, `at_targets`), or `Projected` hidden states for the fused
  kernels, in the training step;
- `TopK` (offline): the k most likely ids [B, L, k] and their log-probabilities, and the mass outside them;
- `Draws` (sampled): the distinct ids of n draws [B, L, d] and log(count / n); the draws are the whole
  distribution (no tail). A row shorter than d repeats its first id with no mass (log-probability `EMPTY`),
  which changes no bucket.
- `Likelihoods` (`loss=alm`): the log-probability of each of the teacher's own target tokens, and the
  `Alignment` of the two tokenizations into chunks (codistill.losses.alignment), which the datamodule's
  collate attaches (to `TeacherTokens` online, to the stored likelihoods offline).
"""

from dataclasses import dataclass

import torch

from codistill.losses.chunked import rows_of
from codistill.losses.divergences import TeacherDistribution
from codistill.losses.fused import Projection
from codistill.losses.targets import target_mask


@dataclass
class Alignment:
    """Which chunk each target is in, numbered across the batch (-1: none), for the student's targets and the
    teacher's, each side's in flat order (example by example); `coverage`: the share of the label characters
    in chunks."""

    student: torch.Tensor  # [N_s]
    teacher: torch.Tensor  # [N_t]
    n_chunks: int
    coverage: float


@dataclass
class TeacherTokens:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor  # the teacher's tokens of the targets, -100 elsewhere (unshifted, as a causal LM's)
    alignment: Alignment | None = None  # loss=alm: the teacher then gives its targets' `Likelihoods`

    @property
    def mask(self) -> torch.Tensor:
        return target_mask(self.labels, shift=True)[0]

    def targets(self) -> list[list[int]]:
        """Each example's target ids, in order."""
        return [row[row != -100].tolist() for row in self.labels]


@dataclass
class Dense:
    logits: torch.Tensor  # [B, L, V]; with `at_targets`, [N, V] at the N positions `mask` marks, in order
    mask: torch.Tensor
    at_targets: bool = False
    states: list[torch.Tensor] | None = None  # loss.hidden: [N, H] per teacher layer at the N targets, in order

    def rows(self, index: torch.Tensor) -> TeacherDistribution:
        if self.at_targets:  # flat position -> its place among the targets
            index = (self.mask.reshape(-1).long().cumsum(0) - 1)[index]
        return rows_of(TeacherDistribution(logits=self.logits), index)


@dataclass
class Projected(Projection):
    mask: torch.Tensor


@dataclass
class TopK:
    ids: torch.Tensor
    logprobs: torch.Tensor
    tail: torch.Tensor
    mask: torch.Tensor

    def rows(self, index: torch.Tensor) -> TeacherDistribution:
        return rows_of(TeacherDistribution(ids=self.ids, logprobs=self.logprobs, tail=self.tail), index)


@dataclass
class Draws:
    ids: torch.Tensor
    logprobs: torch.Tensor
    mask: torch.Tensor

    def rows(self, index: torch.Tensor) -> TeacherDistribution:
        tail = torch.zeros(self.ids.shape[:-1], dtype=self.logprobs.dtype, device=self.ids.device)
        return rows_of(TeacherDistribution(ids=self.ids, logprobs=self.logprobs, tail=tail), index)


@dataclass
class Likelihoods:
    logprobs: torch.Tensor  # [N_t]: log p(target) of each of the teacher's targets, in flat order
    alignment: Alignment | None = None
    ends: list[list[int]] | None = None  # stored: each example's target end offsets, which the alignment reads


TeacherBatch = Dense | Projected | TopK | Draws | Likelihoods
