"""LightningDataModule: corpus -> (packed store) -> datasets -> length-bucketed, padded batches.

With ``store=True`` (the configs' default) each split's `.pose` files are packed on first use into
a float16 landmark store (``sign_ctc.data.store``: ``store_dir``, else beside the landmarks, else
under ``store_cache_dir`` for read-only corpora) and read from it. For landmark corpora the loaders
carry raw landmarks and derive the features batch-wise in the workers (``collate_landmarks``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from sign_ctc.data.collate import collate
from sign_ctc.data.corpus import Corpus
from sign_ctc.data.dataset import LandmarkView, MediaPipeFeatureDataset, collate_landmarks
from sign_ctc.data.sampler import LengthBucketBatchSampler
from sign_ctc.data.store import open_store
from sign_ctc.data.vocabulary import Vocabulary

log = logging.getLogger(__name__)


class SignDataModule(pl.LightningDataModule):
    def __init__(self, corpus: Corpus, batch_size: int = 16, eval_batch_size: int | None = None,
                 max_frames: int | None = None, num_workers: int = 2, missing: str = "zero",
                 pin_memory: bool | None = False, seed: int = 0, train_subset: int | None = None,
                 val_split: str = "dev", store: bool = False, store_dir: str | None = None,
                 store_cache_dir: str | None = None):
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
        self.store = store
        self.store_dir = store_dir
        self.store_cache_dir = store_cache_dir
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
            store = None
            if self.store and self.corpus.source == "pose":
                store = open_store(self.corpus, split, self.store_dir, self.store_cache_dir, log=log.info)
            ds = MediaPipeFeatureDataset(self.corpus, split, self.vocab, self.missing, store=store)
            if split == "train" and self.train_subset:
                ds.sentences = ds.sentences[: self.train_subset]
            self.datasets[split] = ds
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", self.val_split), "validate": (self.val_split,), "test": ("test",),
                  "predict": ("test",)}
        for split in splits.get(stage or "fit", ("train", "dev", "test")):
            self.dataset(split)

    def _pin(self) -> bool:
        """``pin_memory=None``: pin exactly when batches go to a CUDA device."""
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = getattr(self, "trainer", None)
        device = getattr(trainer, "root_device", None) if trainer is not None else None
        return torch.cuda.is_available() and (device is None or device.type == "cuda")

    def _source(self, split: str) -> tuple[Any, Any]:
        """(dataset, collate_fn) for a loader: raw landmarks + batch-wise derivation where possible."""
        ds = self.dataset(split)
        if self.corpus.source == "pose":
            return LandmarkView(ds), collate_landmarks
        return ds, collate

    def loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        ds = self.dataset(split)
        sampler = LengthBucketBatchSampler(ds.lengths(), batch_size, max_frames=self.max_frames,
                                           shuffle=shuffle, seed=self.seed)
        source, collate_fn = self._source(split)
        return DataLoader(source, batch_sampler=sampler, collate_fn=collate_fn, num_workers=self.num_workers,
                          pin_memory=self._pin(), persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_split, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", False, self.eval_batch_size)

    def split_batches(self, split: str = "train") -> Iterator[dict[str, Any]]:
        """Every sample of a split once, in order (for streamed normalization statistics)."""
        ds = self.dataset(split)
        sampler = LengthBucketBatchSampler(ds.lengths(), self.eval_batch_size, shuffle=False)
        source, collate_fn = self._source(split)
        loader = DataLoader(source, batch_sampler=sampler, collate_fn=collate_fn, num_workers=self.num_workers)
        yield from loader
