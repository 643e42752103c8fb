"""Trainer-level checks and helpers that train.py applies around Lightning."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sign_ctc.errors import ConfigError

log = logging.getLogger(__name__)


def trainer_fixes(cfg: DictConfig) -> dict[str, Any]:
    """SyncBatchNorm only works on GPUs: turn it off for CPU (e.g. trainer=ddp on a laptop or in CI)."""
    t = cfg.trainer
    on_gpu = t.get("accelerator") in ("gpu", "cuda") or (t.get("accelerator") == "auto" and torch.cuda.is_available())
    if t.get("sync_batchnorm") and not on_gpu:
        log.warning("sync_batchnorm needs GPUs: off on accelerator=%s", t.get("accelerator"))
        return {"sync_batchnorm": False}
    return {}


def check_launch(trainer: pl.Trainer) -> None:
    """Plain `ddp` re-runs the command line for every other rank: under a local multirun that is the whole sweep."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    launcher = trainer.strategy.launcher
    # Lightning has no public way to ask whether a launcher re-runs the command line; the class name of
    # its (private) subprocess-script launcher is the one stable sign, checked without importing it.
    if type(launcher).__name__ == "_SubprocessScriptLauncher" and trainer.num_devices * trainer.num_nodes > 1:
        raise ConfigError(
            "trainer.strategy=ddp starts the other ranks by re-running this command, which under a Hydra "
            "multirun (-m) would re-run the whole sweep in each of them. Use trainer.strategy=ddp_spawn for "
            "multi-device jobs in a local sweep, hydra/launcher=slurm (SLURM starts one task per device), "
            "or run the job as a single run without -m.")


def best_metric(trainer: pl.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The best value of metric.name over the whole run (resumes included), as sweepers minimize."""
    name = cfg.metric.name
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and ckpt.monitor == name and ckpt.best_model_score is not None:
        return float(ckpt.best_model_score)
    return metrics.get(f"{name}_best", metrics.get(name))


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{'model': {'net': {'dropout': .3}}} -> {'model.net.dropout': .3} (lists kept as values)."""
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return flat
