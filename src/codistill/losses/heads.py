"""A causal LM's output head at the target rows only.

Its logits are the output embeddings times the last hidden states, and the loss reads them only where a
target is: a FIM example's middle and its end, about a tenth of its positions. Gathering the hidden states
first and applying the head to those rows gives the same logits there without the [B, L, V] product, which
with a 49k vocabulary costs about as much as a small student's trunk. Where a model post-processes its
logits (a soft cap, a scale), the head is not the whole story and the full logits are used instead."""

from dataclasses import dataclass, field

import torch

POST_PROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling")  # config keys that change logits


@dataclass
class AtTargets:
    """Logits [N, V] at the N positions a [B, L] mask marks, in flat (row-major) order, and (hidden-state
    matching, codistill.losses.hidden) the hidden states [N, H] of chosen layers there."""

    logits: torch.Tensor
    states: list[torch.Tensor] = field(default_factory=list)


def heads_apply(model) -> bool:
    """Whether `model`'s logits are its output layer applied to its last hidden states and nothing more."""
    config = model.config
    return not config.is_encoder_decoder and not any(getattr(config, key, None) for key in POST_PROCESSING)


def logits_at(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """`model`'s logits [N, V] at the positions `mask` [B, L] marks. The head is called as a module, so
    ZeRO-3 gathers its weight as for a full forward pass."""
    return outputs_at(model, input_ids, attention_mask, mask)[0]


def outputs_at(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, mask: torch.Tensor, layers=()
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`model`'s logits [N, V] at the positions `mask` [B, L] marks, and its hidden states [N, H] there after
    each of `layers` (transformers' `hidden_states` numbering: 0 the embeddings), from one forward pass: the
    head at those rows only where it applies (`heads_apply`), else the full logits gathered."""
    states = bool(layers)
    if heads_apply(model):
        out = model.base_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=states)
        logits = model.get_output_embeddings()(out.last_hidden_state[mask])
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=states)
        logits = out.logits[mask]
    return logits, [out.hidden_states[i][mask] for i in layers]
