"""Loading a trained CTCModule from its checkpoint alone (no data needed, no arbitrary pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch

from sign_ctc.models.checkpoint_meta import CheckpointError, check_layout
from sign_ctc.models.ctc_module import CTCModule

# Where each module lived before the packages of 2026-11-28 (old -> new import path). A checkpoint's
# recipe names its classes by import path; read_checkpoint rewrites the old ones, so every checkpoint
# written before the move still loads.
MOVED_MODULES: dict[str, str] = {
    "sign_ctc.ctc_module": "sign_ctc.models.ctc_module",
    "sign_ctc.normalization": "sign_ctc.models.normalization",
    "sign_ctc.distillation": "sign_ctc.models.distillation",
    "sign_ctc.decoding": "sign_ctc.decoding.decoders",
    "sign_ctc.decoding_tuning": "sign_ctc.decoding.tuning",
    "sign_ctc.lm": "sign_ctc.decoding.lm",
    "sign_ctc.alignment": "sign_ctc.decoding.alignment",
    "sign_ctc.scoring": "sign_ctc.scoring.wer",
    "sign_ctc.phoenix_rules": "sign_ctc.scoring.phoenix_rules",
    "sign_ctc.ctm": "sign_ctc.scoring.ctm",
    "sign_ctc.sclite": "sign_ctc.scoring.sclite",
    "sign_ctc.backend": "sign_ctc.run.backend",
    "sign_ctc.figures": "sign_ctc.viz.figures",
}


# Settings a recipe written before they existed leaves out, with the value it was trained with (the
# class defaults follow the YAML defaults, which have changed since).
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {
    "sign_ctc.models.i3d.I3DTeacher": {"aux_ctc": False, "residual": False},
    "sign_ctc.models.student.CTCStudent": {"modalities": ["pose", "hands", "face", "temporal"], "context_blocks": 0,
                                           "output_delay": 0},
    "sign_ctc.models.ctc_module.CTCModule": {"aux_ctc_weight": 0.0},
    "sign_ctc.models.normalization.Normalizer": {"body_relative": False, "body_per_frame": False,
                                                "body_fallback": "sequence"},
}


def upgrade_targets(node: Any) -> Any:
    """The recipe with every ``_target_`` in a moved module rewritten to its new import path, and
    every setting it predates filled in with the value it was trained with."""
    if isinstance(node, dict):
        out = {k: upgrade_targets(v) for k, v in node.items()}
        target = out.get("_target_")
        if isinstance(target, str):
            module, _, name = target.rpartition(".")
            if module in MOVED_MODULES:
                out["_target_"] = target = f"{MOVED_MODULES[module]}.{name}"
            for key, value in LEGACY_DEFAULTS.get(target, {}).items():
                out.setdefault(key, value)
        return out
    if isinstance(node, list):
        return [upgrade_targets(v) for v in node]
    return node


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load with ``weights_only=True``: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = ckpt.get("sign_ctc")
    if not meta or not meta.get("recipe"):
        raise CheckpointError(f"{path} was not written by sign_ctc's train.py (no vocabulary/recipe inside)")
    check_layout(meta, str(path))
    meta["recipe"] = upgrade_targets(meta["recipe"])
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
