"""Versioned prompt templates: the id is stored with every record a template produced."""

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    """`text` is a `str.format` template over `{language}`, `{code}` (the segment with `<FILL-HERE>`)
    and `{middle}` (the missing span)."""

    id: str
    text: str

    def render(self, language: str, code: str, middle: str) -> str:
        return self.text.format(language=language, code=code, middle=middle)
