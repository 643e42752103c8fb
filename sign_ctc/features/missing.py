"""Explicit handling of undetected landmarks (hands are missing in ~50% of real PHOENIX frames)."""

from __future__ import annotations

import numpy as np

from sign_ctc.features.layout import PARTS, RAW_PARTS

MISSING_MODES = ("zero", "interpolate")


def fill_missing(points: np.ndarray, presence: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (points, filled presence).

    ``zero``: undetected parts stay 0 and absent (the model sees the presence mask).
    ``interpolate``: each part is linearly interpolated between its detections and held at the
    ends; a part never detected in the sequence stays 0 and absent. A point that is 0 (no value: a
    point the file's skeleton lacks, or one OpenPose did not locate) in one of the two detections
    takes the nearer detection's value instead of a blend with that 0, so nothing is invented.
    """
    if mode == "zero":
        return points, presence
    if mode != "interpolate":
        raise ValueError(f"missing mode must be one of {MISSING_MODES}, got {mode!r}")
    points = points.copy()
    filled = presence.copy()
    frames = np.arange(points.shape[0])
    for i, part in enumerate(PARTS):
        seen = np.flatnonzero(presence[:, i])
        if seen.size == 0 or seen.size == len(frames):
            continue
        # Vectorized linear interpolation: every frame blends its previous and next detection.
        prv = np.clip(np.searchsorted(seen, frames, side="right") - 1, 0, seen.size - 1)
        nxt = np.clip(np.searchsorted(seen, frames, side="left"), 0, seen.size - 1)
        lo, hi = seen[prv], seen[nxt]
        w = np.where(hi > lo, (frames - lo) / np.maximum(hi - lo, 1), 0.0)[:, None, None]
        sl = slice(*RAW_PARTS[part])
        valued = (points[:, sl] != 0).any(-1)
        near = np.where(w[:, 0, 0] < 0.5, lo, hi)
        mixed = (1 - w) * points[lo, sl] + w * points[hi, sl]
        points[:, sl] = np.where((valued[lo] & valued[hi])[..., None], mixed, points[near, sl])
        filled[:, i] = True
    return points, filled
