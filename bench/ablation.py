"""Teacher ablations: short runs of train.py with one change each, dev WER per epoch and time.

    python bench/ablation.py --epochs 4 [--only NAME ...]

Each run is the real `python train.py` with the default config plus its overrides, for `--epochs`
epochs of the 12-epoch schedule (`model.scheduler.T_max=12`, the default until 2026-11-28 and kept so
the rows stay comparable; `make train` now runs 10 epochs), so a row shows where the
default recipe would be after that many epochs. Results go to bench/results/ablation.json (one
entry per run, written after each run) and `python bench/ablation.py --table` prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "ablation.json"

# name -> (what it changes, overrides)
# The rows measured before body_per_frame became the default say so explicitly (SEQ), so every row
# reproduces with today's defaults.
SEQ = "normalization.body_per_frame=false"
# Rows measured before the auxiliary CTC head became the default (2026-11-27) say so too (NO_AUX).
NO_AUX = ["model.net.aux_ctc=false", "model.aux_ctc_weight=0.0"]
AUX = ["model.net.aux_ctc=true", "model.aux_ctc_weight=1.0"]
# And rows measured before the shortcuts around the Inception blocks became the default (NO_RES).
NO_RES = "model.net.residual=false"
RUNS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("former defaults (global norm., body-relative per sequence, all blocks)", [NO_RES, SEQ, *NO_AUX]),
    "per_frame_body": ("body-relative per frame", [NO_RES, "normalization.body_per_frame=true", *NO_AUX]),
    "no_temporal": ("without the temporal block", [NO_RES, SEQ, *NO_AUX, "model.net.modalities=[pose,hands,face]"]),
    "aux_ctc": ("auxiliary CTC head on the conv output, weight 1", [NO_RES, SEQ, *AUX]),
    "no_std": ("body-relative per sequence, no per-channel standardization",
               [NO_RES, SEQ, *NO_AUX, "normalization=none", "normalization.body_relative=true"]),
    "masked_bn": ("BatchNorm statistics over valid frames only", [NO_RES, SEQ, *NO_AUX, "model.net.masked_bn=true"]),
    "per_frame_aux": ("per-frame body + aux CTC (the default until 2026-11-27 20:00)",
                      [NO_RES, "normalization.body_per_frame=true", *AUX]),
    "onecycle": ("per-frame body, one-cycle LR per step (peak 1e-3, 10% warm-up)",
                 [NO_RES, *NO_AUX, "model.scheduler._target_=torch.optim.lr_scheduler.OneCycleLR", "~model.scheduler.T_max",
                  "~model.scheduler.eta_min", "+model.scheduler.max_lr=1e-3", "+model.scheduler.pct_start=0.1",
                  "model.scheduler_interval=step"]),
    "per_frame_no_temporal": ("per-frame body, without the temporal block",
                              [NO_RES, *NO_AUX, "model.net.modalities=[pose,hands,face]"]),
    "per_frame_no_std": ("per-frame body, no per-channel standardization",
                         [NO_RES, *NO_AUX, "normalization=none", "normalization.body_relative=true",
                          "normalization.body_per_frame=true"]),
    "residual": ("per-frame body + aux CTC + shortcuts around the Inception blocks (the default now)",
                 ["model.net.residual=true"]),
    # One change each from today's defaults (shortcuts, aux CTC, per-frame body).
    "blank_bias": ("defaults + blank bias initialised to 2", ["model.net.blank_bias=2.0"]),
    "lr_3e-3": ("defaults + peak learning rate 3e-3 (cosine per epoch)", ["model.optimizer.lr=3e-3"]),
    "dropout_0.3": ("defaults + dropout 0.3 (fusion, before and after the BiLSTM)", ["model.net.dropout=0.3"]),
    "wd_1e-2": ("defaults + weight decay 1e-2", ["model.optimizer.weight_decay=1e-2"]),
    "batch_16": ("defaults + batch size 16", ["data.batch_size=16"]),
    "no_clip": ("defaults without gradient clipping (norm 1 by default)", ["trainer.gradient_clip_val=null"]),
    "static_only": ("defaults without the temporal block (pose, hands, face only)",
                    ["model.net.modalities=[pose,hands,face]"]),
}


def read_epochs(run_dir: Path) -> list[float]:
    """val/wer per epoch from the CSV logger."""
    (metrics,) = run_dir.glob("csv/**/metrics.csv")
    out = []
    with metrics.open() as f:
        for row in csv.DictReader(f):
            if row.get("val/wer") not in (None, ""):
                out.append(round(float(row["val/wer"]), 2))
    return out


def run(name: str, overrides: list[str], epochs: int, seed: int) -> dict:
    run_dir = REPO / "outputs" / "ablation" / f"{name}_s{seed}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    cmd = [sys.executable, "train.py", f"trainer.max_epochs={epochs}", "model.scheduler.T_max=12", "logger=csv",
           "test=false", "callbacks.rich_progress_bar=null", "callbacks.early_stopping=null", f"seed={seed}",
           f"hydra.run.dir={run_dir}", *overrides]
    if "model.scheduler_interval=step" in overrides:
        cmd.remove("model.scheduler.T_max=12")
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "WANDB_SILENT": "true"})
    seconds = time.time() - start
    if proc.returncode:
        return {"name": name, "error": proc.stderr[-2000:], "overrides": overrides}
    wers = read_epochs(run_dir)
    return {"name": name, "overrides": overrides, "seed": seed, "epochs": epochs, "dev_wer_by_epoch": wers,
            "dev_wer_last": wers[-1] if wers else None, "seconds": round(seconds, 1),
            "load": round(os.getloadavg()[0], 2)}


def table(results: dict) -> str:
    lines = ["| run | change | dev WER by epoch | last | time (s) |", "|---|---|---|---|---|"]
    for key, r in results.items():
        if "error" in r:
            lines.append(f"| {key} | {RUNS.get(r['name'], ('',))[0]} | failed | | |")
            continue
        seconds = r["seconds"] if r.get("seconds") is not None else "– (first epochs of a longer run)"
        lines.append(f"| {key} | {RUNS.get(r['name'], ('',))[0]} | {' → '.join(str(w) for w in r['dev_wer_by_epoch'])} "
                     f"| {r['dev_wer_last']} | {seconds} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--extra", nargs="*", default=[], help="NAME=override;override for a combined run")
    p.add_argument("--table", action="store_true")
    args = p.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.table:
        print(table(results))
        return
    for spec in args.extra:
        name, _, ov = spec.partition("=")
        RUNS[name] = (name.replace("+", " + "), ov.split(";"))
    for name in args.only or list(RUNS):
        r = run(name, RUNS[name][1], args.epochs, args.seed)
        results[f"{name}_s{args.seed}_e{args.epochs}"] = r
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(RESULTS)
        print(name, r.get("dev_wer_by_epoch"), r.get("seconds"), r.get("error", "")[-300:], flush=True)


if __name__ == "__main__":
    main()
