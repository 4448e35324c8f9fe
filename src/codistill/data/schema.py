"""The distillation dataset's columns: the one place that names them, so the builder, the datamodule and
the eval tasks cannot drift apart, and model names stay in the provenance columns, not in the schema.

| column | holds |
| --- | --- |
| `prompt` | the segment as a reader sees it: `prefix + "<FILL-HERE>" + suffix` |
| `teacher_prompt` | the teacher's PSM prompt, in its own FIM tokens |
| `prefix`, `suffix` | the code before and after the gap |
| `middle` | the ground truth: the code cut out of the gap |
| `teacher_middle` | the teacher's middle, exactly the text before its end-of-text token |
| `rationale` | the rationale model's explanation of the middle |
| `repo`, `path`, `hexsha`, `licenses` | the source file (`hexsha`: a hash of the content where the corpus has none) |
| `segment_index`, `fim_mode` | which segment of the file, and how its gap was cut (`line` or `char`) |
| `teacher`, `rationale_model`, `rationale_template` | which models, and which prompt template, wrote what |
| `teacher_topk_*`, `teacher_tail_mass`, `teacher_distribution_of` | optional: the teacher's top-k distributions |
| `teacher_sample_*`, `teacher_token_*` | optional: draws from them; the likelihood of each teacher token |

`middle` is the ground truth's one name in the product: in datamodule batches, prediction rows and eval
samples too. `ORIGINAL_NAMES` maps to the original recipe's column names, an export option of
codistill-generate (`column_names=original`) that the loader also reads back.
"""

from datasets import Dataset, DatasetDict, Features, List, Value

from codistill.errors import ConfigError

# in the cache key of built datasets, so a cached dataset of another schema is never read: bump it when a
# column is added, renamed or changes meaning (1: the original recipe's names, before this module; 3: splits
# by file, with a test split)
VERSION = 3

PROMPT = "prompt"
TEACHER_PROMPT = "teacher_prompt"
PREFIX = "prefix"
MIDDLE = "middle"
SUFFIX = "suffix"
TEACHER_MIDDLE = "teacher_middle"
RATIONALE = "rationale"

TEXT = (PROMPT, TEACHER_PROMPT, PREFIX, MIDDLE, SUFFIX, TEACHER_MIDDLE, RATIONALE)
PROVENANCE = Features(
    {
        "repo": Value("string"),
        "path": Value("string"),
        "hexsha": Value("string"),
        "licenses": List(Value("string")),
        "segment_index": Value("int64"),
        "fim_mode": Value("string"),
        "teacher": Value("string"),
        "rationale_model": Value("string"),
        "rationale_template": Value("string"),
    }
)
# every column codistill-generate writes, with its type (the builder passes it to `Dataset.from_list`)
FEATURES = Features({**{c: Value("string") for c in TEXT}, **PROVENANCE})
# what training and the fim_heldout task read; provenance is optional
REQUIRED = TEXT

# The teacher's distribution at each position of the label the student learns (its tokens in the teacher's
# tokenizer, then end-of-text): the top k ids (int32), their log-probabilities (float16) and the mass
# outside them; `teacher_distribution_of` names the label column they cover. codistill-generate writes them
# with teacher_logits=offline (see codistill.teacher_logits); 6k + 12 bytes per position in Arrow.
TEACHER_TOPK_IDS = "teacher_topk_ids"
TEACHER_TOPK_LOGPROBS = "teacher_topk_logprobs"
TEACHER_TAIL_MASS = "teacher_tail_mass"
TEACHER_DISTRIBUTION_OF = "teacher_distribution_of"
TEACHER_DISTRIBUTION_COLUMNS = (TEACHER_TOPK_IDS, TEACHER_TOPK_LOGPROBS, TEACHER_TAIL_MASS, TEACHER_DISTRIBUTION_OF)
TEACHER_DISTRIBUTION = Features(
    {
        TEACHER_TOPK_IDS: List(List(Value("int32"))),
        TEACHER_TOPK_LOGPROBS: List(List(Value("float16"))),
        TEACHER_TAIL_MASS: List(Value("float32")),
        TEACHER_DISTRIBUTION_OF: Value("string"),
    }
)


# The sampled form (teacher_logits=sampled): at each position the distinct ids of n draws from the teacher's
# distribution (int32) and how often each was drawn (uint16; they sum to n). About 6 bytes per distinct id.
TEACHER_SAMPLE_IDS = "teacher_sample_ids"
TEACHER_SAMPLE_COUNTS = "teacher_sample_counts"
TEACHER_SAMPLE_COLUMNS = (TEACHER_SAMPLE_IDS, TEACHER_SAMPLE_COUNTS, TEACHER_DISTRIBUTION_OF)
TEACHER_SAMPLES = Features(
    {
        TEACHER_SAMPLE_IDS: List(List(Value("int32"))),
        TEACHER_SAMPLE_COUNTS: List(List(Value("uint16"))),
        TEACHER_DISTRIBUTION_OF: Value("string"),
    }
)


# The likelihood form (teacher_logits=likelihoods, for loss=alm): the teacher's log-probability of each of its
# own tokens of the label and end-of-text (float32), and where each token ends in the label, in characters
# (int32; end-of-text: one past the end; -1 where the teacher's token is not the text's own tokenization):
# any student's chunks (codistill.losses.alignment) are rebuilt from them. 8 bytes per token, plus list offsets.
TEACHER_TOKEN_LOGPROBS = "teacher_token_logprobs"
TEACHER_TOKEN_ENDS = "teacher_token_ends"
TEACHER_LIKELIHOOD_COLUMNS = (TEACHER_TOKEN_LOGPROBS, TEACHER_TOKEN_ENDS, TEACHER_DISTRIBUTION_OF)
TEACHER_LIKELIHOODS = Features(
    {
        TEACHER_TOKEN_LOGPROBS: List(Value("float32")),
        TEACHER_TOKEN_ENDS: List(Value("int32")),
        TEACHER_DISTRIBUTION_OF: Value("string"),
    }
)


def distribution_bytes_per_token(split: Dataset) -> dict[str, float]:
    """What the stored teacher distributions cost, per form (top_k, sampled, likelihoods): Arrow bytes of their
    columns per label token."""
    forms = {
        "top_k": (TEACHER_TOPK_IDS, TEACHER_TOPK_LOGPROBS, TEACHER_TAIL_MASS),
        "sampled": (TEACHER_SAMPLE_IDS, TEACHER_SAMPLE_COUNTS),
        "likelihoods": (TEACHER_TOKEN_LOGPROBS, TEACHER_TOKEN_ENDS),
    }
    out = {}
    for form, columns in forms.items():
        if columns[0] in split.column_names:
            tokens = sum(map(len, split[columns[0]]))
            out[form] = split.data.table.select(list(columns)).nbytes / max(1, tokens)
    return out


# data.label_source -> the column the student learns
LABEL_COLUMNS = {"teacher": TEACHER_MIDDLE, "ground_truth": MIDDLE}

# the original recipe's names, for people who already consume that format
ORIGINAL_NAMES = {
    PROMPT: "santacoder_prompts",
    TEACHER_PROMPT: "fim_inputs",
    MIDDLE: "label_middles",
    TEACHER_MIDDLE: "santacoder_outputs",
    RATIONALE: "openai_rationale",
}
EXPORTS = ("codistill", "original")


def check_export(column_names: str) -> None:
    """Fail before anything is built when `column_names` names no export."""
    if column_names not in EXPORTS:
        raise ConfigError(
            f"column_names={column_names!r} is not one of: {', '.join(EXPORTS)}; "
            "use column_names=original for the original recipe's names"
        )


def exported(data: DatasetDict, column_names: str) -> DatasetDict:
    """`data` under the column names `column_names` asks for (see EXPORTS)."""
    check_export(column_names)
    return data.rename_columns(ORIGINAL_NAMES) if column_names == "original" else data


def from_original(data: DatasetDict) -> DatasetDict:
    """`data` with the original recipe's column names read back as codistill's; a name whose codistill
    column is already there is left alone."""
    return DatasetDict({name: _neutral(split) for name, split in data.items()})


def _neutral(split: Dataset) -> Dataset:
    have = set(split.column_names)
    return split.rename_columns({old: new for new, old in ORIGINAL_NAMES.items() if old in have and new not in have})


def check_columns(split: Dataset, where: str) -> None:
    """Fail with a one-line error naming the REQUIRED columns that `split` lacks."""
    missing = [c for c in REQUIRED if c not in split.column_names]
    if missing:
        raise ConfigError(f"{where} lacks columns {missing}; regenerate it with codistill-generate")
