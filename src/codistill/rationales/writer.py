"""Rationales: a versioned prompt template per segment, answered by any generation backend."""

from codistill.llm.generated import warn_truncated
from codistill.llm.store import ResultStore
from codistill.llm.template import PromptTemplate


class RationaleWriter:
    """Explains why each middle fills its gap, with a `backend` (codistill.backends) asked as a chat. A
    rationale cut at the token limit is kept (most of an explanation still helps) but counted and warned
    about."""

    def __init__(self, backend, template: dict):
        self.backend, self.template = backend, PromptTemplate(**template)
        self.model_name = backend.name

    def explain(self, language: str, codes: list[str], middles: list[str], store: ResultStore) -> list[str]:
        prompts = [self.template.render(language, c, m) for c, m in zip(codes, middles, strict=True)]
        generations = self.backend.generate(prompts, store=store, chat=True, desc="rationales")
        warn_truncated(generations, "rationale", f"rationale.backend.{self.backend.length_setting}")
        return [g.text for g in generations]
