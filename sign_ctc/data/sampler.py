"""Length-bucketed batch sampler: similar-length sequences together, so padding stays small.

Distributed-aware: under DDP every rank gets a disjoint, equally long list of batches (padded by
repeating batches), drawn from the same shuffled order via the shared seed and epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


class _EpochSetter:
    """Where Lightning looks for ``set_epoch`` on a loader with a batch sampler; forwards it."""

    def __init__(self, owner: LengthBucketBatchSampler):
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class LengthBucketBatchSampler(Sampler[list[int]]):
    """``tag_epoch``: yield ``(index, epoch)`` pairs instead of indices, so that the epoch reaches
    the dataset in the (persistent) loader workers: per-epoch augmentation (``LandmarkView``)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, max_frames: int | None = None,
                 shuffle: bool = True, bucket_size: int = 64, seed: int = 0, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None, tag_epoch: bool = False):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.bucket_size = bucket_size
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.tag_epoch = tag_epoch
        self.epoch = 0
        # Lightning's fit loop calls `set_epoch` on `loader.sampler` and `loader.batch_sampler.sampler`,
        # never on the batch sampler itself: without this, every epoch would repeat epoch 0's batches.
        self.sampler = _EpochSetter(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        if self.num_replicas is not None:
            return self.num_replicas, self.rank or 0
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        if self.shuffle:
            # Sort by length within random chunks: buckets of similar length, new ones each epoch.
            order = rng.permutation(len(self.lengths))
            chunk = self.batch_size * self.bucket_size
            order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")]
                                    for c in np.array_split(order, max(1, int(np.ceil(len(order) / chunk))))])
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches, current, longest = [], [], 0
        for idx in order:
            longest_new = max(longest, int(self.lengths[idx]))
            too_many_frames = self.max_frames is not None and current and longest_new * (len(current) + 1) > self.max_frames
            if len(current) == self.batch_size or too_many_frames:
                batches.append(current)
                current, longest_new = [], int(self.lengths[idx])
            current.append(int(idx))
            longest = longest_new
        if current and not (self.drop_last and len(current) < self.batch_size):
            batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        world, rank = self._world()
        if world > 1:
            per_rank = -(-len(batches) // world)
            batches = batches + batches[: per_rank * world - len(batches)]
            batches = batches[rank::world]
        if self.tag_epoch:
            batches = [[(i, self.epoch) for i in b] for b in batches]
        return iter(batches)

    def __len__(self) -> int:
        world, _ = self._world()
        return -(-len(self._batches()) // world)
