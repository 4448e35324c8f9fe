"""Generation backends: one interface for every stage that asks a model for text (the FIM teacher,
rationales, exercises, evaluated models).

A backend has `name` (the model id records carry), `tokenizer` (None when a server's tokenizer is not
given), `context_length`, `max_new_tokens` (its token budget, from its own config: `length_setting` names
that key) and two methods:

- `generate(prompts, stops, store, namespace, chat, truncate_left, desc) -> list[Generation]`: greedy,
  each result stored in the `ResultStore` as it arrives when a store is given, keyed by
  (namespace, model, budget, prompt), so a killed run resumes and nothing is paid for twice;
- `sample(prompts, sampling, stops, chat, desc) -> list[list[Generation]]`: `sampling.n` samples per
  prompt (evaluation), not stored.

- `score(prompts, continuations, top_k, store, desc, samples) -> list[TokenScores]`: how likely the model
  finds each continuation after its prompt, token by token, with its `top_k` most likely tokens at each
  position, or `samples` tokens drawn from its distribution there (offline teacher distributions; bits
  per byte), stored like `generate`.

`stops` are strings; generation ends at the first one (not included). `chat` sends an instruction as a
chat message where the backend has a chat API. Adding a backend is one class here and one config in
`conf/backend/`.
"""

from dataclasses import asdict, dataclass, field

from codistill.generation import Sampling
from codistill.llm.generated import Generation
from codistill.llm.store import ResultStore, content_key
from codistill.progress import tqdm


@dataclass(frozen=True)
class TokenScores:
    """A continuation under a model, one entry per token of it (in the model's tokenizer): the token `ids`
    and their `logprobs`; at each position the `top_k` most likely ids and their log-probabilities (most
    likely first; empty lists when top_k is 0) and `tail`, the probability outside them; with `samples`,
    the distinct ids of that many draws from the distribution at each position and how often each came up
    (most frequent first)."""

    ids: list[int]
    logprobs: list[float]
    topk_ids: list[list[int]]
    topk_logprobs: list[list[float]]
    tail: list[float]
    sample_ids: list[list[int]] = field(default_factory=list)
    sample_counts: list[list[int]] = field(default_factory=list)


class Backend:
    """The interface above; a backend implements `_generate`, `_sample` and `_score` (and may override
    `_store_scores`, how scores reach a store)."""

    name: str
    length_setting: str  # the config key, under the backend's node, that sets `max_new_tokens`

    def generate(
        self,
        prompts: list[str],
        stops: tuple[str, ...] = (),
        store: ResultStore | None = None,
        namespace: str = "text",
        chat: bool = False,
        truncate_left: bool = True,
        desc: str = "generating",
    ) -> list[Generation]:
        return self._generate(list(prompts), tuple(stops), store, namespace, chat, truncate_left, desc)

    def sample(
        self, prompts: list[str], sampling: Sampling, stops: tuple[str, ...] = (), chat: bool = False, desc: str = ""
    ) -> list[list[Generation]]:
        return self._sample(list(prompts), sampling, tuple(stops), chat, desc or "generating")

    def score(
        self,
        prompts: list[str],
        continuations: list[str],
        top_k: int = 0,
        store: ResultStore | None = None,
        chunk_size: int = 64,
        desc: str = "scoring",
        samples: int = 0,
    ) -> list[TokenScores]:
        """Each continuation's `TokenScores` after its prompt (tokenized apart: the continuation's tokens are
        what the model alone would make of it). With a store, each chunk of `chunk_size` is stored as it is
        done, keyed by (model, top_k, samples, prompt, continuation), so a killed run resumes where it
        stopped."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        pairs = list(zip(prompts, continuations, strict=True))
        if store is None:
            return self._score(pairs, top_k, samples)
        # the keys of scores stored before sampling existed; draws seeded per pair (not all alike) key anew
        setting = (top_k, samples, "seeded per pair") if samples else (top_k,)
        keys = [content_key("score", self.name, *setting, p, c) for p, c in pairs]
        missing = [(k, pair) for k, pair in dict(zip(keys, pairs, strict=True)).items() if k not in store]
        self._store_scores(missing, top_k, store, chunk_size, desc, samples)
        return [TokenScores(**store.ok[k]["result"]) for k in keys]

    def _store_scores(
        self,
        missing: list[tuple[str, tuple[str, str]]],
        top_k: int,
        store: ResultStore,
        chunk_size: int,
        desc: str,
        samples: int = 0,
    ) -> None:
        """Store the scores of the (key, pair)s, `chunk_size` pairs at a time, each chunk as it is done; a
        backend that stores each pair as it is scored overrides this."""
        for start in tqdm(range(0, len(missing), chunk_size), desc=desc, unit="chunk", disable=not missing):
            chunk = missing[start : start + chunk_size]
            scores = self._score([pair for _, pair in chunk], top_k, samples)
            for (key, _), score in zip(chunk, scores, strict=True):
                store.put(key, asdict(score))

    def _generate(self, prompts, stops, store, namespace, chat, truncate_left, desc) -> list[Generation]:
        raise NotImplementedError

    def _sample(self, prompts, sampling, stops, chat, desc) -> list[list[Generation]]:
        raise NotImplementedError

    def _score(self, pairs: list[tuple[str, str]], top_k: int, samples: int = 0) -> list[TokenScores]:
        raise NotImplementedError
