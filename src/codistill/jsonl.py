"""JSON Lines files that are replaced atomically, so a run's outputs are whole or absent."""

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """One JSON object per line, written to a temporary file beside `path` and renamed over it: a reader
    never sees half a file, and a killed writer leaves the old one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
