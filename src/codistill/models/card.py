"""The saved student's model card (`README.md`, the Hub's format), so that `push_to_hub` of the folder
publishes something a stranger can load and prompt with plain transformers. Everything in it comes from
the run's resolved config (secrets redacted) and its final validation metrics."""

from pathlib import Path

import yaml
from omegaconf import DictConfig

from codistill.config import loggable
from codistill.data.formatting import LABEL_TASK, TASK_PREFIXES, fim_prompt

SEQ2SEQ_USAGE = """```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

student = "{path}"
tokenizer = AutoTokenizer.from_pretrained(student)
model = AutoModelForSeq2SeqLM.from_pretrained(student)
prompt = {prompt!r}
out = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=64)
middle = tokenizer.decode(out[0], skip_special_tokens=True)
print(middle)
```"""

CAUSAL_USAGE = """```python
from transformers import AutoModelForCausalLM, AutoTokenizer

student = "{path}"
tokenizer = AutoTokenizer.from_pretrained(student)
model = AutoModelForCausalLM.from_pretrained(student)
prompt = {prompt!r}
ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
out = model.generate(**ids, max_new_tokens=64)
middle = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
print(middle)
```"""


def _named(value, fallback: str) -> str:
    """A Hub id or path as configured, or `fallback` for a model built from config (a tiny stand-in)."""
    return value if isinstance(value, str) else fallback


def model_card(cfg: DictConfig, metrics: dict, path: str = ".") -> str:
    """The card's text; `path` is where its usage snippet loads the student from."""
    config = loggable(cfg)
    student, teacher = config["student"], config.get("teacher") or {}
    dataset = config.get("dataset") or {}
    base = _named(student["name_or_path"], "none (initialised from config, random weights)")
    teacher_name = _named((teacher.get("backend") or {}).get("name_or_path"), teacher.get("name", "none"))
    fim = student.get("fim")
    example = ("class Stack\n  push: (x) =>\n", "\n  pop: =>\n")
    if fim:
        prompt, usage = f"{fim['prefix']}{example[0]}{fim['suffix']}{example[1]}{fim['middle']}", CAUSAL_USAGE
        prompt_format = f"`{fim['prefix']}{{prefix}}{fim['suffix']}{{suffix}}{fim['middle']}`, then the middle"
    else:
        prompt, usage = fim_prompt(TASK_PREFIXES[LABEL_TASK], *example), SEQ2SEQ_USAGE
        prompt_format = f"`{fim_prompt(TASK_PREFIXES[LABEL_TASK], '{prefix}', '{suffix}')}` gives the middle"
    front = {
        "license": config.get("card", {}).get("license", "other"),
        "library_name": "transformers",
        "pipeline_tag": "text-generation" if fim else "text2text-generation",
        "tags": ["code", "distillation", "fill-in-the-middle", "codistill"],
        **({"base_model": base} if isinstance(student["name_or_path"], str) else {}),
        **({"datasets": [dataset["hub_id"]]} if dataset.get("hub_id") else {}),
        "language": ["code"],
    }
    source, data_license = dataset.get("hub_id") or "codistill's bundled sample", dataset.get("license", "unknown")
    rows = "\n".join(f"| {k} | {float(v):.4f} |" for k, v in sorted(metrics.items()))
    loss = yaml.safe_dump(config.get("loss") or {}, sort_keys=False).strip()
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# A {dataset.get("language", "code")} fill-in-the-middle student

Distilled with codistill from the teacher **{teacher_name}**.

- Base model: {base}
- Teacher: {teacher_name}
- Data: {dataset.get("name", "n/a")} ({dataset.get("language", "code")}) from {source}, license {data_license}
- Loss: `{(config.get("loss") or {}).get("_target_", "cross-entropy")}`

```yaml
{loss}
```

## Validation metrics

| metric | value |
|---|---|
{rows}

## Use it with plain transformers

The tokenizer is lossless on its own (newlines, tabs and indentation survive `decode`); no codistill and
no `trust_remote_code` are needed. Prompt format: {prompt_format}.

{usage.format(path=path, prompt=prompt)}
"""


def write_model_card(folder: Path, cfg: DictConfig, metrics: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "README.md").write_text(model_card(cfg, metrics, str(folder)), encoding="utf-8")
