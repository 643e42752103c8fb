"""Save `last.ckpt` when training is interrupted (SIGTERM, SIGINT/Ctrl+C), and keep RNG states in checkpoints.

Lightning 2.6 turns SIGTERM into a ``SIGTERMException`` at the next batch boundary (all DDP ranks
agree on it) and Ctrl+C into a ``KeyboardInterrupt``; both reach ``on_exception`` but Lightning
saves nothing outside SLURM's auto-requeue. This callback then writes ``<dirpath>/last.ckpt`` (the
file ``python train.py ... ckpt_path=last`` resumes from): weights, optimizer and scheduler,
loop progress (epoch, global step, batch within the epoch), callback states and the RNG states of
torch, numpy and Python (stored as tensors and tuples so that ``weights_only`` loading still works).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

RNG_KEY = "sign_ctc_rng_states"


def collect_rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


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

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = collect_rng_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if RNG_KEY in checkpoint:
            set_rng_states(checkpoint[RNG_KEY])
