"""Horizontal mirror: x -> 1 - x, with the left and right hands, pose and face points exchanged.

Off by default (probability 0): a mirror changes the signer's handedness, which some sign languages
read as a different sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sign_ctc.data.augmentation.base import AugmentContext, probability, valued_points
from sign_ctc.features.layout import NUM_POINTS, PARTS, RAW_PARTS

# MediaPipe pose: left/right landmark pairs (eyes, ears, mouth corners, shoulders ... feet); 0 (nose) is central.
POSE_MIRROR_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18), (19, 20), (21, 22),
    (23, 24), (25, 26), (27, 28), (29, 30), (31, 32),
)
# Face mesh points on the symmetry plane (x = 0 in MediaPipe's canonical face model). The canonical
# model is exactly mirror-symmetric and its side points are ordered so that the non-midline points
# of 0..247, in order, mirror points 248..467 (derived by nearest x-mirrored vertex, distance 0; the
# check against the installed mediapipe's FACEMESH_* connection sets is in tests/test_augment.py).
FACE_MIDLINE: tuple[int, ...] = (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 94, 151, 152,
                                 164, 168, 175, 195, 197, 199, 200)
FACE_POINTS = RAW_PARTS["face"][1] - RAW_PARTS["face"][0]


def face_mirror_permutation() -> np.ndarray:
    """[468] face mesh index of every point's mirror image (an involution fixing FACE_MIDLINE)."""
    half = 248
    side = np.setdiff1d(np.arange(half), FACE_MIDLINE)
    perm = np.arange(FACE_POINTS)
    perm[side] = np.arange(half, FACE_POINTS)
    perm[half:] = side
    return perm


def _point_mirror_permutation() -> np.ndarray:
    """[543] raw point index each point takes its value from when mirrored."""
    perm = np.arange(NUM_POINTS)
    pose0 = RAW_PARTS["pose"][0]
    for a, b in POSE_MIRROR_PAIRS:
        perm[pose0 + a], perm[pose0 + b] = pose0 + b, pose0 + a
    face0 = RAW_PARTS["face"][0]
    perm[face0 : face0 + FACE_POINTS] = face0 + face_mirror_permutation()
    (l0, l1), (r0, r1) = RAW_PARTS["left_hand"], RAW_PARTS["right_hand"]
    perm[l0:l1], perm[r0:r1] = np.arange(r0, r1), np.arange(l0, l1)
    return perm


MIRROR_POINTS = _point_mirror_permutation()
_SWAP = {"left_hand": "right_hand", "right_hand": "left_hand"}
# Presence columns (PARTS order) exchanged by the mirror.
MIRROR_PARTS = np.array([PARTS.index(_SWAP.get(p, p)) for p in PARTS])


def mirror(points: np.ndarray, presence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal mirror: x -> 1 - x on detected points, left/right points and hand presence exchanged.

    An involution: exactly so on the store's float16 grid (1 - x is then exact in float32), within
    one float32 ulp for arbitrary float32 input. Undetected points stay as they are (0).
    """
    presence = presence[:, MIRROR_PARTS]
    points = points[:, MIRROR_POINTS].copy()
    mask = valued_points(points, presence)
    points[..., 0] = np.where(mask, np.float32(1.0) - points[..., 0], points[..., 0])
    return points, presence


@dataclass
class Mirror:
    """The sample mirrored with probability ``p``."""

    p: float = 0.0

    def __post_init__(self) -> None:
        self.p = probability(self.p, "mirror p")

    def __call__(self, points: np.ndarray, presence: np.ndarray, rng: np.random.Generator,
                 ctx: AugmentContext) -> tuple[np.ndarray, np.ndarray]:
        return mirror(points, presence) if rng.random() < self.p else (points, presence)
