"""Corpus -> segments -> FIM splits -> teacher middles -> rationales -> a `datasets.DatasetDict`."""

from datasets import Dataset, DatasetDict, Features

from codistill.data import schema
from codistill.data.fim import fill_here, segment, split_fim
from codistill.data.splits import SPLITS, assign_splits, file_id, group_of
from codistill.errors import ConfigError
from codistill.llm.store import ResultStore, content_key, in_shard
from codistill.losses.alignment import target_ends, token_ends
from codistill.progress import tqdm
from codistill.rng import stable_rng


def fim_records(corpus: Dataset, segment_cfg: dict, fim_cfg: dict, teacher_tokenizer, seed: int) -> list[dict]:
    """One FIM example per segment, with provenance; the split of a segment is a function of
    (seed, file id, segment index) alone."""
    records = []
    for row in tqdm(corpus, desc="segmenting", unit="file", leave=False):
        content = row["content"]
        identity = file_id(row)
        pieces = segment(
            content,
            segment_cfg["length"],
            segment_cfg.get("unit", "tokens"),
            teacher_tokenizer,
            segment_cfg.get("min_length", 1),
        )
        for index, piece in enumerate(pieces):
            prefix, middle, suffix = split_fim(
                piece, stable_rng(seed, identity, index), fim_cfg.get("mode", "line"), fim_cfg.get("max_middle")
            )
            records.append(
                {
                    schema.PREFIX: prefix,
                    schema.SUFFIX: suffix,
                    schema.MIDDLE: middle,
                    schema.PROMPT: fill_here(prefix, suffix),
                    "repo": row.get("max_stars_repo_name") or "",
                    "path": row.get("max_stars_repo_path") or "",
                    "hexsha": identity,
                    "licenses": list(row.get("max_stars_repo_licenses") or []),
                    "segment_index": index,
                    "fim_mode": fim_cfg.get("mode", "line"),
                }
            )
    return records


def build_fim_dataset(
    corpus: Dataset,
    teacher,
    rationale,
    store: ResultStore,
    language: str,
    segment_cfg: dict,
    fim_cfg: dict,
    validation_size: float,
    seed: int,
    shard: tuple[int, int] = (0, 1),
    test_size: float = 0.0,
    split_by: str = "file",
    teacher_topk: int = 0,
    distribution_of: str = schema.TEACHER_MIDDLE,
    teacher_samples: int = 0,
    teacher_likelihoods: bool = False,
) -> DatasetDict | None:
    """The distillation dataset, with the columns of `codistill.data.schema.FEATURES`, split into train,
    validation and test by file or repository (`split_by`, see codistill.data.splits): no file has
    segments on two sides.

    Teacher middles and rationales go through `store`, so a killed build resumes without paying twice;
    with no `rationale` writer the rationale columns are empty strings (students that learn no rationale).
    With `teacher_topk` > 0 the teacher's top-k distributions over the tokens of `distribution_of` (a
    label column) are stored too (`schema.TEACHER_DISTRIBUTION`), through the store as well; with
    `teacher_samples` > 0, that many draws from them (`schema.TEACHER_SAMPLES`); with `teacher_likelihoods`, the
    likelihood of each of the teacher's tokens of that label and where it ends (`schema.TEACHER_LIKELIHOODS`).
    With `shard=(i, n)`, n > 1, only the segments of shard i are labelled and None is returned: run
    every shard (one per GPU), then once with n = 1 to assemble the dataset from the store."""
    if segment_cfg.get("unit", "tokens") == "tokens":
        teacher.check_segment_length(segment_cfg["length"])
    records = fim_records(corpus, segment_cfg, fim_cfg, teacher.tokenizer, seed)
    if len(records) < 2:
        raise ConfigError(
            f"the corpus gave {len(records)} segment(s); a train/validation split needs at least 2: add files "
            "or lower dataset.segment.length / dataset.segment.min_length"
        )
    groups = [group_of(r, split_by) for r in records]
    assignment = assign_splits(groups, validation_size, test_size, seed)  # fails before any teacher call
    index, count = shard
    mine = [r for r in records if in_shard(content_key(r["hexsha"], r["segment_index"]), index, count)]
    outputs = teacher.middles([r["prefix"] for r in mine], [r["suffix"] for r in mine], store)
    codes, middles = [r[schema.PROMPT] for r in mine], [r[schema.MIDDLE] for r in mine]
    rationales = rationale.explain(language, codes, middles, store) if rationale else [""] * len(mine)
    scores = [None] * len(mine)
    if teacher_topk or teacher_samples or teacher_likelihoods:
        labels = outputs if distribution_of == schema.TEACHER_MIDDLE else middles
        prefixes, suffixes = [r[schema.PREFIX] for r in mine], [r[schema.SUFFIX] for r in mine]
        scores = teacher.score(prefixes, suffixes, labels, teacher_topk, store, teacher_samples)
    if count > 1:
        return None
    for record, output, why, score in zip(records, outputs, rationales, scores, strict=True):
        record.update(
            {
                schema.TEACHER_PROMPT: teacher.fim.psm(record[schema.PREFIX], record[schema.SUFFIX]),
                schema.TEACHER_MIDDLE: output,
                schema.RATIONALE: why,
                "teacher": teacher.name,
                "rationale_model": rationale.model_name if rationale else "",
                "rationale_template": rationale.template.id if rationale else "",
            }
        )
        if score is not None:
            record[schema.TEACHER_DISTRIBUTION_OF] = distribution_of
        if teacher_topk:
            record.update(
                {
                    schema.TEACHER_TOPK_IDS: score.topk_ids,
                    schema.TEACHER_TOPK_LOGPROBS: score.topk_logprobs,
                    schema.TEACHER_TAIL_MASS: score.tail,
                }
            )
        if teacher_samples:
            record.update(
                {schema.TEACHER_SAMPLE_IDS: score.sample_ids, schema.TEACHER_SAMPLE_COUNTS: score.sample_counts}
            )
        if teacher_likelihoods:
            label = record[distribution_of]
            ends = target_ends(
                score.ids, *token_ends(teacher.tokenizer, label), teacher.tokenizer.eos_token_id, len(label)
            )
            record.update(
                {
                    schema.TEACHER_TOKEN_LOGPROBS: score.logprobs,
                    schema.TEACHER_TOKEN_ENDS: [-1 if e is None else e for e in ends],
                }
            )
    features = Features(
        {
            **schema.FEATURES,
            **(schema.TEACHER_DISTRIBUTION if teacher_topk else {}),
            **(schema.TEACHER_SAMPLES if teacher_samples else {}),
            **(schema.TEACHER_LIKELIHOODS if teacher_likelihoods else {}),
        }
    )
    parts = {name: [r for r, g in zip(records, groups, strict=True) if assignment[g] == name] for name in SPLITS}
    # an empty test split (test_size 0, or too few files) is left out: a saved empty split does not load back
    return DatasetDict({name: Dataset.from_list(rows, features=features) for name, rows in parts.items() if rows})
