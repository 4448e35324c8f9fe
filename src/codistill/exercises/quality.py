"""Whether an extracted exercise is worth training on, and if not, why.

Models leave stubs (`pass`, `...`, `raise NotImplementedError`, `# TODO`), trailing demo code and
fill-in-the-blank names where a solution should be. A student trained on those learns to write them.
"""

import ast
import io
import re
import tokenize

from codistill.exercises.extract import docstring_node, first_function, parse
from codistill.exercises.settings import FilterSettings

# Placeholders a model leaves instead of code: in comments and string literals of the solution.
_PLACEHOLDER_COMMENT = re.compile(
    r"\b(?:TODO|FIXME|XXX)\b|your code here|fill (?:this )?in|implement (?:me|this)|to be implemented|not implemented",
    re.IGNORECASE,
)
_PLACEHOLDER_TEXT = re.compile(r"\?\?\?|_{3,}|your code here", re.IGNORECASE)
_STRING_TOKENS = {tokenize.STRING} | ({tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else set())


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


def reject_reason(problem: str, solution: str, settings: FilterSettings) -> str | None:
    """Why an exercise is unusable, or None when it is fine.

    Reasons, checked in this order: `syntax` (problem + solution does not parse), `no_function`,
    `no_docstring`, `trailing_code` (code after the function), `empty_body` (only `pass`, `...`, strings or
    comments after the docstring), `placeholder` (a `...` statement, `NotImplementedError`, a `___` name, or
    `TODO`, `FIXME`, `???`, `___`, "your code here" in the solution's comments or strings), `too_short` (fewer code
    lines than `settings.min_solution_lines`), `too_long` (more than `settings.max_solution_lines` code lines, or
    more than `settings.max_chars` characters in all), `no_examples` (no `>>>` in the docstring, when
    `settings.require_examples`).
    """
    if problem and not problem.endswith("\n"):
        problem += "\n"
    source = problem + solution
    module = parse(source)
    if module is None:
        return "syntax"
    func = first_function(module)
    if func is None:
        return "no_function"
    doc = docstring_node(func)
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
    if lines < settings.min_solution_lines:
        return "too_short"
    if lines > settings.max_solution_lines or len(source) > settings.max_chars:
        return "too_long"
    if settings.require_examples and ">>>" not in (ast.get_docstring(func) or ""):
        return "no_examples"
    return None
