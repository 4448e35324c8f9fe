"""Rationales: a versioned prompt template per segment, answered by any text generator."""

from codistill.llm.generated import warn_truncated
from codistill.llm.store import ResultStore
from codistill.rationales.template import PromptTemplate


class RationaleWriter:
    """Explains why each middle fills its gap, with `generator` (codistill.llm.generators). A rationale cut
    at the token limit is kept (most of an explanation still helps) but counted and warned about."""

    def __init__(self, generator, template: dict):
        self.generator, self.template = generator, PromptTemplate(**template)
        self.model_name = generator.model_name

    def explain(self, language: str, codes: list[str], middles: list[str], store: ResultStore) -> list[str]:
        prompts = [self.template.render(language, c, m) for c, m in zip(codes, middles, strict=True)]
        generations = self.generator.generate(prompts, store, "rationales")
        warn_truncated(generations, "rationale", f"rationale.generator.{self.generator.length_setting}")
        return [g.text for g in generations]
