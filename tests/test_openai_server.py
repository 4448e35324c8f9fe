"""The fault-injecting OpenAI-compatible test server, driven with plain httpx."""

import asyncio
import json
import math
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from openai_server import (
    FAKE_LIKELY,
    FakeOpenAI,
    FirstAttempts,
    completion_text,
    next_token_logprobs,
    prompt_logprobs,
    sha1_is_even,
    token_prompt,
)

HEADERS = {"Authorization": "Bearer sk-test"}


def chat(client: httpx.Client, server: FakeOpenAI, prompt: str, **kwargs) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": prompt}]}
    return client.post(f"{server.base_url}/chat/completions", json=body, headers=HEADERS, **kwargs)


def complete(client: httpx.Client, server: FakeOpenAI, prompt, **kwargs) -> httpx.Response:
    body = {"model": "fim", "prompt": prompt, "max_tokens": 8}
    return client.post(f"{server.base_url}/completions", json=body, headers=HEADERS, **kwargs)


def test_both_endpoints_reply_with_usage_and_are_counted():
    with FakeOpenAI() as server, httpx.Client(timeout=5) as client:
        reply = chat(client, server, "local x = 1 -- a moon line")
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
        data = reply.json()
        assert data["choices"][0]["message"]["content"] == "explained: local x = 1 -- a moo"
        assert data["usage"] == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}
        reply = complete(client, server, "<fim-prefix>a b<fim-suffix>c<fim-middle>")
        data = reply.json()
        assert data["object"] == "text_completion" and data["model"] == "fim"
        assert data["choices"][0]["text"] == completion_text("<fim-prefix>a b<fim-suffix>c<fim-middle>")
        assert data["choices"][0]["text"].startswith("mid:") and len(data["choices"][0]["text"]) == 12
        assert data["usage"]["prompt_tokens"] == 2
        batch = complete(client, server, ["p q", "r"]).json()  # vLLM takes a list of prompts too
        assert [c["text"] for c in batch["choices"]] == [completion_text("p q"), completion_text("r")]
        assert client.get(f"http://127.0.0.1:{server.port}/nowhere").status_code == 404
        assert complete(client, server, 3).status_code == 400
    assert [r["model"] for r in server.requests] == ["m", "fim", "fim"]
    assert server.auth_headers == ["Bearer sk-test"] * 3
    assert (
        server.attempts
        == server.successes
        == {
            "local x = 1 -- a moon line": 1,
            "<fim-prefix>a b<fim-suffix>c<fim-middle>": 1,
            "p q": 1,
            "r": 1,
        }
    )
    assert server.faults_injected == {} and server.errors == []


def test_token_id_prompts_get_vllms_prompt_logprobs_under_the_fake_model():
    ids = [5, 9, 5, 9, 5, 700]
    body = {"model": "m", "prompt": ids, "max_tokens": 1, "prompt_logprobs": 3}
    with FakeOpenAI(faults={token_prompt(ids): ["429"]}) as server, httpx.Client(timeout=5) as client:
        url = f"{server.base_url}/completions"
        assert client.post(url, json=body).status_code == 429  # fault plans see the ids as text
        reply = client.post(url, json=body).json()
        batch = client.post(url, json={**body, "prompt": [ids, ids[:2]]}).json()  # several token-id prompts
        plain = client.post(url, json={**body, "prompt_logprobs": None}).json()
        refused = [client.post(url, json={**body, **change}) for change in ({"prompt": "text"}, {"prompt": [-1]})]
        refused.append(client.post(url, json={**body, "prompt_logprobs": FAKE_LIKELY + 1}))
    assert server.attempts == {token_prompt(ids): 4, token_prompt(ids[:2]): 1}
    choice = reply["choices"][0]
    assert choice["text"] == completion_text("5 9 5 9 5 700") and reply["usage"]["prompt_tokens"] == len(ids)
    assert choice["prompt_logprobs"] == prompt_logprobs(ids, 3) and batch["choices"][1]["prompt_logprobs"][0] is None
    assert "prompt_logprobs" not in plain["choices"][0] and [r.status_code for r in refused] == [400] * 3
    entries = choice["prompt_logprobs"]
    assert entries[0] is None and len(entries) == len(ids)
    for i, entry in enumerate(entries[1:], 1):
        likely, other = next_token_logprobs(ids[:i])
        token = str(ids[i])
        assert next(iter(entry)) == token  # the prompt's own token first, as vLLM puts it
        assert entry[token]["logprob"] == likely.get(ids[i], other)
        top = sorted((v["rank"], int(t), v["logprob"]) for t, v in entry.items() if v["rank"] <= 3)
        assert top == [(r, t, lp) for r, (t, lp) in enumerate(list(likely.items())[:3], 1)]
        assert len(entry) == (3 if ids[i] in list(likely)[:3] else 4)
    assert {len(entry) for entry in entries[1:]} == {3, 4}  # the prompt's token both among the top 3 and not
    probabilities = [math.exp(lp) for lp in next_token_logprobs(ids)[0].values()]
    assert sum(probabilities) == pytest.approx(0.9) and probabilities == sorted(probabilities, reverse=True)


def test_a_reply_longer_than_max_tokens_words_is_cut_with_finish_reason_length():
    with FakeOpenAI(chat=lambda prompt: "one two\n  three four") as server, httpx.Client(timeout=5) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
        url = f"{server.base_url}/chat/completions"
        cut = client.post(url, json={**body, "max_tokens": 3}, headers=HEADERS).json()
        whole = client.post(url, json={**body, "max_tokens": 4}, headers=HEADERS).json()
        unlimited = client.post(url, json=body, headers=HEADERS).json()
        fim = complete(client, server, "p").json()  # one word of reply fits max_tokens=8
    assert cut["choices"][0] == {
        "index": 0,
        "finish_reason": "length",
        "message": {"role": "assistant", "content": "one two\n  three"},
        "logprobs": None,
    }
    assert cut["usage"]["completion_tokens"] == 3
    for reply in (whole, unlimited):
        assert reply["choices"][0]["finish_reason"] == "stop"
        assert reply["choices"][0]["message"]["content"] == "one two\n  three four"
    assert fim["choices"][0]["finish_reason"] == "stop" and fim["choices"][0]["text"] == completion_text("p")


def test_429_500_and_malformed_replies():
    with FakeOpenAI(faults=["429", "500", "malformed", None], retry_after=0.5) as server, httpx.Client() as client:
        limited = chat(client, server, "a")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "0.5"
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        failed = complete(client, server, "a")
        assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
        broken = chat(client, server, "a")
        assert broken.status_code == 200 and broken.headers["content-type"] == "application/json"
        with pytest.raises(json.JSONDecodeError):
            json.loads(broken.content)
        assert chat(client, server, "a").json()["choices"][0]["message"]["content"] == "explained: a"
    assert server.attempts == {"a": 4} and server.successes == {"a": 1}
    assert server.faults_injected == {"429": 1, "500": 1, "malformed": 1}


def test_drop_closes_the_connection_without_a_reply():
    with FakeOpenAI(faults={0: "drop"}) as server, httpx.Client(timeout=5) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            chat(client, server, "x")
        assert chat(client, server, "x").status_code == 200  # a new connection works
    assert server.faults_injected == {"drop": 1} and server.attempts == {"x": 2} and server.successes == {"x": 1}


def test_slow_outlasts_the_client_timeout_and_only_delivered_replies_count():
    with FakeOpenAI(faults={"x": ["slow", "slow"]}, slow_seconds=0.6) as server, httpx.Client() as client:
        with pytest.raises(httpx.ReadTimeout):
            chat(client, server, "x", timeout=0.2)
        start = time.perf_counter()
        assert chat(client, server, "x", timeout=5).status_code == 200  # slow, then a normal reply
        assert time.perf_counter() - start >= 0.6
        assert chat(client, server, "x", timeout=5).status_code == 200  # the third attempt is not slow
    assert server.faults_injected == {"slow": 2} and server.attempts == {"x": 3}
    assert server.successes == {"x": 2}  # the reply to the timed-out attempt was never sent


def test_first_attempts_at_even_sha1_prompts_fail_then_succeed():
    prompts = [f"prompt {i}" for i in range(20)]
    even = [p for p in prompts if sha1_is_even(p)]
    assert 0 < len(even) < len(prompts)
    with FakeOpenAI(faults=FirstAttempts("429", when=sha1_is_even)) as server, httpx.Client(timeout=5) as client:
        for prompt in prompts:
            for _ in range(3):  # a bounded retry loop
                if chat(client, server, prompt).status_code == 200:
                    break
    assert server.attempts == {p: 2 if p in even else 1 for p in prompts}
    assert server.successes == {p: 1 for p in prompts}
    assert server.faults_injected == {"429": len(even)}


def test_fault_plans_by_prompt_and_by_request_index_and_bad_plans():
    plan = {"p": ["500", "429"], 3: "malformed"}
    with FakeOpenAI(faults=plan) as server, httpx.Client(timeout=5) as client:
        codes = [chat(client, server, "p").status_code for _ in range(3)]
        assert codes == [500, 429, 200]
        assert chat(client, server, "q").content == b'{"choices": ['  # request 3
    assert server.faults_injected == {"500": 1, "429": 1, "malformed": 1}
    with pytest.raises(ValueError, match="unknown fault kind"):
        FakeOpenAI(faults=["404"])
    with pytest.raises(TypeError):
        FakeOpenAI(faults=3.5)


async def _keep_alive_client(port: int, requests: int) -> list[bytes]:
    """One HTTP/1.1 connection sending `requests` chat requests one after another: the server's cost alone,
    without httpx's connection pool (whose bookkeeping grows with the square of its connections)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses = []
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]}).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for _ in range(requests):
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        statuses.append((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
    writer.close()
    return statuses


def test_64_concurrent_keep_alive_connections_with_latency():
    async def burst(port: int) -> list[bytes]:
        per_connection = await asyncio.gather(*(_keep_alive_client(port, 3) for _ in range(64)))
        return [status for statuses in per_connection for status in statuses]

    with FakeOpenAI(latency=0.2) as server:
        statuses = asyncio.run(burst(server.port))
        deadline = time.monotonic() + 5
        while server.stats()["successes"].get("hello", 0) < 192 and time.monotonic() < deadline:
            time.sleep(0.01)  # the server counts a success just after the client has read it
        stats = server.stats()
    assert statuses == [b"200"] * 192 and stats["successes"] == {"hello": 192}
    assert stats["connections"] == 64  # every connection kept alive for its 3 requests


def test_shutdown_is_prompt_with_a_request_in_flight():
    server = FakeOpenAI(faults=["slow"], slow_seconds=30).start()
    errors = []

    def call():
        try:
            with httpx.Client(timeout=20) as client:
                chat(client, server, "x")
        except httpx.HTTPError as error:
            errors.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    while not server.attempts:
        time.sleep(0.01)
    start = time.perf_counter()
    server.close()
    assert time.perf_counter() - start < 2
    caller.join(5)
    assert not caller.is_alive() and len(errors) == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.base_url + "/models", timeout=2)


def test_process_mode_serves_from_a_child_and_reports_its_counters():
    with FakeOpenAI(latency=0.01, faults=FirstAttempts("500", when=sha1_is_even), process=True) as server:
        assert server._child is not None and server._child.pid != threading.get_native_id()
        with httpx.Client(timeout=5) as client:
            prompts = [f"p{i}" for i in range(6)]
            codes = [complete(client, server, p).status_code for p in prompts]
            assert codes == [500 if sha1_is_even(p) else 200 for p in prompts]
        stats = server.stats()
        assert stats["requests"] == 6 and stats["attempts"] == {p: 1 for p in prompts}
        assert stats["faults_injected"] == {"500": sum(map(sha1_is_even, prompts))}
    assert len(server.requests) == 6 and server.auth_headers == ["Bearer sk-test"] * 6  # kept after exit
    assert server.successes == {p: 1 for p in prompts if not sha1_is_even(p)}
    with pytest.raises((pickle.PicklingError, AttributeError)):
        FakeOpenAI(faults=lambda info: None, process=True).start()


def test_command_line_entry_point():
    script = Path(__file__).with_name("openai_server.py")
    child = subprocess.Popen(
        [sys.executable, str(script), "--faults", '{"0": "429"}', "--retry-after", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = child.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        body = {"model": "m", "prompt": "x"}
        assert httpx.post(f"{base_url}/completions", json=body).headers["retry-after"] == "1"
        assert httpx.post(f"{base_url}/completions", json=body).json()["choices"][0]["text"] == completion_text("x")
        stats = httpx.get(base_url.removesuffix("/v1") + "/stats").json()
        assert stats["faults_injected"] == {"429": 1} and stats["successes"] == {"x": 1}
    finally:
        child.terminate()
        assert child.wait(10) == 0
        child.stdout.close()
