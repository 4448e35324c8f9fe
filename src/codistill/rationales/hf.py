"""Rationales from a local causal model: the offline default, no API key needed."""

from codistill.generation import generate_greedy, load_causal_lm
from codistill.llm.store import ResultStore, cached_map, content_key
from codistill.rationales.template import PromptTemplate


class HFRationale:
    """Explains each segment greedily; prompts longer than the context keep their most recent tokens.
    Results are stored `chunk_size` at a time, so a killed run resumes where it stopped."""

    def __init__(
        self,
        name_or_path: str,
        template: dict,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        chunk_size: int = 256,
        dtype: str = "auto",
        device: str = "auto",
    ):
        self.model_name = name_or_path
        self.template = PromptTemplate(**template)
        self.max_new_tokens, self.batch_size, self.chunk_size = max_new_tokens, batch_size, chunk_size
        self.model, self.tokenizer = load_causal_lm(name_or_path, dtype, device)

    def explain(self, language: str, codes: list[str], middles: list[str], store: ResultStore) -> list[str]:
        prompts = [self.template.render(language, c, m) for c, m in zip(codes, middles, strict=True)]
        keys = [content_key("rationale", self.model_name, self.template.id, self.max_new_tokens, p) for p in prompts]
        return cached_map(store, keys, prompts, self._generate, self.chunk_size, "rationales")

    def _generate(self, prompts: list[str]) -> list[str]:
        return generate_greedy(
            self.model,
            self.tokenizer,
            prompts,
            self.max_new_tokens,
            self.batch_size,
            {self.tokenizer.eos_token_id},
            truncate_left=True,
            desc="rationales",
        )
