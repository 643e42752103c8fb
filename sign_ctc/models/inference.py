"""One sequence of landmarks through a model: features as in training, forward, decode.

Used by :class:`sign_ctc.api.Recognizer` (``sign-ctc-predict``), ``sign-ctc-render`` and eval.py's pictures,
for a checkpoint (:class:`~sign_ctc.models.ctc_module.CTCModule`) or an exported model
(:class:`~sign_ctc.models.export.ExportedModel`)."""

from __future__ import annotations

from typing import Any

import torch

from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.decoding.decoders import greedy_decode
from sign_ctc.decoding.idle import blank_idle, idle_output_frames
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import features_from_landmarks
from sign_ctc.features.missing import fill_missing
from sign_ctc.features.pauses import pause_segments
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


def segments(lm: Landmarks, pause_frames: int | None) -> list[tuple[int, Landmarks]]:
    """The sequence split at pauses (:mod:`sign_ctc.features.pauses`), each segment with its first frame:
    the segments the live recognizer recognizes one at a time, so that predict and live answer alike."""
    hands = lm.presence[:, 1] | lm.presence[:, 2]
    return [(a, Landmarks(points=lm.points[a:b], presence=lm.presence[a:b], fps=lm.fps))
            for a, b in pause_segments(hands.tolist(), pause_frames)]


def without_idle(log_probs: torch.Tensor, out_lengths: torch.Tensor, presence: torch.Tensor, stride: int,
                 blank: int) -> torch.Tensor:
    """The first row's log-probs [1, T', C] with the output frames that stand only for frames where
    nobody was detected made certainly blank (:mod:`sign_ctc.decoding.idle`)."""
    n = int(out_lengths[0])
    idle = idle_output_frames(torch.as_tensor(presence), stride, log_probs.shape[1])
    idle[n:] = False
    return blank_idle(log_probs[0], idle, blank)[None]
