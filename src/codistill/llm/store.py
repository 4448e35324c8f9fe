"""Durable, resumable results of expensive calls (teacher generations, LLM API requests).

Each result is one JSON line keyed by a stable content hash (`content_key`, SHA-256: never Python's
salted `hash()`), appended to the writer's open shard `part-<writer>-<stamp>.jsonl.open` and flushed as
it arrives, so a killed process loses at most the request in flight. A shard is closed by an atomic
rename to `.jsonl` after `shard_size` records and at the end of a run. When a writer starts again
after `kill -9`, it first salvages its open shards: complete lines go to a closed shard (atomically),
a torn last line is dropped. A key stored as `ok` is never computed again; a key stored as `error` is
retried by the next run. Writers with different ids (one per GPU or process) share a folder safely; a
lock file stops two live processes from using the same writer id.
"""

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from codistill.errors import ConfigError
from codistill.llm.generated import Generation
from codistill.progress import tqdm


def content_key(*parts) -> str:
    """A stable key for a request: SHA-256 of its JSON-encoded parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def in_shard(key: str, index: int, count: int) -> bool:
    """Whether a key belongs to shard `index` of `count` (a function of the key alone)."""
    return int(key[:15], 16) % count == index


def _read_lines(path: Path) -> list[dict]:
    """The complete, parseable records of a shard; a torn or corrupt line is skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # the torn last line of a killed writer
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class ResultStore:
    """A folder of JSON Lines shards: `ok` and `error` records by key (see module docstring)."""

    def __init__(self, directory: str | Path, writer: str = "0", shard_size: int = 1000, fsync_every: int = 64):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer, self.shard_size, self.fsync_every = str(writer), shard_size, fsync_every
        self._lock = open(self.dir / f"writer-{self.writer}.lock", "w")  # noqa: SIM115 - held for the store's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConfigError(
                f"another live process writes to {self.dir} as writer {self.writer}: wait for it, or give this "
                "run another shard index"
            ) from exc
        for path in sorted(self.dir.glob(f"part-{self.writer}-*.jsonl.open")):
            self._salvage(path)
        self.ok: dict[str, dict] = {}
        self.failed: dict[str, dict] = {}
        for path in sorted(self.dir.glob("part-*.jsonl")):
            for record in _read_lines(path):
                self._index(record)
        self._file, self._path, self._count = None, None, 0

    def _salvage(self, path: Path) -> None:
        records = _read_lines(path)
        if records:
            closed = path.with_suffix("")  # part-...-stamp.jsonl
            tmp = closed.with_name(closed.name + ".tmp")
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
            os.replace(tmp, closed)
        path.unlink()

    def _index(self, record: dict) -> None:
        key = record["key"]
        if record.get("status") == "ok":
            self.ok.setdefault(key, record)
            self.failed.pop(key, None)
        elif key not in self.ok:
            self.failed[key] = record

    def __contains__(self, key: str) -> bool:
        return key in self.ok

    def put(self, key: str, result=None, error: str | None = None, **meta) -> dict:
        """Append one record (flushed now; fsynced every `fsync_every` records and at shard close)."""
        record = {
            "key": key,
            "status": "error" if error else "ok",
            "result": result,
            "error": error,
            "time": time.time(),
            **meta,
        }
        if self._file is None:
            self._path = self.dir / f"part-{self.writer}-{time.time_ns()}.jsonl.open"
            self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 - closed in _close_shard
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self._count += 1
        if self._count % self.fsync_every == 0:
            os.fsync(self._file.fileno())
        if self._count >= self.shard_size:
            self._close_shard()
        self._index(record)
        return record

    def _close_shard(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._path, self._path.with_suffix(""))
            self._file, self._path, self._count = None, None, 0

    def close(self) -> None:
        self._close_shard()
        self._lock.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class IncompleteError(ConfigError):
    """Some requests still failed after their retries; everything else is saved."""


def cached_map(
    store: ResultStore,
    keys: Sequence[str],
    inputs: Sequence,
    compute: Callable[[list], list[Generation]],
    chunk_size: int,
    desc: str,
) -> list[Generation]:
    """`compute` over the inputs whose key the store lacks, `chunk_size` at a time, each chunk stored (text
    and finish reason) as soon as it is done; returns the stored generation for every key, in order."""
    pending, seen = [], set()
    for i, key in enumerate(keys):
        if key not in store and key not in seen:
            seen.add(key)
            pending.append(i)
    for start in tqdm(range(0, len(pending), chunk_size), desc=desc, unit="chunk", disable=not pending):
        chunk = pending[start : start + chunk_size]
        for i, generation in zip(chunk, compute([inputs[i] for i in chunk]), strict=True):
            store.put(keys[i], generation.text, finish_reason=generation.finish_reason)
    return [Generation.from_record(store.ok[key]) for key in keys]
