"""Progress bars print whole lines, now and then, into a file or CI log, and stay tqdm's bars on a terminal."""

import io
import os
import subprocess
import sys
from types import SimpleNamespace

import datasets
import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.demos.boring_classes import BoringModel
from transformers.utils import logging as transformers_logging

from codistill import progress
from codistill.config import build
from codistill.models.progress_bar import LineProgressBar, progress_bar
from codistill.progress import QuietLibraryBars, tqdm
from conftest import TINY_TEACHER


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _tidy_lines(text: str) -> list[str]:
    """The lines of `text`, which must hold no carriage return and end in a newline."""
    assert "\r" not in text and "\x1b" not in text  # no redraws, no cursor moves
    assert text.endswith("\n")
    return text.splitlines()


def test_off_a_terminal_a_bar_prints_a_line_at_most_every_mininterval_and_its_end(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setenv("TQDM_MININTERVAL", "10")  # tqdm's own setting (codistill's default is 30 s)
    out = io.StringIO()
    with tqdm(total=100, desc="steps", file=out) as bar:
        for _ in range(100):
            now[0] += 1
            bar.update()
            bar.refresh()  # as Lightning does after every batch: forced redraws are throttled too
    lines = _tidy_lines(out.getvalue())
    assert len(lines) == 10  # at 10 s, 20 s, ... 100 s, the last at its total; closing repeats nothing
    assert all(line.startswith("steps:") for line in lines)
    assert "100/100" in lines[-1]


def test_off_a_terminal_a_quick_bar_prints_one_line_by_default():
    out = io.StringIO()
    for _ in tqdm(range(10_000), desc="quick", file=out):
        pass
    (line,) = _tidy_lines(out.getvalue())
    assert "10000/10000" in line


def test_on_a_terminal_a_bar_redraws_in_place_as_tqdm_does():
    out = Terminal()
    for _ in tqdm(range(3), desc="steps", file=out, mininterval=0):
        pass
    assert out.getvalue().count("\r") >= 3 and out.getvalue().count("\n") == 1


def test_a_lightning_run_off_a_terminal_prints_a_few_whole_lines(make_config, capsys):
    callback = build(make_config("train").callbacks.progress_bar)  # the default callbacks' bar
    assert isinstance(callback, LineProgressBar)  # pytest's captured stdout is not a terminal
    trainer = pl.Trainer(
        max_epochs=3,
        limit_train_batches=50,
        limit_val_batches=5,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(BoringModel())
    lines = [line for line in _tidy_lines(capsys.readouterr().out) if "|" in line]  # the bars' lines
    assert len(lines) <= 7  # 165 batches: a line per bar as it ends (sanity check, 3 epochs, 3 validations)
    assert any(line.startswith("Epoch 2: 100%") and "50/50" in line for line in lines)


def test_on_a_terminal_lightning_keeps_its_own_bar(monkeypatch):
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert type(progress_bar(refresh_rate=5)) is RichProgressBar
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert type(progress_bar(refresh_rate=5)) is LineProgressBar


def test_library_bars_are_switched_off_only_off_a_terminal(monkeypatch):
    try:
        monkeypatch.setattr(sys, "stderr", Terminal())
        QuietLibraryBars().on_job_start(config=None)
        assert transformers_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        QuietLibraryBars().on_job_start(config=None)
        assert not transformers_logging.is_progress_bar_enabled() and not datasets.is_progress_bar_enabled()
    finally:
        transformers_logging.enable_progress_bar()
        datasets.enable_progress_bars()


@pytest.mark.thorough  # the same bars in-process above (a real Lightning fit, codistill's, the libraries')
def test_codistill_train_into_a_file_writes_no_carriage_return(tmp_path, cache_dir):
    """Every bar of a real run, codistill's, Lightning's, transformers' and datasets', into a log file."""
    recipe = ["debug=fdr", *TINY_TEACHER]  # the default's recipe: the teacher's draws, a causal student
    command = [sys.executable, "-m", "codistill.apps.train", *recipe, f"paths.cache_dir={cache_dir}"]
    env = {**os.environ, "CODISTILL_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    with open(tmp_path / "log.txt", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600)
    text = (tmp_path / "log.txt").read_text(encoding="utf-8")
    assert done.returncode == 0, text
    lines = _tidy_lines(text)
    assert any(line.startswith("Epoch 0: 100%") for line in lines)  # Lightning's bar, as one line
    assert not any(line.startswith(("Loading weights", "Writing model shards")) for line in lines)
