"""Temporal augmentation: frame dropout, then resampling to ``time_scale`` x the length.

Resampling is linear between detected frames and never goes below ``ctx.min_length`` (what CTC
needs at the model's stride), so the two live in one transform: a dropout alone could shorten a
sample below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sign_ctc.data.augmentation.base import AugmentContext, valued_points, value_range


def resample(points: np.ndarray, presence: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The sequence at ``length`` frames (same time span): linear between neighbouring frames where
    the point has a value in both, else the nearest frame (points and presence), so gaps stay gaps."""
    T = points.shape[0]
    if length == T:
        return points, presence
    pos = np.clip((np.arange(length) + 0.5) * (T / length) - 0.5, 0.0, T - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, T - 1)
    w = (pos - lo).astype(np.float32)[:, None, None]
    near = np.where(w[:, 0, 0] < 0.5, lo, hi)
    valued = valued_points(points, presence)
    both = (valued[lo] & valued[hi])[..., None]
    mixed = points[lo] * (1 - w) + points[hi] * w
    return np.where(both, mixed, points[near]), presence[near]


@dataclass(frozen=True)
class TimeParams:
    """keep: [T] bool, the frames frame dropout keeps; length: the output frames."""

    keep: np.ndarray
    length: int


@dataclass
class TimeResample:
    """frame_dropout: probability of dropping each frame (at least one is kept); time_scale: (low, high)
    output length / input length, floored at ``ctx.min_length``."""

    time_scale: Sequence[float] = (0.5, 1.5)
    frame_dropout: float = 0.05

    def __post_init__(self) -> None:
        self.time_scale = value_range(self.time_scale, "time_scale")
        self.frame_dropout = float(self.frame_dropout)
        if not 0.0 <= self.frame_dropout < 1.0:
            raise ValueError(f"frame_dropout must be in [0, 1), got {self.frame_dropout}")
        if self.time_scale[0] <= 0:
            raise ValueError(f"time_scale must be positive, got {self.time_scale}")

    def draw(self, rng: np.random.Generator, num_frames: int, min_length: int) -> TimeParams:
        keep = rng.random(num_frames) >= self.frame_dropout
        if not keep.any():
            keep[:] = True
        factor = float(rng.uniform(*self.time_scale))
        length = max(int(round(num_frames * factor)), min(num_frames, min_length), 1)
        return TimeParams(keep, length)

    def apply(self, points: np.ndarray, presence: np.ndarray, params: TimeParams) -> tuple[np.ndarray, np.ndarray]:
        if not params.keep.all():
            points, presence = points[params.keep], presence[params.keep]
        return resample(points, presence, params.length)

    def __call__(self, points: np.ndarray, presence: np.ndarray, rng: np.random.Generator,
                 ctx: AugmentContext) -> tuple[np.ndarray, np.ndarray]:
        return self.apply(points, presence, self.draw(rng, len(points), ctx.min_length))
