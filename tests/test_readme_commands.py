"""Every codistill command the README shows composes with Hydra, with the same overrides.

The commands are read from the README's fenced shell blocks: `codistill-<app> ...`, and `torchrun ... -m
codistill.apps.<app> ...` or `python -m codistill.apps.<app> ...`. A multirun's sweep (`a=1,2`) is
composed once per value. The composed config is then resolved (hydra's launcher and sweeper too), so a
bad interpolation, an unknown key or a group that an app lacks fails here, not on a user's GPU box.
"""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from codistill.config import CONFIG_DIR

README = Path(__file__).resolve().parents[1] / "README.md"
APPS = {"train", "generate", "eval", "exercises", "pretrain"}


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """(app, arguments) for every codistill command in the README's bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;|\|", line):
                words = shlex.split(part, comments=True)
                if found := _app_and_arguments(words):
                    commands.append(found)
    return commands


def _app_and_arguments(words: list[str]) -> tuple[str, list[str]] | None:
    for i, word in enumerate(words):
        if word.startswith("codistill-") and word.removeprefix("codistill-") in APPS:
            return word.removeprefix("codistill-"), words[i + 1 :]
        if word == "-m" and i + 1 < len(words) and words[i + 1].startswith("codistill.apps."):
            return words[i + 1].removeprefix("codistill.apps."), words[i + 2 :]
    return None


def compositions(arguments: list[str]) -> list[list[str]]:
    """The override lists a command composes: one per value of each sweep, the others at their first."""
    overrides = [a for a in arguments if a not in ("-m", "--multirun") and not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    first = [
        f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override() else o.input_line
        for o in parsed
    ]
    runs = [first]
    for i, o in enumerate(parsed):
        if o.is_sweep_override():
            runs += [
                first[:i] + [f"{o.get_key_element()}={v}"] + first[i + 1 :] for v in list(o.sweep_string_iterator())[1:]
            ]
    return runs


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_the_readme_shows_commands_of_every_app():
    assert {app for app, _ in COMMANDS} == APPS
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("app, arguments", COMMANDS, ids=[" ".join([a, *args])[:90] for a, args in COMMANDS])
def test_every_readme_command_composes(app, arguments, tmp_path):
    for overrides in compositions(arguments):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=app, overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path)  # ${hydra:runtime.output_dir} exists only in a Hydra run
        job = {k: v for k, v in cfg.items() if k != "hydra"}
        OmegaConf.to_container(OmegaConf.create(job), resolve=True)
        for part in ("launcher", "sweeper"):
            OmegaConf.to_container(cfg.hydra[part], resolve=True)


def test_the_parser_finds_torchrun_sweeps_and_continuations():
    text = (
        "```bash\n# a comment\ntorchrun --nproc_per_node 8 -m codistill.apps.generate experiment=x \\\n  seed=3\n"
        "pip install x && codistill-train -m a=1,2 b=3   # trailing comment\n```\n"
    )
    assert readme_commands(text) == [("generate", ["experiment=x", "seed=3"]), ("train", ["-m", "a=1,2", "b=3"])]
    assert compositions(["-m", "a=1,2", "b=3"]) == [["a=1", "b=3"], ["a=2", "b=3"]]


def test_ci_runs_the_readme_quick_start_as_written():
    """.ci/run executes the block .ci/quickstart.py reads from the README: the install, the embedded
    default and the README's test command, in that order, and nothing that needs what CI lacks."""
    root = README.parent
    spec = importlib.util.spec_from_file_location("quickstart", root / ".ci" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    block = module.quickstart(README.read_text(encoding="utf-8"))
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    commands = [c for c in commands if c]
    assert commands[0][:4] == ["pip", "install", "torch==2.13.0", "&&"] and ".[dev]" in commands[0]
    assert [c[0] for c in commands[1:]] == ["codistill-train", "python"] and commands[1] == ["codistill-train"]
    assert commands[2] == ["python", "-m", "pytest"]
    assert "python .ci/quickstart.py README.md" in (root / ".ci" / "run").read_text()
