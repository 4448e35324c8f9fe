"""How varied a set of synthetic exercises is: a textbook of 10,000 near-copies of one exercise teaches little.

`diversity_report` measures lexical diversity (distinct-n), near-duplicates (MinHash), topic and profession
coverage and lengths, and writes them as `diversity.json`, `diversity.md` and `diversity.png`.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from codistill.exercises.dedup import normalize, tokens
from codistill.exercises.settings import FilterSettings
from codistill.tables import markdown_table, print_table


def distinct_n(token_lists: list[list[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of all texts (0 when there are none)."""
    grams = [tuple(toks[i : i + n]) for toks in token_lists for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _texts(row: dict) -> tuple[str, str]:
    if "problem" in row or "solution" in row:
        return row.get("problem") or "", row.get("solution") or ""
    return "", row.get("completion") or ""


def _length_stats(values: list[int], prefix: str) -> dict[str, float]:
    if not values:
        return {f"{prefix}_mean": 0.0, f"{prefix}_median": 0.0, f"{prefix}_max": 0}
    return {
        f"{prefix}_mean": float(statistics.fmean(values)),
        f"{prefix}_median": float(statistics.median(values)),
        f"{prefix}_max": max(values),
    }


def diversity_report(
    rows: list[dict],
    out_dir: str | Path,
    settings: FilterSettings,
    *,
    total_topics: int | None = None,
    total_professions: int | None = None,
    top: int = 15,
    title: str = "Exercise diversity",
    show: bool = True,
) -> dict:
    """Diversity of exercises (rows with `problem`/`solution`, or raw `completion`, and `topic`,
    `other_topic`, `profession`), written to `out_dir` as `diversity.json`, `diversity.md`, `diversity.png`.
    Near-duplicates are counted with the filter's deduplicator (`settings.deduplicator()`).

    `summary` holds: distinct-1/2/3 over the tokens of problem + solution (and of solutions alone), the
    exact and near-duplicate rates (the share of rows duplicating an earlier one), the numbers of distinct
    topics, other topics and professions (and their share of `total_topics` / `total_professions` when
    given), and character / line lengths. `topics`, `other_topics` and `professions` hold counts per value.
    Returns that dict (what `diversity.json` holds).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = [_texts(row) for row in rows]
    full = [problem + solution for problem, solution in pairs]
    full_tokens = [tokens(text) for text in full]
    solution_tokens = [tokens(solution) for _, solution in pairs]
    n = len(rows)
    exact = n - len({normalize(text) for text in full})
    dedup = settings.deduplicator()
    near = sum(dedup.add(i, text) is not None for i, text in enumerate(full))

    topics = Counter(str(row["topic"]) for row in rows if row.get("topic"))
    other_topics = Counter(str(row["other_topic"]) for row in rows if row.get("other_topic"))
    professions = Counter(str(row["profession"]) for row in rows if row.get("profession"))

    summary: dict[str, float | int] = {"exercises": n}
    for k in (1, 2, 3):
        summary[f"distinct_{k}"] = distinct_n(full_tokens, k)
    for k in (1, 2, 3):
        summary[f"solution_distinct_{k}"] = distinct_n(solution_tokens, k)
    summary["exact_duplicate_rate"] = exact / n if n else 0.0
    summary["near_duplicate_rate"] = near / n if n else 0.0
    summary["topics"] = len(topics)
    if total_topics:
        summary["topic_coverage"] = len(topics) / total_topics
    summary["other_topics"] = len(other_topics)
    summary["professions"] = len(professions)
    if total_professions:
        summary["profession_coverage"] = len(professions) / total_professions
    summary.update(_length_stats([len(problem) for problem, _ in pairs], "problem_chars"))
    summary.update(_length_stats([len(solution) for _, solution in pairs], "solution_chars"))
    solution_lines = [sum(1 for line in solution.splitlines() if line.strip()) for _, solution in pairs]
    summary.update(_length_stats(solution_lines, "solution_lines"))
    summary.update(_length_stats([len(toks) for toks in full_tokens], "tokens"))

    report = {
        "summary": summary,
        "topics": dict(topics.most_common()),
        "other_topics": dict(other_topics.most_common()),
        "professions": dict(professions.most_common()),
        "solution_lines": solution_lines,
    }
    (out / "diversity.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    markdown = (
        f"# {title}\n\n"
        + markdown_table({metric: {"value": value} for metric, value in summary.items()})
        + f"\n## Top topics\n\n{markdown_table({t: {'count': c} for t, c in topics.most_common(top)})}"
        + f"\n## Top professions\n\n{markdown_table({p: {'count': c} for p, c in professions.most_common(top)})}"
    )
    (out / "diversity.md").write_text(markdown, encoding="utf-8")
    plot_diversity(report, out / "diversity.png", title, top=top)
    if show:
        print_table(title, {"exercises": summary})
    return report


def plot_diversity(report: dict, path: Path, title: str, *, top: int = 15) -> None:
    """Three panels: the most frequent professions, the most frequent topics, solution lengths in lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(14, 0.9 + 0.28 * max(top, 8)))
    for ax, key in zip(axes[:2], ("professions", "topics"), strict=True):
        counts = list(report[key].items())[:top]
        if counts:
            ax.barh([name for name, _ in counts], [count for _, count in counts], color="tab:blue")
            ax.invert_yaxis()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.set_title(f"top {key} ({len(report[key])} distinct)", fontsize=9)
        ax.set_xlabel("exercises", fontsize=8)
    lines = report["solution_lines"]
    axes[2].hist(lines or [0], bins=min(30, max(5, len(set(lines)))), color="tab:green")
    axes[2].set_title("solution length", fontsize=9)
    axes[2].set_xlabel("non-blank lines", fontsize=8)
    axes[2].set_ylabel("exercises", fontsize=8)
    axes[2].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[2].tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
