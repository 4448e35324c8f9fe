import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codistill.data.fim import FIMTokens, fill_here, segment, split_fim
from codistill.errors import ConfigError
from codistill.rng import stable_rng

code = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300)


@given(code, st.integers(0, 2**32), st.sampled_from(["line", "char"]), st.one_of(st.none(), st.integers(1, 20)))
def test_split_reassembles_and_middle_is_never_empty(text, seed, mode, max_middle):
    prefix, middle, suffix = split_fim(text, stable_rng(seed, "f", 0), mode, max_middle)
    assert prefix + middle + suffix == text
    assert middle
    if mode == "line":
        assert prefix == "" or prefix.endswith("\n")
        assert middle.endswith("\n") or suffix == ""
        assert max_middle is None or middle.count("\n") <= max_middle
    elif max_middle is not None:
        assert len(middle) <= max_middle


@given(code, st.integers(0, 2**32))
def test_split_is_a_function_of_seed_and_key(text, seed):
    first = split_fim(text, stable_rng(seed, "abc", 3))
    stable_rng(seed, "other", 0).random()  # other draws in between change nothing
    assert split_fim(text, stable_rng(seed, "abc", 3)) == first


def test_stable_rng_does_not_depend_on_python_hash():
    assert stable_rng(7, "file", 2).random() == stable_rng(7, "file", 2).random()
    assert stable_rng(7, "file", 2).random() != stable_rng(8, "file", 2).random()


@settings(max_examples=50, deadline=None)
@given(code, st.integers(1, 40))
def test_char_segments_concatenate_to_the_file(text, length):
    pieces = segment(text, length, "chars")
    assert "".join(pieces) == text
    assert all(len(p) <= length for p in pieces)


@settings(max_examples=50, deadline=None)
@given(code, st.integers(1, 40))
def test_token_segments_are_exact_substrings_of_the_file(tiny_teacher_tokenizer, text, length):
    pieces = segment(text, length, "tokens", tiny_teacher_tokenizer)
    assert "".join(pieces) == text
    for piece in pieces[:-1]:
        # a cut never splits a character: its up-to-4 byte tokens stay together
        assert len(tiny_teacher_tokenizer(piece, add_special_tokens=False)["input_ids"]) <= length + 3


def test_short_tail_segments_are_dropped():
    assert segment("abcdefg", 3, "chars", min_length=2) == ["abc", "def"]


def test_unknown_modes_name_the_fix():
    with pytest.raises(ConfigError, match="dataset.fim.mode"):
        split_fim("x", stable_rng(0), mode="word")
    with pytest.raises(ConfigError, match="dataset.segment.unit"):
        segment("x", 3, "words")


def test_prompt_formats():
    fim = FIMTokens(prefix="<fim-prefix>", suffix="<fim-suffix>", middle="<fim-middle>")
    assert fim.psm("a = ", "\nb") == "<fim-prefix>a = <fim-suffix>\nb<fim-middle>"
    assert fill_here("a = ", "\nb") == "a = <FILL-HERE>\nb"
