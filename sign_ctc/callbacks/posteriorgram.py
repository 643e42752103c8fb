"""Posteriorgrams of a fixed set of dev sentences on W&B every few validation epochs.

The same sentences each time (the first ``num_sentences`` of the validation split), so the
dashboard's image slider shows the alignments sharpening over training: blank-dominated and
smeared early, one peak per gloss on the reference's forced alignment later. Does nothing without
a W&B logger or a datamodule (no forward pass, no drawing), during the sanity check and off rank zero.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

log = logging.getLogger(__name__)


@runtime_checkable
class SplitDatasets(Protocol):
    """What this callback reads of a datamodule (``SignDataModule``): the validation split's samples."""

    val_split: str

    def dataset(self, split: str) -> Any: ...


class PosteriorgramLogger(pl.Callback):
    def __init__(self, key: str = "val/posteriorgram", every_n_epochs: int = 5, num_sentences: int = 4,
                 fps: float = 25.0, style: Any = None) -> None:
        """``fps``: the input frame rate, for the seconds axis (the dev split's files are not reread for it)."""
        if every_n_epochs < 1 or num_sentences < 1:
            raise ValueError("posteriorgram: every_n_epochs and num_sentences must be at least 1")
        self.key = key
        self.every_n_epochs = every_n_epochs
        self.num_sentences = num_sentences
        self.style = style
        self.fps = fps
        self.logged = 0

    def due(self, trainer: pl.Trainer) -> bool:
        """This epoch is one to draw: W&B logger, rank zero, a datamodule, not the sanity check, every k-th epoch."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return False
        if not any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
            return False
        if not isinstance(trainer.datamodule, SplitDatasets):
            rank_zero_warn("posteriorgram: the trainer has no datamodule with dataset(split); nothing drawn")
            return False
        return trainer.current_epoch % self.every_n_epochs == 0 or trainer.current_epoch + 1 == trainer.max_epochs

    @torch.no_grad()
    def images(self, trainer: pl.Trainer, pl_module: Any) -> list[tuple[Any, str]]:
        """(matplotlib Figure, caption) of each fixed dev sentence with the module as it is now."""
        from sign_ctc.decoding.decoders import greedy_decode
        from sign_ctc.viz.figures import sentence_view
        from sign_ctc.viz.posteriorgram import posteriorgram_figure

        dm = trainer.datamodule
        ds = dm.dataset(dm.val_split)
        out = []
        was_training = pl_module.training
        pl_module.eval()
        try:
            for i in range(min(self.num_sentences, len(ds))):
                sample = ds[i]
                lengths = torch.tensor([sample.features.shape[0]], device=pl_module.device)
                log_probs, out_lengths = pl_module(sample.features[None].to(pl_module.device),
                                                   sample.presence[None].to(pl_module.device), lengths,
                                                   [sample.signer])
                hyp = pl_module.vocab.decode(greedy_decode(log_probs, out_lengths, pl_module.vocab.blank_id)[0])
                ref = pl_module.vocab.decode(sample.targets.tolist())
                T = sample.features.shape[0]
                lp = log_probs[0, : int(out_lengths[0])].float().cpu().numpy()
                try:
                    view = sentence_view(sample.id, np.zeros((T, 543, 3), np.float32), np.zeros((T, 4), bool),
                                         self.fps, lp, pl_module.net.total_stride, pl_module.vocab.tokens, hyp, ref,
                                         pl_module.vocab.blank_id)
                except ValueError as exc:  # e.g. a reference too long for its frames
                    log.warning("posteriorgram of %s not drawn: %s", sample.id, exc)
                    continue
                out.append((posteriorgram_figure(view, self.style), f"{sample.id} epoch {trainer.current_epoch}"))
        finally:
            pl_module.train(was_training)
        return out

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.due(trainer):
            return
        import wandb

        figures = self.images(trainer, pl_module)
        if not figures:
            return
        # One key per dev sentence (<key>/0, <key>/1, ...): W&B shows each sentence's posteriorgram epoch
        # by epoch on its own slider. Several figures under one key made W&B warn "Images sizes do not
        # match" at every log: each sentence's figure has its own size (its length, its glosses).
        images = [wandb.Image(_png(fig), caption=caption) for fig, caption in figures]
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                for i, image in enumerate(images):
                    lg.log_image(key=f"{self.key}/{i}", images=[image], step=trainer.global_step)
        self.logged += 1


def _png(fig: Any) -> Any:
    """A matplotlib Figure as a PIL image (wandb.Image takes it without a temp file)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    buf.seek(0)
    return Image.open(buf).convert("RGB")
