"""Teacher labelling and rationales, on the tiny teacher and a loopback OpenAI-compatible server."""

import pytest
import torch

from codistill.backends.hf import HFBackend
from codistill.backends.openai import OpenAIBackend
from codistill.errors import ConfigError
from codistill.llm.client import LLMClient
from codistill.llm.generated import Generation
from codistill.llm.store import ResultStore
from codistill.rationales.writer import RationaleWriter
from codistill.teacher import Teacher
from openai_server import FakeOpenAI

FIM = {"prefix": "<fim-prefix>", "suffix": "<fim-suffix>", "middle": "<fim-middle>", "pad": "<fim-pad>"}
TEMPLATE = {"id": "t1", "text": "{language}|{code}|{middle}"}
PREFIXES = ["class Stack\n  new: =>\n", "x = 1\n", "import insert from table\n  for i = 1, 10\n    print i\n", "y"]
SUFFIXES = ["\n  pop: =>", "", "  return x\n", "\n"]


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return Teacher(
        "tiny", HFBackend.from_pretrained(tiny_teacher_dir, max_new_tokens=12, batch_size=4), FIM, "<|endoftext|>"
    )


def test_batched_middles_equal_one_at_a_time(teacher, tmp_path):
    with ResultStore(tmp_path / "batched") as store:
        batched = teacher.middles(PREFIXES, SUFFIXES, store)
    teacher.backend.batch_size = 1
    with ResultStore(tmp_path / "single") as store:
        single = teacher.middles(PREFIXES, SUFFIXES, store)
    teacher.backend.batch_size = 4
    assert batched == single


def test_teacher_middles_are_stored_and_never_computed_twice(teacher, tmp_path, monkeypatch):
    with ResultStore(tmp_path) as store:
        first = teacher.middles(PREFIXES[:2], SUFFIXES[:2], store)
    calls = []
    monkeypatch.setattr(
        teacher.backend, "_run", lambda prompts, *_: calls.append(prompts) or [[Generation("new")]] * len(prompts)
    )
    with ResultStore(tmp_path) as store:
        again = teacher.middles(PREFIXES, SUFFIXES, store)
    assert again[:2] == first and again[2:] == ["new", "new"]
    assert [len(c) for c in calls] == [2]  # only the two prompts the store lacked


def free_run(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """The ids a model generates greedily after `prompt` with no stop token at all."""
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )[0, ids.shape[1] :].tolist()


def test_the_middle_is_exactly_the_text_before_the_first_stop_token(teacher):
    prompt = teacher.fim.psm(PREFIXES[0], SUFFIXES[0])
    model, tokenizer = teacher.backend.model, teacher.backend.tokenizer
    new = free_run(model, tokenizer, prompt, 12)
    assert tokenizer.eos_token_id not in new  # the backend always stops at end-of-text: this run never meets it

    def greedy(limit: int, stops: tuple[str, ...] = ()) -> list[Generation]:
        return HFBackend(model, tokenizer, "tiny", max_new_tokens=limit, batch_size=1).generate([prompt], stops)

    # no stop token at all: every generated token is kept, the last character included, and it was cut short
    assert greedy(12) == [Generation(tokenizer.decode(new), "length")]
    # with the first generated token as a stop token: an empty middle
    assert greedy(12, (tokenizer.convert_ids_to_tokens(new[0]),)) == [Generation("", "stop")]
    # with the first new kind of token (k > 0) as a stop token: the k tokens before it; whether the stop token
    # itself fits in max_new_tokens decides between an ended reply and one cut short with the same text
    k = next(j for j in range(1, 12) if new[j] not in new[:j])
    text = tokenizer.decode(new[:k])
    for limit, reason in ((12, "stop"), (k + 1, "stop"), (k, "length")):
        assert greedy(limit, (tokenizer.convert_ids_to_tokens(new[k]),)) == [Generation(text, reason)], limit


def test_the_hf_backend_marks_cut_replies_length_and_stored_ones_keep_their_reason(tiny_teacher_dir, tmp_path):
    prompts = ["hello world", "x"]
    generator = HFBackend.from_pretrained(tiny_teacher_dir, max_new_tokens=8, batch_size=2, device="cpu")
    free = [free_run(generator.model, generator.tokenizer, p, 8) for p in prompts]
    with ResultStore(tmp_path / "cut") as store:
        cut = generator.generate(prompts, store=store, desc="test")
    assert cut == [Generation(generator.tokenizer.decode(ids), "length") for ids in free]  # no end-of-text in 8
    # make a token the first reply meets after k others the end-of-text token: that reply ends early, normally
    k = next(j for j in range(1, 8) if free[0][j] not in free[0][:j])
    assert free[0][k] not in free[1]  # the tiny model's second reply never meets it
    generator.tokenizer.eos_token = generator.tokenizer.convert_ids_to_tokens(free[0][k])
    with ResultStore(tmp_path / "stop") as store:
        first = generator.generate(prompts, store=store, desc="test")
    assert first == [Generation(generator.tokenizer.decode(free[0][:k]), "stop"), cut[1]]
    with ResultStore(tmp_path / "stop") as store:  # a restart reads the reasons back, computing nothing
        generator.model = None
        assert generator.generate(prompts, store=store, desc="test") == first
        assert sorted(r["finish_reason"] for r in store.ok.values()) == ["length", "stop"]


def test_rationales_cut_at_the_token_limit_are_kept_and_warned_about(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CODISTILL_TEST_KEY", "sk-test-secret")
    codes = ["a <FILL-HERE>", "b <FILL-HERE>"]
    with FakeOpenAI(chat=lambda prompt: "short" if prompt.startswith("MoonScript|a") else "a b c d e") as server:
        client = LLMClient("gpt-test", base_url=server.base_url, api_key_env="CODISTILL_TEST_KEY", max_tokens=3)
        with ResultStore(tmp_path) as store, caplog.at_level("WARNING"):
            out = RationaleWriter(OpenAIBackend(client), TEMPLATE).explain("MoonScript", codes, ["m", "m"], store)
    assert out == ["short", "a b c"]
    assert "1 of 2 rationale replies were cut" in caplog.text
    assert "raise rationale.backend.client.max_tokens" in caplog.text


def test_segments_too_long_for_the_teacher_context_name_the_fix(teacher, tmp_path):
    with pytest.raises(ConfigError, match="dataset.segment.length=2000 tokens does not fit"):
        teacher.check_segment_length(2000)
    with pytest.raises(ConfigError, match="exceeds the model's context"), ResultStore(tmp_path) as store:
        teacher.middles(["x = 1\n" * 600], [""], store)


def test_wrong_fim_tokens_name_the_fix(tiny_teacher_dir):
    with pytest.raises(ConfigError, match="teacher.fim"):
        Teacher("tiny", HFBackend.from_pretrained(tiny_teacher_dir), {**FIM, "prefix": "<fim_prefix>"}, "<|endoftext|>")


def test_openai_rationales_come_back_in_order_from_a_compatible_server(monkeypatch, tmp_path):
    monkeypatch.setenv("CODISTILL_TEST_KEY", "sk-test-secret")
    with FakeOpenAI() as server, ResultStore(tmp_path) as store:
        client = LLMClient("gpt-test", base_url=server.base_url, api_key_env="CODISTILL_TEST_KEY", max_concurrency=4)
        backend = RationaleWriter(OpenAIBackend(client), TEMPLATE)
        codes = [f"code {i} <FILL-HERE>" for i in range(10)]
        out = backend.explain("MoonScript", codes, ["m"] * 10, store)
        assert backend.explain("MoonScript", codes[:3], ["m"] * 3, store) == out[:3]  # answered from the store
    assert out == ["explained: " + f"MoonScript|code {i} <FILL-HERE>|m"[:20] for i in range(10)]
    assert len(server.requests) == 10 and server.requests[0]["model"] == "gpt-test"
    assert set(server.auth_headers) == {"Bearer sk-test-secret"}
    assert not any(b"sk-test-secret" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_openai_without_a_key_names_the_fix(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        LLMClient("gpt-test")


def test_draws_are_seeded_per_pair_independent_across_pairs_and_the_same_on_every_call(tiny_teacher_dir):
    """Two continuations after one prompt share the distribution at their first position: seeded alike, their
    64 draws there were the same; seeded per pair they are independent, and a pair draws the same again."""
    backend = HFBackend.from_pretrained(tiny_teacher_dir, dtype="float32", device="cpu")
    first, second = backend.score(["local x = "] * 2, ["1", "2"], samples=64)
    assert first.sample_ids[0] != second.sample_ids[0] or first.sample_counts[0] != second.sample_counts[0]
    assert backend.score(["local x = "], ["1"], samples=64)[0] == first


def test_a_stop_string_ends_generation_inside_generate_not_at_the_token_budget(tiny_teacher_dir):
    """HumanEval's stops ("\\ndef", ...) are strings, not tokens: the batch decoded all `max_new_tokens` and cut
    after. Now a row stops once its text holds one: the model runs a step or two past the stop, no more."""
    backend = HFBackend.from_pretrained(tiny_teacher_dir, dtype="float32", device="cpu", max_new_tokens=48)
    free = backend.generate(["local x = "])[0].text  # no stop: the whole budget
    ids = backend.tokenizer(free, add_special_tokens=False)["input_ids"]
    vocab = backend.tokenizer.get_vocab()
    at = len(ids) // 3
    stop = backend.tokenizer.decode(ids[at : at + 2])
    assert stop not in vocab and len(ids) > 24  # a text stop, reached a third of the way in
    steps, forward = [], backend.model.forward
    backend.model.forward = lambda *a, **k: steps.append(1) or forward(*a, **k)
    stopped = backend.generate(["local x = "], stops=(stop,))[0]
    assert stop not in stopped.text and free.startswith(stopped.text)
    assert len(steps) <= at + 3 < 48
