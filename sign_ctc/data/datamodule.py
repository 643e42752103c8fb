"""LightningDataModule: corpus -> (packed store) -> datasets -> length-bucketed, padded batches.

With ``store=True`` (the configs' default) each split's `.pose` files are packed on first use into
a float16 landmark store (``sign_ctc.data.store``: ``store_dir``, else beside the landmarks, else
under ``store_cache_dir`` for read-only corpora) and read from it. For landmark corpora the loaders
carry padded raw landmarks (``collate_landmarks``; float16 from the store) and the module derives the
features after the transfer to its device (``Batch.with_features``).

Every split is checked in one pass before use (by the pack, or by ``store.scan_sources`` without a
store): bad samples fail with one error naming them all, or with ``skip_bad_files=True`` are left
out, warned about and kept in :attr:`SignDataModule.skipped_samples` (train.py writes them to
metrics.json). Dev/test glosses outside the train vocabulary are counted once per split in a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from sign_ctc.data.augment import PoseAugmentation
from sign_ctc.data.collate import collate, collate_landmarks
from sign_ctc.data.corpus import Corpus
from sign_ctc.data.dataset import LandmarkView, MediaPipeFeatureDataset
from sign_ctc.data.sampler import LengthBucketBatchSampler
from sign_ctc.data.sources import BadSample, scan_sources
from sign_ctc.data.store import open_store
from sign_ctc.data.vocabulary import Vocabulary

log = logging.getLogger(__name__)


def make_corpus(corpus: Corpus | Callable[..., Corpus], root: str | Path | None,
                landmarks_dir: str | Path | None) -> Corpus:
    """The corpus object: ``corpus`` itself, or ``corpus(root=, landmarks_dir=)`` for a config's partial.

    The data configs spell the corpus location once, as ``data.root`` / ``data.landmarks_dir``, and
    give the corpus class as a partial: every data config takes the same two options.
    """
    if isinstance(corpus, Corpus):
        if root is not None or landmarks_dir is not None:
            raise ValueError("give either a Corpus object or root/landmarks_dir with a corpus factory, not both")
        return corpus
    if root in (None, ""):
        raise ValueError("data.root is not set: the corpus folder (see README, 'Train on your own corpus')")
    return corpus(root=root, landmarks_dir=landmarks_dir or None)


def resolve_workers(num_workers: int | str) -> int:
    """``auto``: one loader worker per CPU core this process may use, at most 8."""
    if num_workers == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(8, cores))
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"data.num_workers must be `auto` or a number >= 0, got {num_workers!r}")
    return num_workers


class SignDataModule(pl.LightningDataModule):
    """``corpus``: a :class:`Corpus`, or a factory called with ``root`` and ``landmarks_dir`` (the configs).

    ``augmentation``: a :class:`PoseAugmentation` applied to the raw landmarks of the training loader
    only (not dev/test, not :meth:`split_batches`), per (seed, epoch, sample id); None: no augmentation.
    The keyword defaults are those of ``sign_ctc/conf/data/mediapipe_full.yaml`` (``eval_batch_size=None``: the
    training ``batch_size``; ``num_workers="auto"``: see :func:`resolve_workers`).
    """

    def __init__(self, corpus: Corpus | Callable[..., Corpus], root: str | None = None,
                 landmarks_dir: str | None = None, batch_size: int = 16, eval_batch_size: int | None = 32,
                 max_frames: int | None = None, num_workers: int | str = "auto", missing: str = "zero",
                 pin_memory: bool | None = None, seed: int = 0, train_subset: int | None = None,
                 val_split: str = "dev", store: bool = True, store_dir: str | None = None,
                 store_cache_dir: str | None = None, skip_bad_files: bool = False,
                 multiprocessing_context: str | None = None, augmentation: PoseAugmentation | None = None,
                 pad_to_multiple: int | None = None):
        super().__init__()
        self.corpus = make_corpus(corpus, root, landmarks_dir)
        if augmentation is not None and self.corpus.source != "pose":
            raise ValueError(f"augmentation works on raw landmarks; corpus {self.corpus.root} holds precomputed "
                             f"features (source={self.corpus.source!r}): use augmentation=none")
        self.augmentation = augmentation
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.max_frames = max_frames
        self.num_workers = resolve_workers(num_workers)
        if pad_to_multiple is not None and pad_to_multiple < 1:
            raise ValueError(f"data.pad_to_multiple must be a positive number of frames or null, got {pad_to_multiple}")
        self.pad_to_multiple = pad_to_multiple
        self.multiprocessing_context = multiprocessing_context
        self.missing = missing
        self.pin_memory = pin_memory
        self.seed = seed
        self.train_subset = train_subset
        self.val_split = val_split
        self.store = store
        self.store_dir = store_dir
        self.store_cache_dir = store_cache_dir
        self.skip_bad_files = skip_bad_files
        # split -> [{id, file, reason}] of the bad samples left out (skip_bad_files), for metrics.json
        self.skipped_samples: dict[str, list[dict[str, str]]] = {}
        self._vocab: Vocabulary | None = None
        self._unknown_reported: set[str] = set()
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
        self._unknown_reported.clear()
        self.datasets.clear()

    def dataset(self, split: str) -> MediaPipeFeatureDataset:
        """The split's dataset, after its one-pass check (packing it into the store first if enabled)."""
        if split not in self.datasets:
            store = None
            skipped: list[BadSample] = []
            frames: dict[str, int] = {}
            if self.corpus.source == "pose":
                if self.store:
                    store = open_store(self.corpus, split, self.store_dir, self.store_cache_dir, log=log.info,
                                       skip_bad_files=self.skip_bad_files)
                    skipped = store.skipped
                else:
                    frames, skipped = scan_sources(self.corpus, split, skip_bad_files=self.skip_bad_files)
            self._record_skipped(split, skipped)
            ds = MediaPipeFeatureDataset(self.corpus, split, self.vocab, self.missing, store=store,
                                         exclude={b.id for b in skipped}, frames=frames)
            if split == "train" and self.train_subset:
                ds.sentences = ds.sentences[: self.train_subset]
            self._report_unknown_glosses(split, ds)
            self.datasets[split] = ds
        return self.datasets[split]

    def _record_skipped(self, split: str, skipped: list[BadSample]) -> None:
        """Warn (once per split) about the bad samples left out, and keep them for metrics.json."""
        entries = [b.as_dict() for b in skipped]
        if not entries or self.skipped_samples.get(split) == entries:
            return
        self.skipped_samples[split] = entries
        listed = "; ".join(f"{b.id} ({b.file}): {b.reason}" for b in skipped[:50])
        more = f"; and {len(skipped) - 50} more" if len(skipped) > 50 else ""
        log.warning("%s: %d bad sample(s) left out (skip_bad_files=true): %s%s", split, len(skipped), listed, more)

    def _report_unknown_glosses(self, split: str, ds: MediaPipeFeatureDataset) -> None:
        """Once per split: how many dev/test gloss tokens the train vocabulary lacks (each one a WER error)."""
        if split == "train" or split in self._unknown_reported:
            return
        self._unknown_reported.add(split)
        unknown = self.vocab.unknown(s.glosses for s in ds.sentences)
        if not unknown:
            return
        types = [g for g, _ in sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0]))]
        listed = ", ".join(types[:30]) + (f" (+{len(types) - 30} more)" if len(types) > 30 else "")
        log.warning("%s: %d gloss tokens (%d types) not in the train vocabulary, scored as errors: %s",
                    split, sum(unknown.values()), len(types), listed)

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

    def _source(self, split: str, augment: bool = False) -> tuple[Any, Any]:
        """(dataset, collate_fn) for a loader: raw landmarks + batch-wise derivation where possible."""
        ds = self.dataset(split)
        pad = self.pad_to_multiple
        if self.corpus.source == "pose":
            source = LandmarkView(ds, self.augmentation if augment else None, seed=self.seed)
            return source, partial(collate_landmarks, pad_to_multiple=pad) if pad else collate_landmarks
        return ds, partial(collate, pad_to_multiple=pad) if pad else collate

    def _worker_context(self) -> Any:
        """This DataLoader's start method for its workers (``multiprocessing_context``), or None: the process
        default. The process's own start method is never changed: other code in the process (joblib, another
        loader) keeps the one it has.

        Inside joblib's loky processes (``hydra/launcher=joblib``) the process default is ``loky``: a child
        inherits the start method it was started with. Its Popen starts only loky's own processes, so torch's
        plain ``multiprocessing.Process`` workers fail there ("'Process' object has no attribute 'env'"); they
        get ``fork`` by name instead, which starts them without consulting the default. spawn and forkserver
        cannot work there without changing the whole process's default: their fresh interpreter re-applies
        the parent's default start method by name, and ``loky`` is unknown to it. Asking for one there is an
        error that says so.
        """
        if self.num_workers == 0:
            return None
        import multiprocessing as mp

        method = self.multiprocessing_context
        standard = mp.get_all_start_methods()
        current = mp.get_start_method(allow_none=True)
        if current is None or current in standard:
            return None if method is None else mp.get_context(method)
        if method not in (None, "fork") or "fork" not in standard:
            raise ValueError(
                f"data.multiprocessing_context={method} cannot start DataLoader workers in this process: its start "
                f"method is {current!r} (a joblib/loky worker, hydra/launcher=joblib), and {method or standard[0]} "
                f"workers re-apply it by name in a fresh interpreter that does not know it; use "
                f"data.multiprocessing_context=fork (or null), data.num_workers=0, or another hydra/launcher")
        log.info("start method %r is not a multiprocessing one (joblib worker): DataLoader workers use 'fork'", current)
        return mp.get_context("fork")

    def loader(self, split: str, shuffle: bool, batch_size: int, augment: bool = False) -> DataLoader:
        """``augment``: apply ``self.augmentation`` (the training loader); the sampler then tags each
        index with its epoch, which reaches the persistent workers with the index."""
        ds = self.dataset(split)
        augment = augment and self.augmentation is not None
        sampler = LengthBucketBatchSampler(ds.lengths(), batch_size, max_frames=self.max_frames,
                                           shuffle=shuffle, seed=self.seed, tag_epoch=augment)
        source, collate_fn = self._source(split, augment)
        return DataLoader(source, batch_sampler=sampler, collate_fn=collate_fn, num_workers=self.num_workers,
                          pin_memory=self._pin(), persistent_workers=self.num_workers > 0,
                          multiprocessing_context=self._worker_context())

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", True, self.batch_size, augment=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_split, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", False, self.eval_batch_size)

    def split_batches(self, split: str = "train") -> Iterator[dict[str, Any]]:
        """Every sample of a split once, in order, with its features (for streamed normalization statistics)."""
        ds = self.dataset(split)
        sampler = LengthBucketBatchSampler(ds.lengths(), self.eval_batch_size, shuffle=False)
        source, collate_fn = self._source(split)
        loader = DataLoader(source, batch_sampler=sampler, collate_fn=collate_fn, num_workers=self.num_workers,
                            multiprocessing_context=self._worker_context())
        yield from (batch.with_features() for batch in loader)
