"""Padding collate: a list of samples -> one :class:`~sign_ctc.data.batch.Batch` of padded tensors plus lengths."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from sign_ctc.data.batch import Batch

if TYPE_CHECKING:
    from sign_ctc.data.dataset import Sample


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
    }
