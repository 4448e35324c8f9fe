"""Teacher labelling and rationales, on the tiny teacher and a loopback OpenAI-compatible server."""

import pytest
import torch

from codistill.errors import ConfigError
from codistill.generation import generate_greedy
from codistill.llm.client import LLMClient
from codistill.llm.generators import OpenAIGenerator
from codistill.llm.store import ResultStore
from codistill.rationales.writer import RationaleWriter
from codistill.teachers.hf import HFTeacher
from openai_server import FakeOpenAI

FIM = {"prefix": "<fim-prefix>", "suffix": "<fim-suffix>", "middle": "<fim-middle>", "pad": "<fim-pad>"}
TEMPLATE = {"id": "t1", "text": "{language}|{code}|{middle}"}
PREFIXES = ["class Stack\n  new: =>\n", "x = 1\n", "import insert from table\n  for i = 1, 10\n    print i\n", "y"]
SUFFIXES = ["\n  pop: =>", "", "  return x\n", "\n"]


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return HFTeacher("tiny", tiny_teacher_dir, FIM, "<|endoftext|>", max_new_tokens=12, batch_size=4)


def test_batched_middles_equal_one_at_a_time(teacher, tmp_path):
    with ResultStore(tmp_path / "batched") as store:
        batched = teacher.complete(PREFIXES, SUFFIXES, store)
    teacher.batch_size = 1
    with ResultStore(tmp_path / "single") as store:
        single = teacher.complete(PREFIXES, SUFFIXES, store)
    teacher.batch_size = 4
    assert batched == single


def test_teacher_middles_are_stored_and_never_computed_twice(teacher, tmp_path, monkeypatch):
    with ResultStore(tmp_path) as store:
        first = teacher.complete(PREFIXES[:2], SUFFIXES[:2], store)
    calls = []
    monkeypatch.setattr(teacher, "_generate", lambda prompts: calls.append(prompts) or ["new"] * len(prompts))
    with ResultStore(tmp_path) as store:
        again = teacher.complete(PREFIXES, SUFFIXES, store)
    assert again[:2] == first and again[2:] == ["new", "new"]
    assert [len(c) for c in calls] == [2]  # only the two prompts the store lacked


def test_the_middle_is_exactly_the_text_before_the_first_stop_token(teacher):
    prompt = teacher.fim.psm(PREFIXES[0], SUFFIXES[0])
    ids = teacher.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    new = teacher.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )[0, ids.shape[1] :].tolist()
    # no stop token at all: every generated token is kept, the last character included
    assert generate_greedy(teacher.model, teacher.tokenizer, [prompt], 12, 1, stop_ids=set()) == [
        teacher.tokenizer.decode(new)
    ]
    # with the first generated token as a stop token: an empty middle; with the third: the first two
    assert generate_greedy(teacher.model, teacher.tokenizer, [prompt], 12, 1, stop_ids={new[0]}) == [""]
    if new[2] not in new[:2]:
        want = teacher.tokenizer.decode(new[:2])
        assert generate_greedy(teacher.model, teacher.tokenizer, [prompt], 12, 1, stop_ids={new[2]}) == [want]


def test_segments_too_long_for_the_teacher_context_name_the_fix(teacher, tmp_path):
    with pytest.raises(ConfigError, match="dataset.segment.length=2000 tokens does not fit"):
        teacher.check_segment_length(2000)
    with pytest.raises(ConfigError, match="exceeds the model's context"), ResultStore(tmp_path) as store:
        teacher.complete(["x = 1\n" * 600], [""], store)


def test_wrong_fim_tokens_name_the_fix(tiny_teacher_dir):
    with pytest.raises(ConfigError, match="teacher.fim"):
        HFTeacher("tiny", tiny_teacher_dir, {**FIM, "prefix": "<fim_prefix>"}, "<|endoftext|>")


def test_openai_rationales_come_back_in_order_from_a_compatible_server(monkeypatch, tmp_path):
    monkeypatch.setenv("CODISTILL_TEST_KEY", "sk-test-secret")
    with FakeOpenAI() as server, ResultStore(tmp_path) as store:
        client = LLMClient("gpt-test", base_url=server.base_url, api_key_env="CODISTILL_TEST_KEY", max_concurrency=4)
        backend = RationaleWriter(OpenAIGenerator(client), TEMPLATE)
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
