"""Scoring through an OpenAI-compatible server's prompt log-probabilities (vLLM's), against the loopback fake."""

import math

import pytest

from codistill.backends.openai import OpenAIBackend
from codistill.errors import ConfigError
from codistill.llm.client import LLMClient
from codistill.llm.store import IncompleteError, ResultStore, content_key
from openai_server import FakeOpenAI, FirstAttempts, next_token_logprobs, token_prompt

PROMPTS = ["x = 1\n", "local a = a + a\n", "-- a moon line\n"]
CONTINUATIONS = ["x = x + 1\n", "a = a + a + a\n", "print 'hello'\n"]


def _backend(server: FakeOpenAI, tokenizer, context_length: int | None = None) -> OpenAIBackend:
    settings = {"max_concurrency": 4, "timeout": 5.0, "max_attempts": 3, "backoff_initial": 0.05, "backoff_max": 0.1}
    return OpenAIBackend(LLMClient("served", base_url=server.base_url, **settings), tokenizer, context_length)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _check(scores, prompt_ids: list[int], continuation_ids: list[int], top_k: int) -> int:
    """Assert `scores` is the fake model's distribution at each continuation token; how many of those tokens
    were among the top_k."""
    assert scores.ids == continuation_ids
    in_top = 0
    for j, token in enumerate(continuation_ids):
        likely, other = next_token_logprobs(prompt_ids + continuation_ids[:j])
        top = list(likely.items())[:top_k]
        assert scores.logprobs[j] == pytest.approx(likely.get(token, other))
        assert scores.topk_ids[j] == [t for t, _ in top]
        assert scores.topk_logprobs[j] == pytest.approx([lp for _, lp in top])
        assert scores.topk_logprobs[j] == sorted(scores.topk_logprobs[j], reverse=True)
        assert scores.tail[j] == pytest.approx(1 - sum(math.exp(lp) for _, lp in top))
        in_top += token in scores.topk_ids[j]
    return in_top


def test_scores_are_the_servers_log_probabilities_at_the_continuation_tokens(tiny_teacher_dir, tiny_teacher_tokenizer):
    with FakeOpenAI() as server:
        scores = _backend(server, tiny_teacher_dir).score(PROMPTS, CONTINUATIONS, top_k=5)
        sent = {tuple(body["prompt"]): body for body in server.requests}
        no_top = _backend(server, tiny_teacher_dir).score(PROMPTS[:1], CONTINUATIONS[:1], top_k=0)
        assert server.requests[-1]["prompt_logprobs"] == 1  # at least 1: the tokens' own log-probabilities come back
    in_top = 0
    for prompt, continuation, result in zip(PROMPTS, CONTINUATIONS, scores, strict=True):
        p, c = _ids(tiny_teacher_tokenizer, prompt), _ids(tiny_teacher_tokenizer, continuation)
        body = sent[tuple(p + c)]  # the prompt's then the continuation's ids, tokenized apart
        assert (body["prompt_logprobs"], body["max_tokens"], body["temperature"]) == (5, 1, 0)
        assert len(p) > 1 and len(result.ids) == len(c) > 1  # the prompt's tokens are not scored
        in_top += _check(result, p, c, top_k=5)
    assert 0 < in_top < sum(len(s.ids) for s in scores)  # the continuation's tokens both inside the top-k and not
    assert no_top[0].topk_ids == [[]] * len(no_top[0].ids) and no_top[0].tail == [1.0] * len(no_top[0].ids)
    assert no_top[0].logprobs == pytest.approx(scores[0].logprobs)


def test_a_stored_run_resumes_without_sending_what_it_finished(tmp_path, tiny_teacher_dir, tiny_teacher_tokenizer):
    tok = tiny_teacher_tokenizer
    sent = [token_prompt(_ids(tok, p) + _ids(tok, c)) for p, c in zip(PROMPTS, CONTINUATIONS, strict=True)]
    prompts, continuations = [*PROMPTS, PROMPTS[0]], [*CONTINUATIONS, CONTINUATIONS[0]]  # a pair twice: sent once
    with FakeOpenAI(faults={sent[1]: ["500"] * 3}) as server:
        backend = _backend(server, tiny_teacher_dir)  # 3 attempts: the first run gives up on the second pair
        with ResultStore(tmp_path) as store, pytest.raises(IncompleteError, match="1 of 3 scoring requests"):
            backend.score(prompts, continuations, top_k=3, store=store)
        assert len(store.ok) == 2 and server.attempts == {sent[0]: 1, sent[1]: 3, sent[2]: 1}  # stored as they came
        with ResultStore(tmp_path) as store:  # the next run sends only what the first did not finish
            scores = backend.score(prompts, continuations, top_k=3, store=store)
        assert server.attempts == {sent[0]: 1, sent[1]: 4, sent[2]: 1}
        with ResultStore(tmp_path) as store:
            assert backend.score(prompts, continuations, top_k=3, store=store) == scores
            keys = {content_key("score", "served", 3, p, c) for p, c in zip(PROMPTS, CONTINUATIONS, strict=True)}
            assert set(store.ok) == keys and store.failed == {}  # one record per (model, top_k, prompt, continuation)
        assert sum(server.attempts.values()) == 6
    assert scores[3] == scores[0]


def test_a_prompt_too_long_for_the_served_context_loses_its_oldest_tokens(tiny_teacher_dir, tiny_teacher_tokenizer):
    p, c = _ids(tiny_teacher_tokenizer, PROMPTS[1]), _ids(tiny_teacher_tokenizer, CONTINUATIONS[1])
    with FakeOpenAI() as server:
        backend = _backend(server, tiny_teacher_dir, context_length=len(c) + 3)  # 2 prompt tokens, 1 generated
        scores = backend.score(PROMPTS[1:2], CONTINUATIONS[1:2], top_k=2)
        assert server.requests[0]["prompt"] == p[-2:] + c
    _check(scores[0], p[-2:], c, top_k=2)


def test_rate_limits_and_server_errors_are_retried(tiny_teacher_dir, tiny_teacher_tokenizer):
    p, c = _ids(tiny_teacher_tokenizer, PROMPTS[0]), _ids(tiny_teacher_tokenizer, CONTINUATIONS[0])
    with FakeOpenAI(faults={token_prompt(p + c): ["429", "500"]}, retry_after=0.05) as server:
        scores = _backend(server, tiny_teacher_dir).score(PROMPTS[:1], CONTINUATIONS[:1], top_k=4)
        assert server.faults_injected == {"429": 1, "500": 1} and server.attempts == {token_prompt(p + c): 3}
    _check(scores[0], p, c, top_k=4)
    with FakeOpenAI(faults=FirstAttempts("malformed")) as server:
        scores = _backend(server, tiny_teacher_dir).score(PROMPTS, CONTINUATIONS, top_k=2)
        assert server.faults_injected == {"malformed": len(PROMPTS)}
    for prompt, continuation, result in zip(PROMPTS, CONTINUATIONS, scores, strict=True):
        _check(result, _ids(tiny_teacher_tokenizer, prompt), _ids(tiny_teacher_tokenizer, continuation), top_k=2)


def test_scoring_without_the_served_models_tokenizer_is_refused(tmp_path):
    with FakeOpenAI() as server, ResultStore(tmp_path) as store:
        backend = _backend(server, None)
        for where in (None, store):
            with pytest.raises(ConfigError, match="set backend.tokenizer to the served model's tokenizer"):
                backend.score(PROMPTS, CONTINUATIONS, top_k=2, store=where)
        assert server.requests == []


def test_draws_from_a_served_models_whole_distribution_are_refused(tmp_path, tiny_teacher_dir):
    """A server returns its top-k log-probabilities only: sampled distributions need a local teacher."""
    with FakeOpenAI() as server, ResultStore(tmp_path) as store:
        backend = _backend(server, tiny_teacher_dir)
        with pytest.raises(ConfigError, match="not draws from its whole distribution: use teacher_logits=offline"):
            backend.score(PROMPTS, CONTINUATIONS, top_k=0, store=store, samples=8)
        assert server.requests == []
