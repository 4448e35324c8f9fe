"""The topic tree and the exercise prompts built from it.

Root topics (42 bundled) are expanded by an LLM into subtopics (10 each) and those into leaves (5 each).
Every leaf is then paired with `partners` leaves under other subtopics, and each pair gets
`professions_per_combo` distinct professions drawn from a list, one prompt each, so the exercises spread over
many combinations: the bundled 42 x 10 x 5 tree gives 2,100 leaves x 200 partners = 420k pairs, and 5
professions per pair the 2M prompts of the original recipe. Everything is seeded by content
(codistill.rng.stable_rng), so the same config selects the same prompts after a restart.
"""

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from codistill.llm.store import ResultStore
from codistill.llm.template import PromptTemplate
from codistill.rng import stable_rng

DATA = Path(__file__).resolve().parents[1] / "data"
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")


def read_lines(path: str | None, bundled: str) -> list[str]:
    """Non-empty, stripped lines of `path`, or of the bundled file `bundled` when path is None."""
    text = Path(path or DATA / bundled).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_list(reply: str, n: int) -> list[str]:
    """Up to `n` distinct items from a model's reply: its first JSON array of strings, else its lines
    without bullets or numbering. Model output is only ever parsed as data, never evaluated."""
    for match in re.finditer(r"\[.*?\]", reply, flags=re.DOTALL):
        try:
            items = json.loads(match.group())
        except json.JSONDecodeError:
            continue
        if isinstance(items, list) and all(isinstance(i, str) for i in items) and items:
            return list(dict.fromkeys(i.strip() for i in items if i.strip()))[:n]
    lines = (_BULLET.sub("", line).strip().strip('"').strip() for line in reply.splitlines())
    return list(dict.fromkeys(line for line in lines if line and not line.endswith(":")))[:n]


def expand_tree(
    roots: list[str], backend, template: PromptTemplate, store: ResultStore, subtopics: int, leaves: int
) -> dict[str, dict[str, list[str]]]:
    """{root: {subtopic: [leaf, ...]}}: two rounds of LLM calls, each answer stored as it arrives."""
    subs = backend.generate(
        [template.text.format(topic=r, n=subtopics) for r in roots], store=store, chat=True, desc="subtopics"
    )
    tree = {root: {s: [] for s in parse_list(g.text, subtopics)} for root, g in zip(roots, subs, strict=True)}
    pairs = [(root, sub) for root, children in tree.items() for sub in children]
    prompts = [template.text.format(topic=f"{sub} (in {root})", n=leaves) for root, sub in pairs]
    for (root, sub), reply in zip(
        pairs, backend.generate(prompts, store=store, chat=True, desc="leaf topics"), strict=True
    ):
        tree[root][sub] = parse_list(reply.text, leaves)
    return tree


@dataclass(frozen=True)
class Leaf:
    root: str
    subtopic: str
    topic: str

    @property
    def path(self) -> str:
        return f"{self.root} / {self.subtopic} / {self.topic}"


def leaves_of(tree: dict[str, dict[str, list[str]]]) -> list[Leaf]:
    return [Leaf(root, sub, leaf) for root, subs in tree.items() for sub, leaves in subs.items() for leaf in leaves]


def combinations(
    tree: dict,
    professions: list[str],
    partners: int,
    n_prompts: int | None,
    seed: int,
    professions_per_combo: int = 1,
) -> list[dict]:
    """Each leaf with `partners` leaves under other subtopics and `professions_per_combo` distinct professions
    per pair, a row each; the first `n_prompts` of a seeded order. A function of (tree, professions, seed)
    only. One profession per pair draws exactly what `rng.choice` drew before the option existed."""
    leaves = leaves_of(tree)
    rows = []
    for leaf in leaves:
        rng = stable_rng(seed, "partners", leaf.path)
        others = [o for o in leaves if (o.root, o.subtopic) != (leaf.root, leaf.subtopic)]
        for other in rng.sample(others, min(partners, len(others))):
            for profession in rng.sample(professions, professions_per_combo):
                rows.append({"topic": leaf.path, "other_topic": other.path, "profession": profession})
    order = stable_rng(seed, "order")
    order.shuffle(rows)
    return rows[:n_prompts] if n_prompts else rows


def prompt_capacity(tree: dict, partners: int, professions_per_combo: int) -> int:
    """How many prompts `combinations` can give before `n_prompts` cuts: per leaf, min(partners, leaves
    under other subtopics), times `professions_per_combo`."""
    leaves = leaves_of(tree)
    siblings = Counter((leaf.root, leaf.subtopic) for leaf in leaves)
    pairs = sum(min(partners, len(leaves) - siblings[leaf.root, leaf.subtopic]) for leaf in leaves)
    return pairs * professions_per_combo


def exercise_prompts(rows: list[dict], template: PromptTemplate) -> list[str]:
    return [template.text.format(**row) for row in rows]
