"""Resume after a kill: SIGTERM mid-epoch saves last.ckpt; `ckpt_path=last` in the same run directory
continues it (global step, epoch, optimizer and scheduler, RNG states, the same W&B run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import lightning.pytorch as pl
import pytest
import torch

from tests.helpers import ROOT, SMALL_CORPUS
from tests.test_wandb import TINY, read_wandb_run

BATCHES_PER_EPOCH = 4  # limit_train_batches (small batches of 2: fast steps)


class SigtermAt(pl.Callback):
    """Sends this process a real SIGTERM after the given training step (Lightning's handler takes it)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _train_rows(run: dict) -> list[dict]:
    return [row for row in run["history"] if "train/loss" in row]


def test_sigterm_mid_epoch_saves_last_and_resume_continues(make_cfg, small_corpus, tmp_path):
    import wandb

    from sign_ctc.run.train import train

    overrides = ["logger=wandb", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "test=false",
                 f"+trainer.limit_train_batches={BATCHES_PER_EPOCH}", "+trainer.limit_val_batches=1", *SMALL_CORPUS,
                 "data.batch_size=2", "data.eval_batch_size=4", *TINY]
    with pytest.raises(SystemExit):  # Lightning's SIGTERMException
        train(make_cfg(*overrides, "+callbacks.sigterm._target_=tests.test_resume.SigtermAt", "+callbacks.sigterm.step=2"))
    wandb.finish(exit_code=143)  # in a real run the process ends here

    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["epoch"] == 0  # mid-epoch: 2 of 4 batches
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"] and "sign_ctc_rng_states" in ckpt
    assert not (tmp_path / "metrics.json").exists()

    metrics = train(make_cfg(*overrides, "ckpt_path=last"))
    info = json.loads((tmp_path / "metrics.json").read_text())
    assert info["resumed_from"] == str(last)
    assert info["global_step"] == 2 * BATCHES_PER_EPOCH  # the remaining 2 steps of epoch 0, then epoch 1
    assert info["epochs"] == 2
    assert all(map(torch.isfinite, torch.tensor([metrics["val/wer_best"], metrics["val/loss"], metrics["train/loss"]])))

    # both processes wrote to the same W&B run (offline-run-<time>-<id>); the resumed one goes on at step 2 of epoch 0
    segments = sorted((tmp_path / "wandb").glob("offline-run-*"))
    run_id = json.loads((tmp_path / "run.json").read_text())["wandb_run_id"]
    assert len(segments) == 2 and all(d.name.endswith(f"-{run_id}") for d in segments)
    resumed_run = read_wandb_run(segments[1])
    assert resumed_run["run"]["id"] == run_id
    resumed = _train_rows(resumed_run)
    assert resumed[0]["trainer/global_step"] == 2 and resumed[0]["epoch"] == 0
    assert resumed[-1]["trainer/global_step"] == 2 * BATCHES_PER_EPOCH - 1 and resumed[-1]["epoch"] == 1

    # run again: the job is complete and is not re-run
    again = train(make_cfg(*overrides, "ckpt_path=last"))
    assert again == json.loads((tmp_path / "metrics.json").read_text())["metrics"]


def test_resuming_with_other_overrides_is_refused(make_cfg, small_corpus, tmp_path):
    from sign_ctc.run.run_state import start_run

    start_run(make_cfg("model.net.dropout=0.1"), tmp_path, resuming=False)
    with pytest.raises(ValueError, match="other overrides"):
        start_run(make_cfg("model.net.dropout=0.2"), tmp_path, resuming=True)
    start_run(make_cfg("model.net.dropout=0.1", "trainer.max_epochs=50"), tmp_path, resuming=True)


@pytest.mark.slow
def test_sigterm_from_outside_then_resume_from_the_command_line(cache_dir, small_corpus, tmp_path):
    """The real thing: `python train.py`, SIGTERM from another process mid-epoch, then the documented command."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "train.py", f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache_dir}",
            f"paths.log_dir={tmp_path}", "logger=csv", "+logger.csv.flush_logs_every_n_steps=1",
            "trainer.log_every_n_steps=1", "trainer.max_epochs=1", "+trainer.limit_train_batches=16",
            "+trainer.limit_val_batches=1", "test=false", *SMALL_CORPUS, "data.batch_size=1", *TINY]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics_csv = run_dir / "csv" / "metrics.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:  # kill once step 2 is logged: mid-epoch
        if metrics_csv.is_file() and len(metrics_csv.read_text().splitlines()) > 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert "saved" in out and last.is_file(), out[-3000:]
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < step < 16, "the kill should land mid-epoch (16 batches)"

    done = subprocess.run([*args, "ckpt_path=last"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    info = json.loads((run_dir / "metrics.json").read_text())
    assert info["global_step"] == 16 and info["epochs"] == 1 and info["resumed_from"] == str(last)
    assert all(map(torch.isfinite, torch.tensor([info["best"], info["metrics"]["train/loss"]])))
