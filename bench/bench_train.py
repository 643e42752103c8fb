"""Benchmark training: our Lightning loop vs a bare PyTorch loop, oneDNN on/off, and peak memory.

Lightning vs bare, paired step by step. One Lightning run of the real training setup
(``sign_ctc/conf/train.yaml`` composed: ``trainer/default``, the callbacks of ``callbacks/default`` that act
during training steps, the CSV logger) trains the I3D teacher on the store-backed train loader
(2 workers). After each of its steps a callback runs one step of a bare PyTorch loop: its own copy
of the same model and optimizer, the same gradient clipping, and its own loader over the same
batches in the same order (so each loop pays for its own batch fetching). Each step is timed on its
own: a Lightning step runs from the end of the previous bare step to Lightning's next
``on_train_batch_end`` (everything Lightning and our callbacks do between batches counts against
it); a bare step is its fetch, forward, loss, backward, clipping and optimizer step. Pairing cancels
the drift of a shared machine, which moved whole-run figures by +-15% here; the median of the
per-step ratios is the overhead (epoch ends, where both loops restart their loaders, included). Checkpointing and early
stopping act only at validation, which these runs skip.

Peak memory: a plain Lightning run of the same setup (one model, 2 workers), sampled throughout.

oneDNN: the bare step with oneDNN on and with it off (``backend.onednn``), alternating on the same
batches of another epoch: each new padded length makes oneDNN build new kernels.

    python bench/bench_train.py [--annotations DIR] [--fraction 0.05] [--steps 90] [--onednn-steps 12]
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from common import (  # noqa: E402
    CACHE,
    REPO,
    MemorySampler,
    add_corpus_args,
    apply_default_backend,
    corpus_from_args,
    figure,
    machine,
    write_result,
)

from sign_ctc.data.datamodule import SignDataModule  # noqa: E402
from sign_ctc.models.ctc_module import CTCModule  # noqa: E402
from sign_ctc.models.normalization import Normalizer  # noqa: E402
from sign_ctc.run.build import build_model  # noqa: E402
from sign_ctc.run.instantiate import instantiate_group  # noqa: E402


def compose_train_config() -> Any:
    """sign_ctc/conf/train.yaml as train.py sees it, with the CSV logger; each run gets its own output dir."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        return compose(config_name="train", overrides=[f"paths.root_dir={REPO}", f"paths.log_dir={CACHE}",
                                                       f"paths.output_dir={CACHE}", "logger=csv"])


def bench_model(cfg: Any, dm: SignDataModule, normalizer: Normalizer) -> CTCModule:
    """train.py's model (``run.build.build_model``) from seed 0 on the one fitted normalizer, without the
    per-epoch schedule (a few dozen steps never move it)."""
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    return build_model(OmegaConf.merge(cfg, {"model": {"scheduler": None}}), dm, copy.deepcopy(normalizer))


class BareStep:
    """One step of a plain PyTorch loop: (fetch,) forward, CTC loss, backward, gradient clipping, AdamW."""

    def __init__(self, model: CTCModule, clip: float | None, loader: Any = None):
        self.model = model.train()
        self.opt = model.optimizer_factory(params=model.parameters())
        self.clip = clip
        self.loader, self.epoch = loader, 0
        self.batches = iter(loader) if loader is not None else None

    def _next(self) -> dict[str, Any]:
        try:
            return next(self.batches)
        except StopIteration:  # a new epoch, shuffled as Lightning's loader is (it calls set_epoch too)
            self.epoch += 1
            self.loader.batch_sampler.set_epoch(self.epoch)
            self.batches = iter(self.loader)
            return next(self.batches)

    def __call__(self, b: dict[str, Any] | None = None) -> float:
        start = time.perf_counter()
        if b is None:
            b = self.last = self._next()
        b = b.with_features()  # what the module's on_after_batch_transfer does
        log_probs, out_lengths = self.model(b.features, b.presence, b.lengths)
        per_sample, feasible, _ = self.model.ctc_loss(log_probs, out_lengths, b)
        loss = per_sample[feasible].mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        return time.perf_counter() - start


class Lockstep(pl.Callback):
    """After every Lightning step, a bare step on the same batch; both timed, after ``warmup`` steps."""

    def __init__(self, bare: BareStep, warmup: int):
        self.bare, self.warmup = bare, warmup
        self.n, self.resume = 0, None
        self.lightning_s: list[float] = []
        self.bare_s: list[float] = []
        self.frames: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        end = time.perf_counter()
        timed = self.n >= self.warmup
        if timed:
            self.lightning_s.append(end - self.resume)
        bare_s = self.bare()
        if self.bare.last.ids != batch.ids:
            raise RuntimeError("the bare loop's loader gave other batches than Lightning's")
        if timed:
            self.bare_s.append(bare_s)
            self.frames.append(int(batch.lengths.sum()))
        self.n += 1
        self.resume = time.perf_counter()


def fit(cfg: Any, dm: SignDataModule, normalizer: Normalizer, steps: int, extra: list[pl.Callback]) -> list[str]:
    """A Lightning run of `steps` training steps with the configured per-step callbacks; their names."""
    import hydra
    from omegaconf import OmegaConf

    with tempfile.TemporaryDirectory(prefix="bench_train_") as run_dir:  # logs and dumps of this run only
        cfg = OmegaConf.merge(cfg, {"paths": {"output_dir": run_dir}})
        per_step = [cb for cb in instantiate_group(cfg.callbacks)
                    if not isinstance(cb, (pl.callbacks.Checkpoint, pl.callbacks.EarlyStopping))]
        trainer: pl.Trainer = hydra.utils.instantiate(
            cfg.trainer, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False,
            enable_model_summary=False, callbacks=[*extra, *per_step], logger=instantiate_group(cfg.logger))
        trainer.fit(bench_model(cfg, dm, normalizer), datamodule=dm)
    return [type(cb).__name__ for cb in per_step]


def lightning_vs_bare(cfg: Any, dm: SignDataModule, normalizer: Normalizer, steps: int, warmup: int) -> dict:
    clip = cfg.trainer.get("gradient_clip_val")
    lockstep = Lockstep(BareStep(bench_model(cfg, dm, normalizer), clip, dm.train_dataloader()), warmup)
    callbacks = fit(cfg, dm, normalizer, steps + warmup, [lockstep])
    light, bare, frames = lockstep.lightning_s, lockstep.bare_s, lockstep.frames
    ratios = [a / b for a, b in zip(light, bare)]
    return {
        "steps": len(light), "frames": sum(frames),
        "lightning_frames_per_s": round(sum(frames) / sum(light), 1),
        "bare_frames_per_s": round(sum(frames) / sum(bare), 1),
        "overhead_median_pct": round(100 * (statistics.median(ratios) - 1), 2),
        "overhead_total_pct": round(100 * (sum(light) / sum(bare) - 1), 2),
        "callbacks": callbacks, "gradient_clip_val": clip,
        "lightning_s": [round(x, 4) for x in light], "bare_s": [round(x, 4) for x in bare],
    }


def onednn_on_off(cfg: Any, dm: SignDataModule, normalizer: Normalizer, steps: int) -> dict:
    """The bare step with oneDNN off and on, alternating which goes first, on fresh batches."""
    clip = cfg.trainer.get("gradient_clip_val")
    native, onednn = BareStep(bench_model(cfg, dm, normalizer), clip), BareStep(bench_model(cfg, dm, normalizer), clip)
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(1)  # other batches than the paired run's epoch 0
    batches = [b.with_features() for _, b in zip(range(steps + 1), loader)]
    times: dict[bool, list[float]] = {False: [], True: []}
    saved = torch.backends.mkldnn.enabled
    try:
        for i, b in enumerate(batches):
            for enabled in ((False, True) if i % 2 else (True, False)):
                torch.backends.mkldnn.enabled = enabled
                dt = (native if not enabled else onednn)(b)
                if i:  # the first batch warms up both
                    times[enabled].append(dt)
    finally:
        torch.backends.mkldnn.enabled = saved
    frames = sum(int(b.lengths.sum()) for b in batches[1:])
    ratios = [a / b for a, b in zip(times[True], times[False])]
    return {"steps": steps, "frames": frames,
            "native_frames_per_s": round(frames / sum(times[False]), 1),
            "onednn_frames_per_s": round(frames / sum(times[True]), 1),
            "onednn_extra_median_pct": round(100 * (statistics.median(ratios) - 1), 2),
            "padded_lengths": [int(b.features.shape[1]) for b in batches[1:]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_corpus_args(parser)
    parser.add_argument("--steps", type=int, default=90, help="timed Lightning/bare step pairs (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory-steps", type=int, default=20, help="steps of the training run sampled for memory")
    parser.add_argument("--onednn-steps", type=int, default=12, help="timed oneDNN on/off step pairs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    info = machine()
    cfg = compose_train_config()
    info["backend"] = apply_default_backend()
    corpus, desc = corpus_from_args(args)
    dm = SignDataModule(corpus, batch_size=args.batch_size, num_workers=args.workers, seed=args.seed,
                        store=True, store_dir=str(corpus.root / "store"))
    dm.dataset("train")
    import hydra

    normalizer: Normalizer = hydra.utils.instantiate(cfg.normalization)  # the config's, fitted on a few batches
    normalizer.fit(b for _, b in zip(range(4), dm.split_batches("train")))
    print(f"I3D teacher, batch {args.batch_size}, {args.workers} workers, torch threads {torch.get_num_threads()}, "
          f"backend {info['backend']}; {args.steps} paired steps")

    with MemorySampler() as mem:
        fit(cfg, dm, normalizer, args.memory_steps, [])
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    paired = lightning_vs_bare(cfg, dm, normalizer, args.steps, args.warmup)
    print(f"Lightning loop {paired['lightning_frames_per_s']:.1f} vs bare loop {paired['bare_frames_per_s']:.1f} "
          f"frames/s: overhead {paired['overhead_median_pct']:+.1f}% (median of {paired['steps']} paired steps; "
          f"{paired['overhead_total_pct']:+.1f}% over their sums) (goal <= 5%)")
    print(f"peak memory of a {args.memory_steps}-step Lightning run: main process RSS {mem.peak['rss_main_mb']:.0f} MB (ru_maxrss "
          f"{maxrss_mb:.0f} MB), process tree PSS {mem.peak['pss_tree_mb']:.0f} MB, summed RSS "
          f"{mem.peak['rss_tree_mb']:.0f} MB ({mem.peak['processes']} processes) (goal < 3 GB)", flush=True)
    onednn = onednn_on_off(cfg, dm, normalizer, args.onednn_steps)
    print(f"bare step, oneDNN off {onednn['native_frames_per_s']:.1f} vs on {onednn['onednn_frames_per_s']:.1f} "
          f"frames/s: oneDNN costs {onednn['onednn_extra_median_pct']:+.1f}% per step (median of {onednn['steps']} "
          f"pairs, padded lengths {onednn['padded_lengths']})")

    overhead = paired["overhead_median_pct"]
    figures = [
        figure("training throughput (Lightning)", paired["lightning_frames_per_s"], "frames/s",
               paired["bare_frames_per_s"], "bare PyTorch loop", goal="<= 5% overhead", met=overhead <= 5,
               note=f"overhead {overhead:+.1f}% (median of {paired['steps']} paired steps; "
                    f"{paired['overhead_total_pct']:+.1f}% summed)"),
        figure("training step, oneDNN off (default) vs on", onednn["native_frames_per_s"], "frames/s",
               onednn["onednn_frames_per_s"], "backend.onednn=true",
               note=f"oneDNN {onednn['onednn_extra_median_pct']:+.1f}% per step (new padded lengths)"),
        figure("peak memory of training (PSS, workers included)", mem.peak["pss_tree_mb"], "MB", goal="< 3072 MB",
               met=mem.peak["pss_tree_mb"] < 3072,
               note=f"main RSS {mem.peak['rss_main_mb']:.0f} MB; summed RSS {mem.peak['rss_tree_mb']:.0f} MB"),
    ]
    result = {"corpus": desc, "figures": figures, "batch_size": args.batch_size, "workers": args.workers,
              "paired": paired, "onednn": onednn,
              "memory_mb": {**mem.peak, "ru_maxrss_main_mb": round(maxrss_mb, 1)}}
    write_result("train", result, info)


if __name__ == "__main__":
    main()
