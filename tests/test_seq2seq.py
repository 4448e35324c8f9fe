"""A fed student learns its targets: no empty outputs from eos/pad/decoder-start mistakes."""

import torch
from datasets import Dataset, DatasetDict
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from codistill.data.fim_datamodule import FIMDataModule
from codistill.data.formatting import LABEL_TASK, TASK_PREFIXES, fim_prompt
from codistill.eval.metrics import empty_rate, exact_match
from codistill.losses import DistillationLoss
from codistill.models.fim import FIMDistiller
from codistill.models.loading import load_student

ROWS = [
    ("class Stack\n  new: =>\n", "    @items = {}\n", "  push: (x) =>"),
    ("f = (a, b) ->\n", "  a + b\n", "print f 1, 2\n"),
    ("for i = 1, 10\n", '\tprint "#{i}"\n', "\n"),
    ("t = {\n", '  name: "漢字 😀"\n', "}\n"),
    ("if x\n", "\n", "else\n  y!\n"),
    ("switch v\n  when 1\n", '    "one"\n', '  else\n    "many"\n'),
]


def _dataset(path):
    rows = [
        {
            "prefix": p,
            "suffix": s,
            "middle": m,
            "teacher_middle": m,
            "rationale": f"it fills {m.strip()}",
            "prompt": f"{p}<FILL-HERE>{s}",
            "teacher_prompt": "",
        }
        for p, m, s in ROWS
    ]
    DatasetDict(train=Dataset.from_list(rows), validation=Dataset.from_list(rows)).save_to_disk(str(path))
    return str(path)


def test_an_overfit_student_reproduces_its_middles_exactly(tmp_path, tiny_student_dir):
    torch.manual_seed(0)
    student = load_student(tiny_student_dir)
    dm = FIMDataModule(
        _dataset(tmp_path / "ds"), student.tokenizer, label_source="ground_truth", micro_batch_size=len(ROWS)
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    module = FIMDistiller(
        student.model, student.tokenizer, DistillationLoss(alpha=0.5), optimizer=None, max_new_tokens=32
    )
    optimizer = torch.optim.AdamW(module.parameters(), lr=5e-3)  # at 1e-2 the loss oscillates
    for _ in range(200):
        loss = module.losses(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    module.eval()
    preds = module.generate(batch["label"])
    assert empty_rate(preds) == 0.0
    assert exact_match(preds, batch["middle"]) >= 5 / 6, preds

    # saved, it answers the same through transformers alone (what text2text pipelines and servers run)
    module.model.save_pretrained(tmp_path / "student")
    student.tokenizer.save_pretrained(tmp_path / "student")
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "student").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "student")
    prompts = [fim_prompt(TASK_PREFIXES[LABEL_TASK], p, s) for p, _, s in ROWS]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    assert sorted(tokenizer.batch_decode(out, skip_special_tokens=True)) == sorted(preds)  # the batch was shuffled
