"""One log line per epoch: what a person sees of a run that is not on a terminal.

The rich progress bar shows progress only on a terminal; ``make train > log``, a batch job or a CI log
would show nothing for the whole run. After every training epoch (its validation included) this writes
one line through the run's logger, so it lands in ``<run>/train.log`` and on the console:
``epoch 3/10 (step 600): train loss 1.234, val loss 1.456, val WER 12.34%, 61.2 s, 98.0 samples/s``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning.pytorch as pl
import torch

log = logging.getLogger("sign_ctc.train")


def _value(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    value = float(value.item() if isinstance(value, torch.Tensor) else value)
    return None if math.isnan(value) else value


class EpochLog(pl.Callback):
    """Mean training loss over the epoch's steps (Lightning logs it per step only), the validation loss
    and WER the module logged for the same epoch, and the epoch's wall time and samples per second on this
    rank (timed here: what other callbacks log in the same hook reaches ``callback_metrics`` only after it)."""

    def __init__(self) -> None:
        self._loss_sum = 0.0
        self._steps = 0
        self._samples = 0
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loss_sum, self._steps, self._samples = 0.0, 0, 0
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._samples += len(getattr(batch, "ids", ()))
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and torch.isfinite(loss):
            self._loss_sum += float(loss.detach())
            self._steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        metrics = trainer.callback_metrics
        parts = [f"train loss {self._loss_sum / self._steps:.3f}" if self._steps else "train loss -"]
        for key, name, fmt in (("val/loss", "val loss", "{:.3f}"), ("val/wer", "val WER", "{:.2f}%")):
            value = _value(metrics, key)
            if value is not None:
                parts.append(f"{name} {fmt.format(value)}")
        parts += [f"{elapsed:.1f} s", f"{self._samples / elapsed:.1f} samples/s"]
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        log.info("epoch %d/%s (step %d): %s", trainer.current_epoch + 1, epochs, trainer.global_step, ", ".join(parts))
