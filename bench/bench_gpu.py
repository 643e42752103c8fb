"""GPU benchmark: the I3D teacher's training loop at PHOENIX-2014 scale, on the device it finds.

    python bench/bench_gpu.py                 # on a CUDA GPU: 200 timed steps per run, a few minutes
    python bench/bench_gpu.py --smoke         # 3 steps per run on the CPU: the whole path works (make test)

Every run is the real Lightning loop on the default teacher (sign_ctc/conf/model/i3d.yaml, global
body-relative normalization fitted once) with the real loaders: the float16 landmark store of the
PHOENIX-scale benchmark corpus (real PHOENIX-2014 sentences and frame counts, synthetic landmarks),
``data.num_workers=auto``, pinned memory on CUDA, features derived on the device after the transfer.
The same seed gives every run the same initial weights and the same batches. Runs:

- ``fp32``: float32 (``precision=32-true``), eager;
- ``bf16``: ``bf16-mixed`` (what ``trainer=gpu`` uses), eager;
- ``bf16_compiled``: ``bf16-mixed`` with ``model.compile_net=true`` and ``data.pad_to_multiple``
  (default 64: each padded length compiles once).

Per run: frames/s over the timed steps (real frames, padding not counted), the teacher epoch time
extrapolated to the full 5,671-sentence train split, the share of wall time spent waiting for the
loader (Lightning's ``train_dataloader_next``), peak device memory, and the loss of every step. Then:
bf16 vs fp32 loss (mean of the last 10% of steps, relative difference), compiled vs eager speed and
the compile cost (the first step, and steps that took over 3x the median: new shapes). The device is
synchronised at every step end, so the step times are the device's; the input wait is then measured
with the device idle, an upper bound.
Results: bench/results/gpu.json (a CUDA run) or gpu_smoke.json / gpu_cpu.json (CPU runs).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from common import add_corpus_args, corpus_from_args, figure, machine, write_result  # noqa: E402

from sign_ctc.data.datamodule import SignDataModule, resolve_workers  # noqa: E402
from sign_ctc.models.ctc_module import CTCModule  # noqa: E402
from sign_ctc.models.normalization import Normalizer  # noqa: E402

FULL_TRAIN_SENTENCES = 5671
FETCH = "[_TrainingEpochLoop].train_dataloader_next"


class StepClock(pl.Callback):
    """Wall time of every training step (device synchronised at its end), its frames and its loss."""

    def __init__(self, device: torch.device):
        self.device = device
        self.steps: list[float] = []
        self.frames: list[int] = []
        self.padded: list[int] = []
        self.losses: list[float] = []
        self._start = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        self.steps.append(time.perf_counter() - self._start)
        self.frames.append(int(batch.lengths.sum()))
        self.padded.append(int(batch.features.shape[0] * batch.features.shape[1]))
        self.losses.append(float(outputs["loss"]))


def make_model(args: argparse.Namespace, vocab: list[str], normalizer: Normalizer, compile_net: Any) -> CTCModule:
    import hydra
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "sign_ctc" / "conf" / "model" / "i3d.yaml")
    cfg.scheduler = None  # a few hundred steps: an epoch schedule would depend on the corpus fraction
    cfg.compile_net = compile_net
    pl.seed_everything(args.seed, verbose=False)
    return hydra.utils.instantiate(cfg, normalizer=copy.deepcopy(normalizer), vocab=vocab)


def run(name: str, args: argparse.Namespace, corpus: Any, vocab: Any, normalizer: Normalizer, precision: str,
        compile_net: Any, pad_to: int | None) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dm = SignDataModule(corpus, batch_size=args.batch_size, num_workers=args.workers, pin_memory=None,
                        seed=args.seed, store=True, store_dir=str(corpus.root / "store"), pad_to_multiple=pad_to)
    dm.vocab = vocab
    model = make_model(args, vocab.tokens, normalizer, compile_net)
    clock = StepClock(device)
    profiler = pl.profilers.SimpleProfiler(dirpath=str(corpus.root / "gpu_bench_runs"), filename=f"profile_{name}")
    trainer = pl.Trainer(accelerator=device.type if device.type == "cuda" else "cpu", devices=1, precision=precision,
                         max_steps=args.warmup + args.steps, limit_val_batches=0, num_sanity_val_steps=0,
                         gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, use_distributed_sampler=False, callbacks=[clock],
                         profiler=profiler, default_root_dir=str(corpus.root / "gpu_bench_runs"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    total = time.perf_counter() - start
    fetch = profiler.recorded_durations.get(FETCH, [])
    w = args.warmup
    timed, frames = clock.steps[w:], clock.frames[w:]
    timed_fetch = fetch[-len(timed):]  # the fetches of the timed steps (the first ones start the workers)
    median = statistics.median(clock.steps[1:] or clock.steps)
    slow = [t for t in clock.steps[1:] if t > 3 * median]
    wall = sum(timed) + sum(timed_fetch)
    out = {
        "precision": precision, "compiled": bool(compile_net), "pad_to_multiple": pad_to, "steps": len(timed),
        "frames_per_s": round(sum(frames) / sum(timed), 1),
        "seconds_per_step_median": round(statistics.median(timed), 4),
        "input_wait_pct": round(100 * sum(timed_fetch) / wall, 2) if wall else None,
        "padding_pct": round(100 * (1 - sum(frames) / sum(clock.padded[w:])), 1),
        "first_step_s": round(clock.steps[0], 2),
        "slow_steps": len(slow), "slow_steps_s": round(sum(slow), 2),
        "run_wall_s": round(total, 1),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "losses": [round(x, 5) for x in clock.losses],
    }
    print(f"{name:14s} {out['frames_per_s']:9.1f} frames/s, {out['seconds_per_step_median'] * 1000:7.1f} ms/step, "
          f"input wait {out['input_wait_pct']}%, first step {out['first_step_s']} s, padding {out['padding_pct']}%"
          + (f", peak {out['peak_memory_gb']} GB" if out["peak_memory_gb"] is not None else ""))
    return out


def tail_loss(losses: list[float]) -> float:
    """Mean loss of the last 10% of steps (at least one): one step's loss is noisy."""
    k = max(1, len(losses) // 10)
    return statistics.fmean(losses[-k:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_corpus_args(parser)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per run (after --warmup)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8, help="default: sign_ctc/conf/data/phoenix2014.yaml's 8")
    parser.add_argument("--workers", default="auto", help="loader workers (default: auto, as data.num_workers)")
    parser.add_argument("--pad-to", type=int, default=64, help="data.pad_to_multiple of the compiled run")
    parser.add_argument("--runs", nargs="+", default=["fp32", "bf16", "bf16_compiled"],
                        choices=["fp32", "bf16", "bf16_compiled"])
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compiled run")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run (fraction 0.002, batch 2, 3 steps; the compiled run with backend `eager`, "
                             "padded to 512 frames: one trace) to test the path")
    args = parser.parse_args()
    if args.smoke:
        args.fraction = 0.002 if args.fraction == parser.get_default("fraction") else args.fraction
        args.steps, args.warmup, args.batch_size = min(args.steps, 3), min(args.warmup, 1), min(args.batch_size, 2)
        args.compile_backend, args.pad_to = "eager", 512  # one padded shape: one trace
    args.workers = resolve_workers(args.workers if args.workers == "auto" else int(args.workers))
    info = machine()
    cuda = torch.cuda.is_available()
    info["device"] = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})"
    corpus, desc = corpus_from_args(args)
    dm = SignDataModule(corpus, batch_size=args.batch_size, num_workers=0, store=True,
                        store_dir=str(corpus.root / "store"), seed=args.seed)
    dm.dataset("train")
    vocab = dm.vocab
    normalizer = Normalizer("global", body_relative=True)
    normalizer.fit(dm.split_batches("train"))
    print(f"device {info['device']}; batch {args.batch_size}, {args.workers} loader workers; "
          f"{args.warmup} warm-up + {args.steps} timed steps per run")

    compile_opts = {"backend": args.compile_backend} if args.compile_backend != "inductor" else True
    settings = {"fp32": ("32-true", False, None), "bf16": ("bf16-mixed", False, None),
                "bf16_compiled": ("bf16-mixed", compile_opts, args.pad_to)}
    runs = {name: run(name, args, corpus, vocab, normalizer, *settings[name]) for name in args.runs}

    full_frames = desc.get("train_frames_full") or desc["mean_train_frames"] * FULL_TRAIN_SENTENCES
    figures = []
    for name, r in runs.items():
        r["epoch_s_full_phoenix"] = round(full_frames / r["frames_per_s"], 1)
    main_run = runs.get("bf16") or next(iter(runs.values()))
    where = "one H100" if cuda and "H100" in info["device"] else info["device"]
    figures.append(figure("teacher epoch at PHOENIX-2014 scale", main_run["epoch_s_full_phoenix"], "s",
                          goal="<= 30 s on one H100", met=(main_run["epoch_s_full_phoenix"] <= 30) if cuda else None,
                          note=f"{main_run['precision']}, batch {args.batch_size}, {where}; "
                               f"{full_frames} train frames / {main_run['frames_per_s']} frames/s"))
    figures.append(figure("input waiting, share of step time", main_run["input_wait_pct"], "%", goal="<= 5%",
                          met=main_run["input_wait_pct"] <= 5,
                          note=f"{args.workers} workers, features derived on the device"))
    result: dict[str, Any] = {"corpus": desc, "device": info["device"], "batch_size": args.batch_size,
                              "workers": args.workers, "warmup": args.warmup, "runs": runs}
    if "fp32" in runs and "bf16" in runs:
        a, b = tail_loss(runs["fp32"]["losses"]), tail_loss(runs["bf16"]["losses"])
        rel = abs(b - a) / abs(a)
        result["bf16_vs_fp32"] = {"fp32_tail_loss": round(a, 4), "bf16_tail_loss": round(b, 4),
                                  "relative_diff_pct": round(100 * rel, 2),
                                  "speedup": round(runs["bf16"]["frames_per_s"] / runs["fp32"]["frames_per_s"], 3)}
        print(f"bf16-mixed vs fp32: loss {b:.4f} vs {a:.4f} after {runs['fp32']['steps'] + args.warmup} steps "
              f"({100 * rel:.2f}%), x{result['bf16_vs_fp32']['speedup']:.2f} frames/s")
        figures.append(figure("bf16-mixed vs fp32 loss after the timed steps", round(100 * rel, 2), "% difference",
                              goal="<= 1% after 200 steps", met=rel <= 0.01 if args.steps + args.warmup >= 200 else None,
                              note=f"x{result['bf16_vs_fp32']['speedup']:.2f} frames/s"))
    if "bf16" in runs and "bf16_compiled" in runs:
        e, c = runs["bf16"], runs["bf16_compiled"]
        result["compiled_vs_eager"] = {"speedup": round(c["frames_per_s"] / e["frames_per_s"], 3),
                                       "compile_s": round(c["first_step_s"] + c["slow_steps_s"], 1),
                                       "backend": args.compile_backend}
        print(f"compiled vs eager (bf16): x{result['compiled_vs_eager']['speedup']:.2f} frames/s (padding "
              f"{c['padding_pct']}% vs {e['padding_pct']}%); compile {result['compiled_vs_eager']['compile_s']} s")
        figures.append(figure("torch.compile vs eager", c["frames_per_s"], "frames/s", e["frames_per_s"], "eager",
                              note=f"backend {args.compile_backend}, pad to {args.pad_to}; compile "
                                   f"{result['compiled_vs_eager']['compile_s']} s"))
    result["figures"] = figures
    write_result("gpu" if cuda else ("gpu_smoke" if args.smoke else "gpu_cpu"), result, info)


if __name__ == "__main__":
    main()
