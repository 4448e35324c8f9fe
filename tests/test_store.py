"""The result store: durable appends, salvage after kill -9, atomic shards, resume by content key."""

import json
import os
import subprocess
import sys

import pytest

from codistill.errors import ConfigError
from codistill.llm.generated import Generation
from codistill.llm.store import ResultStore, cached_map, content_key, in_shard


def _lines(directory):
    return [json.loads(line) for p in sorted(directory.glob("part-*.jsonl")) for line in p.read_text().splitlines()]


def test_content_keys_do_not_depend_on_python_hash_seed():
    code = "from codistill.llm.store import content_key; print(content_key('rationale', 'm', 'v1', 'x = 1'))"
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert keys == {content_key("rationale", "m", "v1", "x = 1")}
    assert content_key("a", 1) != content_key("a", "1")


def test_results_survive_reopening_and_errors_are_retried(tmp_path):
    with ResultStore(tmp_path) as store:
        store.put("a", "answer a", usage={"prompt_tokens": 3})
        store.put("b", error="RateLimitError: slow down")
    with ResultStore(tmp_path) as store:
        assert "a" in store and "b" not in store and store.failed["b"]["error"].startswith("RateLimitError")
        store.put("b", "answer b")
    with ResultStore(tmp_path) as store:
        assert {k: r["result"] for k, r in store.ok.items()} == {"a": "answer a", "b": "answer b"}
        assert store.failed == {}
    assert not list(tmp_path.glob("*.open"))  # every shard closed by rename


def test_a_killed_writers_open_shard_is_salvaged_without_its_torn_line(tmp_path):
    (tmp_path / "part-0-1.jsonl.open").write_text(
        json.dumps({"key": "a", "status": "ok", "result": "A"}) + "\n" + '{"key": "b", "status": "ok", "res'
    )
    with ResultStore(tmp_path) as store:
        assert set(store.ok) == {"a"}
    assert [r["key"] for r in _lines(tmp_path)] == ["a"]
    assert not list(tmp_path.glob("*.open")) and not list(tmp_path.glob("*.tmp"))


def test_another_writers_open_shard_is_left_alone(tmp_path):
    (tmp_path / "part-1-5.jsonl.open").write_text(json.dumps({"key": "x", "status": "ok", "result": "X"}) + "\n")
    with ResultStore(tmp_path, writer="0"):
        pass
    assert (tmp_path / "part-1-5.jsonl.open").exists()


def test_shards_rotate_at_shard_size(tmp_path):
    with ResultStore(tmp_path, shard_size=3) as store:
        for i in range(7):
            store.put(f"k{i}", i)
    shards = sorted(tmp_path.glob("part-*.jsonl"))
    assert [len(p.read_text().splitlines()) for p in shards] == [3, 3, 1]
    assert sorted(r["result"] for r in _lines(tmp_path)) == list(range(7))


def test_two_live_processes_cannot_share_a_writer_id(tmp_path):
    with ResultStore(tmp_path, writer="0"), pytest.raises(ConfigError, match="another live process"):
        ResultStore(tmp_path, writer="0")
    with ResultStore(tmp_path, writer="0"), ResultStore(tmp_path, writer="1"):
        pass


def test_cached_map_computes_only_what_is_missing_in_chunks(tmp_path):
    calls = []

    def square(xs):
        calls.append(list(xs))
        return [Generation(str(x * x), "length" if x > 3 else "stop") for x in xs]

    keys = [content_key("sq", x) for x in [1, 2, 3, 2, 4]]
    want = [Generation("1", "stop"), Generation("4", "stop"), Generation("9", "stop"), Generation("4", "stop")]
    with ResultStore(tmp_path) as store:
        assert cached_map(store, keys, [1, 2, 3, 2, 4], square, 2, "squares") == [*want, Generation("16", "length")]
    assert calls == [[1, 2], [3, 4]]  # the repeated 2 is computed once
    with ResultStore(tmp_path) as store:  # text and finish reason come back from the records
        got = cached_map(store, keys + [content_key("sq", 5)], [1, 2, 3, 2, 4, 5], square, 2, "squares")
        assert got[-2:] == [Generation("16", "length"), Generation("25", "length")]
        store.put(content_key("sq", 6), "36")  # a record of a run before finish reasons
        assert cached_map(store, [content_key("sq", 6)], [6], square, 2, "squares") == [Generation("36", None)]
    assert calls[-1] == [5]


def test_shards_partition_the_keys():
    keys = [content_key("k", i) for i in range(200)]
    owners = [[i for i in range(3) if in_shard(k, i, 3)] for k in keys]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == {0, 1, 2}
