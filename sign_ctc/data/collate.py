"""Padding collate: a list of samples -> one :class:`~sign_ctc.data.batch.Batch` of padded tensors plus lengths
(features: `collate`; raw landmarks, the features derived on the device: `collate_landmarks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from sign_ctc.data.batch import Batch
from sign_ctc.data.sample import LandmarkSample, Sample
from sign_ctc.features.layout import NUM_POINTS, PARTS


def padded_length(longest: int, multiple: int | None) -> int:
    """The batch's time axis: the longest sentence, rounded up to ``multiple`` frames when given."""
    return longest if not multiple else -(-longest // multiple) * multiple


def collate(samples: Sequence[Sample], pad_to_multiple: int | None = None) -> Batch:
    """Pad to the longest sequence (or up to a multiple of ``pad_to_multiple`` frames); CTC targets
    are concatenated (the 1-D form CTC loss takes)."""
    lengths = torch.tensor([s.features.shape[0] for s in samples], dtype=torch.long)
    B, T = len(samples), padded_length(int(lengths.max()), pad_to_multiple)
    D = samples[0].features.shape[1]
    features = torch.zeros(B, T, D, dtype=torch.float32)
    presence = torch.zeros(B, T, samples[0].presence.shape[1], dtype=torch.bool)
    for i, s in enumerate(samples):
        features[i, : s.features.shape[0]] = s.features
        presence[i, : s.presence.shape[0]] = s.presence
    return feature_batch(features, presence, lengths, samples)


def feature_batch(features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
               samples: Sequence[Any]) -> Batch:
    """A batch of features (precomputed-feature corpora); samples give ``targets`` and ``id``."""
    return Batch(features=features, **_common(presence, lengths, samples))


def landmark_batch(points: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                   samples: Sequence[Any]) -> Batch:
    """A batch of raw landmarks ``points`` [B, T, 543, 3]: the features are derived on the device."""
    return Batch(points=points, **_common(presence, lengths, samples))


def _common(presence: torch.Tensor, lengths: torch.Tensor, samples: Sequence[Any]) -> dict[str, Any]:
    return {
        "presence": presence,
        "lengths": lengths,
        "targets": torch.cat([s.targets for s in samples]),
        "target_lengths": torch.tensor([len(s.targets) for s in samples], dtype=torch.long),
        "ids": [s.id for s in samples],
        "signers": [getattr(s, "signer", "") for s in samples],
    }


def _empty_batch(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """A tensor for a batch; in a loader worker it lives in shared memory (no copy to send it)."""
    if get_worker_info() is None:
        return torch.empty(*shape, dtype=dtype)
    return torch.empty(*shape, dtype=dtype).share_memory_()


def collate_landmarks(samples: Sequence[LandmarkSample], pad_to_multiple: int | None = None) -> Batch:
    """Raw samples -> a padded batch of raw landmarks; the features are derived after the transfer.

    ``points`` [B, T, 543, 3] keeps the samples' dtype (float16 straight from the store, 8x smaller
    than the float32 features; float32 once augmentation or interpolation computed new values),
    padded with zeros; ``presence`` is the filled presence (interpolated parts count as present), so
    :meth:`sign_ctc.data.batch.Batch.with_features` gives exactly ``collate`` of the samples' features.
    ``pad_to_multiple``: the time axis is padded up to a multiple of it (a few shapes for torch.compile).
    """
    lengths = torch.tensor([s.points.shape[0] for s in samples], dtype=torch.long)
    B, T = len(samples), padded_length(int(lengths.max()), pad_to_multiple)
    dtype = torch.float16 if all(s.points.dtype == np.float16 for s in samples) else torch.float32
    points = _empty_batch((B, T, NUM_POINTS, 3), dtype)
    presence = torch.zeros(B, T, len(PARTS), dtype=torch.bool)
    for i, s in enumerate(samples):
        n = s.points.shape[0]
        points[i, :n] = torch.from_numpy(s.points)
        points[i, n:] = 0.0
        presence[i, :n] = torch.from_numpy(s.filled)
    return landmark_batch(points, presence, lengths, samples)
