"""MediaPipeFeatureDataset: one sample = features [T, 6516], presence [T, 4], gloss ids, id.

Features are derived on the fly from raw landmarks (never stored): read from the split's packed
store (``sign_ctc.data.store``, float16, read without loading it) when one is given, else from the
sample's `.pose` file; or read from a precomputed ``[T, 6516]`` float32 `.npy` file (the seed's form).
The dataset does not normalize: that happens once, in the model (see ``sign_ctc.models.normalization``).

The loaders use the faster form: :class:`LandmarkView` yields raw landmarks and
:func:`~sign_ctc.data.collate.collate_landmarks` pads them (float16 from the store); the features are derived from the
batch on the training device (``Batch.with_features``, called by the module after
the transfer), which gives the same batch as ``collate([ds[i] ...])``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sign_ctc.data.augment import PoseAugmentation, ctc_min_outputs, sample_seed
from sign_ctc.data.corpus import Corpus
from sign_ctc.data.sample import LandmarkSample, Sample
from sign_ctc.data.store import LandmarkStore
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import FEATURE_DIM, PARTS, features_from_landmarks
from sign_ctc.features.missing import fill_missing
from sign_ctc.features.pose_io import read_pose


# A training-sample transform: (points [T, 543, 3], presence [T, 4], target ids) -> (points, presence).
Augment = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class SampleError(SignCtcError, ValueError):
    """A sample that cannot be used; the message names the sample id and file."""


class MediaPipeFeatureDataset(Dataset):
    """``store``: a :class:`LandmarkStore` (or its folder) of this split to read instead of the `.pose` files.

    ``exclude``: ids of bad samples left out (``skip_bad_files``); ``frames``: known frame counts by
    id (from the one-pass check), so that :meth:`lengths` need not read the files again.
    """

    def __init__(self, corpus: Corpus, split: str, vocab: Vocabulary, missing: str = "zero",
                 store: LandmarkStore | str | os.PathLike | None = None, exclude: Collection[str] = (),
                 frames: dict[str, int] | None = None):
        self.corpus = corpus
        self.split = split
        self.vocab = vocab
        self.missing = missing
        every = corpus.sentences(split)
        excluded = set(exclude)
        self.sentences = [s for s in every if s.id not in excluded]
        if not every:
            raise SampleError(f"split {split!r} of corpus {corpus.root} has no sentences")
        if not self.sentences:
            raise SampleError(f"split {split!r} of corpus {corpus.root}: all {len(every)} sentences are excluded "
                              "as bad samples")
        self.frames = dict(frames or {})
        if store is not None and not isinstance(store, LandmarkStore):
            store = LandmarkStore(Path(store))
        if store is not None and corpus.source != "pose":
            raise SampleError(f"a landmark store replaces .pose files; corpus {corpus.root} reads {corpus.source!r}")
        self.store = store
        self._lengths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.sentences]

    def lengths(self) -> list[int]:
        """Frame counts (for length bucketing): the store's index, else read once from the files."""
        if self._lengths is None or len(self._lengths) != len(self.sentences):
            if self.store is not None:
                self._lengths = [int(self.store.lengths[self._store_row(i)]) for i in range(len(self.sentences))]
            else:
                known = {**self.corpus.num_frames(self.split), **self.frames}
                self._lengths = [known.get(s.id) or self._num_frames(i) for i, s in enumerate(self.sentences)]
        return self._lengths

    def _store_row(self, index: int) -> int:
        sentence = self.sentences[index]
        row = self.store.row.get(sentence.id) if self.store is not None else None
        if row is None:
            raise SampleError(f"sample {sentence.id}: not in the landmark store {self.store.path}")
        return row

    def landmarks(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw landmarks float32 [T, 543, 3] (missing parts filled), presence [T, 4] and filled presence."""
        points, presence = self.detections(index)
        points, filled = fill_missing(points, presence, self.missing)
        return points, presence, filled

    def detections(self, index: int, float16: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Raw landmarks float32 [T, 543, 3] and presence [T, 4] as detected (before filling).

        ``float16``: the store's float16 values as they are (exact; converted on the device).
        """
        sentence = self.sentences[index]
        if self.store is not None:
            half, presence = self.store.read(self._store_row(index))
            points = half if float16 else half.astype(np.float32)
        else:
            path = self.corpus.landmark_path(self.split, sentence)
            if not path.is_file():
                raise SampleError(f"sample {sentence.id}: landmark file {path} not found")
            lm = read_pose(path)
            points, presence = lm.points, lm.presence
        if points.shape[0] == 0:
            raise SampleError(f"sample {sentence.id}: no frames")
        return points, presence

    def raw(self, index: int, augment: Augment | None = None) -> LandmarkSample:
        """The sample before feature derivation (for :func:`~sign_ctc.data.collate.collate_landmarks`).

        ``augment(points, presence, targets)``: applied to the detections before missing parts are
        filled, so ``missing=interpolate`` fills augmented gaps as it fills real ones.
        """
        if self.corpus.source != "pose":
            raise SampleError(f"corpus {self.corpus.root} holds precomputed features, not landmarks")
        sentence = self.sentences[index]
        targets = torch.tensor(self.vocab.encode(sentence.glosses), dtype=torch.long)
        if augment is None and self.missing == "zero":
            points, presence = self.detections(index, float16=True)  # nothing to compute: stays float16
            filled = presence
        elif augment is None:
            points, presence, filled = self.landmarks(index)
        else:
            points, presence = augment(*self.detections(index), targets.numpy())
            points, filled = fill_missing(points, presence, self.missing)
        return LandmarkSample(sentence.id, points, presence, filled, targets, sentence.signer)

    def _num_frames(self, index: int) -> int:
        path = self.corpus.landmark_path(self.split, self.sentences[index])
        if self.corpus.source == "npy":
            return int(np.load(path, mmap_mode="r").shape[0])
        return len(read_pose(path))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Features [T, 6516] and presence [T, 4] of one sample."""
        sentence = self.sentences[index]
        path = self.corpus.landmark_path(self.split, sentence)
        if self.corpus.source == "npy":
            if not path.is_file():
                raise SampleError(f"sample {sentence.id}: landmark file {path} not found")
            feats = np.load(path)
            if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM:
                raise SampleError(f"sample {sentence.id}: {path} has shape {feats.shape}, want [T, {FEATURE_DIM}]")
            return feats.astype(np.float32, copy=False), np.ones((feats.shape[0], len(PARTS)), dtype=bool)
        points, presence, filled = self.landmarks(index)
        feats = features_from_landmarks(torch.from_numpy(points), torch.from_numpy(filled))
        return feats.numpy(), filled  # presence = channels that hold values (detected or filled)

    def __getitem__(self, index: int) -> Sample:
        sentence = self.sentences[index]
        feats, presence = self.load(index)
        if feats.shape[0] == 0:
            raise SampleError(f"sample {sentence.id}: no frames")
        return Sample(
            id=sentence.id,
            features=torch.from_numpy(np.ascontiguousarray(feats)),
            presence=torch.from_numpy(np.ascontiguousarray(presence)),
            targets=torch.tensor(self.vocab.encode(sentence.glosses), dtype=torch.long),
            signer=sentence.signer,
        )


class LandmarkView(Dataset):
    """The dataset's samples as :class:`LandmarkSample` (raw landmarks), for :func:`~sign_ctc.data.collate.collate_landmarks`.

    With an ``augmentation`` (the training loader only) a key is ``(index, epoch)``, as the
    epoch-tagging batch sampler yields it: the epoch travels with the index into the (persistent)
    loader workers, and each sample's transforms draw from generators keyed by
    ``sample_seed(seed, epoch, id)``. A plain index is epoch 0.
    """

    def __init__(self, dataset: MediaPipeFeatureDataset, augmentation: PoseAugmentation | None = None,
                 seed: int = 0):
        self.dataset = dataset
        self.augmentation = augmentation
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> LandmarkSample:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if self.augmentation is None:
            return self.dataset.raw(index)
        seed = sample_seed(self.seed, epoch, self.dataset.sentences[index].id)
        augmentation = self.augmentation

        def augment(points: np.ndarray, presence: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return augmentation(points, presence, ctc_min_outputs(targets), seed)

        return self.dataset.raw(index, augment)
