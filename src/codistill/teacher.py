"""The teacher: one fill-in-the-middle causal LM per run (santacoder, starcoder, the pretrained or tiny
GPTBigCode) behind a generation backend, local or served, loaded at most once and shared by every stage
that asks it something: labelling the dataset (`middles`, `score`), distilling online (its model, through
codistill.teacher_logits.OnlineTeacher) and the standings table (`middle_nll`, bits per byte)."""

from codistill.errors import ConfigError
from codistill.eval.models import CausalModel
from codistill.llm.store import ResultStore


class Teacher(CausalModel):
    """A causal model (`complete`, `infill`, `middle_nll`) whose FIM sentinels are required. Its middles are
    greedy and stop at end-of-text or any FIM sentinel; every middle and score goes through the result store,
    so a killed labelling run resumes."""

    role, setting = "teacher", "teacher"

    def middles(self, prefixes: list[str], suffixes: list[str], store: ResultStore) -> list[str]:
        """The greedy middle for each (prefix, suffix), from PSM prompts in the teacher's own FIM tokens."""
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        generations = self.backend.generate(
            prompts, self.sentinels, store, namespace="teacher", truncate_left=False, desc=f"teacher {self.name}"
        )
        return [g.text for g in generations]

    def score(
        self, prefixes: list[str], suffixes: list[str], middles: list[str], top_k: int, store: ResultStore, samples=0
    ):
        """The teacher's `TokenScores` over each middle's tokens and its end-of-text, after the PSM prompt:
        the distributions offline distillation stores (top-k, and `samples` draws; see codistill.teacher_logits)."""
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        ends = [m + self.eos_token for m in middles]
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
