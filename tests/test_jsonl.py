"""JSON Lines outputs are replaced whole, never left half-written."""

import json

import pytest

from codistill.jsonl import write_jsonl


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_write_jsonl_atomic(tmp_path):
    path = tmp_path / "sub" / "kept.jsonl"
    write_jsonl([{"a": 1}, {"b": "é"}], path)
    write_jsonl([{"c": 3}], path)  # replaces
    assert read_jsonl(path) == [{"c": 3}]
    assert [p.name for p in path.parent.iterdir()] == ["kept.jsonl"]

    def broken():
        yield {"d": 4}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_jsonl(broken(), path)
    assert read_jsonl(path) == [{"c": 3}]
    assert [p.name for p in path.parent.iterdir()] == ["kept.jsonl"]
