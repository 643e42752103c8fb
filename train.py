"""Train the CSLR model: data -> model -> callbacks -> loggers -> trainer -> fit -> test on the best checkpoint.

    python train.py                                   # I3D teacher on the embedded synthetic corpus
    python train.py model=i3d data=mediapipe_full data.root=/path/to/corpus
    python train.py -m model.optimizer.lr=3e-4,1e-3   # a Hydra sweep (each job: own dir, own W&B run)
    python train.py hparams_search=optuna             # Optuna TPE search (conf/hparams_search/optuna.yaml)

Resume: a run directory holds run.json (its overrides and W&B run id), checkpoints/last.ckpt
(written every epoch, and on SIGTERM / Ctrl+C) and, once finished, metrics.json. Re-run the same
command with the run directory and `ckpt_path=last`:

    python train.py <same overrides> hydra.run.dir=outputs/train/runs/<run> ckpt_path=last
    python train.py -m <same sweep> hydra.sweep.dir=outputs/train/multiruns/<sweep> ckpt_path=last

It continues from last.ckpt (epoch, global step, optimizer, scheduler, RNG states, same W&B run);
a job that has no last.ckpt yet starts afresh and a completed job (metrics.json) is not re-run.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from sign_ctc.atomic import write_text_atomic
from sign_ctc.build import build_datamodule, build_model
from sign_ctc.instantiate import instantiate_group
from sign_ctc.normalization import check_single_normalization
from sign_ctc.reports import format_result, result_summary, write_predictions, write_results

log = logging.getLogger("sign_ctc.train")

# Overrides that may differ between a run and its resumption (how it runs, not what it learns).
RESUME_FREE = ("ckpt_path=", "hydra.", "trainer.", "logger.", "callbacks.")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns the final metrics (floats), with `<metric.name>_best`."""
    check_single_normalization(cfg)
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
    model = build_model(cfg, datamodule)

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                                  **trainer_fixes(cfg))
    check_launch(trainer)
    hparams = {**flatten(OmegaConf.to_container(cfg, resolve=True)), "model/params_total": model.num_parameters()}
    for lg in loggers:
        lg.log_hyperparams(hparams)

    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics[f"{cfg.metric.name}_best"] = best_metric(trainer, cfg, metrics)
    epochs, global_step = trainer.current_epoch, trainer.global_step

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        if not best:
            log.warning("no best checkpoint (fast_dev_run or no checkpoint callback): testing current weights")
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
                      wall_time_s=time.time() - started, best_checkpoint=best, resumed_from=ckpt_path)
    _finish_wandb(loggers)
    return metrics


# ---- resuming ----------------------------------------------------------------------------
def resolve_ckpt_path(cfg: DictConfig, output_dir: Path) -> str | None:
    """`last` is this run directory's checkpoints/last.ckpt (None, a fresh start, when there is none)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path != "last":
        return ckpt_path
    last = output_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    log.warning("ckpt_path=last but %s does not exist: starting from scratch (to resume a run, pass its "
                "directory: hydra.run.dir=<run dir>, or hydra.sweep.dir=<sweep dir> for a multirun)", last)
    return None


def completed_metrics(output_dir: Path) -> dict[str, Any] | None:
    path = output_dir / "metrics.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    return info.get("metrics") if info.get("status") == "completed" else None


def job_overrides() -> list[str]:
    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(RESUME_FREE)]


def start_run(cfg: DictConfig, output_dir: Path, resuming: bool) -> dict[str, Any]:
    """Read or write <run dir>/run.json (overrides, W&B run id); fill the W&B logger's id and group."""
    path = output_dir / "run.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    overrides = job_overrides()
    if info and resuming and sorted(info.get("overrides", [])) != sorted(overrides):
        old, new = set(info.get("overrides", [])), set(overrides)
        raise ValueError(f"{output_dir} holds a run with other overrides: missing {sorted(old - new)}, "
                         f"new {sorted(new - old)}. Resume it with the overrides it was started with.")
    info = {"overrides": overrides, "wandb_run_id": info.get("wandb_run_id") or secrets.token_hex(4),
            "started": info.get("started") or time.strftime("%Y-%m-%d %H:%M:%S")}
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is not None:
        with open_dict(wandb_cfg):
            wandb_cfg.id = wandb_cfg.get("id") or info["wandb_run_id"]
            wandb_cfg.group = wandb_cfg.get("group") or sweep_name()
            if wandb_cfg.get("offline") and wandb_cfg.get("log_model"):
                # Lightning refuses log_model with offline=True, but W&B records artifacts offline too
                # (uploaded by `wandb sync`): ask W&B itself for offline mode.
                wandb_cfg.offline, wandb_cfg.mode = False, "offline"
        info["wandb_run_id"] = wandb_cfg.id
    if rank_zero_only.rank == 0:
        write_text_atomic(path, json.dumps(info, indent=1) + "\n")
    return info


def sweep_name() -> str | None:
    """The W&B group of a multirun's jobs: the Optuna study name, else the sweep directory's name."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return OmegaConf.select(hc, "sweeper.study_name", default=None) or Path(hc.sweep.dir).name


# ---- the trainer -------------------------------------------------------------------------
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
    if type(launcher).__name__ == "_SubprocessScriptLauncher" and trainer.num_devices * trainer.num_nodes > 1:
        raise RuntimeError(
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


# ---- outputs -----------------------------------------------------------------------------
def write_metrics(output_dir: Path, cfg: DictConfig, metrics: dict[str, float], run_info: dict[str, Any],
                  **extra: Any) -> None:
    """metrics.json (atomic): what sign_ctc.sweep_summary reads, and what marks the job as completed."""
    best = metrics.get(f"{cfg.metric.name}_best")
    payload = {"status": "completed", "metric": cfg.metric.name, "best": best, "test/wer": metrics.get("test/wer"),
               **extra, "overrides": run_info["overrides"], "wandb_run_id": run_info["wandb_run_id"],
               "metrics": metrics}
    write_text_atomic(output_dir / "metrics.json", json.dumps(payload, indent=1, default=str) + "\n")


def _finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run of this job (multirun jobs each get their own)."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the best value of metric.name (e.g. the best val/wer) for sweepers to minimize."""
    metrics = train(cfg)
    return metrics.get(f"{cfg.metric.name}_best")


if __name__ == "__main__":
    main()
