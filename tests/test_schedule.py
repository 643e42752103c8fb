"""The training schedule's step floor for small corpora, and early stopping that waits out the first plateau."""

from __future__ import annotations

import json
import logging

import lightning.pytorch as pl
import pytest
import torch

from sign_ctc.callbacks.early_stopping import PlateauAwareEarlyStopping
from sign_ctc.run.schedule import apply_schedule, epochs_for, optimizer_steps_per_epoch
from tests.helpers import SMALL_CORPUS


def test_epochs_for_gives_the_floor_of_steps():
    assert epochs_for(10, 1200, 150) == 10  # the default corpus: 1500 steps in its 10 epochs
    assert epochs_for(10, 1200, 15) == 80  # BOSTON-104's 120 training sentences at batch 8
    assert epochs_for(10, 1200, 7) == 172  # ceil(1200 / 7)
    assert epochs_for(3, 0, 5) == 3
    with pytest.raises(ValueError, match="steps per epoch"):
        epochs_for(10, 1200, 0)


def test_the_default_corpus_keeps_its_epochs(make_cfg, monkeypatch):
    """make train's time: the default corpus's epochs already give the step floor (no extra epoch)."""
    monkeypatch.delenv("SIGN_CTC_MIN_STEPS")  # the suite's 0 (conftest): here the shipped default
    cfg = make_cfg()
    assert int(cfg.schedule.min_steps) == 1200
    steps = -(-int(cfg.data.corpus.train) // int(cfg.data.batch_size))
    assert steps == 150 and epochs_for(cfg.schedule.epochs, int(cfg.schedule.min_steps), steps) == cfg.trainer.max_epochs == 10
    monkeypatch.setenv("SIGN_CTC_MIN_STEPS", "300")
    assert int(make_cfg().schedule.min_steps) == 300


def test_a_distilled_run_trains_twice_as_long_by_default(make_cfg, monkeypatch):
    """distillation=frame_kl sets schedule.epochs to 20 (issue 27, item 8): the distilled streaming
    student kept improving after epoch 10. The student alone keeps 10; an override still wins."""
    monkeypatch.delenv("SIGN_CTC_MIN_STEPS")
    distilled = ("model=student", "distillation=frame_kl", "distillation.teacher_ckpt=teacher.ckpt")
    cfg = make_cfg(*distilled)
    assert cfg.schedule.epochs == 20 and cfg.trainer.max_epochs == 20 and cfg.model.scheduler.T_max == 20
    assert cfg.distillation.temperature == 8.0 and cfg.distillation.teacher_ckpt == "teacher.ckpt"
    assert make_cfg("model=student").trainer.max_epochs == 10
    assert make_cfg(*distilled, "schedule.epochs=10").trainer.max_epochs == 10
    assert make_cfg(*distilled, "trainer.max_epochs=12").trainer.max_epochs == 12


def test_small_corpus_gets_more_epochs_and_the_cosine_follows(make_cfg, small_corpus):
    from hydra.utils import instantiate

    from sign_ctc.run.build import build_datamodule

    cfg = make_cfg(*SMALL_CORPUS, "schedule.min_steps=100")
    dm = build_datamodule(cfg)
    assert optimizer_steps_per_epoch(cfg, dm) == 6  # 48 sentences at batch 8
    assert apply_schedule(cfg, dm) == 17 == cfg.trainer.max_epochs  # ceil(100 / 6)
    assert cfg.model.scheduler.T_max == 17  # ${trainer.max_epochs}: the cosine spans the whole run
    assert instantiate(cfg.trainer, callbacks=[], logger=False).max_epochs == 17
    explicit = make_cfg(*SMALL_CORPUS, "trainer.max_epochs=2")  # an explicit number is taken as it is
    assert apply_schedule(explicit, dm) is None and explicit.trainer.max_epochs == 2
    accum = make_cfg(*SMALL_CORPUS, "schedule.min_steps=100", "+trainer.accumulate_grad_batches=2",
                     "+trainer.limit_train_batches=5")
    assert optimizer_steps_per_epoch(accum, dm) == 3 and apply_schedule(accum, dm) == 34  # ceil(5/2), ceil(100/3)


def test_train_runs_the_step_floor(make_cfg, small_corpus, tmp_path):
    """A tiny real run: 1 epoch asked, a floor of 12 steps at 6 steps an epoch: 2 epochs, 12 steps."""
    from sign_ctc.run.train import train

    cfg = make_cfg(*SMALL_CORPUS, "schedule.epochs=1", "schedule.min_steps=12", "logger=none", "test=false",
                   "callbacks.rich_progress_bar=null", "model=reference")
    train(cfg)
    done = json.loads((tmp_path / "metrics.json").read_text())
    assert (done["epochs"], done["global_step"]) == (2, 12)


class _ScriptedWER(pl.LightningModule):
    """Logs a given dev WER per epoch (a run whose dev WER sits at 100% for a while)."""

    def __init__(self, wers: list[float]):
        super().__init__()
        self.wers = wers
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/wer", self.wers[min(self.current_epoch, len(self.wers) - 1)])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(wers: list[float], callback: pl.Callback) -> pl.Trainer:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 1)), batch_size=2)
    trainer = pl.Trainer(max_epochs=len(wers), callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(_ScriptedWER(wers), data, data)
    return trainer


def test_early_stopping_waits_for_the_first_gloss_and_says_why(caplog):
    wers = [100.0] * 12 + [90.0, 80.0, 85.0, 85.0, 85.0] + [70.0] * 10  # leaves the plateau at epoch 12
    plain = _fit(wers, pl.callbacks.EarlyStopping(monitor="val/wer", mode="min", patience=3))
    assert plain.current_epoch == 4  # Lightning's own rule: ended at 100% WER after patience epochs
    with caplog.at_level(logging.INFO, logger="sign_ctc.callbacks.early_stopping"):
        ours = _fit(wers, PlateauAwareEarlyStopping(monitor="val/wer", mode="min", patience=3))
    # best 80 at epoch 13; epochs 14, 15, 16 without improvement: stops after epoch 16
    assert ours.current_epoch == 17 and ours.should_stop
    lines = [r.getMessage() for r in caplog.records if "early stopping" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("early stopping after epoch 16 (step 17)")
    assert "did not improve in the last 3 records" in lines[0] and "80.000" in lines[0]
    never = _fit([100.0] * 20, PlateauAwareEarlyStopping(monitor="val/wer", mode="min", patience=3))
    assert never.current_epoch == 20 and not never.should_stop  # never left the plateau: runs to its end
    # debug=overfit's rule: stop once the WER reaches 0 (a stopping threshold), plateau or not
    threshold = _fit([100.0, 100.0, 50.0, 0.0, 0.0, 0.0], PlateauAwareEarlyStopping(
        monitor="val/wer", mode="min", patience=1000, stopping_threshold=0.01))
    assert threshold.current_epoch == 4 and threshold.should_stop
    cb = PlateauAwareEarlyStopping(monitor="val/wer", mode="min", patience=3)
    cb.load_state_dict({**PlateauAwareEarlyStopping(monitor="val/wer", patience=3).state_dict(), "left_plateau": True})
    assert cb.left_plateau  # resumed runs remember that they left the plateau
