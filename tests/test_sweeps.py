"""Sweeps through the real command line: `python train.py -m ...` with the basic, joblib and submitit-local
launchers, the Optuna search with its SQLite storage, re-running an interrupted sweep, the sweep summary."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from tests.helpers import CONF, ROOT, SMALL_CORPUS
from tests.test_wandb import TINY, read_wandb_run

# One short epoch per job, no test pass: what a sweep needs, as fast as possible.
JOB = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "test=false",
       "callbacks.feature_diagnostics=null", *SMALL_CORPUS, "data.batch_size=2", "data.eval_batch_size=4", *TINY]
# The same, with the configs' default DataLoader workers (data.num_workers=auto: one per core) instead of none.
JOB_WORKERS = [a for a in JOB if not a.startswith("data.num_workers=")]


def run_train(args: list[str], cache_dir: Path, log_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, "train.py", *args, f"paths.cache_dir={cache_dir}",
                           f"paths.log_dir={log_dir}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def job_metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def wandb_run(job_dir: Path) -> dict:
    (offline,) = (job_dir / "wandb").glob("offline-run-*")
    return read_wandb_run(offline)


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory, cache_dir, small_corpus) -> Path:
    """Two jobs with the basic launcher, W&B offline."""
    sweep = tmp_path_factory.mktemp("sweeps") / "lr_sweep"
    run_train(["-m", "model.optimizer.lr=1e-3,3e-4", f"hydra.sweep.dir={sweep}", "logger=wandb", *JOB], cache_dir,
              sweep.parent)
    return sweep


@pytest.mark.slow  # ~30-60 s: a 2-job sweep through the command line
def test_multirun_jobs_get_own_dirs_wandb_runs_and_one_group(basic_sweep, capsys):
    jobs = [basic_sweep / "0", basic_sweep / "1"]
    lrs = []
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        lrs += [o for o in overrides if o.startswith("model.optimizer.lr=")]
        info = job_metrics(job)
        assert info["status"] == "completed" and info["epochs"] == 1 and 0 <= info["best"] <= 100
    assert lrs == ["model.optimizer.lr=0.001", "model.optimizer.lr=0.0003"]
    runs = [wandb_run(job)["run"] for job in jobs]
    assert runs[0]["id"] != runs[1]["id"]
    assert runs[0]["group"] == runs[1]["group"] == "lr_sweep"

    from sign_ctc.cli.sweep_summary import main, summarize

    rows = summarize(basic_sweep)
    assert [r.best for r in rows] == sorted(job_metrics(j)["best"] for j in jobs)
    assert main([str(basic_sweep)]) == 0
    out = capsys.readouterr().out
    assert "model.optimizer.lr=0.001" in out and "2 job(s): 2 completed" in out
    lines = (basic_sweep / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("job,overrides,status,metric,best") and len(lines) == 3


def test_default_run_and_sweep_dirs_never_collide():
    GlobalHydra.instance().clear()
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True)
    assert "%f" in cfg.hydra.run._get_node("dir")._value() and "%f" in cfg.hydra.sweep._get_node("dir")._value()
    assert cfg.hydra.sweep._get_node("subdir")._value() == "${hydra.job.num}"


def test_summary_lists_incomplete_jobs_last(tmp_path):
    from sign_ctc.cli.sweep_summary import summarize

    for num, best in [(0, 30.0), (1, None), (2, 12.5)]:
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- model.net.dropout=0.{num}\n- ckpt_path=last\n")
        if best is not None:
            (job / "metrics.json").write_text(json.dumps({"status": "completed", "metric": "val/wer", "best": best,
                                                          "epochs": 3, "wall_time_s": 60}))
    rows = summarize(tmp_path)
    assert [(r.job, r.status) for r in rows] == [("2", "completed"), ("0", "completed"), ("1", "incomplete")]
    assert rows[0].overrides == "model.net.dropout=0.2"  # how it was run (ckpt_path) is left out


def test_summary_keeps_going_past_a_damaged_job(tmp_path, capsys):
    """A corrupt overrides.yaml or metrics.json marks that job unreadable (one warning line naming the
    file); the other jobs are still ranked and written."""
    from sign_ctc.cli.sweep_summary import main

    for num, overrides, metrics in [(0, "- seed=1\n", '{"status": "completed", "best": 20.0}'),
                                    (1, "- seed=2\n  bad: [\n", '{"status": "completed", "best": 5.0}'),
                                    (2, "- seed=3\n", "{not json")]:
        (tmp_path / str(num) / ".hydra").mkdir(parents=True)
        (tmp_path / str(num) / ".hydra" / "overrides.yaml").write_text(overrides)
        (tmp_path / str(num) / "metrics.json").write_text(metrics)
    assert main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("sweep-summary: warning: job ") for w in warnings)
    assert "1/.hydra/overrides.yaml: unreadable" in warnings[0] and "2/metrics.json: unreadable" in warnings[1]
    assert "Traceback" not in captured.err and "3 job(s): 1 completed, 2 incomplete" in captured.out
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["job"], r["status"]) for r in rows] == [("1", "unreadable"), ("0", "completed"), ("2", "unreadable")]


def test_slurm_launcher_config_composes():
    GlobalHydra.instance().clear()
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.tasks_per_node == 4 and launcher.array_parallelism == 8
    assert launcher.max_num_timeout == 3 and launcher.timeout_min == 240


def test_optuna_config_composes():
    GlobalHydra.instance().clear()
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True, overrides=["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.sampler._target_.endswith("TPESampler")
    assert sweeper.direction == "minimize" and cfg.metric.mode == "min"
    assert set(sweeper.params) == {"model.optimizer.lr", "model.optimizer.weight_decay", "model.net.dropout",
                                   "model.net.fusion_dim", "model.net.lstm_hidden", "normalization"}
    assert sweeper.storage._target_ == "sign_ctc.run.sweeps.optuna_storage"


# Python 3.13 has no SQLAlchemy 1.4 wheel, so pyproject installs the Optuna sweeper on 3.11/3.12 only; a
# Python whose import of the plugin fails is what this interpreter sees with the plugin blocked.
BLOCKED = ("import sys; sys.modules[{name!r}] = None; sys.argv = ['train.py', *sys.argv[1:]]; "
           "from sign_ctc.cli.train import main; main()")


def test_optuna_search_without_the_sweeper_is_one_clear_error(tmp_path):
    from sign_ctc.run.sweeps import SWEEPER_PLUGIN, optuna_sweeper_error

    assert optuna_sweeper_error(["hparams_search=optuna"]) is None  # installed here
    assert optuna_sweeper_error(["model=student"]) is None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", BLOCKED.format(name=SWEEPER_PLUGIN), "hparams_search=optuna",
                           f"paths.log_dir={tmp_path}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("train: error: hparams_search=optuna needs the Optuna sweeper") and "-m key=a,b" in line
    assert list(tmp_path.iterdir()) == []  # refused before Hydra made a run folder


def test_ddp_under_multirun_is_refused_with_a_clear_error(make_cfg, monkeypatch):
    import types

    import hydra as hydra_pkg
    from hydra.types import RunMode

    from sign_ctc.run import trainer_setup

    trainer = hydra_pkg.utils.instantiate(make_cfg("trainer=ddp", "trainer.accelerator=cpu").trainer,
                                          sync_batchnorm=False)
    trainer_setup.check_launch(trainer)  # a single run: Lightning re-launches this command for rank 1, fine
    multirun = types.SimpleNamespace(initialized=lambda: True, get=lambda: types.SimpleNamespace(mode=RunMode.MULTIRUN))
    monkeypatch.setattr(trainer_setup, "HydraConfig", multirun)
    from sign_ctc.errors import ConfigError

    with pytest.raises(ConfigError, match="ddp_spawn"):
        trainer_setup.check_launch(trainer)


@pytest.mark.slow
def test_interrupted_multirun_rerun_finishes_only_missing_jobs(basic_sweep, cache_dir):
    """Job 1 'killed' (no metrics.json): the same sweep with its dir and ckpt_path=last re-runs only job 1."""
    done_before = (basic_sweep / "0" / "metrics.json").read_text()
    (basic_sweep / "1" / "metrics.json").unlink()
    proc = run_train(["-m", "model.optimizer.lr=1e-3,3e-4", f"hydra.sweep.dir={basic_sweep}", "logger=wandb", *JOB,
                      "ckpt_path=last"], cache_dir, basic_sweep.parent)
    assert "already completed" in proc.stdout + proc.stderr
    assert (basic_sweep / "0" / "metrics.json").read_text() == done_before
    info = job_metrics(basic_sweep / "1")
    assert info["status"] == "completed" and info["resumed_from"].endswith("1/checkpoints/last.ckpt")
    ids = {read_wandb_run(d)["run"]["id"] for d in (basic_sweep / "1" / "wandb").glob("offline-run-*")}
    assert len(ids) == 1  # the resumed job went on in its own W&B run


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path, cache_dir, small_corpus):
    sweep = tmp_path / "joblib_sweep"
    run_train(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.net.dropout=0.1,0.2",
               f"hydra.sweep.dir={sweep}", "logger=wandb", *JOB], cache_dir, tmp_path)
    runs = [wandb_run(sweep / n)["run"] for n in ("0", "1")]
    assert runs[0]["id"] != runs[1]["id"] and runs[0]["group"] == runs[1]["group"] == "joblib_sweep"
    assert all(job_metrics(sweep / n)["status"] == "completed" for n in ("0", "1"))


def test_joblib_sweep_with_dataloader_workers(tmp_path, cache_dir, small_corpus):
    """Joblib's loky processes have the start method `loky`, which torch's DataLoader workers cannot use."""
    sweep = tmp_path / "joblib_workers"
    proc = run_train(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.net.dropout=0.1,0.2",
                      f"hydra.sweep.dir={sweep}", "logger=csv", *JOB_WORKERS], cache_dir, tmp_path)
    for n in ("0", "1"):
        assert yaml.safe_load((sweep / n / ".hydra" / "config.yaml").read_text())["data"]["num_workers"] == "auto"
        assert job_metrics(sweep / n)["status"] == "completed"
    assert "DataLoader workers use" in proc.stdout + proc.stderr  # the loky start method was replaced


def _worker_batches(corpus_root: str, context: str | None) -> tuple[str | None, str | None, int | str]:
    """In a joblib (loky) process: one pass over the dev split with 2 DataLoader workers; the process's
    start method before and after, and the number of sentences (or the error's message)."""
    import multiprocessing

    from sign_ctc.data.datamodule import SignDataModule
    from sign_ctc.data.synthetic import SyntheticCorpus

    dm = SignDataModule(SyntheticCorpus(corpus_root, train=48, dev=12, test=12), num_workers=2, eval_batch_size=4,
                        multiprocessing_context=context)
    before = multiprocessing.get_start_method(allow_none=True)
    try:
        count: int | str = sum(len(b.ids) for b in dm.split_batches("dev"))
    except ValueError as exc:
        count = str(exc)
    return before, multiprocessing.get_start_method(allow_none=True), count


@pytest.mark.slow  # ~10 s: a loky process imports torch
@pytest.mark.parametrize("context", [None, "fork"])
def test_dataloader_workers_in_joblib_process_fork(small_corpus, context):
    """Fork workers start by name (their own context), so the loky process's start method stays loky."""
    from joblib import Parallel, delayed

    (result,) = Parallel(n_jobs=2, backend="loky")(delayed(_worker_batches)(str(small_corpus.root), context)
                                                    for _ in range(1))
    assert result == ("loky", "loky", 12)  # the whole dev split through the workers; the process default untouched


@pytest.mark.slow
@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_dataloader_workers_in_joblib_process_refuse_spawn(small_corpus, context):
    """spawn/forkserver workers would re-apply `loky` in a fresh interpreter: one clear error, no forced start method."""
    from joblib import Parallel, delayed

    (result,) = Parallel(n_jobs=2, backend="loky")(delayed(_worker_batches)(str(small_corpus.root), context)
                                                    for _ in range(1))
    before, after, message = result
    assert (before, after) == ("loky", "loky")
    assert f"data.multiprocessing_context={context} cannot start DataLoader workers" in message
    assert "data.multiprocessing_context=fork" in message


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path, cache_dir, small_corpus):
    sweep = tmp_path / "submitit_sweep"
    run_train(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "model.net.dropout=0.1,0.2",
               f"hydra.sweep.dir={sweep}", "logger=csv", *JOB], cache_dir, tmp_path)
    assert all(job_metrics(sweep / n)["status"] == "completed" for n in ("0", "1"))
    assert list((sweep / ".submitit").iterdir())


@pytest.mark.slow
def test_optuna_search_resumes_from_its_sqlite_storage(tmp_path, cache_dir, small_corpus):
    import optuna

    # Fixed parameters go through Optuna's user attributes and back to overrides: no null or dict values.
    fixed = [a for a in JOB if "=null" not in a and "{" not in a]
    args = ["hparams_search=optuna", "hydra.sweeper.study_name=test_study", "logger=csv", *fixed,
            "model.optimizer.weight_decay=0.0"]
    run_train([*args, "hydra.sweeper.n_trials=2"], cache_dir, tmp_path)
    study_dir = tmp_path / "train" / "optuna" / "test_study"
    storage = f"sqlite:///{study_dir / 'optuna.db'}"
    study = optuna.load_study(study_name="test_study", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    (launch,) = [d for d in study_dir.iterdir() if d.is_dir()]
    assert sorted(t.value for t in complete) == sorted(job_metrics(launch / n)["best"] for n in ("0", "1"))
    assert set(complete[0].params) == {"model.optimizer.lr", "model.net.dropout"}

    # an interrupted launch leaves a RUNNING trial (killed during trial 3); the next launch fails it, re-runs
    # its parameters first, then proposes new ones: none of a finished trial (the sampler's seed moved on)
    interrupted = study.ask({"model.optimizer.lr": optuna.distributions.LogUniformDistribution(1e-4, 3e-3),
                             "model.net.dropout": optuna.distributions.UniformDistribution(0.0, 0.5)})
    proc = run_train([*args, "hydra.sweeper.n_trials=2"], cache_dir, tmp_path)
    assert "TPE sampler seed 1234 + 3 = 1237" in proc.stderr
    trials = optuna.load_study(study_name="test_study", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[3].params == interrupted.params
    param_sets = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(param_sets)) == 4  # trials 0, 1, 2 (= 3, its re-run), 4
    complete = [p for p, t in zip(param_sets, trials) if t.state.name == "COMPLETE"]
    assert len(set(complete)) == 4 and complete.count(param_sets[2]) == 1  # the killed one re-run exactly once

    from sign_ctc.cli.sweep_summary import summarize

    rows = summarize(study_dir)
    assert len(rows) == 4 and all(r.status == "completed" for r in rows)


def test_resumed_optuna_study_does_not_replay_finished_trials():
    """A TPESampler seeded alike on every launch proposes the finished trials' parameters again."""
    import optuna

    from sign_ctc.run.sweeps import ResumableTPESampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"lr": optuna.distributions.LogUniformDistribution(1e-4, 3e-3),
             "dropout": optuna.distributions.UniformDistribution(0.0, 0.5)}

    def launch(storage, sampler, n: int) -> list[dict]:
        study = optuna.create_study(study_name="s", storage=storage, sampler=sampler, load_if_exists=True)
        trials = [study.ask(space) for _ in range(n)]
        for t in trials:
            study.tell(t, t.params["lr"] + t.params["dropout"])
        return [t.params for t in trials]

    replayed = optuna.storages.InMemoryStorage()
    first = launch(replayed, optuna.samplers.TPESampler(seed=7), 2)
    assert launch(replayed, optuna.samplers.TPESampler(seed=7), 2) == first  # the bug, with TPESampler

    storages = [optuna.storages.InMemoryStorage() for _ in range(2)]
    runs = [[launch(st, ResumableTPESampler(seed=7), 2), launch(st, ResumableTPESampler(seed=7), 2)]
            for st in storages]
    assert runs[0][0] == first  # a new study: exactly TPESampler(seed=7)
    assert not {tuple(p.items()) for p in runs[0][0]} & {tuple(p.items()) for p in runs[0][1]}
    assert runs[0] == runs[1]  # deterministic: the seed depends only on the seed and the trials stored
