"""Rationales from the OpenAI API or any OpenAI-compatible server, through the shared LLM client."""

from codistill.llm.client import LLMClient, Request
from codistill.llm.store import ResultStore, content_key
from codistill.rationales.template import PromptTemplate


class OpenAIRationale:
    """One chat request per segment; answers are stored as they arrive and reused by later runs."""

    def __init__(self, client: LLMClient, template: dict):
        self.client, self.template = client, PromptTemplate(**template)
        self.model_name = client.model

    def explain(self, language: str, codes: list[str], middles: list[str], store: ResultStore) -> list[str]:
        prompts = [self.template.render(language, c, m) for c, m in zip(codes, middles, strict=True)]
        return self.client.results([Request(self.key(p), p) for p in prompts], store, "rationale")

    def key(self, prompt: str) -> str:
        c = self.client
        return content_key("rationale", c.model, self.template.id, c.max_tokens, c.temperature, prompt)
