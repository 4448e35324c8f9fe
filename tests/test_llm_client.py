"""The shared LLM client against a loopback OpenAI-compatible server that injects faults."""

import hashlib

import httpx
import openai
import pytest

from codistill.backends.openai import OpenAIBackend
from codistill.errors import ConfigError
from codistill.llm.client import LLMClient, Request, retry_after, retryable
from codistill.llm.generated import Generation
from codistill.llm.store import IncompleteError, ResultStore, content_key
from codistill.teacher import Teacher
from openai_server import FakeOpenAI, FirstAttempts

FAULTS = ["429", "500", "slow", "malformed", "drop", None]


def _fault_by_prompt(info):
    """The first attempt at prompt i gets FAULTS[i % 6]; retries succeed."""
    return FAULTS[int(info.prompt.split()[-1]) % len(FAULTS)] if info.attempt == 1 else None


def _client(server, **kwargs) -> LLMClient:
    settings = {
        "max_concurrency": 8,
        "timeout": 1.0,
        "max_attempts": 4,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "max_tokens": 16,
    }
    return LLMClient("gpt-test", base_url=server.base_url, **{**settings, **kwargs})


def _requests(n: int) -> list[Request]:
    return [Request(content_key("test", i), f"prompt number {i}") for i in range(n)]


def test_every_input_gets_exactly_one_result_through_every_fault(tmp_path):
    requests = _requests(36)
    with FakeOpenAI(faults=_fault_by_prompt, retry_after=0.1, slow_seconds=2.0) as server:
        with ResultStore(tmp_path) as store:
            answers = _client(server).results(requests, store, "test")
        injected, attempts, successes = server.faults_injected, server.attempts, server.successes
        with ResultStore(tmp_path) as store:  # a second run pays for nothing
            assert _client(server).results(requests, store, "test") == answers
        assert sum(server.attempts.values()) == sum(attempts.values())
    assert answers == [Generation(f"explained: {r.prompt[:20]}", "stop") for r in requests]
    assert set(injected) == {"429", "500", "slow", "malformed", "drop"}
    lines = [line for p in tmp_path.glob("part-*.jsonl") for line in p.read_text().splitlines()]
    assert len(lines) == len(requests)  # exactly one stored result per input, no failures in between
    for i, request in enumerate(requests):
        assert attempts[request.prompt] == (1 if FAULTS[i % 6] is None else 2)
        if FAULTS[i % 6] != "slow":  # a slow reply is sent after the client gave up on it
            assert successes[request.prompt] == 1


def test_requests_failing_every_attempt_are_recorded_then_retried_by_the_next_run(tmp_path):
    requests = _requests(4)
    stubborn = requests[2].prompt
    with FakeOpenAI(faults={stubborn: ["500", "500", "500"]}) as server:
        with ResultStore(tmp_path) as store, pytest.raises(IncompleteError, match="1 of 4 test requests still fail"):
            _client(server, max_attempts=2).results(requests, store, "test")
        with ResultStore(tmp_path) as store:
            assert store.failed[requests[2].key]["error"].startswith("InternalServerError")
            assert len(store.ok) == 3
            answers = _client(server, max_attempts=2).results(requests, store, "test")
        assert server.attempts[stubborn] == 4 and all(server.attempts[r.prompt] == 1 for r in requests[:2])
    assert answers[2].text == f"explained: {stubborn[:20]}"


def test_usage_and_spend_are_summed_from_the_replies(tmp_path):
    requests = _requests(5)
    prices = {"gpt-test": {"prompt": 1.0, "completion": 2.0}}
    with FakeOpenAI() as server, ResultStore(tmp_path) as store:
        stats = _client(server, prices=prices).run(requests, store, "test")
    words = sum(len(r.prompt.split()) for r in requests)
    assert (stats.done, stats.failed, stats.prompt_tokens, stats.completion_tokens) == (5, 0, words, 15)
    assert stats.spend == pytest.approx((words * 1.0 + 15 * 2.0) / 1e6)


def test_finish_reasons_are_stored_counted_and_read_back_after_a_restart(tmp_path):
    short = [Request(content_key("short", i), f"q{i}") for i in range(3)]  # "explained: q0": 2 words
    long = [Request(content_key("long", i), f"a longer question {i}") for i in range(2)]  # 5 words
    requests = [*short, *long]
    with FakeOpenAI() as server:
        with ResultStore(tmp_path) as store:
            stats = _client(server, max_tokens=3).run(requests, store, "test")
        with ResultStore(tmp_path) as store:  # a new process: everything comes from the store
            answers = _client(server, max_tokens=3).results(requests, store, "test")
            records = [store.ok[r.key] for r in requests]
        assert sum(server.attempts.values()) == len(requests)
    assert (stats.done, stats.truncated, stats.completion_tokens) == (5, 2, 3 * 3 + 2 * 3)
    assert [a.finish_reason for a in answers] == ["stop"] * 3 + ["length"] * 2
    assert [a.truncated for a in answers] == [False] * 3 + [True] * 2
    assert answers[0].text == "explained: q0" and answers[3].text == "explained: a longer"  # cut after 3 words
    assert [r["finish_reason"] for r in records] == ["stop"] * 3 + ["length"] * 2


def test_a_record_of_an_older_run_without_a_finish_reason_reads_as_unknown(tmp_path):
    request = Request(content_key("old", 0), "old prompt")
    with ResultStore(tmp_path) as store:
        store.put(request.key, "an old answer", usage={}, model="gpt-test")  # what runs before finish reasons wrote
    with FakeOpenAI() as server, ResultStore(tmp_path) as store:
        assert _client(server).results([request], store, "test") == [Generation("an old answer", None)]
        assert server.requests == []


def test_retry_after_headers_and_which_errors_are_retried():
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")

    def status_error(status, headers=None):
        response = httpx.Response(status, headers=headers or {}, request=request)
        return openai.APIStatusError("x", response=response, body=None)

    assert retry_after(status_error(429, {"retry-after": "7"})) == 7.0
    assert retry_after(status_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after(status_error(500)) is None and retry_after(ValueError("x")) is None
    assert [retryable(status_error(s)) for s in (400, 401, 404, 408, 422, 429, 500, 503)] == [
        False,
        False,
        False,
        True,
        False,
        True,
        True,
        True,
    ]
    assert retryable(openai.APIConnectionError(request=request)) and retryable(ValueError("bad json"))


def test_a_server_teacher_fills_middles_through_the_completions_endpoint(tmp_path, tiny_teacher_dir):
    fim = {"prefix": "<fim-prefix>", "suffix": "<fim-suffix>", "middle": "<fim-middle>"}
    with FakeOpenAI(faults=FirstAttempts("429")) as server, ResultStore(tmp_path) as store:
        backend = OpenAIBackend(_client(server), tokenizer=tiny_teacher_dir, context_length=1024)
        teacher = Teacher("served", backend, fim, "<|endoftext|>")
        middles = teacher.middles(["a = ", "b = "], [" + 1", ""], store)
        body = server.requests[-1]
    prompt = "<fim-prefix>a = <fim-suffix> + 1<fim-middle>"
    assert middles[0] == "mid:" + hashlib.sha1(prompt.encode()).hexdigest()[:8]
    assert body["stop"] == ["<|endoftext|>", "<fim-prefix>", "<fim-suffix>", "<fim-middle>"]
    with pytest.raises(ConfigError, match="dataset.segment.length=2000"):
        teacher.check_segment_length(2000)
