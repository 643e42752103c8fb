"""The error a checkpoint that cannot be used raises, and the feature-layout check every load makes.

Why a module of its own: both :func:`sign_ctc.models.checkpoint.read_checkpoint` (loading a module
from its checkpoint) and ``CTCModule.on_load_checkpoint`` (Lightning's resume) refuse a checkpoint of
another feature layout, and the loader imports the module to rebuild one; with the check here the
module does not import its loader (no import circle).
"""

from __future__ import annotations

from typing import Any

from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import LAYOUT_VERSION


class CheckpointError(SignCtcError, ValueError):
    """A checkpoint that cannot be used for inference; the message says why."""


def check_layout(meta: dict[str, Any], source: str) -> None:
    """Refuse a checkpoint of another feature layout: the one check, for loading a module from its
    checkpoint and for Lightning's resume (``CTCModule.on_load_checkpoint``)."""
    if meta.get("layout_version") != LAYOUT_VERSION:
        raise CheckpointError(
            f"{source} expects feature layout {meta.get('layout_version')!r} but this sign_ctc computes "
            f"{LAYOUT_VERSION!r}; use the sign_ctc version the model was trained with"
        )
