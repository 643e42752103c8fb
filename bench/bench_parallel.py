"""Benchmark trainings that share the machine: one alone, two and four side by side, before and after.

Every process is the same tiny whole training, ``python train.py trainer.max_epochs=2`` on 48
sentences of the embedded synthetic corpus (issue 30's case), started together and timed from the
outside (wall, imports included) and from its own log (the ``epoch k/2 ... X s`` lines of
callbacks/epoch_log.py). Three settings, measured in the same run, interleaved group by group so all
see the same background load:

- ``before``: the OpenMP runtime's default wait (``GOMP_SPINCOUNT=300000``, libgomp's default spin
  when no policy is set: train.py keeps a user's own value, so this is the old behaviour exactly);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` alone (idle threads sleep at once: no collapse, but a run
  alone pays a wake-up per parallel region);
- ``after``: nothing set; train.py sets its policy before torch loads (``run.backend.POLITE_WAIT``:
  libgomp spins 3000 iterations, then sleeps).

Neither sets OMP_NUM_THREADS: each process takes every usable core, as independent runs do. The
figure is each setting's mean epoch time with n side by side over its time alone (goal: two side by
side <= 2.5x one alone, after). The load average before every group is recorded: other work on the
machine changes these figures.

    python bench/bench_parallel.py [--counts 1 2 4] [--timeout 1200]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, REPO, figure, machine, write_result  # noqa: E402

SENTENCES = 48
COMMAND = ["train.py", "trainer.max_epochs=2", f"data.corpus.train={SENTENCES}", "data.corpus.dev=8",
           "data.corpus.test=8", "logger=none", "test=false", "callbacks.rich_progress_bar=null"]
SETTINGS = {"before": {"GOMP_SPINCOUNT": "300000"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "after": {}}
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ \(step \d+\):.*, ([\d.]+) s, [\d.]+ samples/s")
GOAL_RATIO = 2.5


def _env(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return {**env, "PYTHONPATH": str(REPO), **SETTINGS[setting]}


def _command(run_dir: Path, cache: Path) -> list[str]:
    return [sys.executable, *COMMAND, f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}"]


def run_group(setting: str, count: int, tmp: Path, cache: Path, timeout: int) -> dict:
    """``count`` trainings started together; each one's wall time and epoch times."""
    load = round(os.getloadavg()[0], 2)
    dirs = [tmp / f"{setting}_{count}_{i}" for i in range(count)]
    start = time.perf_counter()
    procs = [subprocess.Popen(_command(d, cache), cwd=REPO, env=_env(setting), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for d in dirs]
    walls = []
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        walls.append(time.perf_counter() - start)
        if proc.returncode:
            sys.exit(f"bench_parallel: a training failed ({setting}, {count} side by side):\n{err[-3000:]}")
    epochs = []
    for d in dirs:
        times = [float(m.group(2)) for m in EPOCH_LINE.finditer((d / "train.log").read_text())]
        if not times:
            sys.exit(f"bench_parallel: no epoch lines in {d / 'train.log'}")
        epochs.append(times)
    epoch_mean = statistics.mean(t for times in epochs for t in times)
    return {"setting": setting, "side_by_side": count, "load_average_before": load,
            "epoch_s_mean": round(epoch_mean, 2), "epoch_s": [[round(t, 2) for t in ts] for ts in epochs],
            "process_wall_s": [round(w, 2) for w in walls], "group_wall_s": round(max(walls), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4], help="processes side by side")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per process")
    args = parser.parse_args()
    if 1 not in args.counts:
        parser.error("--counts must include 1 (the runs alone are the baseline)")
    info = machine()
    cache = CACHE / "parallel"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_parallel_") as tmp_name:
        tmp = Path(tmp_name)
        # The corpus and its packed stores are built by a first, untimed run.
        warm = subprocess.run(_command(tmp / "warm_up", cache) + ["trainer.max_epochs=1"], cwd=REPO,
                              env=_env("after"), capture_output=True, text=True, timeout=args.timeout)
        if warm.returncode:
            sys.exit(f"bench_parallel: the warm-up training failed:\n{warm.stderr[-3000:]}")
        for count in sorted(args.counts):
            for setting in SETTINGS:
                row = run_group(setting, count, tmp, cache, args.timeout)
                rows.append(row)
                print(f"{setting:7s} {count} side by side: epoch {row['epoch_s_mean']:.1f} s (mean), "
                      f"processes {row['group_wall_s']:.1f} s wall, load average before {row['load_average_before']}",
                      flush=True)
    alone = {r["setting"]: r for r in rows if r["side_by_side"] == 1}
    figures = []
    for row in rows:
        base = alone[row["setting"]]
        row["epoch_ratio_to_alone"] = round(row["epoch_s_mean"] / base["epoch_s_mean"], 3)
        row["wall_ratio_to_alone"] = round(row["group_wall_s"] / base["group_wall_s"], 3)
        if row["side_by_side"] > 1:
            goal = row["side_by_side"] == 2 and row["setting"] == "after"
            figures.append(figure(f"epoch time, {row['side_by_side']} side by side ({row['setting']})",
                                  row["epoch_s_mean"], "s", baseline=base["epoch_s_mean"],
                                  baseline_name=f"one alone ({row['setting']})",
                                  goal=f"<= {GOAL_RATIO}x one alone" if goal else "",
                                  met=row["epoch_ratio_to_alone"] <= GOAL_RATIO if goal else None,
                                  note=f"processes {row['group_wall_s']} s wall ({row['wall_ratio_to_alone']}x)"))
    for setting in ("passive", "after"):
        figures.append(figure(f"epoch time alone, {setting} over before", alone[setting]["epoch_s_mean"], "s",
                              baseline=alone["before"]["epoch_s_mean"], baseline_name="one alone (before)",
                              note="what the wait policy costs or gains a run alone (the machine's other load "
                                   "included: see the load averages)"))
    for f in figures:
        print(f"{f['name']}: {f['value']:.1f} s, {f['ratio']}x {f['baseline_name']}"
              + (f" (goal {f['goal']}: {'met' if f['met'] else 'NOT met'})" if f["goal"] else ""))
    result = {"figures": figures, "rows": rows, "sentences": SENTENCES, "settings": SETTINGS,
              "usable_cores": len(os.sched_getaffinity(0)), "command": " ".join(["python", *COMMAND])}
    write_result("parallel", result, info)


if __name__ == "__main__":
    main()
