"""Pose augmentation of one training sample's raw MediaPipe Holistic landmarks.

Applied in the training loader only (never dev/test, never the normalization statistics), in the
loader workers, to the landmarks *as detected*: points float32 [T, 543, 3] in pose-format order
(POSE 33 | FACE 468 | LEFT_HAND 21 | RIGHT_HAND 21, unit image coordinates) and part presence
bool [T, 4] in ``layout.PARTS`` order (pose, left hand, right hand, face). Missing-landmark filling
(``missing=interpolate``) runs afterwards, so a dropped hand burst is filled like a real miss.

Every random choice comes from one generator seeded by ``SeedSequence([seed, epoch, hash(id)])``
(:func:`sample_rng`), so a sample's augmentation depends only on (seed, epoch, sample id): not on the
worker that loads it, the batch it lands in, or which other samples were skipped; a resumed run sees
the same augmented samples.

The operations, in the order applied (each can be switched off by a zero / unit setting):

* mirror (probability ``mirror``, off by default: it changes handedness): x -> 1 - x, left and right
  hands, pose points and face mesh points exchanged (:func:`mirror`);
* an affine map of the image plane about the signer's shoulder midpoint: rotation, x-shear,
  per-axis scale, translation (z scaled by the mean area scale);
* frame dropout, then resampling to ``time_scale`` x the length (linear between detected frames),
  never below what CTC needs: ``min_frames(need) = need * temporal_stride + length_margin``;
* Gaussian jitter of x, y with std ``jitter`` x shoulder width;
* hand dropout: a hand marked undetected (presence False, points 0) for a burst of frames.

Points without a value are never moved: those of undetected parts and, inside a detected part, those
the file's skeleton lacks or did not locate (``features.skeletons``: the reduced Holistic face has 128
of the 468 mesh points) -- all read as 0 -- stay exactly 0 (:func:`valued_points`), presence unchanged.
Rotation and shear act on unit image coordinates (x / width, y / height), i.e. on a frame stretched
to a square; for non-square video that is a slightly different rotation, within the shear range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
SHOULDERS = (11, 12)
# Shoulder width (unit image coordinates) assumed for a sample whose pose is never detected.
FALLBACK_SHOULDER_WIDTH = 0.25


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
# Presence column (PARTS index) of every raw point: presence[:, POINT_PART] is a [T, 543] point mask.
POINT_PART = np.empty(NUM_POINTS, dtype=np.int64)
for _i, _p in enumerate(PARTS):
    POINT_PART[slice(*RAW_PARTS[_p])] = _i
HAND_COLUMNS: tuple[int, ...] = (PARTS.index("left_hand"), PARTS.index("right_hand"))


def valued_points(points: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """[T, 543] bool: the point has a value: its part is detected and it is not the layout's 0.

    Presence is per part, so a point a skeleton lacks (or OpenPose did not locate) inside a detected
    part is told by its 0, the layout's "no value" (as the skeleton drawing does); moving it would
    invent a coordinate.
    """
    return presence[:, POINT_PART] & (points != 0).any(-1)


def ctc_min_outputs(targets: Sequence[int] | np.ndarray) -> int:
    """CTC output frames a target needs: its length + adjacent repeats (a blank must separate them).

    The numpy twin of ``ctc_module.ctc_required_lengths`` for one sample (the loader workers do not
    import the model).
    """
    y = np.asarray(targets)
    return int(y.size + np.count_nonzero(y[1:] == y[:-1]))


def sample_rng(seed: int, epoch: int, sample_id: str) -> np.random.Generator:
    """The generator of one sample's augmentation in one epoch: a function of (seed, epoch, id) only.

    The id (not the dataset index) keys it, so train_subset or skipped bad files do not reshuffle
    which sample gets which augmentation.
    """
    key = int.from_bytes(hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8).digest(), "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) % 2**63, int(epoch), key]))


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


def affine_matrix(rotation_deg: float, shear: float, scale: Sequence[float]) -> np.ndarray:
    """[2, 2] image-plane map: rotation @ x-shear @ diag(scale_x, scale_y)."""
    a = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(np.asarray(scale, dtype=np.float64))


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


@dataclass(frozen=True)
class AugmentParams:
    """One sample's drawn augmentation (what :meth:`PoseAugmentation.apply` does, no randomness left)."""

    mirror: bool
    rotation: float  # degrees
    shear: float
    scale: tuple[float, float]
    shift: tuple[float, float]
    keep: np.ndarray  # [T] bool: frames kept by frame dropout
    length: int  # output frames
    hand_bursts: tuple[tuple[int, int, int], ...]  # (presence column, start, stop) in output frames
    noise_seed: int


class PoseAugmentation:
    """Random spatial + temporal augmentation of raw landmarks; ``__call__`` draws and applies it.

    rotation: max |angle| in degrees; shear: max |x-shear|; scale: per-axis (low, high);
    translate: max |shift| per axis (unit image coordinates); jitter: std per point and frame in
    shoulder widths; time_scale: (low, high) output length / input length; frame_dropout:
    probability of dropping each frame; hand_dropout: probability per hand and sample of a burst
    of hand_dropout_frames (low, high) undetected frames; mirror: probability of a horizontal mirror.

    temporal_stride / length_margin: a sample is never resampled below
    ``min(T, need * temporal_stride + length_margin)`` frames, ``need`` being its CTC minimum
    (:func:`ctc_min_outputs`), so a sample CTC can align stays alignable. For the I3D teacher the
    exact output length is ceil(T / total stride) >= T / stride, so its total stride (4 with the
    default strides, 8 with [2,1,2,2]) is enough; ``build_model`` checks it against the real net.
    """

    def __init__(self, rotation: float = 15.0, shear: float = 0.1, scale: Sequence[float] = (0.8, 1.2),
                 translate: float = 0.05, jitter: float = 0.01, time_scale: Sequence[float] = (0.5, 1.5),
                 frame_dropout: float = 0.05, hand_dropout: float = 0.1,
                 hand_dropout_frames: Sequence[int] = (4, 16), mirror: float = 0.0, temporal_stride: int = 4,
                 length_margin: int = 0):
        self.rotation = float(rotation)
        self.shear = float(shear)
        self.scale = _range(scale, "scale")
        self.translate = float(translate)
        self.jitter = float(jitter)
        self.time_scale = _range(time_scale, "time_scale")
        self.frame_dropout = float(frame_dropout)
        self.hand_dropout = float(hand_dropout)
        lo, hi = (int(v) for v in hand_dropout_frames)
        if not 1 <= lo <= hi:
            raise ValueError(f"hand_dropout_frames must be (low, high), 1 <= low <= high, got {hand_dropout_frames}")
        self.hand_dropout_frames = (lo, hi)
        self.mirror = float(mirror)
        if not 0.0 <= self.frame_dropout < 1.0:
            raise ValueError(f"frame_dropout must be in [0, 1), got {frame_dropout}")
        if self.time_scale[0] <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.temporal_stride = int(temporal_stride)
        self.length_margin = int(length_margin)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in vars(self).items())})"

    def min_frames(self, need: int) -> int:
        """Frames that keep a target of CTC minimum ``need`` alignable at the model's stride."""
        return need * self.temporal_stride + self.length_margin

    def draw(self, rng: np.random.Generator, num_frames: int, need: int) -> AugmentParams:
        """Every random choice for a sample of ``num_frames`` frames, in a fixed order of draws."""
        flip = bool(rng.random() < self.mirror)
        rotation = float(rng.uniform(-self.rotation, self.rotation))
        shear = float(rng.uniform(-self.shear, self.shear))
        sx, sy = (float(v) for v in rng.uniform(*self.scale, size=2))
        tx, ty = (float(v) for v in rng.uniform(-self.translate, self.translate, size=2))
        keep = rng.random(num_frames) >= self.frame_dropout
        if not keep.any():
            keep[:] = True
        factor = float(rng.uniform(*self.time_scale))
        length = max(int(round(num_frames * factor)), min(num_frames, self.min_frames(need)), 1)
        bursts = []
        for col in HAND_COLUMNS:
            hit = rng.random() < self.hand_dropout
            n = min(int(rng.integers(self.hand_dropout_frames[0], self.hand_dropout_frames[1] + 1)), length)
            start = int(rng.integers(0, length - n + 1))
            if hit:
                bursts.append((col, start, start + n))
        noise_seed = int(rng.integers(2**63))
        return AugmentParams(flip, rotation, shear, (sx, sy), (tx, ty), keep, length, tuple(bursts), noise_seed)

    def apply(self, points: np.ndarray, presence: np.ndarray, params: AugmentParams) -> tuple[np.ndarray, np.ndarray]:
        """Points [T, 543, 3] float32 + presence [T, 4] -> the augmented pair (new T = params.length)."""
        points = np.asarray(points, dtype=np.float32)
        presence = np.asarray(presence, dtype=bool)
        if params.mirror:
            points, presence = mirror(points, presence)
        centre, width = shoulder_frame(points, presence)
        matrix = affine_matrix(params.rotation, params.shear, params.scale)
        points = apply_affine(points, presence, matrix, centre, params.shift,
                              z_scale=float(np.sqrt(params.scale[0] * params.scale[1])))
        if not params.keep.all():
            points, presence = points[params.keep], presence[params.keep]
        points, presence = resample(points, presence, params.length)
        if self.jitter > 0:
            noise = np.random.default_rng(params.noise_seed).standard_normal((*points.shape[:2], 2), dtype=np.float32)
            noise *= np.float32(self.jitter * width) * valued_points(points, presence)[..., None]  # 0 where no value
            points = points.copy()
            points[..., :2] += noise
        return drop_hands(points, presence, params.hand_bursts)

    def __call__(self, points: np.ndarray, presence: np.ndarray, need: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw with ``rng`` and apply: the augmented (points, presence) of one sample."""
        return self.apply(points, presence, self.draw(rng, points.shape[0], need))


def no_augmentation() -> None:
    """The ``augmentation=none`` option: instantiates to None, so the training loader is left as is."""
    return None


def _range(values: Sequence[float], name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in values)
    if lo > hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {values}")
    return lo, hi
