"""Throughput: wall time per training epoch, samples and frames per second (summed over ranks).

Logged at the end of every training epoch as ``train/epoch_time_s``, ``train/samples_per_sec`` and
``train/frames_per_sec``; the total training time so far (``train/time_total_s``) is kept in the
checkpoint, so it keeps counting across a resume.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl


class Throughput(pl.Callback):
    def __init__(self) -> None:
        self.total_time_s = 0.0
        self._start: float | None = None
        self._samples = 0
        self._frames = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._samples = 0
        self._frames = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._samples += len(batch.ids)
        self._frames += int(batch.lengths.sum())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._start is None:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._start = None
        self.total_time_s += elapsed
        # Every rank times its own share; samples/s add up over ranks, the epoch time is the slowest rank's.
        pl_module.log("train/epoch_time_s", elapsed, sync_dist=True, reduce_fx="max")
        pl_module.log("train/samples_per_sec", self._samples / elapsed, sync_dist=True, reduce_fx="sum")
        pl_module.log("train/frames_per_sec", self._frames / elapsed, sync_dist=True, reduce_fx="sum")
        pl_module.log("train/time_total_s", self.total_time_s, sync_dist=True, reduce_fx="max")

    def state_dict(self) -> dict[str, Any]:
        return {"total_time_s": self.total_time_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total_time_s = float(state_dict.get("total_time_s", 0.0))
