"""A fill-in-the-middle teacher: any Hugging Face causal LM trained with FIM sentinels."""

from codistill.data.fim import FIMTokens
from codistill.errors import ConfigError
from codistill.generation import context_length, generate_greedy, load_causal_lm


class HFTeacher:
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
        dtype: str = "auto",
        device: str = "auto",
    ):
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.fim = FIMTokens(**fim)
        self.model, self.tokenizer = load_causal_lm(name_or_path, dtype, device)
        sentinels = [eos_token, self.fim.prefix, self.fim.suffix, self.fim.middle, self.fim.pad]
        sentinels = [t for t in sentinels if t]
        vocab = self.tokenizer.get_vocab()
        missing = [t for t in sentinels if t not in vocab]
        if missing:
            raise ConfigError(
                f"teacher {name_or_path} has no token(s) {missing}: set teacher.fim / teacher.eos_token to the "
                "model's own FIM sentinels (santacoder: <fim-prefix>, starcoder: <fim_prefix>)"
            )
        self.stop_ids = {vocab[t] for t in sentinels}

    @property
    def context_length(self) -> int:
        return context_length(self.model)

    def check_segment_length(self, tokens: int) -> None:
        """Fail early when segments of `tokens` tokens cannot fit with the generated middle."""
        room = self.context_length - self.max_new_tokens - 8  # the sentinels and BPE merges at the cuts
        if tokens > room:
            raise ConfigError(
                f"dataset.segment.length={tokens} tokens does not fit the teacher's context: {self.name} has "
                f"{self.context_length} positions and generates up to teacher.max_new_tokens={self.max_new_tokens}; "
                f"set dataset.segment.length <= {room}"
            )

    def complete(self, prefixes: list[str], suffixes: list[str]) -> list[str]:
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        return generate_greedy(
            self.model,
            self.tokenizer,
            prompts,
            self.max_new_tokens,
            self.batch_size,
            self.stop_ids,
            desc=f"teacher {self.name}",
        )
