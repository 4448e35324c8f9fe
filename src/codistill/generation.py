"""Batched greedy generation for causal models: left padding, length-sorted batches, per-row stops."""

import os
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from codistill.errors import ConfigError
from codistill.progress import tqdm


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":  # one GPU per process under torchrun: LOCAL_RANK picks it
        return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_causal_lm(name_or_path: str, dtype: str = "auto", device: str = "auto"):
    """(model, tokenizer) in eval mode; dtype "auto" is bf16 on a GPU that supports it, else fp32."""
    device = resolve_device(device)
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype)).to(device).eval()
    return model, AutoTokenizer.from_pretrained(name_or_path)


def stop_ids(tokenizer, tokens: list[str | None], model: str, fix: str) -> set[int]:
    """The ids of the stop sentinels `tokens` (None entries skipped); a token the vocabulary lacks raises a
    ConfigError: "<model> has no token(s) [...]: <fix>"."""
    tokens = [t for t in tokens if t]
    vocab = tokenizer.get_vocab()
    if missing := [t for t in tokens if t not in vocab]:
        raise ConfigError(f"{model} has no token(s) {missing}: {fix}")
    return {vocab[t] for t in tokens}


def context_length(model) -> int:
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    raise ValueError(f"{type(model).__name__} config names no context length")


@dataclass(frozen=True)
class Sampling:
    """`n` samples per input; temperature 0 means greedy decoding (then n must be 1)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature == 0 and self.n != 1:
            raise ConfigError(f"n={self.n} samples need a temperature > 0; greedy decoding gives one answer")

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False, "num_beams": 1}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "num_return_sequences": self.n}


class StopStrings(StoppingCriteria):
    """Ends each row once its generated text holds a stop string (HumanEval's "\ndef", ...), inside
    `generate`, so a batch stops when every row has stopped and not at `max_new_tokens`. Each step decodes only
    a row's newest tokens (enough to hold the longest stop), so the check costs the same at any length."""

    def __init__(self, decode, stops: tuple[str, ...], start: int):
        self.decode, self.stops, self.start = decode, stops, start  # `start`: where generated tokens begin
        self.window = max(map(len, stops)) + 2  # every token decodes to a character or more

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tail = input_ids[:, max(self.start, input_ids.shape[1] - self.window) :].tolist()
        return torch.tensor([any(s in self.decode(row) for s in self.stops) for row in tail], device=input_ids.device)


@torch.inference_mode()
def generate_ids(
    model,
    inputs: list[list[int]],
    pad_id: int,
    max_new_tokens: int,
    batch_size: int,
    stop_ids: set[int],
    sampling: Sampling = Sampling(),
    desc: str = "generating",
    stop_strings: tuple[str, ...] = (),
    decode=None,
    synced_gpus: bool = False,
) -> list[list[list[int]]]:
    """For each input, `sampling.n` generated id lists, each cut before its first stop token. With
    `stop_strings` (and `decode`, ids -> text) a row also stops generating once its text holds one; cutting
    the text there is the caller's (`cut_at_stop_strings`). `synced_gpus`: every rank keeps stepping until all
    have finished (ZeRO-3, where each forward pass is collective; each rank must make as many calls).

    Inputs are batched longest first; decoder-only models get left padding (the new tokens follow
    the prompt), encoder-decoder models right padding.
    """
    decoder_only = not model.config.is_encoder_decoder
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]), reverse=True)
    outputs: list[list[list[int]]] = [[] for _ in inputs]
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        rows = order[start : start + batch_size]
        width = max(len(inputs[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            span = slice(width - len(inputs[i]), width) if decoder_only else slice(0, len(inputs[i]))
            input_ids[r, span] = torch.tensor(inputs[i])
            attention[r, span] = 1
        start = width if decoder_only else 1  # the decoder's start token
        criteria = StoppingCriteriaList([StopStrings(decode, stop_strings, start)] if stop_strings else [])
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            eos_token_id=sorted(stop_ids) or None,
            pad_token_id=pad_id,
            stopping_criteria=criteria,
            synced_gpus=synced_gpus,
            **sampling.generate_kwargs(),
        )
        generated = generated[:, width:] if decoder_only else generated[:, 1:]  # drop prompt / decoder start
        for k, ids in enumerate(generated.tolist()):
            cut = next((j for j, t in enumerate(ids) if t in stop_ids), len(ids))
            outputs[rows[k // sampling.n]].append(ids[:cut])
    return outputs


def encode_pair(tokenizer, prompt: str, continuation: str, room: int | None) -> tuple[list[int], list[int]]:
    """(prompt ids, continuation ids), tokenized apart (the continuation's tokens are what the model alone
    makes of it); with `room`, the prompt keeps only its newest tokens that fit beside the continuation in
    `room` positions (at least one)."""
    p, c = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in (prompt, continuation))
    return (p[-max(1, room - len(c)) :] if room else p), c


def encode_prompts(model, tokenizer, prompts: list[str], max_new_tokens: int, truncate_left: bool) -> list[list[int]]:
    """Token ids of causal-LM prompts that leave room for `max_new_tokens` in the model's context: a
    longer prompt raises a ConfigError, or with `truncate_left` loses its oldest tokens."""
    budget = context_length(model) - max_new_tokens
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    for i, ids in enumerate(encoded):
        if len(ids) > budget:
            if not truncate_left:
                raise ConfigError(
                    f"a prompt of {len(ids)} tokens plus max_new_tokens={max_new_tokens} exceeds the model's "
                    f"context of {context_length(model)} tokens: lower dataset.segment.length or the "
                    "backend's max_new_tokens"
                )
            encoded[i] = ids[-budget:]
    return encoded


def cut_at_stop_strings(text: str, stops: tuple[str, ...]) -> str:
    """`text` up to the earliest occurrence of any stop string."""
    return text[: min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))]


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
