"""Keep each test sentence's log-probabilities, for real CTM timings and eval.py's pictures.

The module's test step decodes and drops its log-probs; a forward hook on the module catches them
(the test step's one forward call), and the batch end pairs them with the batch's sample ids. Stored
per sentence on the CPU as float16 cut to the sentence's output length (PHOENIX test: ~120 MB), so
eval needs no second forward pass. Under DDP each rank holds its own sentences.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch


class LogProbRecorder(pl.Callback):
    """``log_probs[id] = (float16 [T', C], input frames)`` of every sentence of ``trainer.test``."""

    def __init__(self) -> None:
        self.log_probs: dict[str, tuple[np.ndarray, int]] = {}
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        self._handle: Any = None

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._last = (output[0].detach(), output[1].detach())

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_probs = {}
        self._handle = pl_module.register_forward_hook(self._hook)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._last is None:
            return
        log_probs, out_lengths = self._last
        self._last = None
        lp = log_probs.to(torch.float16).cpu()
        for i, sid in enumerate(batch.ids):
            n = int(out_lengths[i])
            self.log_probs[sid] = (lp[i, :n].numpy(), int(batch.lengths[i]))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
