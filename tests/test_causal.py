"""Recipe 2's causal fine-tuning: solution-only labels, length-grouped and packed batches, a real tiny training."""

import functools
import json
from collections import Counter

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from codistill.data.batching import padding_fraction_of
from codistill.data.exercises_datamodule import IGNORE_INDEX, ExercisesDataModule
from codistill.errors import ConfigError
from codistill.models.causal import CausalDistiller

EOS = "<|endoftext|>"


def _exercises(n: int, seed: int = 0, max_lines: int = 6) -> list[dict]:
    """Function exercises whose bodies vary in length from 1 to `max_lines` statements."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lines = int(rng.integers(1, max_lines + 1))
        body = "".join(f"    x = x * {i % 7 + 2} + {k}  # step {k}\n" for k in range(lines - 1))
        rows.append(
            {
                "problem": f'def scale_{i}(x: int) -> int:\n    """Scale x {lines} times, ünïcode ok."""\n',
                "solution": f"{body}    return x - {i}\n",
            }
        )
    return rows


def _write(path, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir):
    return AutoTokenizer.from_pretrained(tiny_teacher_dir)


def _datamodule(tmp_path, tokenizer, rows, **kwargs) -> ExercisesDataModule:
    dm = ExercisesDataModule(_write(tmp_path / "exercises.jsonl", rows), tokenizer, **kwargs)
    dm.setup("fit")
    return dm


def test_labels_mask_problem_and_padding_and_decode_to_solution_plus_eos(tmp_path, tokenizer):
    rows = _exercises(12)
    solutions = {r["problem"]: r["solution"] for r in rows}
    dm = _datamodule(tmp_path, tokenizer, rows, micro_batch_size=4, validation_size=0.2)
    seen = set()
    for batch in dm.train_dataloader():
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        assert (batch["attention_mask"].sum(1) < batch["input_ids"].size(1)).any()  # some row is padded
        for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"], strict=True):
            n = int(mask.sum())
            assert mask[:n].all() and not mask[n:].any()  # right padding
            assert (ids[n:] == tokenizer.eos_token_id).all() and (labels[n:] == IGNORE_INDEX).all()
            k = int((labels[:n] == IGNORE_INDEX).sum())
            assert (labels[:k] == IGNORE_INDEX).all() and (labels[k:n] == ids[k:n]).all()  # -100 exactly on problem
            problem = tokenizer.decode(ids[:k])
            assert problem in solutions
            assert tokenizer.decode(labels[k:n]) == solutions[problem] + EOS
            assert ids[n - 1] == tokenizer.eos_token_id
            seen.add(problem)
    assert len(seen) == len(dm.splits["train"]) == 12 - 2


def test_loss_covers_solution_tokens_only(tmp_path, tokenizer, tiny_teacher_dir):
    dm = _datamodule(tmp_path, tokenizer, _exercises(10), micro_batch_size=4, validation_size=0.1)
    batch = next(iter(dm.train_dataloader()))
    model = AutoModelForCausalLM.from_pretrained(tiny_teacher_dir).eval()
    with torch.no_grad():
        loss = model(**batch).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def manual(labels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of each label given the tokens before it (the shift HF does)."""
        logp, targets = logits[:, :-1].float().log_softmax(-1), labels[:, 1:]
        keep = targets != IGNORE_INDEX
        return -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)[keep].mean()

    labels = batch["labels"]
    torch.testing.assert_close(loss, manual(labels))
    all_tokens = torch.where(batch["attention_mask"].bool(), batch["input_ids"], IGNORE_INDEX)
    assert not torch.isclose(manual(all_tokens), loss)
    one_problem_token = labels.clone()
    one_problem_token[0, 1] = batch["input_ids"][0, 1]  # a problem token's label, were it included
    with torch.no_grad():
        changed = model(**{**batch, "labels": one_problem_token}).loss
    torch.testing.assert_close(changed, manual(one_problem_token))
    assert not torch.isclose(changed, loss)

    # the gradient reaches the logits that predict solution tokens and no other
    out = model(**batch)
    out.logits.retain_grad()
    out.loss.backward()
    grad = out.logits.grad[:, :-1].abs().sum(-1)
    predicts_solution = labels[:, 1:] != IGNORE_INDEX
    assert (grad[~predicts_solution] == 0).all() and (grad[predicts_solution] > 0).all()


def test_length_grouped_batches_pad_less_than_random_ones_and_are_reproducible(tmp_path, tokenizer):
    rows = _exercises(300, max_lines=30)
    dm = _datamodule(tmp_path, tokenizer, rows, micro_batch_size=4, validation_size=0.05, seed=7)
    lengths = list(dm.splits["train"]["length"])
    assert max(lengths) > 4 * min(lengths)
    rng = np.random.default_rng(0)
    n_batches = len(lengths) // 4
    random_fraction = np.mean(
        [padding_fraction_of(np.array_split(rng.permutation(len(lengths)), n_batches), lengths) for _ in range(5)]
    )
    grouped = dm.padding_fraction(epoch=0)
    assert grouped < random_fraction / 4, (grouped, random_fraction)

    batches = dm.train_batches(epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each example once per epoch
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the longest batch first
    same = ExercisesDataModule(dm.path, tokenizer, micro_batch_size=4, validation_size=0.05, seed=7)
    assert same.train_batches(epoch=0) == batches
    assert same.train_batches(epoch=1) != batches
    other_seed = ExercisesDataModule(dm.path, tokenizer, micro_batch_size=4, validation_size=0.05, seed=8)
    assert other_seed.train_batches(epoch=0) != batches
    # the dataloader yields exactly these batches, padded to each batch's longest example
    widths = [b["input_ids"].size(1) for b in dm.train_dataloader()]
    assert widths == [max(lengths[i] for i in b) for b in batches]


def test_packing_gives_full_blocks_that_keep_every_token_label_pair(tmp_path, tokenizer):
    block = 48
    dm = _datamodule(tmp_path, tokenizer, _exercises(40), micro_batch_size=4, max_length=block, packing=True)
    train = dm.splits["train"]
    assert max(train["length"]) > block // 2  # examples straddle blocks
    stream = [pair for row in train for pair in zip(row["input_ids"], row["labels"], strict=True)]
    stats = dm.packing_stats
    assert stats["unsupervised_blocks"] == 0 and 0 <= stats["tail_tokens"] < block
    assert stats["blocks"] * block + stats["tail_tokens"] == len(stream)  # only the final partial block is dropped

    packed = Counter()
    for batch in dm.train_dataloader():
        assert batch["input_ids"].size(1) == block and batch["attention_mask"].all()  # no padding
        for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
            packed.update(zip(ids, labels, strict=True))
    assert packed == Counter(stream[: stats["blocks"] * block])
    assert dm.padding_fraction() == 0.0
    assert torch.equal(
        dm.packed["labels"].flatten(), torch.tensor([label for _, label in stream[: stats["blocks"] * block]])
    )  # labels stay aligned with their tokens, -100 on problem tokens included


def test_bad_exercise_files_name_the_fix(tmp_path, tokenizer):
    with pytest.raises(ConfigError, match="data.path=.*is not a file"):
        ExercisesDataModule(str(tmp_path / "nope.jsonl"), tokenizer).setup()
    path = _write(tmp_path / "bad.jsonl", [{"problem": "def f():\n", "body": "    pass\n"}] * 3)
    with pytest.raises(ConfigError, match=r"lacks the column\(s\) \['solution'\]"):
        ExercisesDataModule(path, tokenizer).setup()
    path = _write(tmp_path / "null.jsonl", [{"problem": "def f():\n", "solution": None}] * 3)
    with pytest.raises(ConfigError, match="solution that is not a string"):
        ExercisesDataModule(path, tokenizer).setup()


class _Recorder(pl.Callback):
    def __init__(self):
        self.lrs, self.losses, self.tokens = [], [], 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.tokens += int(batch["attention_mask"].sum())

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def test_short_training_lowers_the_loss_with_a_warmup_then_cosine_schedule(tmp_path, tiny_teacher_dir, tokenizer):
    pl.seed_everything(0)
    dm = ExercisesDataModule(
        _write(tmp_path / "ex.jsonl", _exercises(16)), tokenizer, micro_batch_size=2, validation_size=0.125
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_teacher_dir)
    module = CausalDistiller(
        model, tokenizer, functools.partial(torch.optim.AdamW, lr=3e-3), warmup_steps=100, warmup_ratio=0.2
    )
    assert model.training
    recorder = _Recorder()
    trainer = pl.Trainer(
        max_steps=30,
        accumulate_grad_batches=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=4,
        callbacks=[recorder],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=dm)

    assert trainer.global_step == 30 and len(recorder.lrs) == 30
    lrs, peak = recorder.lrs, 3e-3
    warmup = 6  # warmup_ratio=0.2 of 30 optimizer steps; the ratio wins over warmup_steps
    assert lrs[0] == 0.0 and all(a < b for a, b in zip(lrs[:warmup], lrs[1 : warmup + 1], strict=True))
    assert lrs[warmup] == pytest.approx(peak)
    assert all(a > b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :], strict=False))  # cosine decay
    assert lrs[-1] < 0.01 * peak

    first, last = np.mean(recorder.losses[:6]), np.mean(recorder.losses[-6:])
    assert last < 0.6 * first, (first, last)
    assert "val/loss" in trainer.callback_metrics
    assert int(module.tokens_seen) == recorder.tokens
