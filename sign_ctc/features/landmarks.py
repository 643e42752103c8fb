"""The core object for one signed sequence: raw landmarks in the Holistic layout plus per-part presence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sign_ctc.features.layout import NUM_POINTS, PARTS


@dataclass
class Landmarks:
    """Landmarks of one sequence in unit image coordinates.

    ``points`` is float32 ``[T, 543, 3]`` in pose-format Holistic order, 0 where undetected;
    ``presence`` is bool ``[T, 4]`` for the parts in ``layout.PARTS`` order
    (pose, left hand, right hand, face). ``skeleton``: what the `.pose` file was read as
    (a name from ``features.skeletons``, e.g. ``mediapipe_holistic_reduced``), None when the
    landmarks did not come from a file.
    """

    points: np.ndarray
    presence: np.ndarray
    fps: float = 25.0
    skeleton: str | None = None

    def __post_init__(self) -> None:
        if self.points.ndim != 3 or self.points.shape[1:] != (NUM_POINTS, 3):
            raise ValueError(f"points must be [T, {NUM_POINTS}, 3], got {self.points.shape}")
        if self.presence.shape != (self.points.shape[0], len(PARTS)):
            raise ValueError(f"presence must be [T, {len(PARTS)}], got {self.presence.shape}")

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def detection_rates(self) -> dict[str, float]:
        """Fraction of frames in which each part was detected."""
        if len(self) == 0:
            return {p: 0.0 for p in PARTS}
        return {p: float(self.presence[:, i].mean()) for i, p in enumerate(PARTS)}
