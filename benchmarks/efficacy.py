"""Does distillation work? Students trained by each method, same compute, scored on files nobody trained on.

Corpus: `../shared/data/moonscript/moonscript.jsonl.gz` (314 MIT-licensed MoonScript files in The Stack's
schema; the bundled 12-file sample where it is absent), split by file into train / validation / test.
Teacher: `codistill-pretrain`'s GPTBigCode, pretrained here on the standard library plus the corpus's
training files (`teacher=pretrained`). Every arm goes through `codistill-train` (composed with Hydra's
compose API) with the same student initialisation, steps, batch and learning rate, validating once at the
end:

- causal students (a GPTBigCode built from config around the teacher's tokenizer, about 8x smaller than
  the teacher): `label_only` on the ground truth (the baseline), `label_only` on the teacher's middles
  (sequence-level KD), `forward_kl` (64 stored draws per position, `teacher_logits=sampled`), `reverse_kl`
  (stored top-32, `teacher_logits=offline`), both mixed half and half with the label's cross-entropy, and
  `gkd` (the online teacher scores the student's own samples on half the batches, and its diagnosis arms);
  hidden-state matching alone and on top of forward KL, against forward KL from the same online teacher;
- the same causal student first pretrained briefly on general code (the standard library, in the teacher's
  tokens: `student=pretrained_gpt_bigcode`), as real students start: `label_only` and `forward_kl`;
- the tiny T5 student (its own tokenizer): `label_only` on the ground truth, `uld` (stored top-32) and `alm`
  (the stored likelihood of each teacher token, `teacher_logits=likelihoods`).

The teacher's distributions are stored in the dataset once (its middles and scores are built before any
arm trains) wherever a loss can read them stored, as a user on a CPU would: only GKD and hidden-state
matching run the teacher beside the student. The arms run `--workers` at a time, each in its own process.

Scored with codistill-eval's tasks: `fim_heldout` on the test split (MoonScript files) and `fim_corpus` on
standard-library files the teacher held out: bits per byte of the ground truth, edit similarity, exact
match; the teacher itself and the copy-the-line-above baseline beside them; the share of the
teacher-baseline gap in bits per byte each arm closes. Mean and spread over `--seeds`; a bar chart of bits
per byte per arm and domain (`docs/efficacy.png`).

The rationale question of the original recipe (does a rationale help?) needs rationales from a real
LLM; with an OpenAI-compatible endpoint, run the alpha sweep the report prints.

    python benchmarks/efficacy.py --quick        # about 10-15 minutes on 2 cores: 1 seed, a small teacher
    python benchmarks/efficacy.py                # the full run: 3 seeds, a larger teacher (about an hour)
"""

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from codistill.backends.hf import HFBackend  # noqa: E402
from codistill.config import (
    CONFIG_DIR,  # noqa: E402
    build,  # noqa: E402
)
from codistill.data.fim_datamodule import load_distillation_dataset  # noqa: E402
from codistill.eval.baselines import BASELINES  # noqa: E402
from codistill.eval.metrics import edit_similarity  # noqa: E402
from codistill.eval.models import CausalModel, Seq2SeqModel  # noqa: E402
from codistill.eval.sandbox import SandboxSettings  # noqa: E402
from codistill.eval.standings import BASELINE_NAMES  # noqa: E402
from codistill.eval.tasks import FIMCorpusTask, FIMHeldoutTask  # noqa: E402
from codistill.models.pretrain import stdlib_files  # noqa: E402
from codistill.tables import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "moonscript" / "moonscript.jsonl.gz"
FIM = {"prefix": "<fim-prefix>", "suffix": "<fim-suffix>", "middle": "<fim-middle>"}
MAX_NEW_TOKENS = 48

KD = ["data.label_source=ground_truth", "loss.ce_weight=0.5"]
CAUSAL_ARMS = {
    "label_only (ground truth)": ["loss=label_only", "data.label_source=ground_truth"],
    "label_only (teacher middles)": ["loss=label_only", "data.label_source=teacher"],
    "forward_kl": ["loss=forward_kl", *KD, "teacher_logits=sampled"],
    "reverse_kl": ["loss=reverse_kl", *KD, "teacher_logits=offline"],
    "gkd (on-policy)": ["loss=gkd", *KD, "teacher_logits=online"],
    # what costs GKD its result: the on-policy batches (lmbda=0: the dataset's middles only), or the divergence
    # (beta=0: forward KL, on-policy as above)
    "gkd (lmbda=0)": ["loss=gkd", *KD, "teacher_logits=online", "loss.lmbda=0"],
    "gkd (beta=0)": ["loss=gkd", *KD, "teacher_logits=online", "loss.beta=0"],
    # hidden-state matching (its projections from the online teacher's states), alone and on top of forward KL,
    # against forward KL from the same online teacher
    "forward_kl (online)": ["loss=forward_kl", *KD, "teacher_logits=online"],
    "hidden states": ["loss=label_only", "+loss.hidden.weight=1.0", KD[0], "teacher_logits=online"],
    "forward_kl + hidden states": ["loss=forward_kl_hidden", *KD, "teacher_logits=online"],
    # the diagnosis of the MSE arms (their hidden loss is about 5x the label's): the scale-blind distance,
    "forward_kl + hidden states (cosine)": [
        "loss=forward_kl_hidden",
        *KD,
        "teacher_logits=online",
        "loss.hidden.distance=cosine",
    ],
    "forward_kl + hidden states (weight 0.1)": [  # and of the scale: a tenth of the MSE term
        "loss=forward_kl_hidden",
        *KD,
        "teacher_logits=online",
        "loss.hidden.weight=0.1",
    ],
}
PRETRAINED_ARMS = {  # the causal student, first pretrained on the standard library (general code)
    "pretrained label_only (ground truth)": ["loss=label_only", "data.label_source=ground_truth"],
    "pretrained forward_kl": ["loss=forward_kl", *KD, "teacher_logits=sampled"],
}
T5_ARMS = {  # a tiny T5 with its own SentencePiece tokenizer: only a cross-tokenizer loss reaches it
    "t5 label_only (ground truth)": ["student=tiny_t5", "loss=label_only", "data.label_source=ground_truth"],
    "t5 uld": ["student=tiny_t5", "loss=uld", "data.label_source=ground_truth", "teacher_logits=offline"],
    # approximate likelihood matching from the stored likelihood of each teacher token (no rationales here: the
    # corpus has no rationale writer, so no step-by-step arm)
    "t5 alm": ["student=tiny_t5", "loss=alm", "data.label_source=ground_truth", "teacher_logits=likelihoods"],
}


def shared_settings(args) -> list[str]:
    """What every arm shares: corpus, splits, teacher, steps, batch, learning rate, one validation."""
    teacher = "teacher.backend.name_or_path"
    corpus = ["dataset=moonscript_fim", f"dataset.corpus.source={SHARED}"] if SHARED.is_file() else []
    return [
        "~control",  # every arm is the others' control here
        *corpus,
        f"dataset.corpus.max_files={args.max_files}",
        "dataset.validation_size=0.1",
        "dataset.test_size=0.1",
        "dataset.segment.length=256",
        "dataset.fim.max_middle=3",
        "data.source.seed=1234",  # one split, one set of gaps, one teacher for every arm and seed: a seed
        f"{teacher}.split_seed=1234",  # varies only the student's initialisation and batch order
        "teacher=pretrained",
        f"{teacher}.n_embd={args.teacher_dim}",
        f"{teacher}.vocab_size={args.teacher_vocab}",
        f"{teacher}.n_layer={args.teacher_layers}",
        f"{teacher}.n_head={args.teacher_dim // 32}",
        f"{teacher}.steps={args.teacher_steps}",
        # dropout off lets SDPA run its fused kernel and compiling trims the rest: about half the machine's bf16
        # matmul peak instead of a quarter (docs/benchmarks.md, benchmarks/pretrain_peak.py)
        f"{teacher}.attention_dropout=0",
        f"{teacher}.dropout=0",
        f"{teacher}.compile={not args.quick}",
        f"{teacher}.corpus_weight={args.corpus_weight}",
        f"teacher.backend.max_new_tokens={MAX_NEW_TOKENS}",
        "data.max_target_length=64",
        "data.micro_batch_size=8",
        "trainer.max_epochs=-1",
        f"+trainer.max_steps={args.steps}",
        "trainer.check_val_every_n_epoch=null",
        f"+trainer.val_check_interval={args.steps}",
        "+trainer.num_sanity_val_steps=0",
        "+trainer.limit_val_batches=4",  # the run's own validation (64 gaps): the scores below are this script's
        "model.warmup_steps=10",
        "model.optimizer.lr=3e-3",
    ]


def student_settings(args, pretrained: bool = False) -> list[str]:
    """A causal GPTBigCode student of `--student-dim` x `--student-layers` around the teacher's tokenizer:
    random, or (`pretrained`) first pretrained `args.student_pretraining_steps` steps on the standard library."""
    size = [
        f"student.name_or_path.n_embd={args.student_dim}",
        f"student.name_or_path.n_layer={args.student_layers}",
        f"student.name_or_path.n_head={max(1, args.student_dim // 32)}",
    ]
    if pretrained:
        return ["student=pretrained_gpt_bigcode", *size, f"student.name_or_path.steps={args.student_pretraining_steps}"]
    return ["student=gpt_bigcode_teacher_tokenizer", *size, "student.name_or_path.n_positions=512"]


def seeded(seed: int) -> list[str]:
    """An arm's seed: the student's initialisation and the order of its batches (shared_settings pins the
    split, the gaps and the teacher)."""
    return [f"seed={seed}", f"student.name_or_path.seed={seed}"]


def compose_train(tmp: Path, run: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.data_dir, cfg.paths.cache_dir = str(tmp / "data"), str(tmp / "cache")
        cfg.paths.output_dir = str(tmp / "runs" / run)
    return cfg


def causal(folder: str, name: str) -> CausalModel:
    backend = HFBackend.from_pretrained(folder, dtype="float32", device="cpu", max_new_tokens=MAX_NEW_TOKENS)
    return CausalModel(name, backend, FIM)


def score(model, dataset_dir: str, stdlib_jsonl: str, limit: int) -> dict[str, float]:
    """Bits per byte, edit similarity and exact match on the MoonScript test split; bits per byte and edit
    similarity on the held-out standard-library files."""
    sandbox = SandboxSettings()
    moon = FIMHeldoutTask(dataset_dir, split="test", limit=limit).run(model, sandbox).metrics
    lib = FIMCorpusTask(stdlib_jsonl, segment_chars=1024, limit=limit).run(model, sandbox).metrics
    return {
        "moon bpb": moon["bits_per_byte"],
        "moon edit_sim": moon["edit_sim"],
        "moon exact": moon["exact_match"],
        "stdlib bpb": lib["bits_per_byte"],
        "stdlib edit_sim": lib["edit_sim"],
    }


def run_arm(tmp: Path, run: str, overrides: list[str], seq2seq: bool, data: tuple[str, str, int], threads: int):
    """Train one arm through codistill-train in this (worker) process; score its saved student on `data`
    (dataset folder, held-out stdlib corpus, gaps per domain). A run scored already (a `--workdir` run that was
    stopped) is not trained again: its scores are read back."""
    torch.set_num_threads(threads)
    from codistill.apps.train import train  # in the worker: each process imports its own

    cfg = compose_train(tmp, run.replace(" ", "_"), overrides)
    scored = Path(cfg.paths.output_dir, "scores.json")
    if scored.is_file():
        return json.loads(scored.read_text())
    train(cfg)
    folder = str(Path(cfg.paths.output_dir) / "student")
    if seq2seq:
        model = Seq2SeqModel.from_pretrained(folder, device="cpu", max_new_tokens=MAX_NEW_TOKENS)
    else:
        model = causal(folder, run)
    scores = score(model, *data)
    scored.write_text(json.dumps(scores, indent=2))  # this seed's, kept
    return scores


def teacher_and_held_out_stdlib(tmp: Path, cfg) -> tuple[str, str]:
    """The pretrained teacher's folder, and a JSON Lines corpus of the standard-library files its
    pretraining held out (the second held-out domain)."""
    stdlib_jsonl = tmp / "stdlib_held_out.jsonl"
    held_out = stdlib_files()[: cfg.teacher.backend.name_or_path.held_out_stdlib]
    stdlib_jsonl.write_text("".join(json.dumps({"content": p.read_text(errors="replace")}) + "\n" for p in held_out))
    return build(cfg.teacher.backend.name_or_path), str(stdlib_jsonl)


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    row = {}
    for metric in runs[0]:
        values = [r[metric] for r in runs]
        row[metric] = statistics.mean(values)
        if len(values) > 1:
            row[f"{metric} sd"] = statistics.stdev(values)
    return row


def gap_closed(rows: dict[str, dict[str, float]], baselines: dict[str, str]) -> None:
    """The share of the gap in bits per byte between its student's label-only baseline (`baselines`: arm
    name prefix -> baseline arm) and the teacher that each arm closes, per domain where the teacher is
    better than that baseline (elsewhere there is no gap to close)."""
    for domain in ("moon", "stdlib"):
        key = f"{domain} bpb"
        for name, row in rows.items():
            prefix = next((p for p in baselines if name.startswith(p)), None)
            if prefix is None or key not in row or name == "teacher":
                continue
            base = rows[baselines[prefix]][key]
            if base - rows["teacher"][key] > 0:
                row[f"{domain} gap closed"] = (base - row[key]) / (base - rows["teacher"][key])


def sizes(args):
    """`args` with the run's sizes: the full run's, or --quick's."""
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.max_files = 120 if args.quick else 314
    args.teacher_dim, args.teacher_layers = (128, 4) if args.quick else (256, 6)
    # the full teacher is kd_storage's as calibrated on the GPU (8,192-token BPE, 1,500 steps: 1.62 bits per byte
    # on held-out MoonScript, docs/benchmarks.md) with half its blocks from MoonScript: under 1 s a step on 2 cores
    args.teacher_vocab = 4096 if args.quick else 8192
    args.teacher_steps = 300 if args.quick else 1500
    args.corpus_weight = 0.3 if args.quick else 0.5
    args.student_dim, args.student_layers = (64, 2) if args.quick else (64, 3)
    args.student_pretraining_steps = 100 if args.quick else 600  # 16 x 256 tokens a step, the standard library
    # 300 steps of batch 8 (about 1.5 epochs of the training gaps) and 150 gaps per domain, 3 seeds of 9 arms
    args.steps = 150 if args.quick else 300
    return args


def arms(args) -> dict[str, list[str]]:
    """Every arm's overrides of codistill-train's config."""
    common = shared_settings(args)
    causal_arms = {name: [*student_settings(args), *o] for name, o in CAUSAL_ARMS.items()}
    pretrained = {name: [*student_settings(args, pretrained=True), *o] for name, o in PRETRAINED_ARMS.items()}
    return {name: [*common, *o] for name, o in (causal_arms | pretrained | T5_ARMS).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, a small teacher, fewer files and steps")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="arms trained at a time, one process each")
    parser.add_argument("--out", default=str(ROOT / "docs" / "efficacy.md"))
    parser.add_argument("--workdir", help="keep the teacher, datasets and runs here (a second run reuses them)")
    args = sizes(parser.parse_args())
    limit = 60 if args.quick else 150
    started = time.perf_counter()
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="efficacy-"))
    plan = arms(args)

    datasets = {}  # the teacher first, then each stored form of its distribution, before the arms share them
    for name, overrides in plan.items():
        datasets[name] = build(compose_train(tmp, "datasets", overrides).data.source).cached()
    base = compose_train(tmp, "datasets", plan["label_only (ground truth)"])
    dataset_dir = datasets["label_only (ground truth)"]
    teacher_dir, stdlib_jsonl = teacher_and_held_out_stdlib(tmp, base)
    data = (dataset_dir, stdlib_jsonl, limit)
    pretraining = json.loads(Path(teacher_dir, "pretraining.json").read_text())
    for seed in range(args.seeds):  # each pretrained student once, before two arms' workers would both build it
        build(compose_train(tmp, "students", [*plan["pretrained label_only (ground truth)"], *seeded(seed)]).student)

    rows = {"teacher": score(causal(teacher_dir, "teacher"), *data)}
    test = load_distillation_dataset(dataset_dir)["test"]
    test = test.select(range(min(limit, len(test))))
    prefixes, suffixes, middles = test["prefix"], test["suffix"], test["middle"]
    for name, baseline in BASELINES.items():  # the trivial baselines every run's standings table has
        guesses = [baseline(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        rows[f"baseline: {BASELINE_NAMES[name]}"] = {"moon edit_sim": edit_similarity(guesses, middles)}

    threads = max(1, multiprocessing.cpu_count() // args.workers)
    jobs = sorted(((n, seed) for n in plan for seed in range(args.seeds)), key=lambda j: not j[0].startswith("gkd"))
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {  # on-policy GKD first: the teacher runs beside its student, the longest jobs
            (n, s): pool.submit(run_arm, tmp, f"{n}-{s}", [*plan[n], *seeded(s)], n.startswith("t5"), data, threads)
            for n, s in jobs
        }
        seeds = {}  # every seed's scores, beside the table
        for name in plan:
            seeds[name] = [futures[name, seed].result() for seed in range(args.seeds)]
            rows[name] = summarise(seeds[name])
            print(name, rows[name], flush=True)
    Path(args.out).with_suffix(".seeds.json").write_text(json.dumps(seeds, indent=2))
    # each student against its own label-only baseline (prefixed arms first: the causal names have no prefix)
    gap_closed(
        rows,
        {
            "t5 ": "t5 label_only (ground truth)",
            "pretrained ": "pretrained label_only (ground truth)",
            "": "label_only (ground truth)",
        },
    )
    print_table("efficacy", rows)
    write(args, rows, (time.perf_counter() - started) / 60, pretraining)
    plot(rows, Path(args.out).with_suffix(".png"))


def plot(rows: dict[str, dict[str, float]], path: Path) -> None:
    """Bits per byte of every model with a distribution, per domain, the spread over seeds as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, r in rows.items() if "moon bpb" in r]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.4
    for i, (domain, label) in enumerate((("moon", "MoonScript test files"), ("stdlib", "held-out stdlib files"))):
        values = [rows[n][f"{domain} bpb"] for n in names]
        spread = [rows[n].get(f"{domain} bpb sd", 0.0) for n in names]
        xs = [j + (i - 0.5) * width for j in range(len(names))]
        ax.bar(xs, values, width, yerr=spread, capsize=3, label=label)
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("bits per byte of the ground-truth middle (lower is better)")
    ax.set_title("Students by distillation method, equal compute (mean over seeds, error bar: sd)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(args, rows: dict[str, dict[str, float]], minutes: float, pretraining: dict) -> None:
    """The raw table (mean, and ± the spread over seeds where there are several) under its command."""
    metrics = list(dict.fromkeys(k for row in rows.values() for k in row if not k.endswith(" sd")))

    def cell(row: dict[str, float], metric: str) -> str:
        if metric not in row:
            return "-"
        sd = f" ± {row[metric + ' sd']:.3f}" if metric + " sd" in row else ""
        return f"{row[metric]:.3f}{sd}"

    table = [
        "| arm | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
        *(f"| {name} | " + " | ".join(cell(row, m) for m in metrics) + " |" for name, row in rows.items()),
    ]
    command = "python benchmarks/efficacy.py" + (" --quick" if args.quick else "")
    teacher = (
        f"The teacher ({pretraining['parameters'] / 1e6:.1f}M parameters) pretrained in "
        f"{pretraining['seconds'] / 60:.1f} minutes, within this wall time unless `--workdir` held it already."
    )
    header = f"`{command}`: {args.seeds} seed(s), {minutes:.1f} minutes on this workplace's 2-core CPU. {teacher}\n\n"
    Path(args.out).write_text("# Efficacy (raw table; see the notes below it)\n\n" + header + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
