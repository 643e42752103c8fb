"""Train the CSLR model: data -> model -> callbacks -> loggers -> trainer -> fit -> test on the best checkpoint.

    python train.py                                   # I3D teacher on the embedded synthetic corpus
    python train.py model=i3d data=mediapipe_full data.root=/path/to/corpus
    python train.py -m model.optimizer.lr=3e-4,1e-3   # a Hydra sweep
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf

from sign_ctc.build import build_datamodule, build_model
from sign_ctc.instantiate import instantiate_group
from sign_ctc.normalization import check_single_normalization
from sign_ctc.reports import format_result, result_summary, write_predictions, write_results

log = logging.getLogger("sign_ctc.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns the final metrics (floats)."""
    check_single_normalization(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = build_datamodule(cfg)
    datamodule.vocab.save(output_dir / "vocab.json")
    model = build_model(cfg, datamodule)

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True),
                            "model/params_total": model.num_parameters()})

    if cfg.get("train"):
        ckpt_path = cfg.get("ckpt_path")
        if ckpt_path == "last":
            ckpt_path = str(output_dir / "checkpoints" / "last.ckpt")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
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
    _finish_wandb(loggers)
    return metrics


def _finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run of this job (multirun jobs each get their own)."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.metric.name)


if __name__ == "__main__":
    main()
