"""Early stopping that waits for a run to leave its first plateau, and says why it stopped.

A CTC model first learns to output nothing but blanks: dev WER sits at 100% (every gloss deleted)
for a while, on a small corpus for many epochs (issue 26: the teacher on RWTH-BOSTON-104 starts
emitting glosses at epoch 9-14). Lightning's EarlyStopping counts those epochs as "no improvement"
and with patience 10 ended a 60-epoch run after epoch 10 at 100% WER, silently. Here patience
counts only once the monitored value has been better than ``plateau`` (for WER: below 100%, i.e.
the model has emitted a right gloss); before that the run goes on to its schedule's end. When it
does stop, one log line says at which epoch and step, and why.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import EarlyStopping

log = logging.getLogger(__name__)


class PlateauAwareEarlyStopping(EarlyStopping):
    """``plateau``: the monitored value of a run that has learnt nothing yet (100.0 for WER, with
    ``mode: min``); patience is counted only after a value better than it. None: plain EarlyStopping
    (still with the log line)."""

    def __init__(self, *args: Any, plateau: float | None = 100.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.plateau = plateau
        self.left_plateau = plateau is None

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        if not self.left_plateau and torch.isfinite(current):
            if not self.monitor_op(current, torch.tensor(self.plateau, dtype=current.dtype, device=current.device)):
                if self.monitor_op(current - self.min_delta, self.best_score.to(current.device)):
                    self.best_score = current
                self.wait_count = 0
                return False, None
            self.left_plateau = True
        return super()._evaluate_stopping_criteria(current)

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        stopping = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        if trainer.should_stop and not stopping and self.stopping_reason_message:
            self._say(f"early stopping after epoch {trainer.current_epoch} (step {trainer.global_step}): "
                      f"{self.stopping_reason_message}")

    @rank_zero_only
    def _say(self, message: str) -> None:
        log.info(message)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "left_plateau": self.left_plateau}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.left_plateau = bool(state_dict.get("left_plateau", self.plateau is None))
