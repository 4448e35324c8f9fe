"""The student's input format: a task prefix, then the FIM context between markers it keeps.

`predict: <fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>` asks for the middle, `explain: <fim_prefix>...`
for the explanation, as in Distilling Step-by-Step's code. The task prefixes are plain text that flan-t5
already understands; the FIM markers are atomic tokens of the student's lossless tokenizer, so the code
between them survives tokenization exactly. The tokenizer carries the prefixes its student learnt
(`CodeTokenizer.task_prefixes`) and saves them with it.
"""

from codistill.losses import IGNORE_INDEX

FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<fim_prefix>", "<fim_suffix>", "<fim_middle>"
STUDENT_MARKERS = (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)
LABEL_TASK, RATIONALE_TASK = "label", "rationale"
TASK_PREFIXES = {LABEL_TASK: "predict: ", RATIONALE_TASK: "explain: "}
# what students saved before the prefixes were recorded learnt: atomic added tokens, not text
LEGACY_TASK_PREFIXES = {LABEL_TASK: "[label]", RATIONALE_TASK: "[rationale]"}


def fim_prompt(task_prefix: str, prefix: str, suffix: str) -> str:
    """The student's input as text: what a user of the saved student passes to its pipeline."""
    return f"{task_prefix}{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}"


def _keep_near_gap(p_ids: list[int], s_ids: list[int], budget: int) -> tuple[list[int], list[int]]:
    """The prefix's end and the suffix's start, `budget` tokens in all, shared evenly (the code nearest the
    gap is kept)."""
    keep_s = min(len(s_ids), max(budget // 2, budget - len(p_ids)))
    keep_p = min(len(p_ids), budget - keep_s)
    return p_ids[len(p_ids) - keep_p :], s_ids[:keep_s]


def encode_causal_fim(
    tokenizer, fim, eos_id: int, prefix: str, suffix: str, label: str, max_source: int, max_target: int
) -> tuple[list[int], list[int]]:
    """(input ids, labels) of a causal student's FIM example: the PSM prompt in its own sentinels `fim`
    (a `FIMTokens`), then the label and end-of-text, with labels -100 on the prompt, so the loss falls on
    the middle and its end only. A label cut at `max_target` tokens gets no end-of-text (it did not end)."""
    sentinel = tokenizer.convert_tokens_to_ids
    p_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    s_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    p_ids, s_ids = _keep_near_gap(p_ids, s_ids, max_source - 3)
    prompt = [sentinel(fim.prefix), *p_ids, sentinel(fim.suffix), *s_ids, sentinel(fim.middle)]
    target = tokenizer(label, add_special_tokens=False)["input_ids"]
    target = target[:max_target] if len(target) >= max_target else [*target, eos_id]
    return prompt + target, [IGNORE_INDEX] * len(prompt) + target


def encode_fim_input(tokenizer, task: str, prefix: str, suffix: str, max_length: int) -> list[int]:
    """Token ids of the input for `task` (label or rationale), ending in eos. When too long, the prefix loses
    its start and the suffix its end (the code nearest the gap is kept), sharing the budget evenly. The budget
    leaves room for the longest task prefix, so the inputs of the two tasks differ only in their prefix.
    Untruncated, they are the ids of `fim_prompt`'s text (the student's encodings concatenate at markers)."""
    task_ids = {name: tokenizer.encode(text) for name, text in tokenizer.task_prefixes.items()}
    fim_prefix, fim_suffix = tokenizer.encode(FIM_PREFIX), tokenizer.encode(FIM_SUFFIX)
    tail = tokenizer.encode(FIM_MIDDLE) + [tokenizer.eos_token_id]
    p_ids, s_ids = tokenizer.encode(prefix), tokenizer.encode(suffix)
    budget = max_length - max(map(len, task_ids.values())) - len(fim_prefix) - len(fim_suffix) - len(tail)
    if budget < 0:
        raise ValueError(f"max_source_length={max_length} cannot hold the task prefix and FIM markers")
    p_ids, s_ids = _keep_near_gap(p_ids, s_ids, budget)
    return task_ids[task] + fim_prefix + p_ids + fim_suffix + s_ids + tail
