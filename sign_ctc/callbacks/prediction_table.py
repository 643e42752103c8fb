"""A W&B table of sample predictions (reference vs hypothesis) after every validation epoch.

The module leaves ``module.predictions`` (id, reference, hypothesis, errors; gathered over ranks,
sorted by id) after each evaluation epoch; this callback logs the first ``max_rows`` of them, the
same sentences every epoch so their hypotheses can be compared over training, plus the
``worst_rows`` sentences with the most errors. Loggers other than W&B are left alone.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger

COLUMNS = ["epoch", "step", "id", "reference", "hypothesis", "errors"]


@runtime_checkable
class Predicting(Protocol):
    """What the table reads from the module (:class:`~sign_ctc.models.ctc_module.CTCModule` has it): the
    last validation's per-sentence rows (id, reference, hypothesis, errors)."""

    predictions: list[dict[str, Any]]

class PredictionTable(pl.Callback):
    def __init__(self, key: str = "val/predictions", max_rows: int = 20, worst_rows: int = 10) -> None:
        self.key = key
        self.max_rows = max_rows
        self.worst_rows = worst_rows
        self.logged = 0

    def rows(self, trainer: pl.Trainer, predictions: list[dict[str, Any]]) -> list[list[Any]]:
        chosen = list(predictions[: self.max_rows])
        seen = {p["id"] for p in chosen}
        worst = sorted((p for p in predictions if p["id"] not in seen), key=lambda p: -p["errors"])
        chosen += [p for p in worst[: self.worst_rows] if p["errors"] > 0]
        return [[trainer.current_epoch, trainer.global_step, p["id"], p["reference"], p["hypothesis"], p["errors"]]
                for p in chosen]

    # on_validation_end runs after the module's on_validation_epoch_end has filled `predictions`.
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not isinstance(pl_module, Predicting):
            raise TypeError(f"PredictionTable needs a module with `predictions` (CTCModule has it), "
                            f"not {type(pl_module).__name__}")
        predictions = pl_module.predictions
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not predictions or not wandb_loggers:
            return
        data = self.rows(trainer, predictions)
        for lg in wandb_loggers:
            lg.log_table(key=self.key, columns=COLUMNS, data=data, step=trainer.global_step)
        self.logged += 1
