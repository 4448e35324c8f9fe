"""The exercise filter's thresholds: declared once (conf/exercises.yaml), checked once, one line per mistake."""

import re
from dataclasses import asdict
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from codistill.config import CONFIG_DIR, build
from codistill.errors import ConfigError
from codistill.exercises.settings import FilterSettings

SHIPPED = OmegaConf.load(Path(CONFIG_DIR) / "exercises.yaml").filter


def test_the_filter_block_builds_the_settings_with_every_threshold():
    settings = build(SHIPPED)
    assert isinstance(settings, FilterSettings)
    assert asdict(settings) == {key: value for key, value in SHIPPED.items() if key != "_target_"}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"dedup_threshold": 1.5}, "filter.dedup_threshold=1.5 is outside [0, 1]: set it within that range"),
        ({"contamination_threshold": -0.1}, "filter.contamination_threshold=-0.1 is outside [0, 1]: "),
        ({"seed": -1}, "filter.seed=-1 is outside [0, 4294967295]: "),
        ({"max_chars": 0}, "filter.max_chars=0 is below 1: set it to 1 or more"),
        ({"min_solution_lines": -1}, "filter.min_solution_lines=-1 is below 0: "),
        ({"num_perm": 1}, "filter.num_perm=1 is below 2: "),
        ({"max_chars": "8k"}, "filter.max_chars='8k' is not a whole number"),
        ({"dedup_ngram": 2.5}, "filter.dedup_ngram=2.5 is not a whole number"),
        ({"dedup_threshold": "high"}, "filter.dedup_threshold='high' is not a number"),
        ({"require_examples": "yes"}, "filter.require_examples='yes' is not true or false"),
        (
            {"min_solution_lines": 5, "max_solution_lines": 2},
            "filter.max_solution_lines=2 is below filter.min_solution_lines=5: no exercise could pass",
        ),
        ({"dedup_threshold": 0.99}, "filter.dedup_threshold=0.99 is too high for filter.num_perm=128 ("),
    ],
)
def test_a_bad_threshold_is_one_config_error_that_names_its_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        build(OmegaConf.merge(SHIPPED, override))
    assert "\n" not in str(error.value)
