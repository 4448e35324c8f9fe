"""The benchmarks' quick modes run, so a benchmark cannot rot unseen."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from codistill import compatibility
from codistill.config import build
from conftest import compose_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_pretraining_step_benchmark_runs_every_arm():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "pretrain_step.py"), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") == 5}
    assert {"sdpa fp32", "sdpa bf16", "eager fp32", "eager bf16"} <= set(rows)
    assert rows["sdpa fp32"].split("│")[4].strip() == "1.0000"  # the baseline's ratio to itself


def quick(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_kd_overhead_benchmark_steps_every_teacher_source_through_the_assembled_module():
    out = quick("kd_overhead.py", "--threads", "1")
    rows = {cells[1].strip(): cells[2:] for cells in (line.split("│") for line in out.splitlines()) if len(cells) == 7}
    arms = ("offline top-8", "sampled n=8", "online (dense)", "online+hidden", "own:alm online", "own:alm stored")
    assert all(arm in rows for arm in arms)
    assert rows["label_only"][1].strip() == rows["own:label_only"][1].strip() == "1.0000"  # each baseline
    assert 0 < float(rows["own:alm stored"][3]) < 20  # bytes per stored teacher token


def test_the_student_throughput_benchmark_runs_both_paths(tmp_path):
    out = quick("student_throughput.py", "--threads", "1", "--cache-dir", str(tmp_path))
    assert "| lightning (codistill)" in out and "| hf Seq2SeqTrainer" in out and "ratio lightning / hf" in out


def test_the_target_heads_benchmark_times_both_heads():
    out = quick("target_heads.py", "--threads", "1", "--bf16")
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 6}
    assert {"step ms", "vs full"} <= set(rows) and rows["vs full"].split("│")[2].strip() == "1.0000"


def test_the_real_size_rehearsal_steps_every_readme_experiment():
    out = quick("real_size.py", "--threads", "1")
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert {line.split("|")[1].strip() for line in table[1:]} == {
        "moonscript_santacoder_tiny_kd",
        "moonscript_santacoder_flan_t5",
        "textbook_starcoder",
    }


def test_the_t5_rewrite_benchmark_scores_every_tokenizer_arm(shared_data, tmp_path):
    out = quick("t5_rewrite.py", "--threads", "1", "--cache-dir", str(tmp_path))
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 6}
    assert {"bits per byte", "bytes per"} <= set(rows)
    own, noise, pieces, _ = (float(v) for v in rows["bits per byte"].split("│")[2:6])
    assert pieces < noise  # even 20 steps in, noise rows cost more than rows from the known pieces


def test_the_gpu_check_rehearses_on_cpu_two_validation_rounds_a_case(tmp_path):
    out = quick("gpu_check.py", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--only",
                "causal, ZeRO-3", "seq2seq, ZeRO-3")  # fmt: skip
    rows = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(rows) == {"causal, ZeRO-3", "seq2seq, ZeRO-3"}, out
    for row in rows.values():
        assert row["status"] == "ok" and len(row["validation rounds s"]) == 3 and row["train input tokens/s"] > 0


def test_every_gpu_check_case_composes_with_its_gpu_strategy(tmp_path):
    """What the lent GPU runs: each case's config as composed there, its DeepSpeed strategy built."""
    pytest.importorskip("deepspeed")
    sys.path.insert(0, str(BENCHMARKS))
    from gpu_check import CASES, COMMON

    for name, overrides in CASES.items():
        cfg = compose_config("train", tmp_path, tmp_path / "cache", [*overrides, *COMMON], embedded=True)
        assert cfg.trainer.max_epochs == 2 and cfg.trainer.devices == 1 and cfg.trainer.precision == "bf16-mixed"
        if "ZeRO" in name:
            assert instantiate(cfg.trainer.strategy).config["zero_optimization"]["stage"] == int(name[-1])
        assert ("liger" in name) == (cfg.loss.get("kernel") == "liger")


def test_the_zero3_generation_benchmark_times_both_arms():
    pytest.importorskip("deepspeed")
    out = quick("zero3_generation.py", "--threads", "1")
    rows = {line.split("│")[1].strip() for line in out.splitlines() if line.count("│") == 4}
    assert {"round 1 s", "round 2 s", "total s"} <= rows


def test_the_pretraining_peak_benchmark_measures_every_arm_against_the_peak():
    out = quick("pretrain_peak.py", "--threads", "1", "--no-compile")
    rows = {line.split("│")[1].strip() for line in out.splitlines() if line.count("│") == 6}  # 4 arms
    assert {"step ms", "GFLOP/s", "share of bf16 peak", "vs today"} <= rows and "GFLOP/s;" in out


@pytest.mark.parametrize("quick", [False, True])
def test_every_efficacy_arm_composes(tmp_path, quick):
    """What the efficacy run trains, composed and checked as codistill-train checks it: a config change that
    breaks an arm (an override of a group no longer in the defaults, a loss its teacher source cannot feed)
    shows here, not 25 minutes into the run."""
    sys.path.insert(0, str(BENCHMARKS))
    from argparse import Namespace

    from efficacy import arms, compose_train, seeded, sizes

    plan = arms(sizes(Namespace(quick=quick, seeds=None)))
    assert len(plan) == 17
    assert {"gkd (beta=0)", "t5 alm", "forward_kl + hidden states", "pretrained forward_kl"} <= set(plan)
    for name, overrides in plan.items():
        cfg = compose_train(tmp_path, name, [*overrides, *seeded(1)])
        compatibility.check(cfg, build(cfg.loss))  # what codistill-train refuses before any model loads
        assert cfg.trainer.max_steps == (150 if quick else 300) and cfg.student.name_or_path.seed == 1
        assert cfg.teacher.backend.name_or_path.steps == (300 if quick else 1500) and "control" not in cfg
        assert ("tiny_t5" in cfg.student.name_or_path._target_) == name.startswith("t5")
        assert ("pretrain" in cfg.student.name_or_path._target_) == name.startswith("pretrained")
    assert compose_train(tmp_path, "x", plan["gkd (lmbda=0)"]).loss.lmbda == 0
    assert compose_train(tmp_path, "x", plan["hidden states"]).loss.hidden.weight == 1.0


def test_the_teacher_labelling_benchmark_runs_both_paths_to_the_same_outputs(tmp_path):
    out = quick("teacher_throughput.py", "--cache-dir", str(tmp_path))
    assert "identical outputs: yes" in out and "ratio batched / per-sample" in out
