"""Features from a batch of raw landmarks, on whatever device the batch is on.

Loaders carry raw landmarks (``points`` [B, T, 543, 3], float16 from the store: 3.3 KB a frame
instead of the 26 KB of float32 features) and the 6516 features are derived after the transfer:
on a GPU the derivation is a few elementwise kernels instead of the loader workers' main cost.
The module calls :func:`with_features` in ``on_after_batch_transfer``, so training, validation,
test and predict see the same features; code that reads loader batches outside a Trainer (the
normalization statistics, diagnose, benchmarks) calls it too.
"""

from __future__ import annotations

from typing import Any

import torch

from sign_ctc.features.layout import features_from_landmarks


def with_features(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with ``features`` [B, T, 6516] float32 in place of ``points``; a feature batch as it is.

    float16 -> float32 is exact, so the features equal those derived from the float32 landmarks.
    """
    if "points" not in batch:
        return batch
    out = {k: v for k, v in batch.items() if k != "points"}
    out["features"] = features_from_landmarks(batch["points"].to(torch.float32), batch["presence"])
    return out
