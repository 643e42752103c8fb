"""Accuracy benchmark: test WER as mean ± std over seeds, beside a small model and on a harder corpus.

    python bench/bench_accuracy.py                      # every run below, seeds 1234 1 2
    python bench/bench_accuracy.py --runs teacher --seeds 1234 1 2
    python bench/bench_accuracy.py --table              # print the table from the results file

Each run is the real `python train.py` with the defaults plus the run's overrides (the CSV logger so
the dev WER of every epoch can be read back, no progress bar), in outputs/bench_accuracy/<run>_s<seed>.
A finished run (its metrics.json says "completed") is reused, not retrained; --force retrains.
The greedy test WER is training's own (the best checkpoint on dev); then eval.py decodes the best
checkpoint with beam search (width 10, no LM) on test, and with beam search + the corpus's gloss
3-gram LM whose weight and word bonus are tuned on dev (`decoding.tune=true`; the tuning also gives
the greedy and plain-beam dev WERs). Results go to bench/results/accuracy.json after every run.

Runs: `teacher` is exactly `make train`; `teacher_aug` adds `augmentation=default` (dev and test
signers are unseen in training on both corpora); `*_no_residual` turn off the shortcuts around the
Inception blocks (`model.net.residual=false`, the defaults before 2026-11-27 20:00), `teacher_no_aux`
also the auxiliary CTC head (the defaults before 15:00); `student` is the small model (`model=student`,
~1.2M parameters, built like issue 12's 0.5M reference: conv + pool ×2, BiLSTM, CTC) trained alone;
`hard_*` are the same on `data=synthetic_hard` (200 glosses, 20 signers, 9-18 glosses per sentence,
twice the detection noise).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "accuracy.json"
OUT = REPO / "outputs" / "bench_accuracy"

# name -> (what it is, train.py overrides)
RUNS: dict[str, tuple[str, list[str]]] = {
    "teacher": ("I3D teacher, defaults (= make train)", []),
    "teacher_no_residual": ("I3D teacher without the shortcuts around the Inception blocks "
                            "(the defaults before 2026-11-27 20:00)", ["model.net.residual=false"]),
    "teacher_no_aux": ("I3D teacher without the shortcuts and without the auxiliary CTC head "
                       "(the defaults before 2026-11-27 15:00)",
                       ["model.net.residual=false", "model.net.aux_ctc=false", "model.aux_ctc_weight=0.0"]),
    "teacher_aug": ("I3D teacher + augmentation=default", ["augmentation=default"]),
    "teacher_no_residual_aug": ("I3D teacher without the shortcuts + augmentation=default",
                                ["model.net.residual=false", "augmentation=default"]),
    "student": ("student alone (model=student)", ["model=student"]),
    "hard_teacher": ("I3D teacher on data=synthetic_hard", ["data=synthetic_hard"]),
    "hard_teacher_no_residual": ("I3D teacher without the shortcuts on data=synthetic_hard",
                                 ["data=synthetic_hard", "model.net.residual=false"]),
    "hard_student": ("student alone on data=synthetic_hard", ["data=synthetic_hard", "model=student"]),
}
TRAIN_FLAGS = ["logger=csv", "callbacks.rich_progress_bar=null"]
ENV = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}


def _python(args: list[str], log: Path) -> None:
    """Run a project command; its output goes to ``log``; a failure stops the benchmark with the log's tail."""
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=ENV)
    if proc.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(args)} failed (exit {proc.returncode}); log {log}:\n{tail}")


def dev_wer_by_epoch(run_dir: Path) -> list[float]:
    (metrics,) = run_dir.glob("csv/**/metrics.csv")
    with metrics.open() as f:
        return [round(float(r["val/wer"]), 2) for r in csv.DictReader(f) if r.get("val/wer") not in (None, "")]


def num_parameters(ckpt: Path) -> int:
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return sum(v.numel() for k, v in state.items()
               if k.startswith("net.") and "running_" not in k and "num_batches_tracked" not in k)


def train(name: str, seed: int, force: bool) -> tuple[Path, dict]:
    run_dir = OUT / f"{name}_s{seed}"
    metrics = run_dir / "metrics.json"
    if not force and metrics.exists() and json.loads(metrics.read_text()).get("status") == "completed":
        print(f"  {name} seed {seed}: reusing {run_dir}", flush=True)
    else:
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        print(f"  {name} seed {seed}: training ...", flush=True)
        _python(["train.py", f"seed={seed}", *TRAIN_FLAGS, f"hydra.run.dir={run_dir}", *RUNS[name][1]],
                run_dir.parent / f"{run_dir.name}.train.log")
    return run_dir, json.loads(metrics.read_text())


def best_checkpoint(run_dir: Path, metrics: dict) -> Path:
    """The run's best checkpoint, found in its own folder (metrics.json's path is stale once a run moves)."""
    return run_dir / "checkpoints" / Path(metrics["best_checkpoint"]).name


def gloss_lm(run_dir: Path) -> Path:
    """The gloss 3-gram LM of the run's training split (the README's sign-ctc-lm, as python -m sign_ctc.cli.lm)."""
    from omegaconf import OmegaConf

    import sign_ctc  # noqa: F401  (registers the ${sign_ctc.cwd:} resolver that paths.root_dir uses)

    root = Path(OmegaConf.select(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), "data.root"))
    lm = root / "gloss3.arpa"
    if not lm.exists():
        _python(["-m", "sign_ctc.cli.lm", "--corpus-csv", str(root / "train.corpus.csv"), "--order", "3", "--out", str(lm)],
                run_dir / "lm.log")
    return lm


def decode(run_dir: Path, ckpt: Path) -> dict[str, float]:
    """Beam search without an LM on test; beam + LM tuned on dev (the tuning also decodes dev
    greedily and with the plain beam), then test."""
    eval_dir = run_dir / "eval_beam_test"
    _python(["eval.py", f"ckpt_path={ckpt}", "split=test", "decoding=beam", "decoding.lm_weight=0.0",
             "decoding.word_bonus=0.0", f"hydra.run.dir={eval_dir}"], run_dir / "eval_beam_test.log")
    out: dict[str, float] = {"beam_test": round(json.loads((eval_dir / "test_results.json").read_text())["test"]["wer"], 2)}
    eval_dir = run_dir / "eval_beam_lm_test"
    _python(["eval.py", f"ckpt_path={ckpt}", "split=test", "decoding=beam", f"decoding.lm_path={gloss_lm(run_dir)}",
             "decoding.tune=true", f"hydra.run.dir={eval_dir}"], run_dir / "eval_beam_lm_test.log")
    tuned = json.loads(ckpt.with_name(ckpt.stem + ".decoding.json").read_text())
    out["greedy_dev"] = round(tuned["greedy_dev_wer"], 2)
    out["beam_dev"] = round(tuned["plain_beam_dev_wer"], 2)
    out["beam_lm_dev"] = round(tuned["dev_wer"], 2)
    out["beam_lm_test"] = round(json.loads((eval_dir / "test_results.json").read_text())["test"]["wer"], 2)
    out["lm_weight"], out["word_bonus"] = tuned["lm_weight"], tuned["word_bonus"]
    return out


def measure(name: str, seed: int, force: bool, with_decoding: bool) -> dict:
    run_dir, metrics = train(name, seed, force)
    ckpt = best_checkpoint(run_dir, metrics)
    by_epoch = dev_wer_by_epoch(run_dir)
    entry = {
        "run": name, "what": RUNS[name][0], "overrides": RUNS[name][1], "seed": seed,
        "test_wer": round(metrics["test/wer"], 2), "best_dev_wer": round(metrics["best"], 2),
        "dev_wer_by_epoch": by_epoch,
        "first_epoch_dev_le_10": next((i + 1 for i, w in enumerate(by_epoch) if w <= 10.0), None),
        "train_seconds": round(metrics["wall_time_s"], 1), "epochs": metrics["epochs"],
        "parameters": num_parameters(ckpt), "checkpoint": str(ckpt.relative_to(REPO)),
    }
    if with_decoding:
        start = time.time()
        entry["decoding"] = decode(run_dir, ckpt)
        entry["decoding_seconds"] = round(time.time() - start, 1)
    return entry


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}


def save(results: dict) -> None:
    from sign_ctc.atomic import write_text_atomic

    write_text_atomic(RESULTS, json.dumps(results, indent=1) + "\n")


def summary(entries: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in RUNS:
        rows = [e for e in entries if e["run"] == name]
        if not rows:
            continue
        tests = [e["test_wer"] for e in rows]
        agg = {"seeds": [e["seed"] for e in rows], "test_wer_mean": round(statistics.fmean(tests), 2),
               "test_wer_std": round(statistics.stdev(tests), 2) if len(tests) > 1 else None,
               "test_wer_max": max(tests), "train_seconds_mean": round(statistics.fmean(e["train_seconds"] for e in rows), 1),
               "parameters": rows[0]["parameters"]}
        if all("decoding" in e for e in rows):
            for key in ("beam_dev", "beam_test", "beam_lm_dev", "beam_lm_test"):
                agg[f"{key}_mean"] = round(statistics.fmean(e["decoding"][key] for e in rows), 2)
            agg["greedy_dev_mean"] = round(statistics.fmean(e["decoding"]["greedy_dev"] for e in rows), 2)
        out[name] = agg
    return out


def table(results: dict) -> str:
    lines = ["| run | params | seeds | test WER mean ± std (max) | greedy dev / test | beam dev / test | "
             "beam + tuned LM dev / test | train time (s) |", "|---|---|---|---|---|---|---|---|"]
    for name, s in results.get("summary", {}).items():
        std = f" ± {s['test_wer_std']:.2f}" if s["test_wer_std"] is not None else ""
        dec = ("| {:.2f} / {:.2f} | {:.2f} / {:.2f} | {:.2f} / {:.2f} ".format(
            s["greedy_dev_mean"], s["test_wer_mean"], s["beam_dev_mean"], s["beam_test_mean"],
            s["beam_lm_dev_mean"], s["beam_lm_test_mean"]) if "beam_dev_mean" in s else "| – | – | – ")
        lines.append(f"| {name} | {s['parameters'] / 1e6:.2f}M | {len(s['seeds'])} | {s['test_wer_mean']:.2f}{std} "
                     f"({s['test_wer_max']:.2f}) {dec}| {s['train_seconds_mean']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 1, 2])
    parser.add_argument("--no-decoding", action="store_true", help="skip the beam / LM decodes")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--table", action="store_true", help="print the table of the results file and exit")
    args = parser.parse_args()
    os.chdir(REPO)  # the runs' relative paths (paths.root_dir) are the repository's
    results = load()
    if not args.table:
        OUT.mkdir(parents=True, exist_ok=True)
        results["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                              "cpus": os.cpu_count(), "python": platform.python_version()}
        for name in args.runs:
            for seed in args.seeds:
                entry = measure(name, seed, args.force, not args.no_decoding)
                entry["load_avg_1m"] = round(os.getloadavg()[0], 2)
                results["runs"] = [e for e in results["runs"] if (e["run"], e["seed"]) != (name, seed)] + [entry]
                results["summary"] = summary(results["runs"])
                save(results)
                print(f"  {name} seed {seed}: test WER {entry['test_wer']}% dev {entry['best_dev_wer']}% "
                      f"({entry['train_seconds']} s)", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
