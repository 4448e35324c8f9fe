"""Exact and near-duplicate exercises: a model asked 10,000 times writes the same exercise under other names.

One `Deduplicator` serves the filter (which drops duplicates) and the diversity report (which counts them),
so both call the same texts duplicates.
"""

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Words and single punctuation characters: the units of shingles and distinct-n counts."""
    return _TOKEN.findall(text)


def normalize(text: str) -> str:
    """Whitespace collapsed: the key of exact duplicates."""
    return " ".join(text.split())


class Deduplicator:
    """The texts added so far, and which of them a new text duplicates: exactly (whitespace aside), or nearly
    (estimated Jaccard similarity of token `ngram`-shingles at least `threshold`, by MinHash + LSH). LSH
    candidates are verified, so the answer is deterministic for a fixed `seed`."""

    def __init__(self, threshold: float, ngram: int, num_perm: int, seed: int):
        from datasketch import MinHashLSH  # here, not above: it takes most of a second to import

        self.threshold, self.ngram, self.num_perm, self.seed = threshold, ngram, num_perm, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._exact: dict[str, int] = {}
        self._signatures: dict[int, object] = {}

    def signature(self, text: str):
        """A datasketch MinHash of the set of token `ngram`-shingles of `text` (one shingle when shorter)."""
        from datasketch import MinHash

        toks = tokens(text)
        shingles = {" ".join(toks[i : i + self.ngram]) for i in range(max(1, len(toks) - self.ngram + 1))}
        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch([s.encode("utf-8") for s in sorted(shingles)])
        return m

    def add(self, key: int, text: str) -> tuple[str, int] | None:
        """Add `text` under `key` and answer None, unless it duplicates a text added before: then answer
        ("duplicate", that text's key) or ("near_duplicate", the smallest such key) and do not add it."""
        exact = normalize(text)
        if exact in self._exact:
            return "duplicate", self._exact[exact]
        signature = self.signature(text)
        candidates = sorted(int(k) for k in self._lsh.query(signature))
        match = next((k for k in candidates if self._signatures[k].jaccard(signature) >= self.threshold), None)
        if match is not None:
            return "near_duplicate", match
        self._exact[exact] = key
        self._lsh.insert(str(key), signature)
        self._signatures[key] = signature
        return None
