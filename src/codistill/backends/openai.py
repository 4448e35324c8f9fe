"""An OpenAI-compatible server (OpenAI, vLLM, TGI, llama.cpp) as a generation backend (see
codistill.backends), through the shared client: concurrency, rate limits, retries, cost. Scoring needs a
server that returns prompt log-probabilities the way vLLM does."""

import math
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from functools import partial

from transformers import AutoTokenizer

from codistill.backends import Backend, TokenScores
from codistill.errors import ConfigError
from codistill.generation import encode_pair
from codistill.llm.client import LLMClient, Request
from codistill.llm.generated import Generation
from codistill.llm.store import ResultStore, content_key


class OpenAIBackend(Backend):
    """`chat` prompts go to `/v1/chat/completions`, the others (FIM prompts, code to continue) to
    `/v1/completions`. `tokenizer` (the served model's, optional) lets a FIM teacher cut segments in tokens
    and check its sentinels, and is needed to score (vLLM's prompt log-probabilities are per token of a
    prompt sent as token ids); `context_length` is the served context. The API key is read from the
    environment (`client.api_key_env`) and is never stored or logged."""

    length_setting = "client.max_tokens"

    def __init__(self, client: LLMClient, tokenizer: str | None = None, context_length: int | None = None):
        self.client, self.name, self.context_length = client, client.model, context_length
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer) if tokenizer else None

    @property
    def max_new_tokens(self) -> int:
        return self.client.max_tokens

    def _generate(self, prompts, stops, store, namespace, chat, truncate_left, desc) -> list[Generation]:
        """Greedy answers (at the client's temperature); a prompt too long for the server is its error."""
        client = self.client
        requests = [
            Request(
                content_key(namespace, client.model, client.max_tokens, client.temperature, p), p, _kind(chat), stops
            )
            for p in prompts
        ]
        with _store_or_temporary(store) as where:
            return client.results(requests, where, desc)

    def _sample(self, prompts, sampling, stops, chat, desc) -> list[list[Generation]]:
        if sampling.temperature == 0:
            return [[g] for g in self._generate(prompts, stops, None, "text", chat, True, desc)]
        params = {"temperature": sampling.temperature, "top_p": sampling.top_p}
        requests = [
            Request(content_key("sample", self.name, self.max_new_tokens, params, i, p), p, _kind(chat), stops, params)
            for p in prompts
            for i in range(sampling.n)
        ]
        with _store_or_temporary(None) as where:
            flat = self.client.results(requests, where, desc)
        return [flat[i : i + sampling.n] for i in range(0, len(flat), sampling.n)]

    def _score(self, pairs: list[tuple[str, str]], top_k: int, samples: int = 0) -> list[TokenScores]:
        """Unstored scores, through a throwaway store (the client stores every reply as it arrives)."""
        with _store_or_temporary(None) as where:
            return self.score([p for p, _ in pairs], [c for _, c in pairs], top_k, where, samples=samples)

    def _store_scores(self, missing, top_k, store, chunk_size, desc, samples: int = 0) -> None:
        """One request per pair, all through the client at its concurrency (no chunks), each reply stored the
        moment it arrives, so a killed run sends again only what was in flight. A prompt keeps its newest tokens
        that fit the context with the continuation and the one token generated. `top_k` is at most the
        server's limit (vLLM: --max-logprobs, 20 by default)."""
        if samples:
            raise ConfigError(
                f"the served model {self.name} returns its top-k log-probabilities, not draws from its whole "
                "distribution: use teacher_logits=offline with this teacher, or a local one (teacher.backend=hf)"
            )
        if self.tokenizer is None:
            raise ConfigError(
                f"scoring with the served model {self.name} sends token ids: set backend.tokenizer to the served "
                "model's tokenizer (its Hugging Face name or folder)"
            )
        # prompt_logprobs 1 at least, so that each prompt token's own log-probability surely comes back
        params = {"max_tokens": 1, "temperature": 0, "prompt_logprobs": max(top_k, 1)}
        requests = []
        for key, (prompt, continuation) in missing:
            room = self.context_length - 1 if self.context_length else None  # and the one token generated
            p, c = encode_pair(self.tokenizer, prompt, continuation, room)
            read = partial(prompt_scores, ids=c, top_k=top_k)
            requests.append(Request(key, prompt + continuation, "score", params=params, ids=(*p, *c), read=read))
        self.client.complete(requests, store, desc)


def prompt_scores(choice: dict, ids: list[int], top_k: int) -> dict:
    """The stored `TokenScores` of `ids`, the last tokens of a prompt, from the reply's `prompt_logprobs`
    (vLLM's: one entry per prompt token, None for the first, each mapping token ids, as strings, to
    {"logprob", "rank", "decoded_token"} for the requested number of most likely ids and the prompt's own)."""
    positions = choice.get("prompt_logprobs")
    if not isinstance(positions, list) or len(positions) < len(ids):
        raise ValueError("the reply lacks prompt_logprobs: score with a server that returns them, like vLLM")
    logprobs, topk_ids, topk_logprobs, tail = [], [], [], []
    for token, entry in zip(ids, positions[len(positions) - len(ids) :], strict=True):
        top = sorted(entry.items(), key=lambda item: item[1]["rank"])[:top_k]
        logprobs.append(entry[str(token)]["logprob"])
        topk_ids.append([int(t) for t, _ in top])
        topk_logprobs.append([v["logprob"] for _, v in top])
        tail.append(max(0.0, 1 - sum(math.exp(v) for v in topk_logprobs[-1])))
    return asdict(TokenScores(list(ids), logprobs, topk_ids, topk_logprobs, tail))


def _kind(chat: bool) -> str:
    return "chat" if chat else "completion"


@contextmanager
def _store_or_temporary(store: ResultStore | None):
    """The given store, or a throwaway one (the client stores every outcome as it arrives)."""
    if store is not None:
        yield store
        return
    with tempfile.TemporaryDirectory() as folder, ResultStore(folder) as temporary:
        yield temporary
