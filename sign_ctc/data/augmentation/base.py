"""What every augmentation transform shares: its call contract, the per-sample context, the point masks.

Landmarks are those *as detected*: points float32 [T, 543, 3] in pose-format order (POSE 33 | FACE 468
| LEFT_HAND 21 | RIGHT_HAND 21, unit image coordinates) and part presence bool [T, 4] in
``layout.PARTS`` order (pose, left hand, right hand, face).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from sign_ctc.features.layout import NUM_POINTS, PARTS, RAW_PARTS

SHOULDERS = (11, 12)
# Shoulder width (unit image coordinates) assumed for a sample whose pose is never detected.
FALLBACK_SHOULDER_WIDTH = 0.25

# Presence column (PARTS index) of every raw point: presence[:, POINT_PART] is a [T, 543] point mask.
POINT_PART = np.empty(NUM_POINTS, dtype=np.int64)
for _i, _p in enumerate(PARTS):
    POINT_PART[slice(*RAW_PARTS[_p])] = _i
HAND_COLUMNS: tuple[int, ...] = (PARTS.index("left_hand"), PARTS.index("right_hand"))


@dataclass(frozen=True)
class AugmentContext:
    """What the transforms of one sample share, fixed before the first runs.

    shoulder_width: the signer's shoulder width in the input (unit image coordinates), the unit of
    the jitter; need: the target's CTC minimum output frames; min_length: frames no temporal
    transform may go below, ``min(T, need * temporal_stride + length_margin)`` of the input T, so a
    sample CTC can align stays alignable.
    """

    shoulder_width: float
    need: int
    min_length: int


@runtime_checkable
class Transform(Protocol):
    """One augmentation step: (points, presence) -> the transformed pair, drawing only from ``rng``.

    ``rng`` is the transform's own generator, a function of (seed, epoch, sample id, the transform's
    name in the config) only. Points without a value (:func:`valued_points`) must stay exactly 0 and
    the arrays passed in must not be modified (return new ones); the frame count may change, never
    below ``ctx.min_length`` unless the input already was.
    """

    def __call__(self, points: np.ndarray, presence: np.ndarray, rng: np.random.Generator,
                 ctx: AugmentContext) -> tuple[np.ndarray, np.ndarray]: ...


def valued_points(points: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """[T, 543] bool: the point has a value: its part is detected and it is not the layout's 0.

    Presence is per part, so a point a skeleton lacks (or OpenPose did not locate) inside a detected
    part is told by its 0, the layout's "no value" (as the skeleton drawing does); moving it would
    invent a coordinate.
    """
    return presence[:, POINT_PART] & (points != 0).any(-1)


def shoulder_frame(points: np.ndarray, presence: np.ndarray) -> tuple[np.ndarray, float]:
    """(shoulder midpoint [2], shoulder width) over the frames with the pose detected.

    The centre the affine map turns about, and the unit of the jitter. Without any pose: the frame
    centre and FALLBACK_SHOULDER_WIDTH.
    """
    seen = presence[:, PARTS.index("pose")]
    if not seen.any():
        return np.array([0.5, 0.5], dtype=np.float32), FALLBACK_SHOULDER_WIDTH
    pose0 = RAW_PARTS["pose"][0]
    left, right = points[seen, pose0 + SHOULDERS[0], :2], points[seen, pose0 + SHOULDERS[1], :2]
    width = float(np.median(np.linalg.norm(left - right, axis=-1)))
    return ((left + right) / 2).mean(axis=0).astype(np.float32), width if width > 0 else FALLBACK_SHOULDER_WIDTH


def probability(value: float, name: str) -> float:
    """``value`` as a float in [0, 1], or a ValueError naming the setting."""
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return p


def value_range(values, name: str) -> tuple[float, float]:
    """(low, high) floats with low <= high, or a ValueError naming the setting."""
    lo, hi = (float(v) for v in values)
    if lo > hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {values}")
    return lo, hi
