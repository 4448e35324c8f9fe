"""The shared client for LLM APIs: OpenAI, or any OpenAI-compatible server (vLLM, TGI, llama.cpp).

Requests run concurrently up to `max_concurrency`, under optional requests- and tokens-per-minute
limits (aiolimiter). A request that fails with 429, 5xx, a timeout, a dropped connection or a malformed
reply is retried with exponential backoff and jitter (tenacity), waiting what a `Retry-After` header
asks for when there is one. Every outcome goes to a `ResultStore` the moment it arrives: an answer as
`ok` with its `finish_reason`, a request that failed all its attempts as `error` (retried by the next
run). The progress bar shows done / failed / truncated (cut at `max_tokens`) / remaining, requests per
second and the spend so far.

The API key is read from the environment variable `api_key_env` only; it is never stored, logged or
written anywhere by codistill.
"""

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from codistill.errors import ConfigError
from codistill.llm.generated import LENGTH, Generation
from codistill.llm.store import IncompleteError, ResultStore
from codistill.progress import tqdm

CONNECTIONS_PER_CLIENT = 16


@dataclass(frozen=True)
class Request:
    """One API call: `chat` sends `prompt` as the user message, `completion` as a raw prompt (FIM), `score`
    sends the token `ids` (`prompt` is their text, for the token estimate) to the completions endpoint and
    stores `read(choice)` of the reply's first choice instead of its text (prompt log-probabilities)."""

    key: str
    prompt: str
    kind: str = "chat"
    stop: tuple[str, ...] = ()
    params: dict = field(default_factory=dict)  # per-request settings (temperature, top_p, seed, prompt_logprobs)
    ids: tuple[int, ...] = ()
    read: Callable[[dict], Any] | None = None


@dataclass
class RunStats:
    done: int = 0
    failed: int = 0
    truncated: int = 0  # answers cut at max_tokens (finish_reason 'length')
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend: float = 0.0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def retryable(exc: BaseException) -> bool:
    """Everything but a client error that a retry cannot fix (400, 401, 403, 404, 422...)."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, openai.OpenAIError | ValueError)  # connection, timeout, malformed reply


def retry_after(exc: BaseException) -> float | None:
    """Seconds a `Retry-After` / `retry-after-ms` header asks to wait, if the error carries one."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


class LLMClient:
    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        timeout: float = 60.0,
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        prices: dict | None = None,
    ):
        self.model, self.base_url, self.max_concurrency = model, base_url, max_concurrency
        self.rpm, self.tpm, self.timeout, self.max_attempts = (
            requests_per_minute,
            tokens_per_minute,
            timeout,
            max_attempts,
        )
        self.backoff = wait_exponential_jitter(initial=backoff_initial, max=backoff_max, jitter=backoff_initial)
        self.max_tokens, self.temperature = max_tokens, temperature
        self.price = (prices or {}).get(model)  # USD per million tokens: {prompt: .., completion: ..}
        self._api_key_env = api_key_env
        if not os.environ.get(api_key_env) and base_url is None:
            raise ConfigError(
                f"the OpenAI API needs a key in the environment variable {api_key_env}: export it, set base_url "
                "to a local OpenAI-compatible server, or use an offline backend (rationale=hf)"
            )

    def run(self, requests: list[Request], store: ResultStore, desc: str) -> RunStats:
        """Send the requests whose key the store lacks; store every outcome as it arrives."""
        pending = list({r.key: r for r in requests if r.key not in store}.values())
        return asyncio.run(self._run(pending, store, desc))

    def results(self, requests: list[Request], store: ResultStore, desc: str) -> list[Generation]:
        """The answer to every request, in order: stored ones reused, the rest sent."""
        self.complete(requests, store, desc)
        return [Generation.from_record(store.ok[r.key]) for r in requests]

    def complete(self, requests: list[Request], store: ResultStore, desc: str) -> None:
        """Send the requests whose key the store lacks, so that every one has an `ok` record. Raises
        IncompleteError, after storing all it got, when some request failed all its attempts."""
        stats = self.run(requests, store, desc)
        missing = list(dict.fromkeys(r.key for r in requests if r.key not in store))
        if missing:
            example = store.failed.get(missing[0], {}).get("error", "unknown error")
            raise IncompleteError(
                f"{len(missing)} of {len({r.key for r in requests})} {desc} requests still fail after "
                f"{self.max_attempts} attempts (e.g. {example}); everything else is saved in {store.dir}: run the "
                f"same command again to retry only those ({stats.done} answered in this run)"
            )

    def _wait(self, state) -> float:
        hinted = retry_after(state.outcome.exception())
        return hinted if hinted is not None else self.backoff(state)

    async def _run(self, pending: list[Request], store: ResultStore, desc: str) -> RunStats:
        stats, start = RunStats(), time.perf_counter()
        # httpx's connection pool costs grow with its size: several small clients keep them flat at high concurrency
        clients = [
            openai.AsyncOpenAI(
                api_key=os.environ.get(self._api_key_env) or "EMPTY",  # local servers ignore the key
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,  # the retries are ours, with Retry-After
            )
            for _ in range(-(-self.max_concurrency // CONNECTIONS_PER_CLIENT))
        ]
        limit = asyncio.Semaphore(self.max_concurrency)
        rpm = AsyncLimiter(self.rpm, 60) if self.rpm else None
        tpm = AsyncLimiter(self.tpm, 60) if self.tpm else None
        bar = tqdm(total=len(pending), desc=desc, unit="req", disable=not pending)
        shown = [0.0]  # when the postfix was last refreshed

        async def call(request: Request, client: openai.AsyncOpenAI):
            stats.attempts += 1
            if rpm:
                await rpm.acquire()
            if tpm:
                reply_tokens = request.params.get("max_tokens", self.max_tokens)
                await tpm.acquire(min(self.tpm, len(request.prompt) // 4 + reply_tokens))
            body = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature}
            if request.stop:
                body["stop"] = list(request.stop)
            body.update(request.params)
            # the client's low-level post: its auth, headers, timeouts and errors, without the per-call
            # parameter transforms and response models that cost milliseconds at hundreds of requests/s
            if request.kind == "chat":
                body["messages"] = [{"role": "user", "content": request.prompt}]
                reply = await client.post("/chat/completions", body=body, cast_to=httpx.Response)
            else:
                body["prompt"] = list(request.ids) if request.kind == "score" else request.prompt
                reply = await client.post("/completions", body=body, cast_to=httpx.Response)
            data = json.loads(reply.content)  # a malformed reply raises ValueError: retried
            choice, usage = data["choices"][0], data.get("usage") or {}
            if request.kind == "score":  # the generated token is not wanted: no finish reason
                return request.read(choice), usage, None
            text = choice["text"] if request.kind == "completion" else choice["message"]["content"]
            if not isinstance(text, str):
                raise ValueError("the reply has no text")
            return text, usage, choice.get("finish_reason")

        async def one(n: int, request: Request) -> None:
            async with limit:
                try:
                    retrying = AsyncRetrying(
                        stop=stop_after_attempt(self.max_attempts),
                        wait=self._wait,
                        retry=retry_if_exception(retryable),
                        reraise=True,
                    )
                    result, usage, reason = await retrying(call, request, clients[n % len(clients)])
                except Exception as exc:  # noqa: BLE001 - recorded, retried by the next run
                    stats.failed += 1
                    stats.errors.append(f"{type(exc).__name__}: {exc}")
                    store.put(request.key, error=f"{type(exc).__name__}: {exc}", model=self.model)
                else:
                    stats.done += 1
                    stats.truncated += reason == LENGTH
                    usage = {k: usage.get(k) or 0 for k in ("prompt_tokens", "completion_tokens")}
                    self._account(stats, usage)
                    store.put(request.key, result, usage=usage, model=self.model, finish_reason=reason)
            bar.update()
            if time.perf_counter() - shown[0] > 0.5 or stats.done + stats.failed == len(pending):  # cheap at 300 req/s
                shown[0] = time.perf_counter()
                bar.set_postfix(
                    done=stats.done,
                    failed=stats.failed,
                    truncated=stats.truncated,
                    spend=self._spend_text(stats),
                    refresh=False,
                )

        try:
            await asyncio.gather(*(one(n, r) for n, r in enumerate(pending)))
        finally:
            bar.close()
            for client in clients:
                await client.close()
        stats.seconds = time.perf_counter() - start
        return stats

    def _account(self, stats: RunStats, usage: dict) -> None:
        stats.prompt_tokens += usage["prompt_tokens"]
        stats.completion_tokens += usage["completion_tokens"]
        if self.price:
            stats.spend += (
                usage["prompt_tokens"] * self.price["prompt"] + usage["completion_tokens"] * self.price["completion"]
            ) / 1e6

    def _spend_text(self, stats: RunStats) -> str:
        return f"${stats.spend:.4f}" if self.price else "n/a"
