"""Results people read: rich tables in the terminal, Markdown, JSON and a plot in files."""

import json
from pathlib import Path

from codistill.tables import markdown_table, print_table


def write_report(
    out_dir: str | Path, results: list, title: str, failed: dict[str, str] | None = None
) -> dict[str, dict[str, float]]:
    """samples_<task>.jsonl, summary.json, summary.md and summary.png (one bar group per task); `failed`
    ({task: error}) lists the tasks that did not finish in summary.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        with open(out / f"samples_{result.name}.jsonl", "w", encoding="utf-8") as f:
            for row in result.samples:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = {r.name: r.metrics for r in results}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    failures = "".join(f"\n{task} failed: {error}\n" for task, error in (failed or {}).items())
    (out / "summary.md").write_text(f"# {title}\n\n" + markdown_table(summary) + failures)
    if summary:
        plot_summary(summary, out / "summary.png", title)
        print_table(title, summary)
    return summary


def plot_summary(summary: dict[str, dict[str, float]], path: Path, title: str) -> None:
    """One panel per task: a horizontal bar per metric (BLEU, on a 0-100 scale, is left to the tables)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary)
    height = 0.9 + 0.28 * max(len(m) for m in summary.values())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), height), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        metrics = {k: v for k, v in summary[task].items() if "bleu" not in k}
        bars = ax.barh(list(metrics), list(metrics.values()), color="tab:blue")
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        ax.set_xlim(0, max(1.0, *metrics.values()) * 1.15)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
        ax.set_title(task, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
