"""Padding collate: a list of samples -> one batch dict of padded tensors plus lengths."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from sign_ctc.data.dataset import Sample


def collate(samples: Sequence[Sample]) -> dict[str, Any]:
    """Pad to the longest sequence; CTC targets are concatenated (the 1-D form CTC loss takes)."""
    lengths = torch.tensor([s.features.shape[0] for s in samples], dtype=torch.long)
    B, T = len(samples), int(lengths.max())
    D = samples[0].features.shape[1]
    features = torch.zeros(B, T, D, dtype=torch.float32)
    presence = torch.zeros(B, T, samples[0].presence.shape[1], dtype=torch.bool)
    for i, s in enumerate(samples):
        features[i, : s.features.shape[0]] = s.features
        presence[i, : s.presence.shape[0]] = s.presence
    return batch_dict(features, presence, lengths, samples)


def batch_dict(features: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
               samples: Sequence[Any]) -> dict[str, Any]:
    """The batch every loader yields; samples give ``targets`` and ``id``."""
    return {
        "features": features,
        "presence": presence,
        "lengths": lengths,
        "targets": torch.cat([s.targets for s in samples]),
        "target_lengths": torch.tensor([len(s.targets) for s in samples], dtype=torch.long),
        "ids": [s.id for s in samples],
    }
