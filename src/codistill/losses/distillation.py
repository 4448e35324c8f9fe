"""`DistillationLoss`: the loss of every student, and the one way into the losses."""

import torch

from codistill.errors import ConfigError
from codistill.losses.alignment import CHUNKS
from codistill.losses.alm import alm_divergence, token_logprobs
from codistill.losses.chunked import label_and_divergence
from codistill.losses.divergences import DIVERGENCES, TOKEN_WISE
from codistill.losses.fused import Projection, fused_label_and_divergence, liger_installed
from codistill.losses.heads import AtTargets
from codistill.losses.hidden import HiddenSettings
from codistill.losses.targets import aligned, target_mask
from codistill.losses.teacher_batch import Likelihoods, TeacherBatch

KERNELS = ("auto", "torch", "liger")
LOSSES = (*DIVERGENCES, "alm")  # `alm` compares chunk likelihoods, not next-token distributions


class DistillationLoss:
    """From the student's label output, the teacher's part of the batch, and the rationale task's loss
    (seq2seq students):

        loss = alpha * (ce_weight * CE(label) + (1 - ce_weight) * T^2 * D(teacher, student)) + (1 - alpha) * rationale

    With no `divergence` it is label cross-entropy (`alpha` 1: `label_only`) or Distilling Step-by-Step
    (Hsieh et al. 2023; `alpha` < 1: `step_by_step`); with one, the student also matches the teacher's
    distribution (see codistill.losses.divergences), and `step_by_step` + KD is one config; with `alm`, its
    likelihoods of chunks of the label that both tokenizers share (codistill.losses.alm, whose divergence is
    scaled by T itself; `chunks` says where chunks may end). `lmbda` is GKD's
    on-policy fraction: that share of training batches has targets the student samples itself, scored by
    the online teacher. `kernel`: `torch` (chunked, any device), `liger` (liger-kernel's fused linear
    kernels, see codistill.losses.fused), or `auto` (liger where it applies and is installed): `fused` says
    which, once per run, and the student's output is then logits or a `Projection`. `hidden` (the
    `loss.hidden` node, codistill.losses.hidden) adds hidden.weight * the hidden-state loss (`with_hidden`),
    with or without a divergence; with none, `kd_loss` is forward KL, logged, not trained on."""

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
        chunks: str = "space",
        hidden: dict | None = None,
    ):
        if kernel not in KERNELS:
            raise ConfigError(f"loss.kernel={kernel!r} is not one of: {', '.join(KERNELS)}")
        if divergence is not None and divergence not in LOSSES:
            raise ConfigError(f"loss.divergence={divergence!r} is not one of: {', '.join(LOSSES)} (or null)")
        if chunks not in CHUNKS:
            raise ConfigError(f"loss.chunks={chunks!r} is not one of: {', '.join(CHUNKS)}")
        for name, value in (("alpha", alpha), ("ce_weight", ce_weight), ("beta", beta), ("lmbda", lmbda)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"loss.{name}={value} is outside [0, 1]: set loss.{name} between 0 and 1")
        if temperature <= 0:
            raise ConfigError(f"loss.temperature={temperature} must be > 0")
        if divergence is None and (ce_weight != 1 or lmbda != 0):
            raise ConfigError(
                "loss.ce_weight < 1 or loss.lmbda > 0 need a teacher distribution: set loss.divergence "
                f"(one of {', '.join(LOSSES)}), e.g. loss=forward_kl"
            )
        self.divergence, self.ce_weight, self.alpha = divergence, float(ce_weight), float(alpha)
        self.temperature, self.beta, self.lmbda, self.chunk_size = float(temperature), float(beta), lmbda, chunk_size
        self.kernel, self.chunks = kernel, chunks
        self.hidden = HiddenSettings.of(hidden)  # None: no hidden-state matching (codistill.losses.hidden)
        if self.hidden is not None and divergence == "alm":
            raise ConfigError(
                "loss.hidden pairs the two models position by position, in one tokenizer; loss=alm is for two: "
                "set loss.hidden=null, or use loss=forward_kl with a student that has the teacher's tokenizer"
            )

    @property
    def uses_rationale(self) -> bool:
        return self.alpha < 1

    @property
    def needs_teacher(self) -> bool:
        return self.divergence is not None or self.hidden is not None

    @property
    def matches_likelihoods(self) -> bool:
        """ALM: the teacher's part is its targets' `Likelihoods` and their chunk `Alignment` with the student's."""
        return self.divergence == "alm"

    def check_vocabularies(self, student: dict[str, int], teacher: dict[str, int]) -> None:
        """Token-wise divergences need one vocabulary (token -> id maps); ULD and ALM do not."""
        if self.divergence in TOKEN_WISE and student != teacher:
            raise ConfigError(
                f"loss.divergence={self.divergence} compares the distributions token by token, but the teacher's "
                f"vocabulary ({len(teacher)} tokens) is not the student's ({len(student)}): use loss=alm (or loss=uld) "
                "for students with their own tokenizer, or a student with the teacher's tokenizer"
            )
        if self.hidden is not None and student != teacher:
            raise ConfigError(
                "loss.hidden pairs the student's hidden states with the teacher's token by token, but the teacher's "
                f"vocabulary ({len(teacher)} tokens) is not the student's ({len(student)}): use a student with the "
                "teacher's tokenizer, or set loss.hidden=null"
            )

    def fused(self, device: torch.device, source, whole_head: bool) -> bool:
        """Whether steps take liger-kernel's fused path: a token-wise divergence from an online teacher source
        (dense, its hidden states at hand), on a GPU with liger-kernel installed, for a student whose logits
        are its output embeddings times its last hidden states, all on this rank (`whole_head`: a causal
        student, not under ZeRO-3)."""
        applies = self.divergence in TOKEN_WISE and getattr(source, "online", False) and whole_head
        applies = applies and self.hidden is None  # hidden-state matching reads the states the torch path gathers
        available = device.type == "cuda" and liger_installed()
        if self.kernel == "liger" and not (applies and available):
            raise ConfigError(
                "loss.kernel=liger fuses a token-wise divergence from teacher_logits=online into a causal student on "
                "a CUDA GPU with liger-kernel installed (pip install 'codistill[liger]'), not under ZeRO-3 nor with "
                "loss.hidden: set loss.kernel=auto"
            )
        return self.kernel != "torch" and applies and available

    def __call__(
        self,
        student: torch.Tensor | AtTargets | Projection,
        labels: torch.Tensor,
        teacher: TeacherBatch | None = None,
        *,
        shift: bool,
        rationale_loss: torch.Tensor | None = None,
        on_policy: bool = False,
    ) -> dict[str, torch.Tensor]:
        """{"label_loss", "kd_loss" (with a divergence), "rationale_loss" (when used), "loss"} from the
        student's logits [B, L, V] (or only at its targets, `AtTargets`; or its `Projection`, with a `Projected`
        teacher: the fused path) and its
        `labels` [B, L] (-100: no target; `shift`: a causal student's, predicted one position early). The
        teacher's targets pair with the student's in order (`aligned`). `on_policy`: the targets are the
        student's own samples, which are no labels: only the divergence trains (GKD), whatever `ce_weight` says."""
        if self.needs_teacher and teacher is None:
            raise ConfigError(f"loss.divergence={self.divergence} needs the teacher's distribution: set teacher_logits")
        mask, shifted = target_mask(labels, shift)
        rows, targets = mask.reshape(-1).nonzero().squeeze(-1), shifted[mask]
        if isinstance(student, AtTargets):  # its rows are the targets, in order
            student, rows = student.logits, torch.arange(len(rows), device=rows.device)
        settings = (self.divergence or "forward_kl", self.temperature, self.beta)
        if isinstance(teacher, Likelihoods):
            logprobs = token_logprobs(student, rows, targets, self.chunk_size)
            alignment = teacher.alignment
            kd = alm_divergence(
                logprobs, teacher.logprobs, alignment.student, alignment.teacher, alignment.n_chunks, self.temperature
            )
            out = self.mix(-logprobs.mean() if len(logprobs) else logprobs.sum(), kd, rationale_loss, on_policy)
            return {**out, "chunk_coverage": torch.tensor(alignment.coverage)}
        if not self.needs_teacher:
            ce, kd = label_and_divergence(student, rows, targets, chunk_size=self.chunk_size)
        else:
            paired, teacher_rows = aligned(mask, teacher.mask.to(mask.device))
            if isinstance(student, Projection):
                ce, kd = fused_label_and_divergence(student, rows, targets, teacher, teacher_rows, paired, *settings)
            else:
                distribution = teacher.rows(teacher_rows)
                ce, kd = label_and_divergence(student, rows, targets, distribution, paired, *settings, self.chunk_size)
        return self.mix(ce, kd, rationale_loss, on_policy)

    def mix(self, ce, kd, rationale_loss=None, on_policy=False) -> dict[str, torch.Tensor]:
        """The losses from the label's cross-entropy `ce`, the divergence `kd` and the rationale's loss."""
        out = {"label_loss": ce}
        label = ce
        if self.needs_teacher:
            scale = self.temperature**2 if self.divergence in TOKEN_WISE else 1.0  # ALM's T is inside it
            out["kd_loss"] = kd
            label = scale * kd if on_policy else self.ce_weight * ce + (1 - self.ce_weight) * scale * kd
        out["loss"] = self.alpha * label
        if self.uses_rationale:
            out["rationale_loss"] = rationale_loss
            out["loss"] = out["loss"] + (1 - self.alpha) * rationale_loss
        return out

    def with_hidden(self, losses: dict[str, torch.Tensor], hidden_loss: torch.Tensor) -> dict[str, torch.Tensor]:
        """`losses` and the hidden-state loss (codistill.losses.hidden.HiddenStateMatch, run by the training
        step, which holds its projections): loss + hidden.weight * hidden_loss."""
        return {**losses, "hidden_loss": hidden_loss, "loss": losses["loss"] + self.hidden.weight * hidden_loss}
