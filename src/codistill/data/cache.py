"""The distillation dataset of recipe 1, built once and cached under `paths.data_dir`.

`DistillationSource` holds what decides the dataset (the corpus and its segmenting, the teacher, the
rationale writer, the seed) and names its folder after a hash of exactly that and of the schema's version,
so a second run with the same config pays for nothing and a changed config (or schema) never reads a stale
dataset. A folder appears only complete (written beside, then renamed). Under a launch of several ranks
each rank labels its shard of the segments (the teacher runs on every GPU at once), the ranks wait for each
other, rank 0 assembles and saves, and the others then load what it saved.
"""

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetDict
from omegaconf import DictConfig, OmegaConf

from codistill.config import build
from codistill.data import schema
from codistill.data.build import build_fim_dataset
from codistill.distributed import barrier
from codistill.errors import ConfigError
from codistill.llm.store import ResultStore

log = logging.getLogger(__name__)


@dataclass
class DistillationSource:
    """The `source` of `data=fim` (and what `codistill-generate` builds)."""

    dataset: DictConfig
    teacher: DictConfig
    rationale: DictConfig | None  # None: no rationales
    seed: int
    data_dir: str
    store_dir: str
    teacher_topk: int = 0  # > 0: store the teacher's top-k distributions over the label too
    label_source: str = "teacher"  # which label (data.label_source) the distributions cover
    teacher_samples: int = 0  # > 0: store that many draws from the teacher's distributions over the label
    teacher_likelihoods: bool = False  # store the likelihood of each of the teacher's tokens of the label

    def key(self) -> str:
        """A stable hash of everything that decides the dataset's content, its columns included."""
        parts = {"dataset": self.dataset, "teacher": self.teacher, "rationale": self.rationale, "seed": self.seed}
        parts["schema"] = schema.VERSION
        if self.teacher_topk:
            parts["distributions"] = {"top_k": self.teacher_topk, "of": self.label_source}
        if self.teacher_samples:
            parts["samples"] = {"n": self.teacher_samples, "of": self.label_source, "seeded": "per pair"}
        if self.teacher_likelihoods:
            parts["likelihoods"] = {"of": self.label_source}
        return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(parts)).encode("utf-8")).hexdigest()[:12]

    def folder(self) -> Path:
        return Path(self.data_dir) / f"{self.dataset.name}-{self.teacher.name}-{self.key()}"

    def build(self, shard: tuple[int, int] = (0, 1), load_teacher=None) -> DatasetDict | None:
        """The dataset; with shard (i, n), n > 1, only shard i is labelled and None is returned (see
        build_fim_dataset). Shard i writes to the result store as writer i. `load_teacher` gives the run's
        teacher (codistill.assembly.Prepared.teacher: loaded once per run); without it, `teacher` is built."""
        if not 0 <= shard[0] < shard[1]:
            raise ConfigError(f"shard.index={shard[0]} must be in [0, shard.count={shard[1]})")
        teacher = load_teacher() if load_teacher is not None else build(self.teacher)
        corpus, rationale = build(self.dataset.corpus), build(self.rationale)
        dataset = OmegaConf.to_container(self.dataset, resolve=True)
        with ResultStore(self.store_dir, writer=str(shard[0])) as store:
            return build_fim_dataset(
                corpus,
                teacher,
                rationale,
                store,
                self.dataset.language,
                dataset["segment"],
                dataset["fim"],
                self.dataset.validation_size,
                self.seed,
                shard,
                test_size=self.dataset.get("test_size", 0.0),
                split_by=self.dataset.get("split_by", "file"),
                teacher_topk=self.teacher_topk,
                distribution_of=schema.LABEL_COLUMNS[self.label_source],
                teacher_samples=self.teacher_samples,
                teacher_likelihoods=self.teacher_likelihoods,
            )

    def cached(self, rank: int = 0, world: int = 1, load_teacher=None) -> str:
        """The dataset's folder, built on first use (`load_teacher`: as `build` says). Every rank of a launch
        of `world` processes calls it; all return once rank 0 has saved the dataset."""
        target = self.folder()
        if (target / "dataset_dict.json").is_file():
            log.info("reusing the distillation dataset in %s", target)
            return str(target)
        if world > 1:
            self.build((rank, world), load_teacher)
            barrier()
        if rank == 0:
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.build(load_teacher=load_teacher).save_to_disk(str(tmp))
            tmp.rename(target)
            log.info("saved the distillation dataset to %s", target)
        barrier()
        return str(target)
