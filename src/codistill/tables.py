"""Tables people read: rich in the terminal, Markdown in files. Rows are {row name: {column: value}}."""

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


def transposed(rows: dict[str, dict]) -> dict[str, dict]:
    """{column: {row: value}} for {row: {column: value}}: a table's rows become its columns."""
    out: dict[str, dict] = {}
    for name, row in rows.items():
        for column, value in row.items():
            out.setdefault(column, {})[name] = value
    return out


def markdown_table(rows: dict[str, dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for name, row in rows.items()]
    return "\n".join(lines) + "\n"
