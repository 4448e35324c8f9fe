"""Batches of examples of similar length: little padding, seeded and reproducible, shuffled across batches.

Both datamodules use it: recipe 1's FIM pairs (`FIMDataModule`) and recipe 2's exercises
(`ExercisesDataModule`)."""

import numpy as np
import torch
from torch.utils.data import BatchSampler, Sampler

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
