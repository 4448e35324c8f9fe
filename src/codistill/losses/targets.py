"""Which logits predict a target, and how the student's targets pair with the teacher's positions.

Labels are [B, L] with -100 (`IGNORE_INDEX`) where nothing is learnt. Causal models predict token j + 1 at
position j (`shift`); encoder-decoders predict label j at j. Invariant: the i-th target of an example on one
side is the i-th on the other, up to the shorter side (one tokenizer gives equal counts unless a side was
truncated; ULD's two tokenizers cut the same text into different numbers of tokens).
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def target_mask(labels: torch.Tensor, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(which logits [B, L] predict a label, the labels [B, L] they predict)."""
    if shift:
        labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    return labels != IGNORE_INDEX, labels


def aligned(student_mask: torch.Tensor, teacher_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs the i-th target of each example on both sides, up to the shorter of the two. Returns (`paired`:
    which of the student's targets, in flat order, have a teacher position; the teacher's flat positions, in
    the same order)."""
    keep = torch.minimum(student_mask.sum(1), teacher_mask.sum(1)).unsqueeze(1)
    s_keep = student_mask & (student_mask.long().cumsum(1) <= keep)
    t_keep = teacher_mask & (teacher_mask.long().cumsum(1) <= keep)
    return s_keep.reshape(-1)[student_mask.reshape(-1)], t_keep.reshape(-1).nonzero().squeeze(-1)
