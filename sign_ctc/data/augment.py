"""Pose augmentation of one training sample's raw MediaPipe Holistic landmarks: a list of transforms.

Applied in the training loader only (never dev/test, never the normalization statistics), in the
loader workers, to the landmarks *as detected* (points float32 [T, 543, 3], presence bool [T, 4]; see
:mod:`sign_ctc.data.augmentation.base`). Missing-landmark filling (``missing=interpolate``) runs
afterwards, so a dropped hand burst is filled like a real miss.

:class:`PoseAugmentation` applies named transforms (:class:`~sign_ctc.data.augmentation.base.Transform`,
one module per family in ``sign_ctc/data/augmentation/``) in the config's order. Each transform draws
from its own generator, seeded by ``SeedSequence([seed, epoch, hash(sample id), hash(transform name)])``
(:func:`transform_rng`): a sample's augmentation depends only on (seed, epoch, sample id), not on the
worker that loads it, the batch it lands in, or which other samples were skipped; and a transform's
generator is the same whichever other transforms are listed, so adding or removing one leaves the
others' draws as they were (with one shared generator, a new draw shifted every later one, so every
existing seed changed). What a draw does can still depend on the transforms before it (hand
dropout's bursts are placed in the frames the temporal transform made).

Points without a value are never moved: those of undetected parts and, inside a detected part, those
the file's skeleton lacks or did not locate (``features.skeletons``: the reduced Holistic face has 128
of the 468 mesh points) -- all read as 0 -- stay exactly 0 (``valued_points``), presence unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from sign_ctc.data.augmentation.base import AugmentContext, Transform, shoulder_frame


def ctc_min_outputs(targets: Sequence[int] | np.ndarray) -> int:
    """CTC output frames a target needs: its length + adjacent repeats (a blank must separate them).

    The numpy twin of ``ctc_module.ctc_required_lengths`` for one sample (the loader workers do not
    import the model).
    """
    y = np.asarray(targets)
    return int(y.size + np.count_nonzero(y[1:] == y[:-1]))


def text_key(text: str) -> int:
    """A stable 64-bit key of a string (Python's ``hash`` of a str changes between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def sample_seed(seed: int, epoch: int, sample_id: str) -> np.random.SeedSequence:
    """The seed of one sample's augmentation in one epoch: a function of (seed, epoch, id) only.

    The id (not the dataset index) keys it, so train_subset or skipped bad files do not reshuffle
    which sample gets which augmentation.
    """
    return np.random.SeedSequence([int(seed) % 2**63, int(epoch), text_key(sample_id)])


def sample_rng(seed: int, epoch: int, sample_id: str) -> np.random.Generator:
    """A generator over :func:`sample_seed`; :class:`PoseAugmentation` reads its seed, not its draws."""
    return np.random.default_rng(sample_seed(seed, epoch, sample_id))


def transform_rng(sample: np.random.SeedSequence, name: str) -> np.random.Generator:
    """The generator of transform ``name`` for a sample: SeedSequence([*sample's entropy, hash(name)])."""
    entropy = sample.entropy
    entropy = list(entropy) if isinstance(entropy, Sequence) else [int(entropy)]
    return np.random.default_rng(np.random.SeedSequence([*entropy, text_key(name)], spawn_key=sample.spawn_key))


class PoseAugmentation:
    """Named transforms of raw landmarks applied in order; ``__call__`` augments one sample.

    transforms: {name: transform} in the order applied (a mapping keeps its order; Hydra builds it from
    the ``transforms`` dict of ``conf/augmentation/default.yaml``, so ``augmentation.transforms.jitter.std=0.02``
    changes one and ``~augmentation.transforms.jitter`` drops it). The name keys the transform's
    generator, so it is part of the seed.

    temporal_stride / length_margin: no transform resamples a sample below
    ``min(T, need * temporal_stride + length_margin)`` frames, ``need`` being its CTC minimum
    (:func:`ctc_min_outputs`), so a sample CTC can align stays alignable. For the I3D teacher the
    exact output length is ceil(T / total stride) >= T / stride, so its total stride (4 with the
    default strides, 8 with [2,1,2,2]) is enough; ``build_model`` checks it against the real net.
    """

    def __init__(self, transforms: Mapping[str, Transform] | Sequence[tuple[str, Transform]] = (),
                 temporal_stride: int = 4, length_margin: int = 0):
        items = list(transforms.items()) if isinstance(transforms, Mapping) else list(transforms)
        names = [str(name) for name, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f"augmentation transform names must be unique, got {names}")
        for name, transform in items:
            if not isinstance(transform, Transform):
                raise TypeError(f"augmentation transform {name!r} is a {type(transform).__name__}, not a callable "
                                "(points, presence, rng, ctx) -> (points, presence)")
        self.transforms: dict[str, Transform] = {str(name): t for name, t in items}
        self.temporal_stride = int(temporal_stride)
        self.length_margin = int(length_margin)
        if self.temporal_stride < 1 or self.length_margin < 0:
            raise ValueError(f"temporal_stride must be >= 1 and length_margin >= 0, got {temporal_stride}, "
                             f"{length_margin}")

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={t!r}" for name, t in self.transforms.items())
        return (f"{type(self).__name__}({inner}; temporal_stride={self.temporal_stride}, "
                f"length_margin={self.length_margin})")

    def min_frames(self, need: int) -> int:
        """Frames that keep a target of CTC minimum ``need`` alignable at the model's stride."""
        return need * self.temporal_stride + self.length_margin

    def context(self, points: np.ndarray, presence: np.ndarray, need: int) -> AugmentContext:
        """What the transforms share for this sample, from its input landmarks."""
        _, width = shoulder_frame(points, presence)
        return AugmentContext(shoulder_width=width, need=int(need),
                              min_length=min(points.shape[0], self.min_frames(int(need))))

    def __call__(self, points: np.ndarray, presence: np.ndarray, need: int,
                 rng: np.random.Generator | np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
        """The augmented (points, presence) of one sample whose target needs ``need`` CTC frames.

        ``rng``: the sample's seed (:func:`sample_seed`) or a generator over one (:func:`sample_rng`);
        nothing is drawn from it: each transform's generator is derived from its seed and the
        transform's name (:func:`transform_rng`).
        """
        seed = rng if isinstance(rng, np.random.SeedSequence) else rng.bit_generator.seed_seq
        points = np.asarray(points, dtype=np.float32)
        presence = np.asarray(presence, dtype=bool)
        ctx = self.context(points, presence, need)
        for name, transform in self.transforms.items():
            points, presence = transform(points, presence, transform_rng(seed, name), ctx)
        return points, presence


def no_augmentation() -> None:
    """The ``augmentation=none`` option: instantiates to None, so the training loader is left as is."""
    return None
