"""codistill-eval: score a model, or a samples file, on the selected tasks; write samples, a summary, a table and
a plot."""

import logging
from functools import partial
from pathlib import Path

import hydra
from omegaconf import DictConfig

from codistill.config import CONFIG_DIR, build, loggable
from codistill.errors import ConfigError, exit_on_config_error, require
from codistill.eval.report import write_report
from codistill.eval.samples import read_samples

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Run `cfg.run` tasks on `cfg.eval_model`, or score the completions of `cfg.samples`; returns {task:
    {metric: value}}. If a task fails, the report keeps the tasks that finished before the error is raised."""
    unknown = [name for name in cfg.run if name not in cfg.tasks]
    if unknown:
        raise ConfigError(f"run={list(cfg.run)} names unknown task(s) {unknown}: choose from {list(cfg.tasks)}")
    require(cfg, *([] if cfg.samples else ["eval_model"]), *(f"tasks.{name}" for name in cfg.run))
    tasks = [build(cfg.tasks[name]) for name in cfg.run]
    completions = read_samples(cfg.samples, tasks) if cfg.samples else {}
    for task in tasks:  # every input, before any model loads or any task runs
        task.check()
    sandbox = build(cfg.sandbox)
    if cfg.samples:
        title, jobs = Path(cfg.samples).name, [partial(task.score, completions[task.name], sandbox) for task in tasks]
    else:
        model = build(cfg.eval_model)
        title, jobs = model.name, [partial(task.run, model, sandbox) for task in tasks]
    results, failed, error = [], {}, None
    for task, job in zip(tasks, jobs, strict=True):
        try:
            results.append(job())
        except (Exception, KeyboardInterrupt) as exc:
            failed, error = {task.name: repr(exc)}, exc
            log.error("%s failed (%s); the report keeps the %d task(s) that finished", task.name, exc, len(results))
            break
    summary = write_report(cfg.paths.output_dir, results, title, failed)
    loggers = [build(c) for c in (cfg.get("logger") or {}).values()]
    for logger in loggers:
        logger.log_hyperparams(loggable(cfg))
        logger.log_metrics({f"{task}/{k}": v for task, metrics in summary.items() for k, v in metrics.items()})
        if hasattr(logger, "log_table"):  # wandb: the samples as tables
            for result in results:
                columns = sorted({k for row in result.samples for k in row})
                rows = [[str(row.get(c, "")) for c in columns] for row in result.samples]
                logger.log_table(key=f"samples/{result.name}", columns=columns, data=rows)
        logger.finalize("failed" if failed else "success")
        if hasattr(logger.experiment, "finish"):  # a wandb run: flush it now, not at interpreter exit
            logger.experiment.finish()
    log.info("wrote the evaluation report to %s", Path(cfg.paths.output_dir).resolve())
    if error is not None:
        raise error
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
@exit_on_config_error
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
