"""Results people read: rich tables in the terminal, Markdown, JSON and a plot in files."""

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_table(title: str, rows: dict[str, dict]) -> None:
    """One column per key of `rows` (a split, a model), one row per metric."""
    metrics = list(dict.fromkeys(k for row in rows.values() for k in row))
    table = Table(title=title)
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    for metric in metrics:
        table.add_row(metric, *(_fmt(row.get(metric, "")) for row in rows.values()))
    Console().print(table)


def markdown_table(rows: dict[str, dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for name, row in rows.items()]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, results: list, title: str) -> dict[str, dict[str, float]]:
    """samples_<task>.jsonl, summary.json, summary.md and summary.png (one bar group per task)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        with open(out / f"samples_{result.name}.jsonl", "w", encoding="utf-8") as f:
            for row in result.samples:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = {r.name: r.metrics for r in results}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(f"# {title}\n\n" + markdown_table(summary))
    plot_summary(summary, out / "summary.png", title)
    print_table(title, summary)
    return summary


def plot_summary(summary: dict[str, dict[str, float]], path: Path, title: str) -> None:
    """Bars of every 0-1 metric (pass@k, exact match, edit similarity, rates), grouped by task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary)
    metrics = list(dict.fromkeys(m for t in tasks for m, v in summary[t].items() if 0.0 <= v <= 1.0 and m != "bleu"))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) * max(1, len(metrics)) / 3), 4))
    width = 0.8 / max(1, len(metrics))
    for j, metric in enumerate(metrics):
        xs = [i + j * width for i, t in enumerate(tasks) if metric in summary[t]]
        ys = [summary[t][metric] for t in tasks if metric in summary[t]]
        bars = ax.bar(xs, ys, width, label=metric)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(tasks))], tasks)
    ax.set_ylim(0, 1.1)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(4, max(1, len(metrics))))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
