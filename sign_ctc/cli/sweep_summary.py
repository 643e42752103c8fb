"""Summarize a sweep: one row per job (its overrides -> best validation WER, epochs, time), best first.

    sign-ctc-sweep-summary outputs/train/multiruns/2026-01-01_12-00-00-123456
    sign-ctc-sweep-summary outputs/train/optuna/sign_ctc_i3d      # every launch of a study
    sign-ctc-sweep-summary SWEEP_DIR --csv summary.csv --top 10

A job directory is any folder below SWEEP_DIR holding ``.hydra/overrides.yaml``. train.py writes
``metrics.json`` there when the job completes (best value of ``metric.name``, epochs, global step,
wall time, test WER); a job without it is listed as ``incomplete`` (killed, failed or still
running), last. The table is printed and written as CSV (default ``SWEEP_DIR/summary.csv``).

The Optuna sweeper's storage and sampler live in :mod:`sign_ctc.run.sweeps`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sign_ctc.atomic import write_text_atomic
from sign_ctc.cli import guarded

# Overrides that say how a job was run, not what it is.
IGNORED_PREFIXES = ("ckpt_path=", "hydra.", "paths.")


@dataclass
class JobRow:
    job: str
    overrides: str
    status: str
    metric: str
    best: float | None
    test_wer: float | None
    epochs: int | None
    global_step: int | None
    wall_time_s: float | None
    problem: str | None = None  # why the job's files could not be read (status "unreadable")

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "overrides": self.overrides, "status": self.status, "metric": self.metric,
                "best": self.best, "test_wer": self.test_wer, "epochs": self.epochs,
                "global_step": self.global_step, "wall_time_s": self.wall_time_s, "problem": self.problem}


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")
                  if ".submitit" not in p.parts)


def _read_overrides(path: Path) -> tuple[list[str], str | None]:
    """The job's command-line overrides, or ([], what is wrong with the file)."""
    try:
        overrides = yaml.safe_load(path.read_text()) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return [], f"{path}: unreadable ({' '.join(str(exc).split())})"
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return [], f"{path}: not a list of overrides (a {type(overrides).__name__})"
    return overrides, None


def read_job(job_dir: Path, sweep_dir: Path) -> JobRow:
    """One job's row. A job whose files cannot be read keeps its row, with status ``unreadable`` and
    what is wrong in ``problem``: one damaged folder must not hide the sweep's other results."""
    overrides, problem = _read_overrides(job_dir / ".hydra" / "overrides.yaml")
    overrides = [o for o in overrides if not o.startswith(IGNORED_PREFIXES)]
    metrics_file = job_dir / "metrics.json"
    info: dict[str, Any] = {}
    if metrics_file.is_file():
        try:
            info = json.loads(metrics_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = problem or f"{metrics_file}: unreadable ({exc})"
        if not isinstance(info, dict):
            problem, info = problem or f"{metrics_file}: not a JSON object", {}
    best = info.get("best")
    if best is not None and not math.isfinite(float(best)):
        best = None
    return JobRow(job=str(job_dir.relative_to(sweep_dir)) or ".", overrides=" ".join(overrides),
                  status="unreadable" if problem else info.get("status", "incomplete"), metric=info.get("metric", ""),
                  best=None if best is None else float(best), test_wer=info.get("test/wer"),
                  epochs=info.get("epochs"), global_step=info.get("global_step"),
                  wall_time_s=info.get("wall_time_s"), problem=problem)


def summarize(sweep_dir: str | Path) -> list[JobRow]:
    """Every job of the sweep, best first (lowest best value; incomplete jobs last)."""
    sweep_dir = Path(sweep_dir)
    rows = [read_job(d, sweep_dir) for d in job_dirs(sweep_dir)]
    return sorted(rows, key=lambda r: (r.best is None, r.best if r.best is not None else 0.0, r.job))


def to_csv(rows: list[JobRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(JobRow.__dataclass_fields__))
    writer.writeheader()
    writer.writerows(r.as_dict() for r in rows)
    return buf.getvalue()


def render(rows: list[JobRow]) -> str:
    def fmt(v: Any, spec: str = "") -> str:
        return "-" if v is None else format(v, spec)

    metric = next((r.metric for r in rows if r.metric), "best")
    header = ["#", "job", f"best {metric}", "test/wer", "epochs", "time", "status", "overrides"]
    table = [[str(i + 1), r.job, fmt(r.best, ".2f"), fmt(r.test_wer, ".2f"), fmt(r.epochs),
              "-" if r.wall_time_s is None else f"{r.wall_time_s / 60:.1f} min", r.status, r.overrides]
             for i, r in enumerate(rows)]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    done = sum(r.status == "completed" for r in rows)
    lines.append(f"{len(rows)} job(s): {done} completed, {len(rows) - done} incomplete")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sign-ctc-sweep-summary", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--csv", type=Path, default=None, help="where to write the CSV (default SWEEP_DIR/summary.csv)")
    parser.add_argument("--top", type=int, default=None, help="print only the best N jobs")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"not a directory: {args.sweep_dir}")
    return guarded("sweep-summary", _summarize, args)


def _summarize(args: argparse.Namespace) -> int:
    rows = summarize(args.sweep_dir)
    if not rows:
        print(f"no job directories (with .hydra/overrides.yaml) under {args.sweep_dir}", file=sys.stderr)
        return 1
    for row in rows:
        if row.problem:
            print(f"sweep-summary: warning: job {row.job}: {row.problem}", file=sys.stderr)
    out = args.csv or args.sweep_dir / "summary.csv"
    write_text_atomic(out, to_csv(rows))
    print(render(rows[: args.top] if args.top else rows))
    print(f"CSV: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
