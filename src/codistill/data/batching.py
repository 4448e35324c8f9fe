"""Batches of examples of similar length: little padding, seeded and reproducible, shuffled across batches.

Both datamodules use it: recipe 1's FIM pairs (`FIMDataModule`) and recipe 2's exercises
(`ExercisesDataModule`)."""

import warnings
from itertools import islice

import numpy as np
import torch
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import BatchSampler, DataLoader, Sampler

MEGA_BATCH_FACTOR = 50  # a length-sorted mega-batch holds this many micro-batches


class EpochShuffle(Sampler[int]):
    """The indices `0..n-1` in an order fixed by `(seed, epoch)`; Lightning calls `set_epoch` each epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch, 0]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


class LengthGroupedBatchSampler(BatchSampler):
    """Batches of examples of similar length: take the sampler's (shuffled) order, sort each mega-batch of
    `mega_batch_factor * batch_size` indices by length, cut it into batches, shuffle the batches (seeded by
    `seed` and the sampler's epoch) and put the batch holding the longest example first, so that an
    out-of-memory error shows on the first step. Under DDP Lightning swaps `sampler` for a distributed one."""

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: list[int] | None = None,
        mega_batch_factor: int = MEGA_BATCH_FACTOR,
        seed: int = 0,
    ):
        super().__init__(sampler, batch_size, drop_last)
        self.lengths, self.mega_batch_factor, self.seed = list(lengths or []), mega_batch_factor, seed

    def __iter__(self):
        order, size = list(self.sampler), self.batch_size
        mega = size * self.mega_batch_factor
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=self.lengths.__getitem__, reverse=True)
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches.pop()
        rng = np.random.default_rng([self.seed, getattr(self.sampler, "epoch", 0), 1])
        batches = [batches[i] for i in rng.permutation(len(batches))]
        if batches:
            longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
            batches.insert(0, batches.pop(longest))
        return iter(batches)


class ResumableDataLoader(DataLoader):
    """A DataLoader whose first pass skips its first `skip` batches without loading them (later passes start
    at the first batch); its length stays the epoch's. See `MidEpochResume`."""

    def __init__(self, *args, skip: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip, self._skipping = skip, 0

    def __iter__(self):
        self._skipping, self.skip = self.skip, 0
        try:
            return super().__iter__()
        finally:
            self._skipping = 0

    @property
    def _index_sampler(self):
        sampler = super()._index_sampler
        return _Skipped(sampler, self._skipping) if self._skipping else sampler


class _Skipped:
    def __init__(self, batches, skip: int):
        self.batches, self.skip = batches, skip

    def __iter__(self):
        return islice(iter(self.batches), self.skip, None)

    def __len__(self) -> int:
        return len(self.batches) - self.skip


class MidEpochResume:
    """A datamodule mixin: a run resumed from a checkpoint written within an epoch (`checkpoint_every_n_steps`)
    continues the epoch where it stopped. Lightning restores its progress but replays the epoch from its first
    batch, so the batches before the checkpoint would be trained on twice. The epoch's order is fixed by
    `(seed, epoch)` (`EpochShuffle`), so the checkpoint records how many of its batches were trained on (the
    datamodule's state) and the resumed training dataloader skips exactly those.

    Lightning restores a datamodule before it builds the dataloaders, except under DeepSpeed, which restores
    after: there the resumed epoch is replayed from its start, with a warning."""

    _skip_on_resume, _train_loader_built = 0, False

    def state_dict(self) -> dict:
        trainer = self.trainer
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer is not None else 0
        return {"epoch_batches_done": done if trainer is not None and done < trainer.num_training_batches else 0}

    def load_state_dict(self, state: dict) -> None:
        self._skip_on_resume = state.get("epoch_batches_done", 0)
        if self._skip_on_resume and self._train_loader_built:
            warnings.warn(
                f"this strategy restores the datamodule after building the training dataloader: the resumed epoch "
                f"replays its first {self._skip_on_resume} batches; resume from an end-of-epoch checkpoint to avoid it",
                stacklevel=2,
            )

    def resumable_loader(self, dataset, batch_sampler, **kwargs) -> ResumableDataLoader:
        """The training dataloader, skipping the batches a resumed epoch has trained on already."""
        skip, self._skip_on_resume, self._train_loader_built = self._skip_on_resume, 0, True
        return ResumableDataLoader(dataset, batch_sampler=batch_sampler, skip=skip, **kwargs)


# Lightning's warning on a resume within an epoch assumes a replay from the epoch's start; MidEpochResume
# continues it instead (tests/test_scaling.py checks the batches), and warns where it cannot
warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch", PossibleUserWarning)


def padding_fraction_of(batches: list[list[int]], *lengths: list[int]) -> float:
    """The share of pad positions when each batch is right-padded to its longest example. With several
    length lists (one per padded tensor of a batch, e.g. inputs and labels), each tensor is padded on its
    own and the share is over all of them together."""
    padded = real = 0
    for field in lengths:
        for batch in batches:
            padded += len(batch) * max(field[i] for i in batch)
            real += sum(field[i] for i in batch)
    return 1.0 - real / padded if padded else 0.0


def epoch_batches(sampler, epoch: int) -> list[list[int]]:
    """The batches a batch sampler over an `EpochShuffle` yields in `epoch`."""
    sampler.sampler.set_epoch(epoch)
    return list(sampler)


def right_padded(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows right-padded with `value` into a long tensor, the attention mask of the real positions); filled
    in numpy, several times faster than a tensor per row."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    out = np.full((len(rows), int(lengths.max())), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    mask = (np.arange(out.shape[1]) < lengths[:, None]).astype(np.int64)
    return torch.from_numpy(out), torch.from_numpy(mask)
