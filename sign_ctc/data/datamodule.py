"""LightningDataModule: corpus -> datasets -> length-bucketed, padded batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from sign_ctc.data.collate import collate
from sign_ctc.data.corpus import Corpus
from sign_ctc.data.dataset import MediaPipeFeatureDataset
from sign_ctc.data.sampler import LengthBucketBatchSampler
from sign_ctc.data.vocabulary import Vocabulary


class SignDataModule(pl.LightningDataModule):
    def __init__(self, corpus: Corpus, batch_size: int = 16, eval_batch_size: int | None = None,
                 max_frames: int | None = None, num_workers: int = 2, missing: str = "zero",
                 pin_memory: bool = False, seed: int = 0, train_subset: int | None = None,
                 val_split: str = "dev"):
        super().__init__()
        self.corpus = corpus
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.max_frames = max_frames
        self.num_workers = num_workers
        self.missing = missing
        self.pin_memory = pin_memory
        self.seed = seed
        self.train_subset = train_subset
        self.val_split = val_split
        self._vocab: Vocabulary | None = None
        self.datasets: dict[str, MediaPipeFeatureDataset] = {}

    def prepare_data(self) -> None:
        self.corpus.prepare()

    @property
    def vocab(self) -> Vocabulary:
        """Built from the train split only; a checkpoint's vocabulary can be set instead."""
        if self._vocab is None:
            self._vocab = Vocabulary.from_glosses(s.glosses for s in self.corpus.sentences("train"))
        return self._vocab

    @vocab.setter
    def vocab(self, vocab: Vocabulary) -> None:
        self._vocab = vocab
        self.datasets.clear()

    def dataset(self, split: str) -> MediaPipeFeatureDataset:
        if split not in self.datasets:
            ds = MediaPipeFeatureDataset(self.corpus, split, self.vocab, self.missing)
            if split == "train" and self.train_subset:
                ds.sentences = ds.sentences[: self.train_subset]
            self.datasets[split] = ds
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", self.val_split), "validate": (self.val_split,), "test": ("test",),
                  "predict": ("test",)}
        for split in splits.get(stage or "fit", ("train", "dev", "test")):
            self.dataset(split)

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        ds = self.dataset(split)
        sampler = LengthBucketBatchSampler(ds.lengths(), batch_size, max_frames=self.max_frames,
                                           shuffle=shuffle, seed=self.seed)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    def split_batches(self, split: str = "train") -> Iterator[dict[str, Any]]:
        """Every sample of a split once, in order (for streamed normalization statistics)."""
        ds = self.dataset(split)
        sampler = LengthBucketBatchSampler(ds.lengths(), self.eval_batch_size, shuffle=False)
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)
        yield from loader
