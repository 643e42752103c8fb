"""First-batch diagnostics: feature statistics per modality after normalization.

The seed's double normalization showed up as feature std far from 1 and huge ranges; printing
this table (and logging it) on the first training batch makes such a mistake visible at once.
"""

from __future__ import annotations

import io
from typing import Any

import lightning.pytorch as pl
import torch

from sign_ctc.features.layout import MODALITIES
from sign_ctc.models.normalization import valid_channels


def modality_stats(features: torch.Tensor, valid: torch.Tensor) -> dict[str, dict[str, float]]:
    """Mean, std, min, max, % non-finite and % missing per modality over valid values."""
    out = {}
    for name, sl in MODALITIES.items():
        x, v = features[..., sl], valid[..., sl]
        finite = torch.isfinite(x)
        vals = x[v & finite].float()
        out[name] = {
            "mean": float(vals.mean()) if vals.numel() else float("nan"),
            "std": float(vals.std()) if vals.numel() > 1 else float("nan"),
            "min": float(vals.min()) if vals.numel() else float("nan"),
            "max": float(vals.max()) if vals.numel() else float("nan"),
            "nonfinite_pct": 100.0 * float((~finite & v).sum()) / max(int(v.sum()), 1),
            "missing_pct": 100.0 * (1.0 - float(v.float().mean())) if v.numel() else 100.0,
        }
    return out


def render_table(title: str, stats: dict[str, dict[str, float]]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("modality", "mean", "std", "min", "max", "% non-finite", "% missing"):
        table.add_column(col, justify="right")
    for name, s in stats.items():
        table.add_row(name, *(f"{s[k]:.3f}" for k in ("mean", "std", "min", "max")),
                      f"{s['nonfinite_pct']:.2f}", f"{s['missing_pct']:.1f}")
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


class FeatureDiagnostics(pl.Callback):
    """Logs and prints per-modality statistics of the first training batch, after normalization."""

    def __init__(self) -> None:
        self.done = False
        self.stats: dict[str, dict[str, float]] = {}

    @torch.no_grad()
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.done:
            return
        self.done = True
        feats, presence, lengths = batch.features, batch.presence, batch.lengths
        normed = pl_module.normalizer(torch.nan_to_num(feats), presence, lengths, signers=batch.signers)
        valid = valid_channels(presence, lengths)
        self.stats = modality_stats(normed, valid)
        raw = modality_stats(feats, valid)
        for name, s in self.stats.items():
            for key in ("mean", "std", "min", "max", "missing_pct"):
                pl_module.log(f"diagnostics/{name}_{key}", s[key], on_step=True, on_epoch=False,
                              batch_size=feats.shape[0])
        if trainer.is_global_zero:
            print(render_table("first batch, raw features", raw))
            print(render_table("first batch, after normalization", self.stats))
