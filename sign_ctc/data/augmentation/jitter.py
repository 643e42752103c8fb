"""Gaussian jitter of x, y per point and frame, in shoulder widths (so it scales with the signer's
size in the picture); points without a value get none."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sign_ctc.data.augmentation.base import AugmentContext, valued_points


@dataclass
class Jitter:
    """std: the noise's standard deviation in shoulder widths (``ctx.shoulder_width``)."""

    std: float = 0.01

    def __post_init__(self) -> None:
        self.std = float(self.std)
        if self.std < 0:
            raise ValueError(f"jitter std must be >= 0, got {self.std}")

    def __call__(self, points: np.ndarray, presence: np.ndarray, rng: np.random.Generator,
                 ctx: AugmentContext) -> tuple[np.ndarray, np.ndarray]:
        if self.std == 0:
            return points, presence
        noise = rng.standard_normal((*points.shape[:2], 2), dtype=np.float32)
        noise *= np.float32(self.std * ctx.shoulder_width) * valued_points(points, presence)[..., None]
        points = points.copy()
        points[..., :2] += noise
        return points, presence
