"""kill -9 in the middle of a generation, then a restart: the full dataset, nothing paid for twice."""

import json
import os
import signal
import subprocess
import sys
import time

from datasets import load_from_disk

from codistill.llm.store import content_key
from conftest import TINY_TEACHER
from openai_server import FakeOpenAI

KEY = "sk-kill-secret-123"


def _ok_lines(store):
    """Every complete record in the store's shards, open ones included (as a killed run left them)."""
    records = []
    for path in store.glob("part-*"):
        for line in path.read_text().splitlines(keepends=True):
            if line.endswith("\n"):
                records.append(json.loads(line))
    return [r for r in records if r["status"] == "ok"]


def test_kill_9_midway_then_restart_gives_every_record_once(tmp_path, cache_dir):
    env = {**os.environ, "OPENAI_API_KEY": KEY, "CODISTILL_ROOT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    with FakeOpenAI(latency=0.05) as server:
        args = [
            sys.executable,
            "-m",
            "codistill.apps.generate",
            *TINY_TEACHER,
            "teacher_logits=online",  # only middles and rationales in the store: the records counted below
            "rationale=openai",
            "rationale.backend.client.model=gpt-test",
            f"rationale.backend.client.base_url={server.base_url}",
            "rationale.backend.client.max_concurrency=4",
            f"paths.cache_dir={cache_dir}",
            f"save_local={tmp_path / 'dataset'}",
        ]
        store = tmp_path / "data" / "store"
        first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None:
            if sum(r.get("model") == "gpt-test" for r in _ok_lines(store)) >= 25:
                break
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        before = {r["key"] for r in _ok_lines(store) if r.get("model") == "gpt-test"}
        assert first.returncode == -signal.SIGKILL and len(before) >= 25, "killed too late or too early"
        assert list(store.glob("*.open")), "the killed run should leave its open shard behind"

        second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr[-3000:]
        successes, prompts = server.successes, {b["messages"][-1]["content"] for b in server.requests}

    data = load_from_disk(str(tmp_path / "dataset"))
    rows = sum(len(split) for split in data.values())
    assert len(prompts) == rows and all(data["train"]["rationale"])
    # every stored line is whole and every key is stored exactly once
    assert not list(store.glob("*.open"))
    lines = [json.loads(line) for p in store.glob("part-*.jsonl") for line in p.read_text().splitlines()]
    keys = [r["key"] for r in lines if r["status"] == "ok"]
    teacher_prompts = {p for split in data.values() for p in split["teacher_prompt"]}
    assert len(keys) == len(set(keys)) == len(teacher_prompts) + rows  # a middle per prompt, a rationale per row
    # no answer stored before the kill was asked for again; at most the 4 requests in flight were paid twice
    key_of = {content_key("text", "gpt-test", 1024, 0.0, p): p for p in prompts}  # OpenAIBackend.generate's key
    assert before <= set(key_of)
    assert all(successes[key_of[k]] == 1 for k in before)
    assert sum(successes.values()) - len(prompts) <= 4
    # the API key never reached a file
    assert not any(KEY.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
