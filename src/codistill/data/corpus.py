"""Source-code corpora in The Stack's schema: the Hub, local JSONL/Parquet files, or the bundled sample."""

import hashlib
from pathlib import Path

from datasets import Dataset, load_dataset

from codistill.errors import ConfigError

SAMPLE_DIR = Path(__file__).parent / "moonscript_sample"
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
COMPRESSION = {".gz", ".bz2", ".xz", ".zst"}


def _local_format(path: Path) -> str | None:
    """`json` or `parquet` for a data file (compressed JSON Lines too), else None."""
    suffixes = [s for s in path.suffixes if s not in COMPRESSION] if path.suffix in COMPRESSION else [path.suffix]
    return LOCAL_FORMATS.get(suffixes[-1]) if suffixes else None


def load_corpus(
    source: str,
    data_dir: str | None = None,
    split: str = "train",
    content_field: str = "content",
    max_files: int | None = None,
    min_chars: int = 16,
) -> Dataset:
    """Files with a `content` column, from a Hub dataset id (e.g. `bigcode/the-stack` with
    `data_dir=data/moonscript`) or a local file / folder of `.jsonl`, `.json` or `.parquet` files."""
    path = Path(source).expanduser()
    if path.exists():
        files = sorted(p for p in path.rglob("*") if _local_format(p)) if path.is_dir() else [path]
        kinds = {_local_format(p) for p in files}
        if not files or None in kinds or len(kinds) > 1:
            raise ConfigError(
                f"dataset.corpus.source={source} holds no usable data files: give one .jsonl/.json/.parquet "
                "(optionally .gz) file, or a folder of files of one of those formats, in The Stack's schema"
            )
        rows = load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train")
    elif _local_format(path) or source.startswith((".", "/", "~")):
        raise ConfigError(
            f"dataset path {source} does not exist: set dataset.corpus.source to an existing .jsonl/.parquet "
            "file or folder, or to a Hub dataset id such as bigcode/the-stack"
        )
    else:
        try:
            rows = load_dataset(source, data_dir=data_dir, split=split)
        except Exception as exc:  # noqa: BLE001 - the Hub raises many kinds; all need the same advice
            raise ConfigError(
                f"could not load {source} (data_dir={data_dir}) from the Hugging Face Hub: {exc}. "
                "The Stack is gated: accept its terms on the Hub and run `hf auth login`; offline, point "
                "dataset.corpus.source at a local .jsonl/.parquet copy"
            ) from exc
    return usable_files(rows, source, content_field, max_files, min_chars)


def load_sample_corpus(max_files: int | None = None, min_chars: int = 16) -> Dataset:
    """The MoonScript files bundled with codistill, as rows in The Stack's schema."""
    rows = []
    for path in sorted(SAMPLE_DIR.glob("*.moon")):
        content = path.read_text(encoding="utf-8")
        data = content.encode("utf-8")
        rows.append(
            {
                "content": content,
                "hexsha": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),  # git's blob id
                "size": len(data),
                "ext": "moon",
                "lang": "MoonScript",
                "max_stars_repo_path": path.name,
                "max_stars_repo_name": "codistill/moonscript-sample",
                "max_stars_repo_licenses": ["MIT"],
            }
        )
    return usable_files(Dataset.from_list(rows), str(SAMPLE_DIR), "content", max_files, min_chars)


def usable_files(rows: Dataset, source: str, content_field: str, max_files: int | None, min_chars: int) -> Dataset:
    """Rename the content column to `content`, drop files shorter than `min_chars`, cap the count."""
    if content_field not in rows.column_names:
        raise ConfigError(
            f"{source} has no `{content_field}` column (columns: {', '.join(rows.column_names)}): set "
            "dataset.corpus.content_field to the column that holds the source code"
        )
    if content_field != "content":
        rows = rows.rename_column(content_field, "content")
    total = len(rows)
    rows = rows.filter(lambda r: isinstance(r["content"], str) and len(r["content"].strip()) >= min_chars)
    if len(rows) == 0:
        raise ConfigError(
            f"corpus {source} has no usable file: none of its {total} rows has at least {min_chars} "
            "characters of code; check the path, or lower dataset.corpus.min_chars"
        )
    return rows.select(range(min(max_files, len(rows)))) if max_files else rows
