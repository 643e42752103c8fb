"""Summarize a sweep: one row per job (its overrides -> best validation WER, epochs, time), best first.

    python -m sign_ctc.sweep_summary outputs/train/multiruns/2026-01-01_12-00-00-123456
    python -m sign_ctc.sweep_summary outputs/train/optuna/sign_ctc_i3d      # every launch of a study
    python -m sign_ctc.sweep_summary SWEEP_DIR --csv summary.csv --top 10

A job directory is any folder below SWEEP_DIR holding ``.hydra/overrides.yaml``. train.py writes
``metrics.json`` there when the job completes (best value of ``metric.name``, epochs, global step,
wall time, test WER); a job without it is listed as ``incomplete`` (killed, failed or still
running), last. The table is printed and written as CSV (default ``SWEEP_DIR/summary.csv``).

This module also holds :func:`optuna_storage`, the SQLite storage of ``hparams_search=optuna``,
and :class:`ResumableTPESampler`, its sampler.
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

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "overrides": self.overrides, "status": self.status, "metric": self.metric,
                "best": self.best, "test_wer": self.test_wer, "epochs": self.epochs,
                "global_step": self.global_step, "wall_time_s": self.wall_time_s}


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")
                  if ".submitit" not in p.parts)


def read_job(job_dir: Path, sweep_dir: Path) -> JobRow:
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    overrides = [o for o in overrides if not o.startswith(IGNORED_PREFIXES)]
    metrics_file = job_dir / "metrics.json"
    info: dict[str, Any] = {}
    if metrics_file.is_file():
        try:
            info = json.loads(metrics_file.read_text())
        except json.JSONDecodeError:
            info = {}
    best = info.get("best")
    if best is not None and not math.isfinite(float(best)):
        best = None
    return JobRow(job=str(job_dir.relative_to(sweep_dir)) or ".", overrides=" ".join(overrides),
                  status=info.get("status", "incomplete"), metric=info.get("metric", ""),
                  best=None if best is None else float(best), test_wer=info.get("test/wer"),
                  epochs=info.get("epochs"), global_step=info.get("global_step"),
                  wall_time_s=info.get("wall_time_s"))


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
    parser = argparse.ArgumentParser(prog="python -m sign_ctc.sweep_summary", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--csv", type=Path, default=None, help="where to write the CSV (default SWEEP_DIR/summary.csv)")
    parser.add_argument("--top", type=int, default=None, help="print only the best N jobs")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"not a directory: {args.sweep_dir}")
    rows = summarize(args.sweep_dir)
    if not rows:
        print(f"no job directories (with .hydra/overrides.yaml) under {args.sweep_dir}", file=sys.stderr)
        return 1
    out = args.csv or args.sweep_dir / "summary.csv"
    write_text_atomic(out, to_csv(rows))
    print(render(rows[: args.top] if args.top else rows))
    print(f"CSV: {out}")
    return 0


def optuna_storage(path: str, study_name: str | None = None) -> str:
    """SQLite storage URL for the Optuna sweeper; makes the folder, and recovers an interrupted study.

    Trials that an interrupted launch left RUNNING are marked FAIL and their parameters are queued,
    so the next launch runs them first. (Only one launch may use a study at a time.)
    """
    db = Path(path).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{db}"
    if study_name and db.is_file():
        import optuna
        from optuna.trial import TrialState

        try:
            study = optuna.load_study(study_name=study_name, storage=url)
        except KeyError:  # no such study yet
            return url
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
            if trial.params:
                study.enqueue_trial(trial.params)
            print(f"optuna: trial {trial.number} of study {study_name!r} was interrupted; re-queued {trial.params}",
                  file=sys.stderr)
    return url


class ResumableTPESampler:
    """Optuna's TPESampler, seeded with ``seed + N`` where N = trials already in the study at this launch.

    A TPESampler seeded with the same ``seed`` on every launch replays its random draws: a search
    resumed from its storage proposed again the parameters of trials it had finished (the first
    ``n_startup_trials`` proposals are random). N is the number of the first trial this launch
    runs: the trials (finished or failed) the study held when the launch began, 0 for a new study,
    which then gets exactly the proposals of ``TPESampler(seed=seed)``. So the same storage always
    gives the same seed, and a launch that proposed parameters leaves more trials behind: the next
    one draws from another random stream. The TPESampler is made on first use, when N is known;
    optuna's sampler methods are forwarded to it. ``seed=None``: unseeded, as TPESampler.
    """

    def __init__(self, seed: int | None = None, **tpe_kwargs: Any):
        self.seed = seed
        self.tpe_kwargs = tpe_kwargs
        self.derived_seed: int | None = None
        self._sampler: Any = None

    def sampler(self, trial: Any) -> Any:
        """The TPESampler, made for the first trial this launch asks (``trial.number`` = N)."""
        if self._sampler is None:
            from optuna.samplers import TPESampler

            if self.seed is not None:
                self.derived_seed = self.seed + trial.number
                if trial.number:
                    print(f"optuna: resuming a study of {trial.number} trial(s): TPE sampler seed "
                          f"{self.seed} + {trial.number} = {self.derived_seed}", file=sys.stderr)
            self._sampler = TPESampler(seed=self.derived_seed, **self.tpe_kwargs)
        return self._sampler

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self.sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        return self.sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self.sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:  # optuna >= 3
        sampler = self.sampler(trial)
        if hasattr(sampler, "before_trial"):
            sampler.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.sampler(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        if self._sampler is not None:
            self._sampler.reseed_rng()


if __name__ == "__main__":
    sys.exit(main())
