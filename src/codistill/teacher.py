"""A fill-in-the-middle teacher: a generation backend whose model was trained with FIM sentinels
(santacoder, starcoder, the tiny GPTBigCode), served locally or by an OpenAI-compatible server."""

from codistill.data.fim import FIMTokens
from codistill.errors import ConfigError
from codistill.generation import stop_ids
from codistill.llm.store import ResultStore


class FIMTeacher:
    """Predicts middles greedily from PSM prompts built with the teacher's own FIM tokens; generation
    stops at end-of-text or any FIM sentinel, and the text before it is the middle. Every middle goes
    through the result store (`namespace` "teacher"), so a killed labelling run resumes."""

    def __init__(self, name: str, backend, fim: dict, eos_token: str):
        self.name, self.backend, self.fim = name, backend, FIMTokens(**fim)
        self.stops = (eos_token, self.fim.prefix, self.fim.suffix, self.fim.middle)
        if backend.tokenizer is not None:  # a served model's tokenizer may be unknown
            stop_ids(
                backend.tokenizer,
                list(self.stops),
                f"teacher {backend.name}",
                "set teacher.fim / teacher.eos_token to the model's own FIM sentinels (santacoder: <fim-prefix>, "
                "starcoder: <fim_prefix>)",
            )

    @property
    def tokenizer(self):
        return self.backend.tokenizer

    def infill(self, prefixes: list[str], suffixes: list[str], store: ResultStore) -> list[str]:
        """The middle for each (prefix, suffix)."""
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        generations = self.backend.generate(
            prompts, self.stops, store, namespace="teacher", truncate_left=False, desc=f"teacher {self.name}"
        )
        return [g.text for g in generations]

    def score(
        self, prefixes: list[str], suffixes: list[str], middles: list[str], top_k: int, store: ResultStore, samples=0
    ):
        """The teacher's `TokenScores` over each middle's tokens and its end-of-text, after the PSM prompt:
        the distributions offline distillation stores (top-k, and `samples` draws; see codistill.teacher_logits)."""
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        ends = [m + self.stops[0] for m in middles]
        desc = f"teacher {self.name} " + (f"{samples} draws" if samples else f"top-{top_k}")
        return self.backend.score(prompts, ends, top_k, store, desc=desc, samples=samples)

    def check_segment_length(self, tokens: int) -> None:
        """Fail early when segments of `tokens` tokens cannot fit with the generated middle."""
        budget, context = self.backend.max_new_tokens, self.backend.context_length
        room = context - budget - 8  # the sentinels and BPE merges at the cuts
        if tokens > room:
            raise ConfigError(
                f"dataset.segment.length={tokens} tokens does not fit the teacher's context: {self.name} has "
                f"{context} positions and generates up to teacher.backend.{self.backend.length_setting}={budget}; "
                f"set dataset.segment.length <= {room}"
            )
