"""Prediction for new videos: extract -> features -> normalize (checkpoint statistics) -> decode.

    python -m sign_ctc.predict video=clip.mp4 ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt [decoding=beam]
    python -m sign_ctc.predict pose=clip.pose ckpt_path=...
    python -m sign_ctc.predict video=clip.mp4 model_path=best.onnx   # exported by sign_ctc.export

Everything comes from the checkpoint: vocabulary, normalization statistics, missing-landmark
handling and the feature layout version (a mismatch is refused). An exported model (ONNX or
TorchScript, :mod:`sign_ctc.export`) gets the same features, and its JSON gives the rest; it decodes
with the decoding config as given (tuned values belong to a checkpoint). With ``decoding=beam``, the LM
weight and word bonus tuned on dev by ``eval.py ... decoding.tune=true`` (``<ckpt stem>.decoding.json``
beside the checkpoint) are used unless the command line sets them (:mod:`sign_ctc.decoding_tuning`).
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import torch
from omegaconf import DictConfig

from sign_ctc.atomic import write_text_atomic
from sign_ctc.backend import apply_backend
from sign_ctc.checkpoint import load_module
from sign_ctc.ctc_module import CTCModule
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.decoding_tuning import with_tuned_values
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import features_from_landmarks
from sign_ctc.features.missing import fill_missing

if TYPE_CHECKING:
    from sign_ctc.export import ExportedModel

log = logging.getLogger(__name__)


def landmarks_of(cfg: DictConfig) -> list[tuple[str, Landmarks]]:
    """The inputs' landmarks: read from `pose=` or extracted from `video=` with MediaPipe."""
    from sign_ctc.features.pose_io import landmarks_from_pose, read_pose

    if cfg.get("pose"):
        return [(Path(cfg.pose).stem, read_pose(cfg.pose))]
    if not cfg.get("video"):
        raise ValueError("give video=<file | folder of videos | frame folder> or pose=<file.pose>")
    from sign_ctc.features.extract import HolisticOptions, check_model_available, discover, extract_pose

    check_model_available(int(cfg.model_complexity))
    options = HolisticOptions(model_complexity=int(cfg.model_complexity), refine_face=bool(cfg.refine_face))
    out = []
    for item in discover(cfg.video):
        pose, _ = extract_pose(item, options)
        out.append((item.id, landmarks_from_pose(pose, source=item.sources[0])))
    return out


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
    from sign_ctc.decoding import greedy_decode

    return vocab.decode(greedy_decode(log_probs, out_lengths, vocab.blank_id)[0])


@torch.no_grad()
def predict(model: CTCModule, lm: Landmarks) -> list[str]:
    """Gloss sequence of one sequence of landmarks."""
    log_probs, out_lengths = forward_landmarks(model, lm)
    return decode(log_probs, out_lengths, model.test_decoder, model.vocab)


def predict_exported(model: ExportedModel, lm: Landmarks, decoder: Any = None) -> list[str]:
    """Gloss sequence of one sequence of landmarks with an exported model (same features)."""
    feats, presence, _ = model_inputs(lm, model.missing)
    log_probs, out_lengths = model(feats, presence)
    return decode(log_probs, out_lengths, decoder, model.vocab)


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    apply_backend(cfg)
    decoding = cfg.get("decoding")
    if decoding is not None and decoding.get("tune"):
        log.warning("decoding.tune=true is eval.py's (it decodes the dev split): predict uses the tuned file if any")
    if bool(cfg.get("ckpt_path")) == bool(cfg.get("model_path")):
        raise ValueError("give ckpt_path=<checkpoint.ckpt> or model_path=<model exported by sign_ctc.export> (one of them)")
    if cfg.get("model_path"):
        from sign_ctc.export import ExportedModel

        exported = ExportedModel(cfg.model_path)
        factory = hydra.utils.instantiate(decoding) if decoding else None
        decoder = factory(vocab_tokens=exported.vocab.tokens) if factory else None
        run_one = partial(predict_exported, exported, decoder=decoder)
    else:
        decoding, _ = with_tuned_values(decoding, cfg.ckpt_path)
        factory = hydra.utils.instantiate(decoding) if decoding else None
        model = load_module(cfg.ckpt_path, test_decoder=factory)
        run_one = partial(predict, model)
    results = []
    for sid, lm in landmarks_of(cfg):
        glosses = run_one(lm)
        results.append({"id": sid, "frames": len(lm), "glosses": " ".join(glosses)})
        print(f"{sid}\t{' '.join(glosses)}")
    write_text_atomic(Path(cfg.paths.output_dir) / "predictions.json", json.dumps(results, indent=1) + "\n")
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
