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

`stops` are strings; generation ends at the first one (not included). `chat` sends an instruction as a
chat message where the backend has a chat API. Adding a backend is one class here and one config in
`conf/backend/`.
"""

from codistill.generation import Sampling
from codistill.llm.generated import Generation
from codistill.llm.store import ResultStore


class Backend:
    """The interface above; a backend implements `_generate` and `_sample` with the same arguments."""

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

    def _generate(self, prompts, stops, store, namespace, chat, truncate_left, desc) -> list[Generation]:
        raise NotImplementedError

    def _sample(self, prompts, sampling, stops, chat, desc) -> list[list[Generation]]:
        raise NotImplementedError
