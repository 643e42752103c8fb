"""Lightning's LearningRateMonitor that stays quiet when the run has no logger (`logger=none`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor as _LightningLRMonitor


class LearningRateMonitor(_LightningLRMonitor):
    """Lightning's version raises without a logger; a run with `logger=none` should just run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._active = False  # set at train start: whether the trainer has a logger

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._active = bool(trainer.loggers)
        if self._active:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._active:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._active:
            super().on_train_epoch_start(trainer, *args, **kwargs)
