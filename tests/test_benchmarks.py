"""The benchmarks' quick modes run, so a benchmark cannot rot unseen."""

import subprocess
import sys
from pathlib import Path

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
