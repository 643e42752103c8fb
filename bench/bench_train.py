"""Benchmark training: frames/s of our Lightning loop vs a bare PyTorch loop, and peak memory.

Both loops train the I3D teacher (default ``conf/model/i3d.yaml``, global body-relative
normalization) on the same batches (the store-backed train loader, 2 workers, batch 8), with the
same optimizer and gradient clipping. The Lightning run is the real ``CTCModule`` with our NaN
guard and feature-diagnostics callbacks. Runs alternate (bare, Lightning, bare, Lightning) and the
faster of each pair is kept, which cancels most of the noise of a shared machine. Peak memory is
sampled over the Lightning runs, workers included.

    python bench/bench_train.py [--annotations DIR] [--fraction 0.05] [--steps 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import copy
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from common import (corpus_from_args, REPO, MemorySampler, add_corpus_args, figure, machine,  # noqa: E402
                    write_result)

from sign_ctc.data.datamodule import SignDataModule  # noqa: E402
from sign_ctc.normalization import Normalizer  # noqa: E402


def build_model(dm: SignDataModule, normalizer: Normalizer):
    from omegaconf import OmegaConf

    import hydra

    cfg = OmegaConf.load(REPO / "conf" / "model" / "i3d.yaml")
    cfg.scheduler = None
    torch.manual_seed(0)
    return hydra.utils.instantiate(cfg, normalizer=copy.deepcopy(normalizer), vocab=dm.vocab.tokens)


class Timer(pl.Callback):
    """Wall time from the end of the warm-up step to the end of the last step, and frames trained."""

    def __init__(self, warmup: int):
        self.warmup, self.frames, self.start, self.end = warmup, 0, None, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx + 1 == self.warmup:
            self.start = time.perf_counter()
        elif batch_idx + 1 > self.warmup:
            self.frames += int(batch["lengths"].sum())
            self.end = time.perf_counter()


def lightning_run(dm: SignDataModule, normalizer: Normalizer, steps: int, warmup: int) -> dict:
    from sign_ctc.callbacks.feature_diagnostics import FeatureDiagnostics
    from sign_ctc.callbacks.nan_guard import NaNGuard

    model = build_model(dm, normalizer)
    timer = Timer(warmup)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps + warmup, limit_val_batches=0,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, gradient_clip_val=1.0, precision="32-true",
                         use_distributed_sampler=False, callbacks=[timer, NaNGuard(), FeatureDiagnostics()],
                         default_root_dir=str(REPO / ".cache" / "bench" / "lightning"))
    trainer.fit(model, datamodule=dm)
    wall = timer.end - timer.start
    return {"frames_per_s": round(timer.frames / wall, 1), "seconds": round(wall, 2), "frames": timer.frames}


def bare_run(dm: SignDataModule, normalizer: Normalizer, steps: int, warmup: int) -> dict:
    model = build_model(dm, normalizer)
    model.train()
    opt = model.optimizer_factory(params=model.parameters())
    frames, start = 0, None
    loader = dm.train_dataloader()
    for i, b in enumerate(loader):
        log_probs, out_lengths = model(b["features"], b["presence"], b["lengths"])
        per_sample, feasible, _ = model.ctc_loss(log_probs, out_lengths, b)
        loss = per_sample[feasible].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i + 1 == warmup:
            start = time.perf_counter()
        elif i + 1 > warmup:
            frames += int(b["lengths"].sum())
        if i + 1 == warmup + steps:
            break
    wall = time.perf_counter() - start
    del loader
    return {"frames_per_s": round(frames / wall, 1), "seconds": round(wall, 2), "frames": frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_corpus_args(parser)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run (after --warmup steps)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="bare/Lightning pairs; the best of each is kept")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    info = machine()
    corpus, desc = corpus_from_args(args)
    dm = SignDataModule(corpus, batch_size=args.batch_size, num_workers=args.workers, seed=args.seed,
                        store=True, store_dir=str(corpus.root / "store"))
    dm.dataset("train")
    normalizer = Normalizer("global", body_relative=True)
    normalizer.fit(b for _, b in zip(range(4), dm.split_batches("train")))
    print(f"I3D teacher, batch {args.batch_size}, {args.workers} workers, {args.steps} timed steps per run, "
          f"{args.rounds} rounds; torch threads {torch.get_num_threads()}")

    bare, light = [], []
    with MemorySampler() as mem:
        for r in range(args.rounds):
            bare.append(bare_run(dm, normalizer, args.steps, args.warmup))
            print(f"round {r + 1}: bare PyTorch {bare[-1]['frames_per_s']:7.1f} frames/s", flush=True)
            light.append(lightning_run(dm, normalizer, args.steps, args.warmup))
            print(f"round {r + 1}: Lightning    {light[-1]['frames_per_s']:7.1f} frames/s", flush=True)
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best_bare = max(b["frames_per_s"] for b in bare)
    best_light = max(lt["frames_per_s"] for lt in light)
    overhead = 100 * (best_bare / best_light - 1)
    print(f"Lightning loop {best_light:.1f} vs bare loop {best_bare:.1f} frames/s: overhead {overhead:+.1f}% (goal <= 5%)")
    print(f"peak memory over the runs: main process RSS {mem.peak['rss_main_mb']:.0f} MB (ru_maxrss {maxrss_mb:.0f} MB), "
          f"process tree PSS {mem.peak['pss_tree_mb']:.0f} MB, summed RSS {mem.peak['rss_tree_mb']:.0f} MB "
          f"({mem.peak['processes']} processes) (goal < 3 GB)")
    # Lightning cannot be much faster than the same loop without it: a large negative overhead
    # means the machine's load changed between runs, and the figure says so instead of "met".
    noisy = overhead < -5
    figures = [
        figure("training throughput (Lightning)", best_light, "frames/s", best_bare, "bare PyTorch loop",
               goal="<= 5% overhead", met=None if noisy else overhead <= 5,
               note=f"overhead {overhead:+.1f}%" + (" (noisy: rerun on an idle machine)" if noisy else "")),
        figure("peak memory of training (PSS, workers included)", mem.peak["pss_tree_mb"], "MB", goal="< 3072 MB",
               met=mem.peak["pss_tree_mb"] < 3072,
               note=f"main RSS {mem.peak['rss_main_mb']:.0f} MB; summed RSS {mem.peak['rss_tree_mb']:.0f} MB"),
    ]
    result = {"corpus": desc, "figures": figures, "batch_size": args.batch_size, "workers": args.workers,
              "bare": bare, "lightning": light, "overhead_pct": round(overhead, 2),
              "memory_mb": {**mem.peak, "ru_maxrss_main_mb": round(maxrss_mb, 1)}}
    write_result("train", result, info)


if __name__ == "__main__":
    main()
