"""The exercise in a model reply: its first top-level function, split after the docstring.

A model asked for "a Python function with a docstring and its solution" answers with prose around the code,
code fences, and now and then code that does not parse. Fenced blocks are tried first, then the whole reply
without its fence lines; a candidate that does not parse as a whole is searched for the shortest parseable
chunk holding a function. Replies are parsed with `ast`, never executed.
"""

import ast
import re
import textwrap

Function = ast.FunctionDef | ast.AsyncFunctionDef

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_FENCE_LINE = re.compile(r"^[ \t]*```.*$", re.MULTILINE)
_CODE_START = re.compile(r"^(?:import\s|from\s+\S+\s+import\s|@|def\s|async\s+def\s)")
_DEF_START = re.compile(r"^(?:@|def\s|async\s+def\s)")
_TOP_DEF = re.compile(r"^(?:async\s+)?def\s+\w+", re.MULTILINE)
_PREAMBLE = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)


def parse(source: str) -> ast.Module | None:
    """The module `source` parses to, or None when it does not."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return None


def first_function(module: ast.Module) -> Function | None:
    return next((n for n in module.body if isinstance(n, Function)), None)


def docstring_node(func: Function) -> ast.Expr | None:
    """The statement holding the function's docstring: its first, when that is a string literal."""
    first = func.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


def _code_candidates(text: str) -> list[str]:
    """Fenced blocks first (in order), then the whole reply with any fence lines removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [textwrap.dedent(m.group(2)) for m in _FENCE.finditer(text)]
    return [*blocks, _FENCE_LINE.sub("", text)]


def _locate(code: str) -> tuple[list[str], ast.Module, Function] | None:
    """The shortest parseable chunk of `code` that holds a top-level function: the whole text when it
    parses, else from the first import/decorator/def line (or the first def line) up to a column-0 line."""
    module = parse(code)
    if module is not None and (func := first_function(module)) is not None:
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
            module = parse("\n".join(chunk))
            if module is not None and (func := first_function(module)) is not None:
                return chunk, module, func
    return None


def _problem_start(module: ast.Module, func: Function) -> int:
    """First line of the problem: the function's decorators, or the imports and constants right above it."""
    first: ast.stmt = func
    position = module.body.index(func)
    while position > 0 and isinstance(module.body[position - 1], _PREAMBLE):
        position -= 1
        first = module.body[position]
    return min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])


def split_reply(text: str) -> tuple[str, str] | str:
    """`(problem, solution)` of a model reply (see `split_exercise`), or why there is none: `no_function`,
    `syntax` (a top-level `def` that never parses), `no_docstring`, or `unsplittable` (the docstring shares a
    line with the signature or with code)."""
    for code in _code_candidates(text):
        found = _locate(code)
        if found is None:
            continue
        lines, module, func = found
        doc = docstring_node(func)
        if doc is None:
            return "no_docstring"
        if doc.lineno == func.lineno or (len(func.body) > 1 and func.body[1].lineno <= doc.end_lineno):
            return "unsplittable"
        start = _problem_start(module, func)
        problem = "\n".join(lines[start - 1 : doc.end_lineno]) + "\n"
        body = lines[doc.end_lineno : func.end_lineno]
        solution = "\n".join(body) + "\n" if any(line.strip() for line in body) else ""
        return problem, solution
    return "syntax" if any(_TOP_DEF.search(code) for code in _code_candidates(text)) else "no_function"


def split_exercise(text: str) -> tuple[str, str] | None:
    """Extract the first top-level function of a model reply as `(problem, solution)`.

    Markdown code fences are stripped and prose around the code is skipped. `problem` is the source from the
    imports and constants directly above the function (if any) or its decorators, through its signature, up to
    and including the docstring; `solution` is the rest of the function body. Both are exactly as written and
    end with a newline (`solution` is empty when the body holds nothing after the docstring). None when the
    reply holds no parseable function, or its first function has no docstring.
    """
    result = split_reply(text)
    return result if isinstance(result, tuple) else None
