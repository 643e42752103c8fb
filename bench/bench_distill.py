"""Distillation benchmark: the teacher, the student trained alone and the student distilled from it.

    python bench/bench_distill.py --teacher outputs/train/runs/<run>/checkpoints/best.ckpt [--seeds 1234 1 2]
    python bench/bench_distill.py --data synthetic_hard --teacher <a teacher trained with data=synthetic_hard>
    python bench/bench_distill.py --table [--data synthetic_hard]
    python bench/bench_distill.py --teacher <ckpt> --student model.net.bidirectional=true --tag bidirectional_ \
        --results distill_bidirectional.json     # another student: overrides of both its runs

Without --teacher the teacher is trained first (`python train.py`, the defaults = make train, seed
1234). Each student is the real `python train.py model=student [distillation=frame_kl
distillation.teacher_ckpt=...]` with the CSV logger (outputs/bench_distill/<run>_s<seed>, where a
distilled run's name holds the teacher's run folder; finished runs are reused, --force retrains). For every model: test WER (mean ± std over the seeds), parameters,
checkpoint size (the file, with optimizer state, and the weights alone in float32), training time,
and CPU inference speed of normalization + net + log-softmax on the test split's mean sentence
length: input frames/s at batch 1 on one thread (the laptop case) and at batch 32 on all threads, the
three models taking turns in 1-second rounds (the fastest of seven each), so their ratios are measured
in one run.
Results: bench/results/distill.json (distill_<data>.json for another --data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import TRAIN_FLAGS, _python, best_checkpoint, num_parameters  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "distill.json"
OUT = REPO / "outputs" / "bench_distill"


def train(name: str, seed: int, overrides: list[str], force: bool) -> dict:
    run_dir = OUT / f"{name}_s{seed}"
    metrics = run_dir / "metrics.json"
    if force or not (metrics.exists() and json.loads(metrics.read_text()).get("status") == "completed"):
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        print(f"  {name} seed {seed}: training ...", flush=True)
        _python(["train.py", f"seed={seed}", *TRAIN_FLAGS, f"hydra.run.dir={run_dir}", *overrides],
                run_dir.parent / f"{run_dir.name}.train.log")
    return json.loads(metrics.read_text())


def mean_test_length(ckpt: Path) -> int:
    """Mean test-sentence length (frames) of the corpus the checkpoint was trained on."""
    from sign_ctc.models.checkpoint import read_checkpoint

    data = read_checkpoint(ckpt)["sign_ctc"]["recipe"]["data"]
    rows = (Path(data["root"]) / "num_frames.csv").read_text().splitlines()[1:]
    return round(statistics.fmean(int(r.split("|")[2]) for r in rows if r.startswith("test|")))


def inference_speeds(ckpts: dict[str, Path], frames: int, rounds: int = 7) -> dict[str, dict[str, float]]:
    """Input frames per second of each module's forward on random features of ``frames`` frames.

    The models take turns, one 1-second round each, ``rounds`` times, and each keeps its fastest
    round: on a shared machine other load only adds time, and it then slows every model alike, so
    the ratios hold even when the absolute figures drift between runs."""
    import torch

    from sign_ctc.models.checkpoint import load_module

    modules = {name: load_module(ckpt) for name, ckpt in ckpts.items()}
    threads = torch.get_num_threads()
    out: dict[str, dict[str, float]] = {name: {} for name in modules}
    for batch, n_threads in ((1, 1), (32, threads)):
        torch.set_num_threads(n_threads)
        x = torch.randn(batch, frames, 6516)
        presence = torch.ones(batch, frames, 4)
        lengths = torch.full((batch,), frames)
        best = {name: float("inf") for name in modules}
        with torch.inference_mode():
            for module in modules.values():
                for _ in range(3):
                    module(x, presence, lengths)
            for _ in range(rounds):
                for name, module in modules.items():
                    runs, start = 0, time.perf_counter()
                    while time.perf_counter() - start < 1.0 or runs < 3:
                        module(x, presence, lengths)
                        runs += 1
                    best[name] = min(best[name], (time.perf_counter() - start) / runs)
        for name, seconds in best.items():
            out[name][f"frames_per_s_b{batch}_t{n_threads}"] = round(batch * frames / seconds, 1)
            out[name][f"ms_per_batch_b{batch}"] = round(1000 * seconds, 2)
    torch.set_num_threads(threads)
    return out


def describe(ckpt: Path) -> dict:
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    weights = sum(v.numel() * 4 for k, v in state.items() if k.startswith("net.") or k.startswith("normalizer."))
    return {"parameters": num_parameters(ckpt), "checkpoint_mb": round(ckpt.stat().st_size / 1e6, 2),
            "weights_mb": round(weights / 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, help="the teacher's checkpoint (default: train one, seed 1234)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 1, 2])
    parser.add_argument("--data", default="synthetic",
                        help="data config of every run (synthetic_hard: the harder corpus; results distill_<data>.json)")
    parser.add_argument("--results", default=None,
                        help="results file name in bench/results (default distill.json, distill_<data>.json)")
    parser.add_argument("--student", nargs="*", default=[], metavar="OVERRIDE",
                        help="overrides of both student variants, e.g. model.net.bidirectional=true")
    parser.add_argument("--tag", default="", help="prefix of the student runs' names (for --student variants)")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    os.chdir(REPO)
    results_file = RESULTS if args.data == "synthetic" else RESULTS.with_name(f"distill_{args.data}.json")
    if args.results:
        results_file = RESULTS.with_name(args.results)
    if args.table:
        print(table(json.loads(results_file.read_text())))
        return
    prefix = "" if args.data == "synthetic" else f"{args.data}_"
    data = [] if args.data == "synthetic" else [f"data={args.data}"]
    OUT.mkdir(parents=True, exist_ok=True)
    teacher = args.teacher
    teacher_metrics = None
    if teacher is None:
        teacher_metrics = train(f"{prefix}teacher", 1234, data, args.force)
        teacher = best_checkpoint(OUT / f"{prefix}teacher_s1234", teacher_metrics)
    else:
        teacher = teacher.resolve()
        candidate = teacher.parent.parent / "metrics.json"
        teacher_metrics = json.loads(candidate.read_text()) if candidate.exists() else None
    frames = mean_test_length(teacher)
    models: dict[str, dict] = {"teacher": {"checkpoint": str(teacher), **describe(teacher)}}
    speed_ckpts = {"teacher": teacher}
    if teacher_metrics:
        models["teacher"].update(test_wer=[round(teacher_metrics["test/wer"], 2)],
                                 train_seconds=[round(teacher_metrics["wall_time_s"], 1)])
    # The distilled runs are named after the teacher's run folder: another teacher never reuses them.
    teacher_run = teacher.parent.parent.name
    student = [*data, "model=student", *args.student]
    variants = {"student": (f"{prefix}{args.tag}student", student),
                "distilled": (f"{prefix}{args.tag}distilled_from_{teacher_run}",
                              [*student, "distillation=frame_kl", f"distillation.teacher_ckpt={teacher}"])}
    for name, (run_name, overrides) in variants.items():
        wers, seconds, ckpt = [], [], None
        for seed in args.seeds:
            m = train(run_name, seed, overrides, args.force)
            wers.append(round(m["test/wer"], 2))
            seconds.append(round(m["wall_time_s"], 1))
            ckpt = best_checkpoint(OUT / f"{run_name}_s{seed}", m)
            print(f"  {name} seed {seed}: test WER {wers[-1]}% ({seconds[-1]} s)", flush=True)
        models[name] = {"overrides": overrides, "seeds": args.seeds, "test_wer": wers, "train_seconds": seconds,
                        "epochs": m["epochs"], **describe(ckpt)}
        speed_ckpts[name] = ckpt  # the last seed's checkpoint: speed does not depend on the weights
    for name, speed in inference_speeds(speed_ckpts, frames).items():
        models[name].update(speed)
    for m in models.values():
        if m.get("test_wer"):
            m["test_wer_mean"] = round(statistics.fmean(m["test_wer"]), 2)
            m["test_wer_std"] = round(statistics.stdev(m["test_wer"]), 2) if len(m["test_wer"]) > 1 else None
    results = {"models": models, "frames": frames, "data": args.data, "teacher_run": teacher_run, "date": time.strftime("%Y-%m-%d"),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "load_avg_1m": round(os.getloadavg()[0], 2)}}
    from sign_ctc.atomic import write_text_atomic

    write_text_atomic(results_file, json.dumps(results, indent=1) + "\n")
    print(table(results))


def table(results: dict) -> str:
    lines = ["| model | params | checkpoint / weights (MB) | test WER (seeds) | frames/s, batch 1, 1 thread | "
             "frames/s, batch 32 | train time (s) |", "|---|---|---|---|---|---|---|"]
    for name, m in results["models"].items():
        wer = (f"{m['test_wer_mean']:.2f}" + (f" ± {m['test_wer_std']:.2f}" if m.get("test_wer_std") is not None else "")
               + f" ({len(m['test_wer'])})") if m.get("test_wer") else "–"
        b32 = next(v for k, v in m.items() if k.startswith("frames_per_s_b32"))
        secs = f"{statistics.fmean(m['train_seconds']):.0f}" if m.get("train_seconds") else "–"
        lines.append(f"| {name} | {m['parameters'] / 1e6:.2f}M | {m['checkpoint_mb']} / {m['weights_mb']} | {wer} | "
                     f"{m['frames_per_s_b1_t1']:.0f} | {b32:.0f} | {secs} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
