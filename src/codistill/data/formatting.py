"""The student's input format: a task prefix, then the FIM context between markers it keeps.

`[label]<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>` asks for the middle,
`[rationale]<fim_prefix>...` for the explanation. The markers are atomic tokens of the student's
`CodeTokenizer`, so the context survives tokenization exactly.
"""

FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<fim_prefix>", "<fim_suffix>", "<fim_middle>"
LABEL_TASK, RATIONALE_TASK = "[label]", "[rationale]"
STUDENT_MARKERS = (LABEL_TASK, RATIONALE_TASK, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)


def encode_fim_input(tokenizer, task: str, prefix: str, suffix: str, max_length: int) -> list[int]:
    """Token ids of the student input, ending in eos. When too long, the prefix loses its start and
    the suffix its end (the code nearest the gap is kept), sharing the budget evenly."""
    head = tokenizer.encode(task + FIM_PREFIX)
    fim_suffix, tail = tokenizer.encode(FIM_SUFFIX), tokenizer.encode(FIM_MIDDLE) + [tokenizer.eos_token_id]
    p_ids, s_ids = tokenizer.encode(prefix), tokenizer.encode(suffix)
    budget = max_length - len(head) - len(fim_suffix) - len(tail)
    if budget < 0:
        raise ValueError(f"max_source_length={max_length} cannot hold the task prefix and FIM markers")
    keep_s = min(len(s_ids), max(budget // 2, budget - len(p_ids)))
    keep_p = min(len(p_ids), budget - keep_s)
    return head + p_ids[len(p_ids) - keep_p :] + fim_suffix + s_ids[:keep_s] + tail
