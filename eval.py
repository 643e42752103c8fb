"""Evaluate a checkpoint: WER table (S/D/I) and per-sentence hypotheses of a corpus split.

    python eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/epoch_012.ckpt
    python eval.py ckpt_path=... data=phoenix2014 data.root=... data.landmarks_dir=... split=dev \
        decoding=beam scoring.stm=<root>/evaluation/phoenix2014-groundtruth-dev.stm scoring.rules=phoenix2014
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from omegaconf import DictConfig

from sign_ctc.backend import apply_backend
from sign_ctc.checkpoint import load_module
from sign_ctc.ctm import ctm_lines, read_stm, write_ctm
from sign_ctc.instantiate import instantiate_group
from sign_ctc.reports import format_result, result_summary, write_predictions, write_results
from sign_ctc.score import format_report, score

log = logging.getLogger("sign_ctc.eval")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Decode one split with the checkpoint's own vocabulary and normalization statistics."""
    apply_backend(cfg)
    output_dir = Path(cfg.paths.output_dir)
    decoder = hydra.utils.instantiate(cfg.decoding) if cfg.get("decoding") else None
    model = load_module(cfg.ckpt_path, test_decoder=decoder)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.vocab = model.vocab  # decode with the checkpoint's vocabulary, never a rebuilt one
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    split = cfg.get("split", "test")
    loader = datamodule.loader(split, False, datamodule.eval_batch_size)
    trainer.test(model, dataloaders=loader)

    result = model.last_result
    if not trainer.is_global_zero:  # every rank holds the gathered result; one writes it
        return result_summary(result)
    summary = {**result_summary(result), "split": split, "decoding": type(model.test_decoder).__name__}
    predictions = model.predictions
    write_predictions(output_dir / f"{split}_predictions.csv", predictions)
    write_ctm(output_dir / f"{split}_hyp.ctm",
              ctm_lines((p["id"], p["hypothesis"].split()) for p in predictions))
    print(format_result(split, result))
    if cfg.scoring.get("stm"):
        report = score({p["id"]: p["hypothesis"].split() for p in predictions}, read_stm(cfg.scoring.stm),
                       rules=cfg.scoring.rules, use_sclite=None, workdir=output_dir / "scoring")
        summary["official"] = report.to_dict()
        print(format_report(report))
    write_results(output_dir / f"{split}_results.json", {"checkpoint": str(cfg.ckpt_path), split: summary})
    _log_wandb(loggers, split, summary, predictions)
    return summary


def _log_wandb(loggers: list[Any], split: str, summary: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
    """A WER summary and the worst sentences as a W&B table."""
    if not any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        return
    import wandb

    worst = sorted(predictions, key=lambda p: -p["errors"])[:50]
    columns = ["id", "reference", "hypothesis", "errors"]
    wandb.log({f"{split}/worst_sentences": wandb.Table(columns=columns, data=[[p[c] for c in columns] for p in worst]),
               **{f"{split}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}})
    wandb.finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    return float(evaluate(cfg)["wer"])


if __name__ == "__main__":
    main()
