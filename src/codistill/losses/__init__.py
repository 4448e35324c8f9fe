"""Distillation losses: divergences as functions on tensors (`divergences`), where the targets are and how
the two sides pair (`targets`), heads at the target rows only (`heads`), the chunked torch path (`chunked`) and
liger-kernel's fused one (`fused`), the teacher's part of a batch (`teacher_batch`), approximate likelihood
matching across tokenizers (`alignment`, `alm`), and `DistillationLoss`, the one way in (`distillation`)."""

from codistill.losses.alignment import CHUNKS, BatchAligner
from codistill.losses.chunked import label_and_divergence, sequence_nll
from codistill.losses.distillation import KERNELS, DistillationLoss
from codistill.losses.divergences import (
    DIVERGENCES,
    EMPTY,
    TOKEN_WISE,
    TeacherDistribution,
    divergence_per_row,
    forward_kl,
    generalized_jsd,
    reverse_kl,
)
from codistill.losses.fused import Projection, liger_installed
from codistill.losses.heads import AtTargets, heads_apply, logits_at, outputs_at
from codistill.losses.hidden import DISTANCES, HiddenSettings, HiddenStateMatch, evenly_spaced, hidden_distance
from codistill.losses.targets import IGNORE_INDEX, aligned, target_mask
from codistill.losses.teacher_batch import (
    Alignment,
    Dense,
    Draws,
    Likelihoods,
    Projected,
    TeacherBatch,
    TeacherTokens,
    TopK,
)

__all__ = [
    "CHUNKS",
    "DISTANCES",
    "DIVERGENCES",
    "EMPTY",
    "IGNORE_INDEX",
    "KERNELS",
    "Likelihoods",
    "TOKEN_WISE",
    "Alignment",
    "AtTargets",
    "BatchAligner",
    "Dense",
    "DistillationLoss",
    "Draws",
    "HiddenSettings",
    "HiddenStateMatch",
    "Projected",
    "Projection",
    "TeacherBatch",
    "TeacherDistribution",
    "TeacherTokens",
    "TopK",
    "aligned",
    "divergence_per_row",
    "evenly_spaced",
    "forward_kl",
    "generalized_jsd",
    "heads_apply",
    "hidden_distance",
    "label_and_divergence",
    "liger_installed",
    "logits_at",
    "outputs_at",
    "reverse_kl",
    "sequence_nll",
    "target_mask",
]
