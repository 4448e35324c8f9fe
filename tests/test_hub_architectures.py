"""The real checkpoints' architectures, built on the meta device: right sizes, no download."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM, T5ForConditionalGeneration

from codistill.config import CONFIG_DIR
from codistill.models.tiny import untie_lm_head

FIXTURES = Path(__file__).parent / "fixtures" / "hub_configs"


def _fixture(hub_id: str) -> dict:
    return json.loads((FIXTURES / f"{hub_id.replace('/', '--')}.json").read_text())


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("teacher", ["santacoder", "starcoderbase_1b"])
def test_teacher_configs_match_the_hub_architecture(teacher):
    cfg = OmegaConf.load(Path(CONFIG_DIR) / "teacher" / f"{teacher}.yaml")
    real = _fixture(cfg.backend.name_or_path)
    values = {k: v for k, v in real.items() if k not in ("special_tokens", "parameters")}
    config = AutoConfig.for_model(**values)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert config.multi_query
    assert _count(model) == pytest.approx(real["parameters"], rel=0.005)
    assert {cfg.eos_token, *cfg.fim.values()} <= set(real["special_tokens"])


def test_flan_t5_small_has_77m_parameters_with_its_own_lm_head():
    cfg = OmegaConf.load(Path(CONFIG_DIR) / "student" / "flan_t5_small.yaml")
    real = _fixture(cfg.name_or_path)
    values = {k: v for k, v in real.items() if k != "parameters"}
    config = AutoConfig.for_model(**values)
    with torch.device("meta"):
        model = T5ForConditionalGeneration(config)
        tied = _count(model)
        untie_lm_head(model)
    assert _count(model) == real["parameters"] == 76_961_152
    assert real["parameters"] - tied == config.vocab_size * config.d_model  # transformers 5 ties by default
