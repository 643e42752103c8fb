"""Loading a trained CTCModule from its checkpoint alone (no data needed, no arbitrary pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch

from sign_ctc.ctc_module import CTCModule
from sign_ctc.features.layout import LAYOUT_VERSION


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for inference; the message says why."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load with ``weights_only=True``: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = ckpt.get("sign_ctc")
    if not meta or not meta.get("recipe"):
        raise CheckpointError(f"{path} was not written by sign_ctc's train.py (no vocabulary/recipe inside)")
    if meta.get("layout_version") != LAYOUT_VERSION:
        raise CheckpointError(
            f"{path} expects feature layout {meta.get('layout_version')!r} but this sign_ctc computes "
            f"{LAYOUT_VERSION!r}; use the sign_ctc version the model was trained with"
        )
    return ckpt


def load_module(path: str | Path, test_decoder: Any = None) -> CTCModule:
    """Rebuild the module from the recipe, vocabulary and weights stored in the checkpoint.

    ``test_decoder`` is a decoder factory (``partial``) taking ``vocab_tokens``; None = greedy.
    """
    ckpt = read_checkpoint(path)
    meta = ckpt["sign_ctc"]
    recipe = meta["recipe"]
    normalizer = hydra.utils.instantiate(recipe["normalization"])
    model_cfg = {k: v for k, v in recipe["model"].items() if k != "test_decoder"}
    module: CTCModule = hydra.utils.instantiate(model_cfg, normalizer=normalizer, vocab=meta["vocab"],
                                                test_decoder=test_decoder)
    module.load_state_dict(ckpt["state_dict"])
    module.on_load_checkpoint(ckpt)
    module.eval()
    return module
