"""One training job, top to bottom: data -> model -> callbacks -> loggers -> trainer -> fit -> test on
the best checkpoint, and the run's bookkeeping (run.json, metrics.json, resume from last.ckpt).

The commands that run it are ``python train.py`` and ``sign-ctc-train``; train.py's docstring shows
their use, sweeps and resuming.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from sign_ctc.callbacks.rng_state import RNGState
from sign_ctc.models.normalization import check_single_normalization
from sign_ctc.run.backend import apply_backend
from sign_ctc.run.build import build_datamodule, build_model
from sign_ctc.run.instantiate import instantiate_group
from sign_ctc.run.reports import format_result, result_summary, write_predictions, write_results
from sign_ctc.run.run_state import completed_metrics, resolve_ckpt_path, start_run, write_metrics
from sign_ctc.run.schedule import apply_schedule
from sign_ctc.run.trainer_setup import best_metric, check_launch, flatten, trainer_fixes

log = logging.getLogger(__name__)



@contextmanager
def _features_after_transfer_intended() -> Iterator[None]:
    """The module derives the features in ``on_after_batch_transfer`` on purpose (eval and predict pass
    their loaders without the datamodule); Lightning warns about that hook whenever a datamodule is also
    given. Silenced around this job's fit and test only, not for the process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You have overridden `on_after_batch_transfer` in `LightningModule` but")
        yield

def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns the final metrics (floats), with `<metric.name>_best`."""
    check_single_normalization(cfg)
    apply_backend(cfg)
    output_dir = Path(cfg.paths.output_dir)
    started = time.time()
    ckpt_path = resolve_ckpt_path(cfg, output_dir)
    if cfg.get("ckpt_path") == "last" and (done := completed_metrics(output_dir)) is not None:
        log.info("%s already completed (metrics.json): not re-run", output_dir)
        return done
    run_info = start_run(cfg, output_dir, resuming=ckpt_path is not None)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg)
    if rank_zero_only.rank == 0:
        datamodule.vocab.save(output_dir / "vocab.json")
    apply_schedule(cfg, datamodule)  # trainer.max_epochs with the step floor, before the model's cosine
    model = build_model(cfg, datamodule)

    # RNGState always: a resumed run continues the same random streams whichever callbacks are enabled.
    callbacks = [*instantiate_group(cfg.get("callbacks")), RNGState()]
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                                  **trainer_fixes(cfg))
    check_launch(trainer)
    hparams = {**flatten(OmegaConf.to_container(cfg, resolve=True)), "model/params_total": model.num_parameters()}
    for lg in loggers:
        lg.log_hyperparams(hparams)

    if cfg.get("train"):
        with _features_after_transfer_intended():
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics[f"{cfg.metric.name}_best"] = best_metric(trainer, cfg, metrics)
    epochs, global_step = trainer.current_epoch, trainer.global_step

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        if not best:
            log.warning("no best checkpoint (fast_dev_run or no checkpoint callback): testing current weights")
        with _features_after_transfer_intended():
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if model.last_result is not None and trainer.is_global_zero:
            write_predictions(output_dir / "test_predictions.csv", model.predictions)
            write_results(output_dir / "test_results.json",
                          {"checkpoint": best, "test": result_summary(model.last_result)})
            log.info(format_result("test", model.last_result))
            print(format_result("test", model.last_result))
    if trainer.is_global_zero:
        write_metrics(output_dir, cfg, metrics, run_info, epochs=epochs, global_step=global_step,
                      wall_time_s=time.time() - started, best_checkpoint=best, resumed_from=ckpt_path,
                      skipped_samples=datamodule.skipped_samples)
    _finish_wandb(loggers)
    return metrics


def _finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run of this job (multirun jobs each get their own)."""
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()
