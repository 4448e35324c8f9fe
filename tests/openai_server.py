"""A local OpenAI-compatible server on loopback for tests and benchmarks, with fault injection.

Endpoints (HTTP/1.1, keep-alive):

- ``POST /v1/chat/completions``: replies ``"explained: " + <last message content>[:20]``;
- ``POST /v1/completions`` (legacy completions, as vLLM serves FIM teachers): replies ``choices[i].text =
  "mid:" + sha1(prompt)[:8]``, one choice per prompt when ``prompt`` is a list. A prompt may be a list of token
  ids below `FAKE_VOCAB` (vLLM's form, alone or in a list); it counts as the text `token_prompt(ids)` (its ids
  joined by spaces: one word per token) everywhere below. With ``prompt_logprobs: k`` (vLLM's extra parameter,
  0 to `FAKE_LIKELY`; token-id prompts only, the fake has no tokenizer) each choice also carries
  ``prompt_logprobs`` in vLLM's format, under a fake model whose next-token distribution after any ids is
  `next_token_logprobs(ids)` (see `prompt_logprobs`, which tests can call to recompute the values);
- ``GET /v1/models`` and ``GET /stats`` (the counters as JSON; ``/stats?full=1`` adds request bodies).

``FakeOpenAI(chat=f)`` answers chat requests with ``f(prompt)`` instead (a module-level function in process mode).

Both POST endpoints count whitespace-separated words as tokens. A reply of more words than the request's
``max_tokens`` is cut after its first ``max_tokens`` words with ``finish_reason: "length"`` (as a real server
stops at the limit); any other reply ends with ``"stop"``. ``usage``: prompt_tokens = words of the prompt,
completion_tokens = ``max_tokens`` for a cut reply, else 3.

A fault plan decides, per request, whether to inject one of `FAULT_KINDS` instead of the normal reply:

- ``None``: no faults;
- a sequence: request N (0-based, in arrival order, over both endpoints) gets ``faults[N]`` (``None`` for no
  fault); requests past its end succeed. ``["429", None, "drop"]``;
- a mapping from int: the same, sparse. ``{0: "500", 5: "slow"}``;
- a mapping from prompt text: a kind for every attempt at that prompt, or a sequence with one entry per attempt
  (attempt k gets entry k-1, later attempts succeed). ``{"code 3": ["429", "500"]}``;
- a callable ``(RequestInfo) -> kind | None``, e.g. ``FirstAttempts("429", when=sha1_is_even)``: the first attempt
  at every prompt whose sha1 is even gets a 429, later attempts succeed.

In process mode (``FakeOpenAI(process=True)``, for benchmarks whose client should not share this process's GIL)
the plan is pickled to a child process: use sequences, mappings, `FirstAttempts` or module-level functions, not
lambdas. Standalone: ``python tests/openai_server.py --latency 0.2 [--port P] [--faults JSON]`` prints its base
URL and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import math
import os
import pickle
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("429", "500", "slow", "malformed", "drop")
MALFORMED_BODY = b'{"choices": ['
MAX_HEADER_LINES = 100
MAX_BODY_BYTES = 32 * 1024 * 1024
IDLE_TIMEOUT = 30.0  # seconds a keep-alive connection may wait for its next request
READ_TIMEOUT = 30.0  # seconds to read one request's headers and body once it has started
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required"}
REASONS |= {413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error"}
FAKE_VOCAB = 1 << 16  # the token ids the fake model knows: more than any test tokenizer has
FAKE_LIKELY = 20  # the ids a context makes likely; the most prompt_logprobs asks for (vLLM's default max_logprobs)
LIKELY_MASS = 0.9  # their total probability; every other id has an equal share of the rest


def sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def sha1_is_even(prompt: str) -> bool:
    """True for about half of all prompts, the same half every run."""
    return int(sha1_hex(prompt), 16) % 2 == 0


def sha1_is_odd(prompt: str) -> bool:
    return not sha1_is_even(prompt)


def chat_reply(prompt: str) -> str:
    """What /v1/chat/completions answers to a last message `prompt`."""
    return f"explained: {prompt[:20]}"


def completion_text(prompt: str) -> str:
    """What /v1/completions answers to `prompt`."""
    return "mid:" + sha1_hex(prompt)[:8]


def token_prompt(ids: Sequence[int]) -> str:
    """The text a token-id prompt counts as (fault plans, counters, usage): one word per token."""
    return " ".join(map(str, ids))


def next_token_logprobs(context: Sequence[int]) -> tuple[dict[int, float], float]:
    """The fake model after `context`: the log-probabilities of its `FAKE_LIKELY` likely ids, most likely first
    (the context's newest distinct ids, likelier as code repeats itself, then ids drawn from a hash of the
    context), and the log-probability of every other id below `FAKE_VOCAB`."""
    rng = random.Random(sha1_hex(token_prompt(context)))
    likely = list(dict.fromkeys(reversed(context)))[: FAKE_LIKELY // 2]
    seen = len(likely)
    while len(likely) < FAKE_LIKELY:
        token = rng.randrange(FAKE_VOCAB)
        if token not in likely:
            likely.append(token)
    weights = [rng.random() + (1.0 if i < seen else 0.05) for i in range(FAKE_LIKELY)]  # all above the others
    logprobs = {token: math.log(LIKELY_MASS * w / sum(weights)) for token, w in zip(likely, weights, strict=True)}
    ranked = dict(sorted(logprobs.items(), key=lambda item: -item[1]))
    return ranked, math.log((1 - LIKELY_MASS) / (FAKE_VOCAB - FAKE_LIKELY))


def prompt_logprobs(ids: Sequence[int], k: int) -> list[dict | None]:
    """vLLM's ``prompt_logprobs`` for a token-id prompt: None for the first token, then at each position the
    prompt's own token (first, as vLLM puts it) and the `k` most likely ids, keyed by id as a string, each
    ``{"logprob", "rank" (1: the most likely), "decoded_token"}``."""
    entries: list[dict | None] = [None]
    for i in range(1, len(ids)):
        likely, other = next_token_logprobs(ids[:i])
        ranked = list(likely)
        token = ids[i]
        rank = ranked.index(token) + 1 if token in likely else len(ranked) + 1
        entry = {str(token): _logprob(likely.get(token, other), rank, token)}
        for r, t in enumerate(ranked[:k], 1):
            entry.setdefault(str(t), _logprob(likely[t], r, t))
        entries.append(entry)
    return entries


def _logprob(logprob: float, rank: int, token: int) -> dict:
    return {"logprob": logprob, "rank": rank, "decoded_token": f"<{token}>"}


def words(text: str) -> int:
    return len(text.split())


def cut_at_words(text: str, limit: int | None) -> tuple[str, bool]:
    """`text` up to the end of its `limit`-th word (whitespace inside kept), and whether that cut anything."""
    if limit is None or words(text) <= limit:
        return text, False
    end = [m.end() for m in re.finditer(r"\S+", text)][limit - 1] if limit > 0 else 0
    return text[:end], True


@dataclass(frozen=True)
class RequestInfo:
    """What a fault plan sees of one request."""

    index: int  # 0-based arrival order over all POST requests
    attempt: int  # 1-based: the number of requests received so far for this prompt, this one included
    prompt: str  # the last chat message's content, or the (first) completions prompt
    path: str  # "/v1/chat/completions" or "/v1/completions"
    body: dict


@dataclass(frozen=True)
class FirstAttempts:
    """Fault `kind` on the first `attempts` attempts at every prompt for which `when(prompt)` is true (every
    prompt if `when` is None); later attempts succeed. Picklable when `when` is a module-level function."""

    kind: str
    when: Callable[[str], bool] | None = None
    attempts: int = 1

    def __post_init__(self):
        _check_kind(self.kind)

    def __call__(self, info: RequestInfo) -> str | None:
        if info.attempt <= self.attempts and (self.when is None or self.when(info.prompt)):
            return self.kind
        return None


def _check_kind(kind: str | None) -> None:
    if kind not in (None, "", *FAULT_KINDS):
        raise ValueError(f"unknown fault kind {kind!r}: use one of {', '.join(FAULT_KINDS)} or None")


def _plan_function(faults: Any) -> Callable[[RequestInfo], str | None]:
    """Any accepted form of fault plan as a function of the request."""
    if faults is None:
        return lambda info: None
    if callable(faults):
        return faults
    if isinstance(faults, Mapping):
        by_index = {k: v for k, v in faults.items() if isinstance(k, int)}
        by_prompt = {k: v for k, v in faults.items() if isinstance(k, str)}
        if len(by_index) + len(by_prompt) != len(faults):
            raise TypeError("fault mapping keys must be request indices (int) or prompt texts (str)")
        for value in by_index.values():
            _check_kind(value)
        for value in by_prompt.values():
            for kind in [value] if value is None or isinstance(value, str) else value:
                _check_kind(kind)

        def mapped(info: RequestInfo) -> str | None:
            if info.index in by_index:
                return by_index[info.index]
            value = by_prompt.get(info.prompt)
            if value is None or isinstance(value, str):
                return value
            return value[info.attempt - 1] if info.attempt <= len(value) else None

        return mapped
    if isinstance(faults, Sequence) and not isinstance(faults, str):
        kinds = list(faults)
        for kind in kinds:
            _check_kind(kind)
        return lambda info: kinds[info.index] if info.index < len(kinds) else None
    raise TypeError(f"faults must be None, a sequence, a mapping or a callable, not {type(faults).__name__}")


def _completion_prompts(payload: dict) -> list[str | list[int]]:
    """The completions prompts: strings or token-id lists, one alone or several in a list (as vLLM takes them)."""
    prompt = payload["prompt"]
    prompts = [prompt] if isinstance(prompt, str) or _is_ids(prompt) else list(prompt)
    if not prompts or not all(isinstance(p, str) or _is_ids(p) for p in prompts):
        raise TypeError("prompt must be a string, a list of token ids or a non-empty list of either")
    for ids in (p for p in prompts if not isinstance(p, str)):
        if not all(0 <= t < FAKE_VOCAB for t in ids):
            raise ValueError(f"token ids must be below FAKE_VOCAB ({FAKE_VOCAB})")
    return prompts


def _is_ids(prompt: Any) -> bool:
    return isinstance(prompt, list) and bool(prompt) and all(type(t) is int for t in prompt)


def _error_body(status: int, message: str) -> bytes:
    kind = {429: "rate_limit_error", 400: "invalid_request_error", 404: "invalid_request_error"}
    code = {429: "rate_limit_exceeded"}
    error = {"message": message, "type": kind.get(status, "server_error"), "param": None, "code": code.get(status)}
    return json.dumps({"error": error}).encode()


class _Drop(Exception):
    """Close the connection without a response."""


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 at a free port; use as a context manager.

    latency: seconds every successful reply waits. faults: a fault plan (see the module docstring).
    retry_after: the Retry-After header of a "429", in seconds. slow_seconds: how long a "slow" fault waits
    before its normal reply. process: serve from a child process instead of a thread of this one.

    Counters, snapshots taken under a lock (in process mode fetched from the child, and kept after exit):
    `requests` (parsed request bodies, arrival order), `auth_headers` (Authorization header of each),
    `attempts` (Counter: requests received per prompt), `successes` (Counter: valid 200 replies sent per prompt),
    `faults_injected` (Counter per kind), `errors` (server-side exceptions; empty unless the server is broken).
    `stats()` gives the counts of all these plus `connections` (TCP connections accepted: keep-alive at work).
    """

    def __init__(
        self,
        latency: float = 0.0,
        faults: Any = None,
        *,
        retry_after: float = 0.2,
        slow_seconds: float = 3.0,
        chat: Callable[[str], str] = chat_reply,
        process: bool = False,
        _sock: socket.socket | None = None,
    ):
        self.latency, self.retry_after, self.slow_seconds = float(latency), retry_after, slow_seconds
        self.process, self.chat = process, chat
        self._faults = faults
        self._plan = _plan_function(faults)
        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._auth_headers: list[str] = []
        self._attempts: Counter = Counter()
        self._successes: Counter = Counter()
        self._faults_injected: Counter = Counter()
        self._errors: list[str] = []
        self._connections = 0
        self._final: dict | None = None  # process mode: the child's counters, fetched before it stops
        self._sock = _sock or socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()

    # lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> FakeOpenAI:
        try:
            if self.process:
                self._start_child()
            else:
                self._thread = threading.Thread(target=self._run_loop, name="FakeOpenAI", daemon=True)
                self._thread.start()
                if not self._ready.wait(10):
                    raise RuntimeError("FakeOpenAI did not start within 10 s")
                if self._startup_error:
                    raise RuntimeError("FakeOpenAI failed to start") from self._startup_error
        except BaseException:
            self._sock.close()
            raise
        return self

    def close(self) -> None:
        try:
            if self._child is not None:
                try:
                    self._final = self._fetch_stats(full=True)
                finally:
                    self._stop_child()
            elif self._thread is not None:
                if self._loop is not None and not self._loop.is_closed():
                    try:
                        self._loop.call_soon_threadsafe(self._stop.set)
                    except RuntimeError:  # the loop already stopped
                        pass
                self._thread.join(10)
                if self._thread.is_alive():
                    raise RuntimeError("FakeOpenAI did not stop within 10 s")
                self._thread = None
        finally:
            self._sock.close()

    def _start_child(self) -> None:
        options = {
            "latency": self.latency,
            "faults": self._faults,
            "retry_after": self.retry_after,
            "slow_seconds": self.slow_seconds,
            "chat": self.chat,
        }
        pickled = base64.b64encode(pickle.dumps(options)) + b"\n"  # before the child starts: lambdas fail here
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if isinstance(p, str)))
        fd = self._sock.fileno()
        self._child = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--fd", str(fd), "--control-stdin"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=[fd],
            env=env,
        )
        self._child.stdin.write(pickled)
        self._child.stdin.flush()
        line = self._read_line_with_timeout(self._child.stdout, 30)
        if not line.startswith(b"http://"):
            self._stop_child()
            raise RuntimeError(f"FakeOpenAI child process did not start: {line!r}")

    @staticmethod
    def _read_line_with_timeout(stream, seconds: float) -> bytes:
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
        reader.start()
        reader.join(seconds)
        return result[0] if result else b""

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        try:
            child.stdin.close()  # the child stops on end of input
        except OSError:
            pass
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
        child.stdout.close()

    # counters --------------------------------------------------------------------------------------------

    def _snapshot(self, full: bool) -> dict:
        if self._child is not None:
            return self._fetch_stats(full)
        if self._final is not None:
            return self._final
        with self._lock:
            stats = {
                "requests": len(self._requests),
                "attempts": Counter(self._attempts),
                "successes": Counter(self._successes),
                "faults_injected": Counter(self._faults_injected),
                "errors": list(self._errors),
                "connections": self._connections,
            }
            if full:
                stats["bodies"] = list(self._requests)
                stats["auth_headers"] = list(self._auth_headers)
            return stats

    def _fetch_stats(self, full: bool) -> dict:
        url = f"http://127.0.0.1:{self.port}/stats" + ("?full=1" if full else "")
        with urllib.request.urlopen(url, timeout=10) as reply:
            stats = json.loads(reply.read())
        for key in ("attempts", "successes", "faults_injected"):
            stats[key] = Counter(stats[key])
        return stats

    def stats(self) -> dict:
        """{"requests": count, "attempts": Counter, "successes": Counter, "faults_injected": Counter,
        "errors": list, "connections": count}, in either mode."""
        stats = dict(self._snapshot(full=False))
        stats.pop("bodies", None)
        stats.pop("auth_headers", None)
        return stats

    @property
    def requests(self) -> list[dict]:
        return self._snapshot(full=True)["bodies"]

    @property
    def auth_headers(self) -> list[str]:
        return self._snapshot(full=True)["auth_headers"]

    @property
    def attempts(self) -> Counter:
        return self._snapshot(full=False)["attempts"]

    @property
    def successes(self) -> Counter:
        return self._snapshot(full=False)["successes"]

    @property
    def faults_injected(self) -> Counter:
        return self._snapshot(full=False)["faults_injected"]

    @property
    def errors(self) -> list[str]:
        return self._snapshot(full=False)["errors"]

    # the server ------------------------------------------------------------------------------------------

    def _run_loop(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # noqa: BLE001 - reported to the starting thread
            self._startup_error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._connection, sock=self._sock, limit=1 << 20)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        with self._lock:
            self._connections += 1
        try:
            keep_alive = True
            while keep_alive:  # one request per turn; ends on close, error, idle timeout or shutdown
                request = await self._read_request(reader, writer)
                if request is None:
                    break
                method, target, version, headers, body = request
                keep_alive = self._keeps_alive(version, headers)
                await self._respond(method, target, headers, body, reader, writer, keep_alive)
        except (_Drop, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as error:  # noqa: BLE001 - recorded for tests, the connection closes
            with self._lock:
                self._errors.append(f"{type(error).__name__}: {error}")
        finally:
            self._tasks.discard(task)
            writer.close()

    @staticmethod
    def _keeps_alive(version: str, headers: dict) -> bool:
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        """(method, target, version, headers, body), or None at end of input or after an idle timeout."""
        try:
            line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
        except asyncio.TimeoutError:
            return None
        if not line.strip():
            return None
        return await asyncio.wait_for(self._read_rest(line, reader, writer), READ_TIMEOUT)

    @staticmethod
    async def _read_rest(line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            raise ConnectionError(f"bad request line {line!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES + 1):
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise ConnectionError("too many header lines")
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:  # bounded by MAX_BODY_BYTES and READ_TIMEOUT
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
                if len(body) > MAX_BODY_BYTES:
                    raise ConnectionError("body too large")
        else:
            length = int(headers.get("content-length", "0"))
            if length > MAX_BODY_BYTES:
                raise ConnectionError("body too large")
            body = await reader.readexactly(length)
        return method, target, version, headers, body

    async def _respond(self, method, target, headers, body, reader, writer, keep_alive) -> None:
        url = urlsplit(target)
        path = url.path.rstrip("/")
        if method == "GET" and path == "/stats":
            full = parse_qs(url.query).get("full", ["0"])[0] not in ("", "0")
            stats = self._snapshot(full)
            await self._send(writer, 200, json.dumps(stats).encode(), keep_alive)
            return
        if method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "fake"}]}
            await self._send(writer, 200, json.dumps(models).encode(), keep_alive)
            return
        if path not in ("/v1/chat/completions", "/v1/completions"):
            await self._send(writer, 404, _error_body(404, f"no route {method} {path}"), keep_alive)
            return
        if method != "POST":
            await self._send(writer, 405, _error_body(405, f"{path} takes POST"), keep_alive)
            return
        try:
            payload = json.loads(body)
            chat = path == "/v1/chat/completions"
            prompts = self._prompts(payload, chat)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            await self._send(writer, 400, _error_body(400, f"bad request body: {error}"), keep_alive)
            return

        with self._lock:
            index = len(self._requests)
            self._requests.append(payload)
            self._auth_headers.append(headers.get("authorization", ""))
            self._attempts.update(prompts)
            info = RequestInfo(index, self._attempts[prompts[0]], prompts[0], path, payload)
        kind = self._plan(info) or None
        _check_kind(kind)
        if kind:
            with self._lock:
                self._faults_injected[kind] += 1
        if kind == "drop":
            raise _Drop
        if kind == "429":
            message = _error_body(429, "Rate limit reached (injected by FakeOpenAI)")
            extra = {"Retry-After": f"{self.retry_after:g}"}
            await self._send(writer, 429, message, keep_alive, extra)
            return
        if kind == "500":
            await self._send(writer, 500, _error_body(500, "The server had an error (injected)"), keep_alive)
            return
        if kind == "malformed":
            await self._send(writer, 200, MALFORMED_BODY, keep_alive)
            return
        delay = self.slow_seconds if kind == "slow" else self.latency
        if delay > 0:
            await asyncio.sleep(delay)
        if reader.at_eof() or writer.is_closing():  # the client gave up (timed out) while we waited
            raise _Drop
        reply = self._reply(payload, prompts, chat, index, self.chat)
        await self._send(writer, 200, json.dumps(reply).encode(), keep_alive)
        with self._lock:
            self._successes.update(prompts)

    @staticmethod
    def _prompts(payload: dict, chat: bool) -> list[str]:
        if chat:
            content = payload["messages"][-1]["content"]
            if isinstance(content, list):  # content parts
                content = "".join(part.get("text", "") for part in content)
            if not isinstance(content, str):
                raise TypeError("the last message has no text content")
            return [content]
        prompts = _completion_prompts(payload)
        logprobs = payload.get("prompt_logprobs")
        if logprobs is not None:
            if type(logprobs) is not int or not 0 <= logprobs <= FAKE_LIKELY:
                raise ValueError(f"prompt_logprobs must be an integer from 0 to {FAKE_LIKELY}")
            if any(isinstance(p, str) for p in prompts):
                raise ValueError("prompt_logprobs needs token-id prompts (the fake has no tokenizer)")
        return [p if isinstance(p, str) else token_prompt(p) for p in prompts]

    @staticmethod
    def _reply(payload: dict, prompts: list[str], chat: bool, index: int, answer: Callable[[str], str]) -> dict:
        model = payload.get("model", "fake")
        limit = payload.get("max_tokens")
        texts = [answer(prompts[0])] if chat else [completion_text(p) for p in prompts]
        cuts = [cut_at_words(text, limit) for text in texts]
        reasons = ["length" if cut else "stop" for _, cut in cuts]
        prompt_tokens = sum(words(p) for p in prompts)
        completion_tokens = sum(limit if cut else 3 for _, cut in cuts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if chat:
            message = {"role": "assistant", "content": cuts[0][0]}
            choices = [{"index": 0, "finish_reason": reasons[0], "message": message, "logprobs": None}]
            kind = "chat.completion"
        else:
            choices = [
                {"index": i, "text": text, "finish_reason": reason, "logprobs": None}
                for i, ((text, _), reason) in enumerate(zip(cuts, reasons, strict=True))
            ]
            if payload.get("prompt_logprobs") is not None:
                for choice, ids in zip(choices, _completion_prompts(payload), strict=True):
                    choice["prompt_logprobs"] = prompt_logprobs(ids, payload["prompt_logprobs"])
            kind = "text_completion"
        reply = {"id": f"cmpl-{index + 1}", "object": kind, "created": 0, "model": model, "choices": choices}
        return reply | {"usage": usage}

    @staticmethod
    async def _send(writer, status: int, body: bytes, keep_alive: bool, extra: dict | None = None) -> None:
        head = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{k}: {v}" for k, v in (extra or {}).items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fault-injecting OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every successful reply waits")
    parser.add_argument("--faults", default=None, help='a JSON fault plan: ["429", null, "drop"] or {"3": "500"}')
    parser.add_argument("--retry-after", type=float, default=0.2)
    parser.add_argument("--slow-seconds", type=float, default=3.0)
    parser.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # a listening socket, inherited
    parser.add_argument("--control-stdin", action="store_true", help=argparse.SUPPRESS)  # options in, EOF = stop
    args = parser.parse_args(argv)

    if args.control_stdin:
        options = pickle.loads(base64.b64decode(sys.stdin.buffer.readline()))
    else:
        faults = json.loads(args.faults) if args.faults else None
        if isinstance(faults, dict):
            faults = {int(k) if k.lstrip("-").isdigit() else k: v for k, v in faults.items()}
        options = {"latency": args.latency, "faults": faults}
        options |= {"retry_after": args.retry_after, "slow_seconds": args.slow_seconds}
    sock = socket.socket(fileno=args.fd) if args.fd is not None else socket.create_server(("127.0.0.1", args.port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeOpenAI(**options, _sock=sock) as server:
        print(server.base_url, flush=True)
        if args.control_stdin:
            threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()), daemon=True).start()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
