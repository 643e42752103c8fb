"""Benchmark the pose augmentation: milliseconds per training sample in one loader worker.

The default augmentation (``sign_ctc/conf/augmentation/default.yaml``: mirror, affine, temporal,
jitter, hand dropout) on a random 150-frame sample with every part detected, and each transform
alone, best of ``--rounds`` rounds of ``--samples`` samples (each a different sample id, so each
draws its own lengths). Prints the figures; writes nothing.

    python bench/bench_augment.py [--frames 150] [--samples 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import OmegaConf

from sign_ctc.data.augment import PoseAugmentation, sample_rng

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "sign_ctc" / "conf" / "augmentation" / "default.yaml"


def per_sample_ms(aug: PoseAugmentation, points: np.ndarray, presence: np.ndarray, samples: int, rounds: int) -> float:
    for k in range(3):  # warm-up
        aug(points, presence, 6, sample_rng(0, 0, f"warm{k}"))
    best = float("inf")
    for r in range(rounds):
        start = time.perf_counter()
        for k in range(samples):
            aug(points, presence, 6, sample_rng(0, r, f"s{k}"))
        best = min(best, (time.perf_counter() - start) / samples)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    points = rng.uniform(0.05, 0.95, (args.frames, 543, 3)).astype(np.float32)
    presence = np.ones((args.frames, 4), dtype=bool)
    default = hydra.utils.instantiate(OmegaConf.load(DEFAULT_YAML))
    print(f"{args.frames}-frame sample, best of {args.rounds} x {args.samples} samples, ms per sample")
    print(f"  default ({', '.join(default.transforms)}): "
          f"{per_sample_ms(default, points, presence, args.samples, args.rounds):.2f}")
    for name, transform in default.transforms.items():
        alone = PoseAugmentation({name: transform}, default.temporal_stride, default.length_margin)
        print(f"  {name} alone: {per_sample_ms(alone, points, presence, args.samples, args.rounds):.2f}")


if __name__ == "__main__":
    main()
