"""NaN guard: catch non-finite inputs, logits, losses and gradients; say which samples; survive.

The module reports non-finite inputs, logits and losses (and skips that step by returning no
loss); this callback checks the gradient norm itself and drops the gradients when it is
non-finite, so the optimizer leaves every parameter unchanged. Each event is counted in the logged
metrics and written as a small JSON dump to the run directory; after ``max_consecutive`` bad steps
in a row training stops with an error that names the samples. Checkpoints are refused while any
weight is non-finite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch

from sign_ctc.atomic import write_text_atomic
from sign_ctc.data.batch import Batch
from sign_ctc.errors import SignCtcError
from sign_ctc.models.ctc_module import NonFiniteEvent


@runtime_checkable
class Guarded(Protocol):
    """What the guard shares with the module (:class:`~sign_ctc.models.ctc_module.CTCModule` has it):
    the module reports its non-finite event of the step; the guard hands over the gradient norm it
    measured, which gradient clipping reuses."""

    nonfinite_event: NonFiniteEvent | None
    grad_norm: torch.Tensor | None


class NonFiniteTrainingError(SignCtcError, RuntimeError):
    """Training produced non-finite values too many steps in a row."""


def _batch_summary(batch: Batch) -> list[dict[str, Any]]:
    feats = batch.features
    rows = []
    for i, sid in enumerate(batch.ids):
        x = feats[i, : int(batch.lengths[i])]
        finite = torch.isfinite(x)
        vals = x[finite]
        rows.append({
            "id": sid, "frames": int(batch.lengths[i]), "glosses": int(batch.target_lengths[i]),
            "nonfinite_values": int((~finite).sum()),
            "nonfinite_frames": [int(t) for t in torch.nonzero(~finite.all(-1)).flatten()[:20]],
            "min": float(vals.min()) if vals.numel() else None, "max": float(vals.max()) if vals.numel() else None,
        })
    return rows


class NaNGuard(pl.Callback):
    def __init__(self, max_consecutive: int = 5, dump_dir: str | None = None, check_weights_every_n_steps: int = 0):
        self.max_consecutive = max_consecutive
        self.dump_dir = Path(dump_dir) if dump_dir else None
        self.check_weights_every_n_steps = check_weights_every_n_steps
        self.events = 0
        self.consecutive = 0
        self.history: list[NonFiniteEvent] = []
        self._grad_event: NonFiniteEvent | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, Guarded):
            raise TypeError(f"NaNGuard needs a module with the Guarded interface (nonfinite_event, grad_norm), "
                            f"e.g. CTCModule; got {type(pl_module).__name__}")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._grad_event = None

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        finite = bool(torch.isfinite(norm))
        pl_module.log("train/grad_norm", norm if finite else torch.tensor(float("nan")), on_step=True)
        if finite:
            pl_module.grad_norm = norm  # gradient clipping reuses it (CTCModule.configure_gradient_clipping)
        if not finite:
            bad = [n for n, p in pl_module.named_parameters()
                   if p.grad is not None and not torch.isfinite(p.grad).all()][:5]
            for p in pl_module.parameters():
                p.grad = None  # the optimizer then skips every parameter: no update at all
            self._grad_event = NonFiniteEvent("backward", [], int(trainer.global_step),
                                              {"grad_norm": float(norm), "first_params": bad})

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        event = pl_module.nonfinite_event or self._grad_event
        if event is not None and event.where == "backward" and not event.ids:
            event.ids = list(batch.ids)
        pl_module.nonfinite_event = None
        if event is None:
            self.consecutive = 0
            if self.check_weights_every_n_steps and trainer.global_step % self.check_weights_every_n_steps == 0:
                self._check_weights(pl_module, "after step")
            return
        self.events += 1
        self.consecutive += 1
        self.history.append(event)
        pl_module.log("nan_guard/events", float(self.events), on_step=True, on_epoch=False)
        self._dump(trainer, event, batch)
        ids = ", ".join(event.ids) or "(none identified)"
        pl_module.print(f"NaN guard: non-finite {event.where} at step {event.step}; step skipped; samples: {ids}")
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteTrainingError(
                f"{self.consecutive} consecutive training steps produced non-finite values (last at "
                f"{event.where}, step {event.step}); offending samples: "
                f"{', '.join(sorted({i for e in self.history[-self.consecutive:] for i in e.ids}))}. "
                f"Dumps are in {self._dump_root(trainer)}; run `sign-ctc-diagnose` with the same overrides."
            )

    def _dump_root(self, trainer: pl.Trainer) -> Path:
        return self.dump_dir or Path(trainer.default_root_dir) / "nan_guard"

    def _dump(self, trainer: pl.Trainer, event: NonFiniteEvent, batch: Any) -> None:
        payload = {"where": event.where, "step": event.step, "epoch": trainer.current_epoch,
                   "offending_ids": event.ids, "detail": event.detail, "batch": _batch_summary(batch)}
        path = self._dump_root(trainer) / f"step{event.step:07d}_{event.where}.json"
        write_text_atomic(path, json.dumps(payload, indent=1, default=str))

    @staticmethod
    def _check_weights(pl_module: pl.LightningModule, when: str) -> None:
        bad = [n for n, t in pl_module.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise NonFiniteTrainingError(f"non-finite weights {when}: {', '.join(bad[:10])}")

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        bad = [n for n, t in checkpoint["state_dict"].items() if torch.is_tensor(t) and t.is_floating_point()
               and not torch.isfinite(t).all()]
        if bad:
            raise NonFiniteTrainingError(
                f"refusing to save a checkpoint with non-finite weights: {', '.join(bad[:10])}"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"events": self.events, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.events = int(state_dict.get("events", 0))
        self.consecutive = int(state_dict.get("consecutive", 0))
