"""Recipe 2's dataset: topic tree, combinations and the whole app against a loopback LLM server."""

import json
import re

import pytest

from codistill.apps.exercises import generate_exercises
from codistill.errors import ConfigError
from codistill.exercises.topics import combinations, leaves_of, parse_list, prompt_capacity, read_lines
from codistill.llm.store import ResultStore
from codistill.rng import stable_rng
from conftest import compose_config
from openai_server import FakeOpenAI

TREE = {
    "Strings": {"Slicing": ["negative indices", "steps"], "Formatting": ["f-strings", "padding"]},
    "Math": {"Primes": ["sieve", "trial division"], "Rounding": ["banker's rounding", "ceil"]},
}


def llm(prompt: str) -> str:
    """A deterministic 'LLM': JSON lists for the tree, a valid exercise (or junk) for exercise prompts."""
    if prompt.startswith("List "):
        n = int(re.search(r"List (\d+)", prompt).group(1))
        topic = re.search(r'topic "(.*?)"', prompt).group(1)
        return "Sure:\n" + json.dumps([f"{topic[:12]} part {i}" for i in range(n)])
    profession = re.search(r"work of an? (.+?):", prompt).group(1)
    if "part 1" in prompt.split("\n")[1]:  # one in a few replies is unusable
        return "I cannot help with that."
    name = re.sub(r"\W", "_", profession)
    return (
        f'```python\ndef count_{name}(items: list) -> int:\n    """Count the items a {profession} keeps.\n\n'
        f'    >>> count_{name}([1, 2])\n    2\n    """\n    return len([i for i in items if i is not None])\n```'
    )


def long_winded(prompt: str) -> str:
    """`llm`, but exercises for an other topic of "part 0" trail off into 100 words of explanation."""
    reply = llm(prompt)
    if reply.startswith("```") and "part 0" in prompt.split("\n")[2]:
        reply += "\n\nThis exercise " + " ".join(["explains"] * 100)
    return reply


def test_replies_are_parsed_as_data_never_evaluated():
    assert parse_list('Here: ["a", "b", "c"] done', 2) == ["a", "b"]
    assert parse_list("1. alpha\n2) beta\n- gamma\n* alpha\n", 5) == ["alpha", "beta", "gamma"]
    assert parse_list("__import__('os').system('x')", 3) == ["__import__('os').system('x')"]  # just a string
    assert parse_list("", 3) == []


def test_combinations_pair_leaves_under_other_subtopics_and_are_stable():
    professions = ["nurse", "pilot", "chef"]
    rows = combinations(TREE, professions, partners=3, n_prompts=None, seed=7)
    assert len(rows) == len(leaves_of(TREE)) * 3 and rows == combinations(TREE, professions, 3, None, 7)
    for row in rows:
        assert row["topic"].rsplit(" / ", 1)[0] != row["other_topic"].rsplit(" / ", 1)[0]
        assert row["profession"] in professions
    assert combinations(TREE, professions, 3, 5, 7) == rows[:5]
    assert combinations(TREE, professions, 3, None, 8) != rows


def one_profession_per_pair(tree: dict, professions: list[str], partners: int, seed: int) -> list[dict]:
    """`combinations` as it was before `professions_per_combo` (n_prompts=None): what the default must keep."""
    leaves, rows = leaves_of(tree), []
    for leaf in leaves:
        rng = stable_rng(seed, "partners", leaf.path)
        others = [o for o in leaves if (o.root, o.subtopic) != (leaf.root, leaf.subtopic)]
        for other in rng.sample(others, min(partners, len(others))):
            rows.append({"topic": leaf.path, "other_topic": other.path, "profession": rng.choice(professions)})
    stable_rng(seed, "order").shuffle(rows)
    return rows


@pytest.mark.parametrize("professions", [["nurse", "pilot", "chef"], read_lines(None, "professions.txt")])
def test_one_profession_per_combo_gives_exactly_the_rows_of_before(professions):
    for partners, seed in ((3, 7), (8, 1234)):
        assert combinations(TREE, professions, partners, None, seed) == one_profession_per_pair(
            TREE, professions, partners, seed
        )


def test_several_professions_per_combo_are_distinct_seeded_and_counted():
    professions = read_lines(None, "professions.txt")
    rows = combinations(TREE, professions, 3, None, 7, professions_per_combo=3)
    assert rows == combinations(TREE, professions, 3, None, 7, professions_per_combo=3)  # stable
    pairs: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        pairs.setdefault((row["topic"], row["other_topic"]), []).append(row["profession"])
    single = combinations(TREE, professions, 3, None, 7)
    assert set(pairs) == {(row["topic"], row["other_topic"]) for row in single}  # the same pairs as with one
    assert all(len(set(chosen)) == len(chosen) == 3 for chosen in pairs.values())
    assert len({tuple(chosen) for chosen in pairs.values()}) > 1  # drawn per pair, not one set for all
    assert len(rows) == prompt_capacity(TREE, 3, 3) == len(leaves_of(TREE)) * 3 * 3
    assert combinations(TREE, professions, 3, 10, 7, professions_per_combo=3) == rows[:10]
    assert combinations(TREE, professions, 3, None, 8, professions_per_combo=3) != rows


def test_capacity_counts_the_partners_each_leaf_really_has():
    # each of the 8 leaves has 6 leaves under other subtopics: more partners than that add nothing
    for partners, pairs in ((2, 16), (6, 48), (200, 48)):
        assert prompt_capacity(TREE, partners, 1) == pairs == len(combinations(TREE, ["a"], partners, None, 1))
        assert prompt_capacity(TREE, partners, 2) == 2 * pairs


def test_exercises_app_against_an_llm_server_resumes_and_filters(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-exercise-secret")
    overrides = [
        "backend=openai",
        "max_roots=3",
        "subtopics=3",
        "leaves=2",
        "partners=4",
        "n_prompts=40",
        "backend.client.model=gpt-test",
        "backend.client.max_concurrency=8",
    ]
    with FakeOpenAI(chat=llm) as server:
        cfg = compose_config(
            "exercises", tmp_path, cache_dir, overrides + [f"backend.client.base_url={server.base_url}"]
        )
        first = generate_exercises(cfg)
        calls = sum(server.attempts.values())
        again = generate_exercises(cfg)  # everything comes from the store
        assert sum(server.attempts.values()) == calls == 3 + 3 * 3 + 40
    assert first == again and first["prompts"] == 40
    out = tmp_path / "out"
    tree = json.loads((out / "topic_tree.json").read_text())
    assert len(tree) == 3 and all(len(subs) == 3 and all(len(v) == 2 for v in subs.values()) for subs in tree.values())
    kept = [json.loads(line) for line in open(out / "exercises.jsonl")]
    dropped = [json.loads(line) for line in open(out / "dropped.jsonl")]
    assert len(kept) + len(dropped) == 40 and len(kept) == first["kept"] > 0
    assert {d["reason"] for d in dropped} <= {"no_function", "duplicate", "near_duplicate"}
    assert all(row["problem"].startswith("def count_") and row["template"] == "exercise_v1" for row in kept)
    assert {"topic", "other_topic", "profession"} <= set(kept[0])
    assert (out / "diversity.png").is_file() and json.loads((out / "diversity.json").read_text())
    with ResultStore(tmp_path / "data" / "store") as store:
        assert len(store.ok) == calls
    assert not any(b"sk-exercise-secret" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_exercises_cut_at_max_tokens_are_dropped_as_truncated(tmp_path, cache_dir, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-exercise-secret")
    overrides = ["backend=openai", "max_roots=2", "subtopics=2", "leaves=2", "partners=3", "n_prompts=null"]
    with FakeOpenAI(chat=long_winded) as server:
        overrides += [f"backend.client.base_url={server.base_url}", "backend.client.max_tokens=60"]
        cfg = compose_config("exercises", tmp_path, cache_dir, overrides)
        with caplog.at_level("WARNING"):
            summary = generate_exercises(cfg)
    out = tmp_path / "out"
    kept = [json.loads(line) for line in open(out / "exercises.jsonl")]
    dropped = [json.loads(line) for line in open(out / "dropped.jsonl")]

    def trails_off(row: dict) -> bool:  # what long_winded made too long for 60 words
        return "part 0" in row["other_topic"] and "part 1" not in row["topic"]

    truncated = [row for row in dropped if row["reason"] == "truncated"]
    assert truncated and all(trails_off(row) and row["finish_reason"] == "length" for row in truncated)
    assert not any(trails_off(row) for row in kept) and all(row["finish_reason"] == "stop" for row in kept)
    assert not any(trails_off(row) for row in dropped if row["reason"] != "truncated")
    assert summary["dropped"]["truncated"] == len(truncated) and summary["kept"] == len(kept) > 0
    assert f"{len(truncated)} of {summary['prompts']} exercise replies were cut" in caplog.text
    assert "raise backend.client.max_tokens" in caplog.text
    with ResultStore(tmp_path / "data" / "store") as store:
        reasons = [r["finish_reason"] for r in store.ok.values() if r["result"].startswith("```")]
    assert reasons.count("length") == len(truncated)


def test_the_summary_gives_the_tree_capacity_and_warns_when_n_prompts_exceeds_it(
    tmp_path, cache_dir, monkeypatch, caplog
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-exercise-secret")
    overrides = ["backend=openai", "max_roots=2", "subtopics=2", "leaves=2", "partners=100", "n_prompts=500"]
    with FakeOpenAI(chat=llm) as server:
        overrides += [f"backend.client.base_url={server.base_url}", "professions_per_combo=2"]
        with caplog.at_level("WARNING"):
            summary = generate_exercises(compose_config("exercises", tmp_path, cache_dir, overrides))
    # 2 roots x 2 subtopics x 2 leaves = 8 leaves, each with 6 leaves under other subtopics, x 2 professions
    assert (summary["n_prompts"], summary["capacity"], summary["prompts"]) == (500, 8 * 6 * 2, 96)
    assert "n_prompts=500 exceeds the 96 prompts this tree can give" in caplog.text
    assert "raise professions_per_combo or partners" in caplog.text
    rows = [json.loads(line) for name in ("exercises", "dropped") for line in open(tmp_path / "out" / f"{name}.jsonl")]
    per_pair: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        per_pair.setdefault((row["topic"], row["other_topic"]), set()).add(row["profession"])
    assert len(per_pair) == 48 and all(len(chosen) == 2 for chosen in per_pair.values())


@pytest.mark.parametrize("per_combo", [0, 51])
def test_professions_per_combo_out_of_range_names_the_fix_before_any_call(tmp_path, cache_dir, per_combo):
    with FakeOpenAI(chat=llm) as server:
        overrides = ["backend=openai", f"backend.client.base_url={server.base_url}"]
        cfg = compose_config("exercises", tmp_path, cache_dir, [*overrides, f"professions_per_combo={per_combo}"])
        with pytest.raises(ConfigError, match=f"professions_per_combo={per_combo} must be between 1 and the 50 "):
            generate_exercises(cfg)
        assert server.requests == []


def test_a_bad_filter_threshold_names_its_key_before_any_call(tmp_path, cache_dir):
    with FakeOpenAI(chat=llm) as server:
        overrides = ["backend=openai", f"backend.client.base_url={server.base_url}", "filter.dedup_threshold=1.5"]
        cfg = compose_config("exercises", tmp_path, cache_dir, overrides)
        with pytest.raises(ConfigError, match=re.escape("filter.dedup_threshold=1.5 is outside [0, 1]: ")):
            generate_exercises(cfg)
        assert server.requests == []
