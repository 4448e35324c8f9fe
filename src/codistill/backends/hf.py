"""A local Hugging Face causal LM as a generation backend (see codistill.backends)."""

from collections import Counter

import torch
import torch.nn.functional as F

from codistill.backends import Backend, TokenScores
from codistill.data.batching import right_padded
from codistill.generation import (
    Sampling,
    context_length,
    cut_at_stop_strings,
    encode_pair,
    encode_prompts,
    generate_ids,
    load_causal_lm,
    pad_id_of,
)
from codistill.llm.generated import LENGTH, Generation
from codistill.llm.store import cached_map, content_key
from codistill.precision import autocast, autocast_dtype


class HFBackend(Backend):
    """Batched generation (left padding, length-sorted batches, the KV cache); greedy results are stored
    `chunk_size` prompts at a time. A stop string that is one token of the vocabulary (an end-of-text or
    FIM sentinel) stops generation there; any other is cut from the decoded text. The model's own
    end-of-text token always stops it. A reply that used all `max_new_tokens` without a stop is `length`."""

    length_setting = "max_new_tokens"

    def __init__(
        self,
        model,
        tokenizer,
        name: str,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        chunk_size: int = 256,
        precision: str = "fp32",
    ):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size, self.chunk_size = max_new_tokens, batch_size, chunk_size
        self.precision = precision
        bf16 = autocast_dtype(precision, self.device) is not None
        self.name = f"{name} (bf16 autocast)" if bf16 else name

    @classmethod
    def from_pretrained(cls, name_or_path: str, dtype: str = "auto", device: str = "auto", **kwargs) -> "HFBackend":
        model, tokenizer = load_causal_lm(name_or_path, dtype, device)
        return cls(model, tokenizer, name_or_path, **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the model is now (an online teacher is moved to the student's device after loading)."""
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        return context_length(self.model)

    def _generate(self, prompts, stops, store, namespace, chat, truncate_left, desc) -> list[Generation]:
        def greedy(chunk: list[str]) -> list[Generation]:
            return [s[0] for s in self._run(chunk, Sampling(), stops, truncate_left, desc)]

        if store is None:
            return greedy(prompts)
        keys = [content_key(namespace, self.name, self.max_new_tokens, p) for p in prompts]
        return cached_map(store, keys, prompts, greedy, self.chunk_size, desc)

    def _sample(self, prompts, sampling, stops, chat, desc) -> list[list[Generation]]:
        return self._run(prompts, sampling, stops, True, desc)

    @torch.inference_mode()
    def _score(self, pairs: list[tuple[str, str]], top_k: int, samples: int = 0) -> list[TokenScores]:
        """Teacher-forced forward passes, longest first, `batch_size` at a time, right-padded (padding after
        a sequence changes nothing before it); a prompt too long for the context loses its oldest tokens. The
        distribution is over the tokenizer's tokens: a head wider than the tokenizer (santacoder's 49,280 rows
        over 49,157 tokens, padded for speed) never puts a padding row among the top-k or the draws."""
        rows = [
            encode_pair(self.tokenizer, prompt, continuation, self.context_length) for prompt, continuation in pairs
        ]
        order = sorted(range(len(rows)), key=lambda i: -sum(map(len, rows[i])))
        out: list[TokenScores | None] = [None] * len(rows)
        device, pad = self.device, pad_id_of(self.tokenizer)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            ids, mask = right_padded([rows[i][0] + rows[i][1] for i in batch], pad)
            with autocast(self.precision, device):
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logits = logits[..., : len(self.tokenizer)]  # a head padded past the tokenizer: its rows are no tokens
            for r, i in enumerate(batch):
                p, c = rows[i]
                logp = F.log_softmax(logits[r, len(p) - 1 : len(p) + len(c) - 1].float(), -1)
                out[i] = token_scores(logp, c, top_k, samples, draw_seed(*pairs[i]))
        return out

    def _run(self, prompts, sampling: Sampling, stops, truncate_left: bool, desc: str) -> list[list[Generation]]:
        vocab = self.tokenizer.get_vocab()
        token_stops = {vocab[s] for s in stops if s in vocab} | {self.tokenizer.eos_token_id}
        text_stops = tuple(s for s in stops if s not in vocab)
        inputs = encode_prompts(self.model, self.tokenizer, prompts, self.max_new_tokens, truncate_left)
        pad = pad_id_of(self.tokenizer)
        with autocast(self.precision, self.device):
            out = generate_ids(
                self.model,
                inputs,
                pad,
                self.max_new_tokens,
                self.batch_size,
                token_stops,
                sampling,
                desc,
                text_stops,
                self.tokenizer.decode,
            )
        return [[self._finish(ids, text_stops) for ids in samples] for samples in out]

    def _finish(self, ids: list[int], text_stops: tuple[str, ...]) -> Generation:
        """A stop token takes a place, so a reply that met one is shorter than the budget."""
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        cut = cut_at_stop_strings(text, text_stops)
        return Generation(cut, "stop" if cut != text or len(ids) < self.max_new_tokens else LENGTH)


def draw_seed(prompt: str, continuation: str) -> int:
    """The seed of a pair's draws: a function of the pair alone, so it draws the same in any batch and on any
    resume, and different pairs draw independently (one seed for all would reuse position j's uniforms in
    every middle, correlating the stored estimates' errors across the dataset)."""
    return int(content_key("draws", prompt, continuation)[:15], 16)


def token_scores(logp: torch.Tensor, ids: list[int], top_k: int, samples: int = 0, seed: int = 0) -> TokenScores:
    """`TokenScores` from the log-probabilities [len(ids), V] of the positions that predict `ids`; the draws
    come from a generator seeded with `seed` (`draw_seed`)."""
    chosen = logp.gather(-1, torch.tensor(ids, device=logp.device).view(-1, 1)).squeeze(-1)
    top = logp.topk(min(top_k, logp.shape[-1]), -1)
    tail = (1 - top.values.exp().sum(-1)).clamp_min(0)
    sample_ids, sample_counts = [], []
    if samples:
        generator = torch.Generator(device=logp.device).manual_seed(seed)
        draws = torch.multinomial(logp.exp(), samples, replacement=True, generator=generator)
        for row in draws.tolist():
            common = Counter(row).most_common()
            sample_ids.append([i for i, _ in common])
            sample_counts.append([n for _, n in common])
    return TokenScores(
        ids, chosen.tolist(), top.indices.tolist(), top.values.tolist(), tail.tolist(), sample_ids, sample_counts
    )
