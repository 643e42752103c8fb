"""Does a change (a reorganisation, a refactor) leave every figure as it was? Run the same commands at
two revisions, each from its own clean checkout, and compare what they produce exactly.

    python bench/same_figures.py --base b422fa8            # base revision vs the working tree's HEAD
    python bench/same_figures.py --base b422fa8 --head main

For each revision a ``git worktree`` is checked out under ``.cache/bench/same_figures/<rev>`` and the
commands run there with this interpreter (``PYTHONPATH`` = that checkout, one torch thread, no step
floor), so each revision's own code runs:

- the teacher, the student, and the student distilled from the *base* teacher: a short training
  (``trainer.max_epochs=1`` on 48 generated sentences): every tensor of ``last.ckpt``'s state dict is
  compared with ``torch.equal``, and every figure of ``metrics.json`` (WER, losses, feature statistics; not times);
- with a trained checkpoint (``--ckpt``; default: the base revision's 1-epoch teacher): ``eval.py`` on its
  test split (``test_results.json`` and ``test_hyp.ctm``, compared exactly) and ``sign-ctc-predict`` on a
  real ``.pose`` file of tests/data (the printed glosses).

A pure move changes none of them; the result (``bench/results/same_figures.json``) lists every check.
Training results depend on the thread count and the machine, so both revisions run here, in one
invocation, with the same settings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

REPO = common.REPO
WORK = common.CACHE / "same_figures"
SMALL = ["data.corpus.train=48", "data.corpus.dev=12", "data.corpus.test=12", "data.num_workers=0",
         "data.batch_size=8", "data.eval_batch_size=12", "trainer.max_epochs=1", "logger=none",
         "callbacks.rich_progress_bar=null", "seed=1234"]
REAL_POSE = "tests/data/signer_holistic_97f.pose"


def checkout(rev: str) -> Path:
    """A clean worktree of ``rev`` (reused when it is already at that commit)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    path = WORK / sha[:12]
    if not (path / ".git").exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha], check=True,
                       capture_output=True)
    return path


def run(tree: Path, args: list[str], log: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "SIGN_CTC_MIN_STEPS": "0",
           "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed at {tree.name} (exit {done.returncode}): see {log}")
    return done.stdout


def train(tree: Path, name: str, overrides: list[str], out: Path) -> Path:
    run_dir = out / name
    if not (run_dir / "metrics.json").exists():
        run(tree, ["train.py", *SMALL, f"hydra.run.dir={run_dir}", f"paths.cache_dir={out / 'cache'}", *overrides],
            out / f"{name}.log")
    return run_dir


def figures(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics that are results (WER, losses, feature statistics), not times or speeds."""
    return {k: v for k, v in metrics.items() if "time" not in k and "per_sec" not in k}


def same_checkpoint(a: Path, b: Path) -> dict[str, Any]:
    import torch

    sa = torch.load(a / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    sb = torch.load(b / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    differ = sorted(k for k in sa.keys() | sb.keys() if k not in sa or k not in sb or not torch.equal(sa[k], sb[k]))
    wa, wb = (figures(json.loads((r / "metrics.json").read_text())["metrics"]) for r in (a, b))
    return {"tensors": len(sa), "tensors_differing": differ, "metrics_base": wa, "metrics_head": wb,
            "same": not differ and wa == wb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the revision before the change")
    parser.add_argument("--head", default="HEAD", help="the revision after it (default HEAD)")
    parser.add_argument("--ckpt", type=Path, help="a trained checkpoint for eval and predict (default: the base "
                        "revision's 1-epoch teacher)")
    args = parser.parse_args()
    info = common.machine(sys.argv)  # the load average at the start
    trees = {"base": checkout(args.base), "head": checkout(args.head)}
    outs = {k: WORK / f"runs_{t.name}" for k, t in trees.items()}
    for out in outs.values():
        out.mkdir(parents=True, exist_ok=True)
    checks: dict[str, Any] = {}
    runs: dict[str, dict[str, Path]] = {k: {} for k in trees}
    for side, tree in trees.items():
        print(f"{side} ({tree.name}): training ...", flush=True)
        runs[side]["teacher"] = train(tree, "teacher", [], outs[side])
        runs[side]["student"] = train(tree, "student", ["model=student"], outs[side])
    base_teacher = runs["base"]["teacher"] / "checkpoints" / "last.ckpt"
    for side, tree in trees.items():
        runs[side]["distilled"] = train(tree, "distilled", ["model=student", "distillation=frame_kl",
                                                            f"distillation.teacher_ckpt={base_teacher}"], outs[side])
    for name in ("teacher", "student", "distilled"):
        checks[name] = same_checkpoint(runs["base"][name], runs["head"][name])
        print(f"  {name}: {'same' if checks[name]['same'] else 'DIFFERENT'} ({checks[name]['tensors']} tensors, "
              f"test WER {checks[name]['metrics_head'].get('test/wer')})", flush=True)
    ckpt = args.ckpt.resolve() if args.ckpt else base_teacher
    printed, evaluated = {}, {}
    for side, tree in trees.items():
        printed[side] = run(tree, ["-m", "sign_ctc.cli.predict", f"ckpt_path={ckpt}", f"pose={REAL_POSE}",
                                   f"paths.output_dir={outs[side] / 'predict'}"], outs[side] / "predict.log")
        eval_dir = outs[side] / "eval"
        run(tree, ["eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={eval_dir}"], outs[side] / "eval.log")
        evaluated[side] = (json.loads((eval_dir / "test_results.json").read_text())["test"],
                           (eval_dir / "test_hyp.ctm").read_text())
    checks["eval"] = {"test": evaluated["head"][0], "same": evaluated["base"] == evaluated["head"]}
    print(f"  eval: {'same' if checks['eval']['same'] else 'DIFFERENT'} (test {checks['eval']['test']})", flush=True)
    checks["predict_real_pose"] = {"base": printed["base"].strip(), "head": printed["head"].strip(),
                                   "same": printed["base"] == printed["head"]}
    print(f"  predict on {REAL_POSE}: {'same' if checks['predict_real_pose']['same'] else 'DIFFERENT'}", flush=True)
    revs = {k: t.name for k, t in trees.items()}
    result = {"benchmark": "same_figures", "revisions": revs, "checks": checks,
              "all_same": all(c["same"] for c in checks.values())}
    common.write_result("same_figures", result, info)
    print(f"all the same: {result['all_same']}")
    if not result["all_same"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
