"""Hand dropout: a hand marked undetected (presence False, points 0) for a burst of frames, as a real
tracker miss looks; missing-landmark filling (``missing=interpolate``) later treats it as one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sign_ctc.data.augmentation.base import HAND_COLUMNS, AugmentContext, probability
from sign_ctc.features.layout import PARTS, RAW_PARTS


def drop_hands(points: np.ndarray, presence: np.ndarray,
               bursts: Sequence[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Mark each (presence column, start, stop) burst undetected: presence False and its points 0."""
    if not bursts:
        return points, presence
    points, presence = points.copy(), presence.copy()
    for col, start, stop in bursts:
        presence[start:stop, col] = False
        points[start:stop, slice(*RAW_PARTS[PARTS[col]])] = 0.0
    return points, presence


@dataclass
class HandDropout:
    """p: probability per hand and sample of a burst; frames: its (low, high) length in frames."""

    p: float = 0.1
    frames: Sequence[int] = (4, 16)

    def __post_init__(self) -> None:
        self.p = probability(self.p, "hand_dropout p")
        lo, hi = (int(v) for v in self.frames)
        if not 1 <= lo <= hi:
            raise ValueError(f"hand_dropout frames must be (low, high), 1 <= low <= high, got {self.frames}")
        self.frames = (lo, hi)

    def draw(self, rng: np.random.Generator, num_frames: int) -> tuple[tuple[int, int, int], ...]:
        """The (presence column, start, stop) bursts; every hand's draws are made, hit or not."""
        bursts = []
        for col in HAND_COLUMNS:
            hit = rng.random() < self.p
            n = min(int(rng.integers(self.frames[0], self.frames[1] + 1)), num_frames)
            start = int(rng.integers(0, num_frames - n + 1))
            if hit:
                bursts.append((col, start, start + n))
        return tuple(bursts)

    def __call__(self, points: np.ndarray, presence: np.ndarray, rng: np.random.Generator,
                 ctx: AugmentContext) -> tuple[np.ndarray, np.ndarray]:
        return drop_hands(points, presence, self.draw(rng, len(points)))
