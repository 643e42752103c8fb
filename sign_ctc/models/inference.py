"""One sequence of landmarks through a model: features as in training, forward, decode.

Used by :class:`sign_ctc.api.Recognizer` (``sign-ctc-predict``), ``sign-ctc-render`` and eval.py's pictures,
for a checkpoint (:class:`~sign_ctc.models.ctc_module.CTCModule`) or an exported model
(:class:`~sign_ctc.models.export.ExportedModel`)."""

from __future__ import annotations

from typing import Any

import torch

from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.decoding.decoders import greedy_decode
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import features_from_landmarks
from sign_ctc.features.missing import fill_missing
from sign_ctc.models.ctc_module import CTCModule


@torch.no_grad()
def forward_landmarks(model: CTCModule, lm: Landmarks) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [1, T', C] and output length [1] of one sequence, prepared as in training
    (the checkpoint's missing-landmark mode, features derived from the landmarks)."""
    feats, presence, lengths = model_inputs(lm, model.recipe.get("features", {}).get("missing", "zero"))
    return model(feats, presence, lengths)


def model_inputs(lm: Landmarks, missing: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features [1, T, 6516], presence [1, T, 4] and lengths [1] of one sequence, as in training:
    missing parts filled by the model's ``missing`` mode, presence = parts that hold values."""
    points, filled = fill_missing(lm.points, lm.presence, missing)
    feats = features_from_landmarks(torch.from_numpy(points), torch.from_numpy(filled))[None]
    return feats, torch.from_numpy(filled)[None], torch.tensor([feats.shape[1]])


def decode(log_probs: torch.Tensor, out_lengths: torch.Tensor, decoder: Any, vocab: Vocabulary) -> list[str]:
    """Glosses of the first row: the configured decoder, or greedy without one."""
    if decoder is not None:
        return vocab.decode(decoder.decode(log_probs, out_lengths)[0])
    return vocab.decode(greedy_decode(log_probs, out_lengths, vocab.blank_id)[0])
