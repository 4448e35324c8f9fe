"""Hidden-state (feature) distillation: chosen student layers learn the teacher's hidden states at chosen
teacher layers, through a learned linear projection from the student's width to the teacher's (FitNets,
Romero et al. 2015; the layer map defaults to TinyBERT's uniform one, Jiao et al. 2020).

Layers are numbered as transformers' `hidden_states`: 0 is the embeddings' output, i the output of block i,
and the last (the model's layer count) the final hidden state the head reads. Rows are the target rows the
logit loss reads (codistill.losses.heads), the i-th target of an example on one side paired with the i-th on
the other (codistill.losses.targets.aligned): position by position, so only a student with the teacher's
tokenizer lines up.

The projections train with the student and are thrown away with the training: `HiddenStateMatch` is a
submodule of the LightningModule (optimised, checkpointed, resumed), never of the student model that
codistill.models.export saves.
"""

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from codistill.errors import ConfigError
from codistill.losses.divergences import wide
from codistill.losses.targets import aligned

DISTANCES = ("mse", "cosine")


def hidden_distance(student: torch.Tensor, teacher: torch.Tensor, distance: str = "mse") -> torch.Tensor:
    """The distance between the (projected) student's and the teacher's hidden states [..., H], per row:
    `mse`, the mean squared difference over the H features (FitNets); `cosine`, 1 - their cosine similarity
    (blind to scale: for teachers whose residual stream grows large)."""
    s = wide(student)
    t = teacher.to(s.dtype)
    if distance == "mse":
        return (s - t).pow(2).mean(-1)
    return 1 - F.cosine_similarity(s, t, dim=-1)


def evenly_spaced(student_layers: int, teacher_layers: int, n: int) -> list[tuple[int, int]]:
    """`n` (student layer, teacher layer) pairs, the k-th k * S // n with k * T // n (k = 1..n): the last
    layers pair, and with n = S <= T each student layer has its teacher layer (TinyBERT's uniform map)."""
    return [(k * student_layers // n, k * teacher_layers // n) for k in range(1, n + 1)]


@dataclass(frozen=True)
class HiddenSettings:
    """The `loss.hidden` node. `layers`: null (as many evenly spaced pairs as the shallower model has layers),
    a number of evenly spaced pairs, or the pairs themselves [[student layer, teacher layer], ...];
    `distance`: mse or cosine; `weight`: the hidden-state loss's weight in the total loss."""

    layers: int | list | None = None
    distance: str = "mse"
    weight: float = 1.0

    @classmethod
    def of(cls, node) -> "HiddenSettings | None":
        """The settings of a `loss.hidden` node (a mapping; None: no hidden-state matching)."""
        if node is None:
            return None
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(node) - known):
            raise ConfigError(f"loss.hidden.{unknown[0]} is not a setting: use {', '.join(sorted(known))}")
        return cls(**node)

    def __post_init__(self):
        if self.distance not in DISTANCES:
            raise ConfigError(f"loss.hidden.distance={self.distance!r} is not one of: {', '.join(DISTANCES)}")
        if not self.weight > 0:
            raise ConfigError(f"loss.hidden.weight={self.weight} must be > 0 (loss.hidden=null turns it off)")
        if isinstance(self.layers, int) and self.layers < 1:
            raise ConfigError(f"loss.hidden.layers={self.layers} pairs no layers: set it to 1 or more, or to null")
        if self.layers is not None and not isinstance(self.layers, int):
            pairs = [list(p) if not isinstance(p, int | str) else p for p in self.layers]
            if not pairs or not all(_is_pair(p) for p in pairs):
                raise ConfigError(
                    f"loss.hidden.layers={pairs} is not a list of [student layer, teacher layer] pairs: "
                    "write it as [[1, 2], [2, 4]], or set a number of evenly spaced pairs, or null"
                )
            object.__setattr__(self, "layers", [(int(s), int(t)) for s, t in pairs])

    def pairs(self, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
        """The (student layer, teacher layer) pairs for models of these depths, checked against them."""
        shallower = min(student_layers, teacher_layers)
        if self.layers is None or isinstance(self.layers, int):
            n = shallower if self.layers is None else self.layers
            if n > shallower:
                raise ConfigError(
                    f"loss.hidden.layers={n} evenly spaced pairs, but the student has {student_layers} layers and "
                    f"the teacher {teacher_layers}: set loss.hidden.layers to at most {shallower}, or list the pairs"
                )
            return evenly_spaced(student_layers, teacher_layers, n)
        for s, t in self.layers:
            if not (0 <= s <= student_layers and 0 <= t <= teacher_layers):
                raise ConfigError(
                    f"loss.hidden.layers pairs student layer {s} with teacher layer {t}, but the student's layers are "
                    f"0..{student_layers} and the teacher's 0..{teacher_layers} (0: the embeddings): set "
                    "loss.hidden.layers to pairs within them, or to null (evenly spaced)"
                )
        return list(self.layers)


def _is_pair(p) -> bool:
    return isinstance(p, list) and len(p) == 2 and all(isinstance(i, int) and not isinstance(i, bool) for i in p)


class HiddenStateMatch(nn.Module):
    """One `nn.Linear(student width, teacher width)` per layer pair, built from the two models' configs; its
    forward gives the distance between the projected student states and the teacher's, averaged over the
    paired target rows of each layer pair, then over the pairs (so `weight` does not grow with them)."""

    def __init__(self, settings: HiddenSettings, student_config, teacher_config):
        super().__init__()
        self.pairs = settings.pairs(student_config.num_hidden_layers, teacher_config.num_hidden_layers)
        self.distance = settings.distance
        width, teacher_width = student_config.hidden_size, teacher_config.hidden_size
        self.projections = nn.ModuleList(nn.Linear(width, teacher_width) for _ in self.pairs)

    @property
    def student_layers(self) -> tuple[int, ...]:
        return tuple(s for s, _ in self.pairs)

    @property
    def teacher_layers(self) -> tuple[int, ...]:
        return tuple(t for _, t in self.pairs)

    def forward(
        self,
        student: list[torch.Tensor],
        student_mask: torch.Tensor,
        teacher: list[torch.Tensor],
        teacher_mask: torch.Tensor,
    ) -> torch.Tensor:
        """`student`: the states [N, H] at the targets its `student_mask` [B, L] marks, one per `student_layers`,
        in flat order; `teacher`: the teacher's [M, H'] at its own targets, one per `teacher_layers`."""
        paired, teacher_rows = aligned(student_mask, teacher_mask.to(student_mask.device))
        among = teacher_mask.reshape(-1).long().cumsum(0) - 1  # a flat position -> its place among the targets
        index, n = among.to(teacher_rows.device)[teacher_rows], max(int(paired.sum()), 1)
        total = 0.0
        for projection, s, t in zip(self.projections, student, teacher, strict=True):
            s = projection(s[paired].to(projection.weight.dtype))
            total = total + hidden_distance(s, t[index].detach(), self.distance).sum() / n
        return total / len(self.pairs)
