"""Batched greedy generation for causal models: left padding, length-sorted batches, per-row stops."""

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from codistill.errors import ConfigError


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_causal_lm(name_or_path: str, dtype: str = "auto", device: str = "auto"):
    """(model, tokenizer) in eval mode; dtype "auto" is bf16 on a GPU that supports it, else fp32."""
    device = resolve_device(device)
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype)).to(device).eval()
    return model, AutoTokenizer.from_pretrained(name_or_path)


def context_length(model) -> int:
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    raise ValueError(f"{type(model).__name__} config names no context length")


@torch.inference_mode()
def generate_greedy(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    stop_ids: set[int],
    truncate_left: bool = False,
    desc: str = "generating",
) -> list[str]:
    """Greedy continuations of `prompts`, each cut before its first stop token and decoded exactly.

    A prompt that leaves no room for `max_new_tokens` in the model's context raises a ConfigError,
    or with `truncate_left` loses its oldest tokens.
    """
    budget = context_length(model) - max_new_tokens
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    for i, ids in enumerate(encoded):
        if len(ids) > budget:
            if not truncate_left:
                raise ConfigError(
                    f"a prompt of {len(ids)} tokens plus max_new_tokens={max_new_tokens} exceeds the model's "
                    f"context of {context_length(model)} tokens: lower dataset.segment.length or the "
                    "generator's max_new_tokens"
                )
            encoded[i] = ids[-budget:]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    outputs: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            attention[r, width - len(encoded[i]) :] = 1
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=sorted(stop_ids),
            pad_token_id=pad_id,
        )[:, width:].tolist()
        for r, i in enumerate(rows):
            ids = generated[r]
            cut = next((k for k, t in enumerate(ids) if t in stop_ids), len(ids))
            outputs[i] = tokenizer.decode(ids[:cut], skip_special_tokens=False)
    return outputs
