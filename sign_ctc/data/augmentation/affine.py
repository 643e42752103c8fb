"""An affine map of the image plane about the signer's shoulder midpoint: rotation, x-shear, per-axis
scale and shift; z is scaled by the mean area scale.

Rotation and shear act on unit image coordinates (x / width, y / height), i.e. on a frame stretched
to a square; for non-square video that is a slightly different rotation, within the shear range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sign_ctc.data.augmentation.base import AugmentContext, shoulder_frame, valued_points, value_range


def affine_matrix(rotation_deg: float, shear: float, scale: Sequence[float]) -> np.ndarray:
    """[2, 2] image-plane map: rotation @ x-shear @ diag(scale_x, scale_y)."""
    a = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(np.asarray(scale, dtype=np.float64))


def apply_affine(points: np.ndarray, presence: np.ndarray, matrix: np.ndarray, centre: np.ndarray,
                 shift: Sequence[float] = (0.0, 0.0), z_scale: float = 1.0) -> np.ndarray:
    """x, y -> matrix @ (xy - centre) + centre + shift and z -> z * z_scale, on valued points only."""
    mask = valued_points(points, presence)
    (a, b), (c, d) = matrix.astype(np.float32)
    cx, cy = np.asarray(centre, dtype=np.float32)
    ox, oy = cx + np.float32(shift[0]), cy + np.float32(shift[1])
    x, y, z = points[..., 0] - cx, points[..., 1] - cy, points[..., 2]
    out = np.empty_like(points)
    out[..., 0] = np.where(mask, a * x + b * y + ox, points[..., 0])
    out[..., 1] = np.where(mask, c * x + d * y + oy, points[..., 1])
    out[..., 2] = np.where(mask, z * np.float32(z_scale), z)
    return out


@dataclass(frozen=True)
class AffineParams:
    """One drawn map: rotation in degrees, x-shear, (scale_x, scale_y), (shift_x, shift_y)."""

    rotation: float
    shear: float
    scale: tuple[float, float]
    shift: tuple[float, float]


@dataclass
class Affine:
    """rotation: max |angle| in degrees; shear: max |x-shear|; scale: per-axis (low, high);
    translate: max |shift| per axis (unit image coordinates). Every range uniform."""

    rotation: float = 15.0
    shear: float = 0.1
    scale: Sequence[float] = (0.8, 1.2)
    translate: float = 0.05

    def __post_init__(self) -> None:
        self.rotation, self.shear, self.translate = float(self.rotation), float(self.shear), float(self.translate)
        self.scale = value_range(self.scale, "affine scale")

    def draw(self, rng: np.random.Generator) -> AffineParams:
        rotation = float(rng.uniform(-self.rotation, self.rotation))
        shear = float(rng.uniform(-self.shear, self.shear))
        sx, sy = (float(v) for v in rng.uniform(*self.scale, size=2))
        tx, ty = (float(v) for v in rng.uniform(-self.translate, self.translate, size=2))
        return AffineParams(rotation, shear, (sx, sy), (tx, ty))

    def apply(self, points: np.ndarray, presence: np.ndarray, params: AffineParams) -> np.ndarray:
        centre, _ = shoulder_frame(points, presence)
        matrix = affine_matrix(params.rotation, params.shear, params.scale)
        return apply_affine(points, presence, matrix, centre, params.shift,
                            z_scale=float(np.sqrt(params.scale[0] * params.scale[1])))

    def __call__(self, points: np.ndarray, presence: np.ndarray, rng: np.random.Generator,
                 ctx: AugmentContext) -> tuple[np.ndarray, np.ndarray]:
        return self.apply(points, presence, self.draw(rng)), presence
