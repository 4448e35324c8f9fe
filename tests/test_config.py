"""Every config composes, resolves and names importable targets; bad overrides fail clearly."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from codistill.config import CONFIG_DIR
from conftest import compose_config

GROUPS = [
    "teacher",
    "student",
    "dataset",
    "rationale",
    "data",
    "model",
    "loss",
    "teacher_logits",
    "control",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "debug",
]


# options that only make sense together: a served teacher with API rationales (hf rationales run the
# teacher's model locally), recipe 2's exercises data with its causal module
PAIRED = {
    "openai_compatible": ["rationale=openai", "student=tiny_t5", "teacher_logits=online", "loss=step_by_step"],
    "exercises": ["model=causal", "~loss", "data.path=x.jsonl"],
    "causal": ["data=exercises", "~loss", "data.path=x.jsonl"],
    "textbook_starcoder": ["data.path=x.jsonl"],
}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def _targets(node):
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield node._target_
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, ListConfig):
        for value in node:
            yield from _targets(value)


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_resolves_and_imports(make_config, group):
    assert _options(group), f"conf/{group} is empty"
    for option in _options(group):
        cfg = make_config("train", [f"{group}={option}", *PAIRED.get(option, [])])
        OmegaConf.resolve(cfg)
        for target in _targets(cfg):
            assert callable(get_object(target)), target


def _model_path(option: str) -> str:
    """Where an evaluated model comes from: a seq2seq student's folder, a server's model, or a backend's path."""
    if option == "student":
        return "eval_model.name_or_path=some/model"
    if option == "openai_compatible":
        return "eval_model.backend.client.model=some/model"
    return "eval_model.backend.name_or_path=some/model"


@pytest.mark.parametrize("option", _options("eval_model"))
def test_every_eval_model_composes_and_imports(make_config, option):
    overrides = [f"eval_model={option}", _model_path(option), "tasks.fim_heldout.dataset_dir=d"]
    overrides.append("tasks.fim_corpus.path=c")
    cfg = make_config("eval", overrides)
    OmegaConf.resolve(cfg)
    for target in _targets(cfg):
        assert callable(get_object(target)), target
    assert cfg.run and all(name in cfg.tasks for name in cfg.run)


@pytest.mark.parametrize("option", _options("backend"))
def test_every_backend_composes_for_exercises(make_config, option):
    cfg = make_config("exercises", [f"backend={option}"] + (["backend.name_or_path=m"] if option == "hf" else []))
    OmegaConf.resolve(cfg)
    assert callable(get_object(cfg.backend._target_)) and "{profession}" in cfg.exercise_template.text


def test_generate_config_composes_with_the_shared_groups(make_config):
    cfg = make_config("generate", ["teacher=santacoder", "rationale=openai", "dataset=moonscript_fim"])
    OmegaConf.resolve(cfg)
    assert cfg.teacher.fim.prefix == "<fim-prefix>" and cfg.dataset.corpus.data_dir == "data/moonscript"


def test_the_real_recipe_overrides_only_groups_and_what_changes(make_config):
    cfg = make_config("train", ["experiment=moonscript_santacoder_flan_t5"])
    assert cfg.teacher.backend.name_or_path == "bigcode/gpt_bigcode-santacoder"
    assert cfg.student.name_or_path == "google/flan-t5-small"
    assert cfg.dataset.corpus.source == "bigcode/the-stack"
    assert cfg.data.label_source == "teacher" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.max_source_length == 512  # flan-t5-small's in Distilling Step-by-Step


def test_the_embedded_default_is_offline(tmp_path, cache_dir):
    cfg = compose_config("train", tmp_path, cache_dir, embedded=True)
    assert cfg.teacher.backend.name_or_path._target_.endswith("pretrained_gpt_bigcode")  # built here, not downloaded
    assert cfg.student.name_or_path._target_.endswith("gpt_bigcode_with_tokenizer")  # the teacher's tokenizer
    assert cfg.loss.divergence == "forward_kl" and cfg.teacher_logits.samples == 64
    assert cfg.data.label_source == "ground_truth" and cfg.control.loss.divergence is None
    assert cfg.get("rationale") is None and cfg.dataset.name == "moonscript_sample"


def test_recipe_1_as_published_is_one_override_away(tmp_path, cache_dir):
    """experiment=step_by_step_tiny: a T5 student, the teacher's middles, rationales, both tasks."""
    cfg = compose_config("train", tmp_path, cache_dir, ["experiment=step_by_step_tiny"], embedded=True)
    assert cfg.student.name_or_path._target_.endswith("tiny_t5") and cfg.data.label_source == "teacher"
    assert cfg.loss.alpha == 0.5 and cfg.loss.divergence is None and "samples" not in cfg.teacher_logits
    assert cfg.rationale.backend._target_.endswith("HFBackend.from_pretrained") and cfg.control is not None


def test_unknown_options_fail_with_the_key_named(make_config):
    with pytest.raises(ConfigCompositionException, match="learning_rate"):
        make_config("train", ["learning_rate=0.1"])
    with pytest.raises(ConfigCompositionException, match="student"):
        make_config("train", ["student=gpt5"])
