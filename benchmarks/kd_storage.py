"""How much of dense logit distillation's gain each stored form of the teacher's distribution keeps, and
what it costs to store.

The efficacy benchmark's setup (benchmarks/efficacy.py: the MoonScript corpus split by file, the teacher
`codistill-pretrain` builds, a causal student around its tokenizer, equal steps, batch and learning rate),
one seed, forward KL mixed half and half with the label's cross-entropy, from the teacher in each form:

- dense: the online teacher's logits (`teacher_logits=online`), the reference;
- top-k: `teacher_logits=offline` at each `--top-k` (one dataset stored at the largest k; a smaller k reads
  its first k ids, the rest of their mass joining the tail, as `OfflineTeacher` does);
- sampled: `teacher_logits=sampled` with each `--samples` n draws per position;

beside label-only cross-entropy on the same data (the baseline). "kept" is the share of dense KD's gain in
bits per byte over the baseline that a form keeps, per held-out domain (the MoonScript test files; the
standard-library files the teacher's pretraining held out); storage is Arrow bytes per label token. The
arms run `--workers` at a time, each in its own process (on a GPU they share it).

    python benchmarks/kd_storage.py --quick      # a few minutes on 2 cores: tiny teacher, a smoke test
    python benchmarks/kd_storage.py --workers 8  # the calibration (a GPU: about 10 minutes)
"""

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from efficacy import (
    ROOT,
    causal,
    compose_train,
    run_arm,
    score,
    seeded,
    shared_settings,
    student_settings,
    teacher_and_held_out_stdlib,
)

from codistill.config import build
from codistill.data import schema
from codistill.data.fim_datamodule import load_distillation_dataset
from codistill.tables import print_table

KD = ["loss=forward_kl", "loss.ce_weight=0.5", "data.label_source=ground_truth"]


def arms(args) -> dict[str, list[str]]:
    stored = f"data.source.teacher_topk={max(args.top_k)}"
    out = {"label_only": ["loss=label_only", "data.label_source=ground_truth"], "dense (online)": KD}
    for k in args.top_k:
        out[f"top-{k}"] = [*KD, "teacher_logits=offline", f"teacher_logits.top_k={k}", stored]
    for n in args.samples:
        out[f"sampled n={n}"] = [*KD, "teacher_logits=sampled", f"teacher_logits.samples={n}"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny teacher, few files and steps: a smoke test")
    parser.add_argument("--top-k", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--samples", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--teacher-batch", type=int, default=16, help="prompts per teacher generate/score call")
    parser.add_argument("--out", default=str(ROOT / "docs" / "kd_storage.json"))
    args = parser.parse_args()
    args.max_files = 40 if args.quick else 314
    args.teacher_dim, args.teacher_layers = (64, 2) if args.quick else (256, 6)
    args.teacher_steps, args.steps, limit = (40, 20, 16) if args.quick else (1500, 600, 300)
    started = time.perf_counter()
    tmp = ROOT / ".cache" / ("kd_storage-quick" if args.quick else "kd_storage")
    args.teacher_vocab, args.corpus_weight = 8192, 0.3
    args.student_dim, args.student_layers = args.teacher_dim // 2, max(1, args.teacher_layers // 2)
    common = [*shared_settings(args), *student_settings(args), f"teacher.backend.batch_size={args.teacher_batch}"]
    plan = {name: [*common, *overrides, *seeded(0)] for name, overrides in arms(args).items()}

    storage, dataset_dir = {}, None
    for name, overrides in plan.items():  # the teacher, then each dataset, once, before the arms share them
        source = build(compose_train(tmp, "datasets", overrides).data.source)
        folder = source.cached()
        train_split = load_distillation_dataset(folder)["train"]
        sizes = schema.distribution_bytes_per_token(train_split)
        if name.startswith("top-"):  # fixed width: 6 bytes per stored id, the rest per position
            k, stored = int(name.removeprefix("top-")), max(args.top_k)
            storage[name] = sizes["top_k"] - 6 * stored + 6 * k
        elif name.startswith("sampled"):
            storage[name] = sizes["sampled"]
        dataset_dir = dataset_dir or folder
    teacher_dir, stdlib_jsonl = teacher_and_held_out_stdlib(tmp, compose_train(tmp, "datasets", plan["label_only"]))
    rows = {"teacher": score(causal(teacher_dir, "teacher"), dataset_dir, stdlib_jsonl, limit)}

    threads = max(1, (multiprocessing.cpu_count() // args.workers))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        futures = {
            name: pool.submit(run_arm, tmp, name, o, False, (dataset_dir, stdlib_jsonl, limit), threads)
            for name, o in plan.items()
        }
        for name, future in futures.items():
            rows[name] = future.result()
            print(name, rows[name], flush=True)
            Path(args.out).write_text(json.dumps({"rows": rows, "storage": storage}, indent=2))  # so far
    for name, row in rows.items():
        if name in storage:
            row["bytes/token"] = storage[name]
        for domain in ("moon", "stdlib"):
            gain = rows["label_only"][f"{domain} bpb"] - rows["dense (online)"][f"{domain} bpb"]
            if name not in ("teacher", "label_only") and gain > 0:
                row[f"{domain} kept"] = (rows["label_only"][f"{domain} bpb"] - row[f"{domain} bpb"]) / gain
    minutes = (time.perf_counter() - started) / 60
    print_table(f"kd storage ({minutes:.1f} min)", rows)
    Path(args.out).write_text(json.dumps({"minutes": minutes, "quick": args.quick, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
