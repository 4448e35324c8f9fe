"""A fill-in-the-middle teacher: any Hugging Face causal LM trained with FIM sentinels."""

from codistill.data.fim import FIMTokens
from codistill.generation import context_length, generate_greedy, load_causal_lm, stop_ids
from codistill.llm.generated import Generation
from codistill.llm.store import ResultStore, cached_map, content_key
from codistill.teachers.base import FIMTeacher


class HFTeacher(FIMTeacher):
    """Predicts middles greedily from PSM prompts built with the teacher's own FIM tokens.

    Generation stops at end-of-text or any FIM sentinel; the text before that token is the middle.
    """

    def __init__(
        self,
        name: str,
        name_or_path: str,
        fim: dict,
        eos_token: str,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        chunk_size: int = 256,
        dtype: str = "auto",
        device: str = "auto",
    ):
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.batch_size, self.chunk_size = batch_size, chunk_size
        self.name_or_path = name_or_path
        self.fim = FIMTokens(**fim)
        self.model, self.tokenizer = load_causal_lm(name_or_path, dtype, device)
        self.stop_ids = stop_ids(
            self.tokenizer,
            [eos_token, self.fim.prefix, self.fim.suffix, self.fim.middle, self.fim.pad],
            f"teacher {name_or_path}",
            "set teacher.fim / teacher.eos_token to the model's own FIM sentinels (santacoder: <fim-prefix>, "
            "starcoder: <fim_prefix>)",
        )

    @property
    def context_length(self) -> int:
        return context_length(self.model)

    def complete(self, prefixes: list[str], suffixes: list[str], store: ResultStore) -> list[str]:
        """The middle for each (prefix, suffix); computed `chunk_size` prompts at a time, each chunk stored."""
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        keys = [content_key("teacher", self.name_or_path, self.max_new_tokens, p) for p in prompts]
        generations = cached_map(store, keys, prompts, self._generate, self.chunk_size, f"teacher {self.name}")
        return [g.text for g in generations]

    def _generate(self, prompts: list[str]) -> list[Generation]:
        return generate_greedy(
            self.model,
            self.tokenizer,
            prompts,
            self.max_new_tokens,
            self.batch_size,
            self.stop_ids,
            desc=f"teacher {self.name}",
        )
