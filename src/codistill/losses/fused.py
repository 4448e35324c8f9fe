"""The fused path: liger-kernel's linear cross-entropy and generalized JSD (Triton, GPU only) on hidden
states and output embeddings instead of logits, so no [N, V] tensor outlives a chunk inside the kernels.
Checked against the chunked torch path in tests/test_liger.py."""

import importlib.util
from dataclasses import dataclass

import torch

from codistill.errors import ConfigError


@dataclass
class Projection:
    """A causal LM's output before its last layer: hidden states [..., H] and the output embeddings [V, H]
    whose product are its logits."""

    hidden: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def of(cls, model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> "Projection":
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
    """`codistill.losses.chunked.label_and_divergence` for a dense teacher: the logits of both models are made a
    chunk at a time inside the kernels and their gradients folded into the hidden states and the student's
    output embeddings. `teacher_rows` are the teacher's flat positions of the targets `paired` marks. Beta 0
    and 1 are forward and reverse KL, as in `codistill.losses.divergences`. A student head wider than the
    teacher's tokens is compared over those tokens (the kernel needs one width; the torch path gives the
    padding rows no teacher mass instead)."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss, LigerFusedLinearJSD

    hidden = student.hidden.reshape(-1, student.hidden.shape[-1])[rows]
    ce = LigerFusedLinearCrossEntropyLoss()(student.weight, hidden, targets)
    beta = {"forward_kl": 0.0, "reverse_kl": 1.0}.get(divergence, beta)
    t_hidden = teacher.hidden.reshape(-1, teacher.hidden.shape[-1])[teacher_rows]
    jsd = LigerFusedLinearJSD(jsd_beta=beta, temperature=temperature)
    tokens = student.weight[: teacher.weight.shape[0]]  # a student head padded past the teacher's tokens: its rows
    return ce, jsd(hidden[paired], tokens, t_hidden.to(hidden.dtype), teacher.weight.to(hidden.dtype), None)
