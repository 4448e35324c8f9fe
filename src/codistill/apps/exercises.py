"""codistill-exercises: topic tree -> exercise prompts -> LLM answers -> filtered JSONL + diversity report."""

import json
import logging
from pathlib import Path

import hydra
from datasets import Dataset
from omegaconf import DictConfig

from codistill.config import CONFIG_DIR, build
from codistill.errors import ConfigError, exit_on_config_error
from codistill.exercises.filter import filter_exercises
from codistill.exercises.report import diversity_report
from codistill.exercises.topics import (
    combinations,
    exercise_prompts,
    expand_tree,
    leaves_of,
    prompt_capacity,
    read_lines,
)
from codistill.jsonl import write_jsonl
from codistill.llm.generated import warn_truncated
from codistill.llm.store import ResultStore
from codistill.llm.template import PromptTemplate
from codistill.tables import print_table

log = logging.getLogger(__name__)


def generate_exercises(cfg: DictConfig) -> dict:
    """Build the exercise set of this config; returns the filter counts and the diversity summary."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    roots = read_lines(cfg.topics_file, "python_topics.txt")[: cfg.max_roots or None]
    professions = read_lines(cfg.professions_file, "professions.txt")
    if not roots or not professions:
        raise ConfigError("topics_file and professions_file need at least one non-empty line each")
    per_combo = cfg.professions_per_combo
    if not 1 <= per_combo <= len(professions):
        raise ConfigError(
            f"professions_per_combo={per_combo} must be between 1 and the {len(professions)} professions of "
            "professions_file: set it in that range, or list more professions"
        )
    tree_template, exercise_template = PromptTemplate(**cfg.tree_template), PromptTemplate(**cfg.exercise_template)
    settings = build(cfg.filter)  # a bad threshold fails here, before any LLM call
    backend = build(cfg.backend)
    with ResultStore(cfg.paths.store_dir) as store:
        tree = expand_tree(roots, backend, tree_template, store, cfg.subtopics, cfg.leaves)
        (out / "topic_tree.json").write_text(json.dumps(tree, indent=2, ensure_ascii=False))
        rows = combinations(tree, professions, cfg.partners, cfg.n_prompts, cfg.seed, per_combo)
        capacity = prompt_capacity(tree, cfg.partners, per_combo)
        if cfg.n_prompts and cfg.n_prompts > capacity:
            log.warning(
                "n_prompts=%d exceeds the %d prompts this tree can give (%d leaves x up to partners=%d x "
                "professions_per_combo=%d): raise professions_per_combo or partners (or subtopics, leaves)",
                cfg.n_prompts,
                capacity,
                len(leaves_of(tree)),
                cfg.partners,
                per_combo,
            )
        replies = backend.generate(exercise_prompts(rows, exercise_template), store=store, chat=True, desc="exercises")
    warn_truncated(replies, "exercise", f"backend.{backend.length_setting}")  # the filter drops them
    for row, reply in zip(rows, replies, strict=True):
        row.update(completion=reply.text, finish_reason=reply.finish_reason)
        row.update(template=exercise_template.id, model=backend.name)
    result = filter_exercises(rows, settings)
    write_jsonl(result.kept, out / "exercises.jsonl")
    write_jsonl(result.dropped, out / "dropped.jsonl")
    sizes = {"n_prompts": cfg.n_prompts, "capacity": capacity, "prompts": len(rows)}
    print_table("exercises", {"rows": {**sizes, **result.counts}})
    diversity = diversity_report(result.kept, out, settings, total_topics=len(leaves_of(tree))) if result.kept else {}
    if cfg.push_to_hub and result.kept:
        Dataset.from_list(result.kept).push_to_hub(cfg.push_to_hub, private=cfg.private)
        log.info("pushed %d exercises to the Hub as %s", len(result.kept), cfg.push_to_hub)
    log.info("wrote %d exercises to %s", len(result.kept), (out / "exercises.jsonl").resolve())
    return {**sizes, "kept": len(result.kept), "dropped": result.counts, "diversity": diversity}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="exercises")
@exit_on_config_error
def main(cfg: DictConfig) -> None:
    generate_exercises(cfg)


if __name__ == "__main__":
    main()
