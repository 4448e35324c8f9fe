"""A FIM teacher behind an OpenAI-compatible completions endpoint (e.g. vLLM serving santacoder)."""

from transformers import AutoTokenizer

from codistill.data.fim import FIMTokens
from codistill.llm.client import LLMClient, Request
from codistill.llm.store import ResultStore, content_key
from codistill.teachers.base import FIMTeacher


class OpenAITeacher(FIMTeacher):
    """Sends each PSM prompt to `/v1/completions` and keeps the text before the first stop sentinel.
    `tokenizer` (the served model's) cuts segments in tokens; `context_length` is the served context."""

    def __init__(self, name: str, client: LLMClient, tokenizer: str, fim: dict, eos_token: str, context_length: int):
        self.name, self.client, self.context_length = name, client, context_length
        self.fim = FIMTokens(**fim)
        self.max_new_tokens = client.max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.stops = tuple(t for t in (eos_token, self.fim.prefix, self.fim.suffix, self.fim.middle) if t)

    def complete(self, prefixes: list[str], suffixes: list[str], store: ResultStore) -> list[str]:
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        requests = [
            Request(content_key("teacher", self.client.model, self.max_new_tokens, p), p, "completion", self.stops)
            for p in prompts
        ]
        return [g.text for g in self.client.results(requests, store, "teacher")]
