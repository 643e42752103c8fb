"""Prediction for new videos: extract -> features -> normalize (checkpoint statistics) -> decode.

    sign-ctc-predict video=clip.mp4 ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt [decoding=beam]
    sign-ctc-predict pose=clip.pose ckpt_path=...
    sign-ctc-predict video=clip.mp4 model_path=best.onnx   # exported by sign-ctc-export

Everything comes from the checkpoint: vocabulary, normalization statistics, missing-landmark
handling and the feature layout version (a mismatch is refused). An exported model (ONNX or
TorchScript, :mod:`sign_ctc.models.export`) gets the same features, and its JSON gives the rest; it decodes
with the decoding config as given (tuned values belong to a checkpoint). With ``decoding=beam``, the LM
weight and word bonus tuned on dev by ``eval.py ... decoding.tune=true`` (``<ckpt stem>.decoding.json``
beside the checkpoint) are used unless the command line sets them (:mod:`sign_ctc.decoding.tuning`).
"""

from __future__ import annotations

import json
import logging
import sys
import sys
from functools import partial
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from sign_ctc.atomic import write_text_atomic
from sign_ctc.cli import CONF_DIR
from sign_ctc.decoding.tuning import with_tuned_values
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.models.checkpoint import load_module
from sign_ctc.models.inference import predict, predict_exported
from sign_ctc.run.backend import apply_backend

log = logging.getLogger(__name__)


def landmarks_of(cfg: DictConfig) -> list[tuple[str, Landmarks]]:
    """The inputs' landmarks: read from `pose=` or extracted from `video=` with MediaPipe."""
    from sign_ctc.features.pose_io import landmarks_from_pose, read_pose

    if cfg.get("pose"):
        return [(Path(cfg.pose).stem, read_pose(cfg.pose))]
    if not cfg.get("video"):
        raise ValueError("give video=<file | folder of videos | frame folder> or pose=<file.pose>")
    from sign_ctc.cli.extract import holistic_options
    from sign_ctc.extraction.discover import discover
    from sign_ctc.extraction.tracker import check_backend
    from sign_ctc.extraction.worker import extract_pose

    options = holistic_options(cfg)
    check_backend(options)
    out = []
    for item in discover(cfg.video):
        pose, _ = extract_pose(item, options)
        out.append((item.id, landmarks_from_pose(pose, source=item.sources[0])))
    return out


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    apply_backend(cfg)
    decoding = cfg.get("decoding")
    if decoding is not None and decoding.get("tune"):
        log.warning("decoding.tune=true is eval.py's (it decodes the dev split): predict uses the tuned file if any")
    if bool(cfg.get("ckpt_path")) == bool(cfg.get("model_path")):
        raise ValueError("give ckpt_path=<checkpoint.ckpt> or model_path=<model exported by sign-ctc-export> (one of them)")
    if cfg.get("model_path"):
        from sign_ctc.models.export import ExportedModel

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
        pause = float(cfg.get("pause_seconds") or 0)
        glosses = run_one(lm, pause_frames=max(1, round(pause * lm.fps)) if pause else None)
        detected = bool(lm.presence.any())
        results.append({"id": sid, "frames": len(lm), "glosses": " ".join(glosses), "detected": detected})
        print(f"{sid}\t{' '.join(glosses)}")
        if not detected:
            print(f"predict: {sid}: nobody was detected in any of its {len(lm)} frames", file=sys.stderr)
    write_text_atomic(Path(cfg.paths.output_dir) / "predictions.json", json.dumps(results, indent=1) + "\n")
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    from sign_ctc.extraction.tracker import TrackerSetupError

    try:
        run(cfg)
    except TrackerSetupError as exc:  # the extractor cannot run here: one line saying why, no traceback
        print(f"predict: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
