"""Prediction for new videos: extract -> features -> normalize (checkpoint statistics) -> decode.

    python -m sign_ctc.predict video=clip.mp4 ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt [decoding=beam]
    python -m sign_ctc.predict pose=clip.pose ckpt_path=...

Everything comes from the checkpoint: vocabulary, normalization statistics, missing-landmark
handling and the feature layout version (a mismatch is refused). With ``decoding=beam``, the LM
weight and word bonus tuned on dev by ``eval.py ... decoding.tune=true`` (``<ckpt stem>.decoding.json``
beside the checkpoint) are used unless the command line sets them (:mod:`sign_ctc.decoding_tuning`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from sign_ctc.atomic import write_text_atomic
from sign_ctc.backend import apply_backend
from sign_ctc.checkpoint import load_module
from sign_ctc.ctc_module import CTCModule
from sign_ctc.decoding_tuning import with_tuned_values
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import features_from_landmarks
from sign_ctc.features.missing import fill_missing

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
def predict(model: CTCModule, lm: Landmarks) -> list[str]:
    """Gloss sequence of one sequence of landmarks."""
    missing = model.recipe.get("features", {}).get("missing", "zero")
    points, filled = fill_missing(lm.points, lm.presence, missing)
    feats = features_from_landmarks(torch.from_numpy(points), torch.from_numpy(filled))[None]
    presence = torch.from_numpy(filled)[None]  # as in training: parts that hold values
    lengths = torch.tensor([feats.shape[1]])
    log_probs, out_lengths = model(feats, presence, lengths)
    ids = model.test_decoder.decode(log_probs, out_lengths)[0] if model.test_decoder else None
    if ids is None:
        from sign_ctc.decoding import greedy_decode

        ids = greedy_decode(log_probs, out_lengths, model.vocab.blank_id)[0]
    return model.vocab.decode(ids)


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    apply_backend(cfg)
    decoding = cfg.get("decoding")
    if decoding is not None and decoding.get("tune"):
        log.warning("decoding.tune=true is eval.py's (it decodes the dev split): predict uses the tuned file if any")
    decoding, _ = with_tuned_values(decoding, cfg.ckpt_path)
    decoder = hydra.utils.instantiate(decoding) if decoding else None
    model = load_module(cfg.ckpt_path, test_decoder=decoder)
    results = []
    for sid, lm in landmarks_of(cfg):
        glosses = predict(model, lm)
        results.append({"id": sid, "frames": len(lm), "glosses": " ".join(glosses)})
        print(f"{sid}\t{' '.join(glosses)}")
    write_text_atomic(Path(cfg.paths.output_dir) / "predictions.json", json.dumps(results, indent=1) + "\n")
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
