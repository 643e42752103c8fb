"""Augmentation as named transforms: each draws from its own generator, so adding, removing or
reordering one changes no other's draws; the config's dict of transforms is what runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sign_ctc.data.augment import PoseAugmentation, sample_rng, sample_seed, text_key
from sign_ctc.data.augmentation.base import AugmentContext, valued_points
from sign_ctc.data.augmentation.jitter import Jitter
from tests.test_augment import default_augmentation, landmarks

# Every default transform on, mirror included, so each one's draws matter.
ALL_ON = ["transforms.mirror.p=0.5", "transforms.hand_dropout.p=0.5"]


@dataclass
class DepthWobble:
    """A new augmentation, defined here: z of every valued point times one factor per frame.

    It changes the data and draws T numbers, yet touches nothing the other transforms read for x, y.
    """

    amount: float = 0.3

    def __call__(self, points, presence, rng, ctx):
        factor = rng.uniform(1 - self.amount, 1 + self.amount, len(points)).astype(np.float32)
        out = points.copy()
        out[..., 2] = np.where(valued_points(points, presence), points[..., 2] * factor[:, None], points[..., 2])
        return out, presence


@dataclass
class Recorder:
    """Records the first number its generator gives (and what it was told), changing nothing."""

    seen: list

    def __call__(self, points, presence, rng, ctx):
        self.seen.append((int(rng.integers(2**63)), ctx))
        return points, presence


def run(aug: PoseAugmentation, k: int, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    points, presence = landmarks(T=50, seed=k)
    return aug(points, presence, 4, sample_rng(1234, epoch, f"sample{k}"))


def with_transform(aug: PoseAugmentation, position: int, name: str, transform) -> PoseAugmentation:
    items = list(aug.transforms.items())
    items.insert(position, (name, transform))
    return PoseAugmentation(dict(items), aug.temporal_stride, aug.length_margin)


@pytest.mark.parametrize("position", [0, 2, 5])
def test_adding_a_transform_leaves_the_others_draws_unchanged(position):
    """With one shared generator a new transform's draws shifted every later draw; now the others' x, y
    and presence come out identical wherever the new one goes (first, middle, last)."""
    base = default_augmentation(*ALL_ON)
    extended = with_transform(base, position, "depth_wobble", DepthWobble())
    changed = 0
    for k in range(6):
        (p0, s0), (p1, s1) = run(base, k), run(extended, k)
        assert np.array_equal(p0[..., :2], p1[..., :2]) and np.array_equal(s0, s1)
        assert np.array_equal(p0[..., 2] == 0, p1[..., 2] == 0)  # missing points still exactly 0
        changed += int(np.abs(p0[..., 2] - p1[..., 2]).max() > 1e-3)
    assert changed == 6  # and the new transform did act on every sample


def test_removing_a_transform_leaves_the_others_draws_unchanged():
    """Dropping the (probability 0) mirror changes nothing at all; dropping the jitter gives exactly the
    augmentation with the jitter's std at 0. Both moved the later draws of the single generator."""
    base = default_augmentation()
    no_mirror = PoseAugmentation({n: t for n, t in base.transforms.items() if n != "mirror"})
    no_jitter = PoseAugmentation({n: t for n, t in base.transforms.items() if n != "jitter"})
    still = PoseAugmentation({**base.transforms, "jitter": Jitter(std=0.0)})
    for k in range(6):
        full = run(base, k)
        for a, b in zip(full, run(no_mirror, k)):
            assert np.array_equal(a, b)
        quiet = run(still, k)
        for a, b in zip(quiet, run(no_jitter, k)):
            assert np.array_equal(a, b)
        assert np.abs(full[0] - quiet[0]).max() > 1e-4  # the jitter does move points when it is there


def test_each_transform_draws_from_seed_epoch_sample_and_its_name():
    """A transform's generator is SeedSequence([seed, epoch, hash(id), hash(name)]): not the worker, the
    batch, the other transforms or how many samples came before; the sample's generator is not drawn from."""
    seen_a, seen_b = [], []
    aug = PoseAugmentation({"a": Recorder(seen_a), "b": Recorder(seen_b)}, temporal_stride=4, length_margin=2)
    points, presence = landmarks(T=30)
    rng = sample_rng(1234, 3, "s7")
    state = rng.bit_generator.state
    aug(points, presence, 5, rng)
    assert rng.bit_generator.state == state
    for name, seen in (("a", seen_a), ("b", seen_b)):
        want = np.random.default_rng(np.random.SeedSequence([1234, 3, text_key("s7"), text_key(name)]))
        assert seen[0][0] == int(want.integers(2**63))
    assert seen_a[0][0] != seen_b[0][0]
    ctx = seen_a[0][1]
    assert isinstance(ctx, AugmentContext) and ctx.need == 5 and ctx.min_length == 22  # min(30, 5 * 4 + 2)
    # Any order of samples, any number before: the same draws (a SeedSequence works as the key too).
    for sid in ("s1", "s9", "s7"):
        aug(points, presence, 5, sample_seed(1234, 3, sid))
    assert seen_a[-1][0] == seen_a[0][0] and seen_b[-1][0] == seen_b[0][0]
    # The sample's augmentation is the same however many others the same object augmented before it.
    default = default_augmentation(*ALL_ON)
    first = run(default, 3, epoch=2)
    for k in range(3):
        run(default, k, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, run(default, 3, epoch=2)))


def test_the_config_names_each_transform(make_cfg):
    """Hydra overrides reach one transform (`augmentation.transforms.jitter.std=...`), drop one
    (`~augmentation.transforms.jitter`) or add one (`+augmentation.transforms.<name>=...`, applied last)."""
    import hydra

    cfg = make_cfg("augmentation=default", "augmentation.transforms.jitter.std=0.02",
                   "~augmentation.transforms.mirror",
                   "+augmentation.transforms.wobble={_target_:tests.test_augment_transforms.DepthWobble,amount:0.1}")
    aug = hydra.utils.instantiate(cfg.augmentation)
    assert list(aug.transforms) == ["affine", "time", "jitter", "hand_dropout", "wobble"]
    assert aug.transforms["jitter"] == Jitter(std=0.02) and aug.transforms["wobble"] == DepthWobble(0.1)
    assert hydra.utils.instantiate(make_cfg("augmentation=none").augmentation) is None


def test_a_transform_that_is_not_one_is_refused_by_name():
    with pytest.raises(TypeError, match="'oops' is a float"):
        PoseAugmentation({"jitter": Jitter(), "oops": 0.5})
    with pytest.raises(ValueError, match="unique"):
        PoseAugmentation([("jitter", Jitter()), ("jitter", Jitter(0.02))])
    with pytest.raises(ValueError, match="jitter std"):
        Jitter(std=-1)
