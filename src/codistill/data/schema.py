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

`middle` is the ground truth's one name in the product: in datamodule batches, prediction rows and eval
samples too.
"""

from datasets import Dataset, Features, List, Value

from codistill.errors import ConfigError

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

# Reserved for the logit-distillation issue: the teacher's distribution at each position of
# `teacher_middle`, its top k token ids and their log-probabilities, and the probability mass outside
# them. codistill-generate will fill them; until then no dataset has them and nothing reads them.
TEACHER_TOPK_IDS = "teacher_topk_ids"
TEACHER_TOPK_LOGPROBS = "teacher_topk_logprobs"
TEACHER_TAIL_MASS = "teacher_tail_mass"
TEACHER_DISTRIBUTION = Features(
    {
        TEACHER_TOPK_IDS: List(List(Value("int32"))),
        TEACHER_TOPK_LOGPROBS: List(List(Value("float32"))),
        TEACHER_TAIL_MASS: List(Value("float32")),
    }
)

# data.label_source -> the column the student learns
LABEL_COLUMNS = {"teacher": TEACHER_MIDDLE, "ground_truth": MIDDLE}


def check_columns(split: Dataset, where: str) -> None:
    """Fail with a one-line error naming the REQUIRED columns that `split` lacks."""
    missing = [c for c in REQUIRED if c not in split.column_names]
    if missing:
        raise ConfigError(f"{where} lacks columns {missing}; regenerate it with codistill-generate")
