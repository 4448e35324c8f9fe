"""An OpenAI-compatible server (OpenAI, vLLM, TGI, llama.cpp) as a generation backend (see
codistill.backends), through the shared client: concurrency, rate limits, retries, cost."""

import tempfile
from contextlib import contextmanager

from transformers import AutoTokenizer

from codistill.backends import Backend
from codistill.llm.client import LLMClient, Request
from codistill.llm.generated import Generation
from codistill.llm.store import ResultStore, content_key


class OpenAIBackend(Backend):
    """`chat` prompts go to `/v1/chat/completions`, the others (FIM prompts, code to continue) to
    `/v1/completions`. `tokenizer` (the served model's, optional) lets a FIM teacher cut segments in tokens
    and check its sentinels; `context_length` is the served context. The API key is read from the
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
