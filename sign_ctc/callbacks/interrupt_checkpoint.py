"""Save `last.ckpt` when training is interrupted (SIGTERM, SIGINT/Ctrl+C).

Lightning 2.6 turns SIGTERM into a ``SIGTERMException`` at the next batch boundary (all DDP ranks
agree on it) and Ctrl+C into a ``KeyboardInterrupt``; both reach ``on_exception`` but Lightning
saves nothing outside SLURM's auto-requeue. This callback then writes ``<dirpath>/last.ckpt`` (the
file ``python train.py ... ckpt_path=last`` resumes from): weights, optimizer and scheduler,
loop progress (epoch, global step, batch within the epoch), callback states and the RNG states
(:mod:`sign_ctc.callbacks.rng_state`, which every training run has).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class InterruptCheckpoint(pl.Callback):
    def __init__(self, dirpath: str | None = None, filename: str = "last.ckpt") -> None:
        self.dirpath = Path(dirpath) if dirpath else None
        self.filename = filename
        self.saved_path: Path | None = None

    def path(self, trainer: pl.Trainer) -> Path:
        return (self.dirpath or Path(trainer.default_root_dir) / "checkpoints") / self.filename

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        path = self.path(trainer)
        try:
            trainer.save_checkpoint(path)
        except Exception as err:  # a failing save must not hide the interruption itself
            log.error("interrupted, but saving %s failed: %s", path, err)
            return
        self.saved_path = path
        pl_module.print(f"{type(exception).__name__}: saved {path} at epoch {trainer.current_epoch}, "
                        f"step {trainer.global_step}; resume with ckpt_path=last and the same run directory")
