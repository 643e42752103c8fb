"""MediaPipeFeatureDataset: one sample = features [T, 6516], presence [T, 4], gloss ids, id.

Features are derived on the fly from the raw landmarks of a `.pose` file (never stored), or read
from a precomputed ``[T, 6516]`` float32 `.npy` file (the seed's form). The dataset does not
normalize: that happens once, in the model (see ``sign_ctc.normalization``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from sign_ctc.data.corpus import Corpus
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.features.layout import FEATURE_DIM, PARTS, features_from_landmarks
from sign_ctc.features.missing import fill_missing
from sign_ctc.features.pose_io import read_pose


@dataclass
class Sample:
    id: str
    features: torch.Tensor  # [T, 6516] float32
    presence: torch.Tensor  # [T, 4] bool
    targets: torch.Tensor  # [L] long


class SampleError(ValueError):
    """A sample that cannot be used; the message names the sample id and file."""


class MediaPipeFeatureDataset(Dataset):
    def __init__(self, corpus: Corpus, split: str, vocab: Vocabulary, missing: str = "zero"):
        self.corpus = corpus
        self.split = split
        self.vocab = vocab
        self.missing = missing
        self.sentences = corpus.sentences(split)
        if not self.sentences:
            raise SampleError(f"split {split!r} of corpus {corpus.root} has no sentences")
        self._lengths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.sentences]

    def lengths(self) -> list[int]:
        """Frame counts (for length bucketing), read once from the files' headers/bodies."""
        if self._lengths is None:
            known = self.corpus.num_frames(self.split)
            self._lengths = [known.get(s.id) or self._num_frames(i) for i, s in enumerate(self.sentences)]
        return self._lengths

    def _num_frames(self, index: int) -> int:
        path = self.corpus.landmark_path(self.split, self.sentences[index])
        if self.corpus.source == "npy":
            return int(np.load(path, mmap_mode="r").shape[0])
        return len(read_pose(path))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Features [T, 6516] and presence [T, 4] of one sample."""
        sentence = self.sentences[index]
        path = self.corpus.landmark_path(self.split, sentence)
        if not path.is_file():
            raise SampleError(f"sample {sentence.id}: landmark file {path} not found")
        if self.corpus.source == "npy":
            feats = np.load(path)
            if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM:
                raise SampleError(f"sample {sentence.id}: {path} has shape {feats.shape}, want [T, {FEATURE_DIM}]")
            return feats.astype(np.float32, copy=False), np.ones((feats.shape[0], len(PARTS)), dtype=bool)
        lm = read_pose(path)
        points, filled = fill_missing(lm.points, lm.presence, self.missing)
        feats = features_from_landmarks(torch.from_numpy(points), torch.from_numpy(filled))
        return feats.numpy(), lm.presence

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
        )
