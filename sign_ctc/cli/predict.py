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

It prints one line per input (id, tab, glosses) and writes ``predictions.json`` in its run directory:
per input its id, frame count, glosses and each gloss's start and end in seconds (the CTC forced
alignment). The work is :class:`sign_ctc.api.Recognizer`'s, the Python API.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from sign_ctc.api import Recognizer, read_inputs
from sign_ctc.atomic import write_text_atomic
from sign_ctc.cli import CONF_DIR, run_command
from sign_ctc.errors import ConfigError
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.run.backend import apply_backend

log = logging.getLogger(__name__)


def landmarks_of(cfg: DictConfig) -> list[tuple[str, Landmarks]]:
    """The inputs' landmarks: read from `pose=` or extracted from `video=` with MediaPipe."""
    return read_inputs(cfg.get("video") or None, cfg.get("pose") or None, int(cfg.model_complexity),
                       bool(cfg.refine_face), str(cfg.get("tracker") or "auto"), cfg.get("model_asset") or None)


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    apply_backend(cfg, announce=False)
    decoding = cfg.get("decoding")
    if decoding is not None and decoding.get("tune"):
        log.warning("decoding.tune=true is eval.py's (it decodes the dev split): predict uses the tuned file if any")
    if bool(cfg.get("ckpt_path")) == bool(cfg.get("model_path")):
        raise ConfigError("give ckpt_path=<checkpoint.ckpt> or model_path=<model exported by sign-ctc-export> "
                          "(one of them)")
    extraction = {"model_complexity": int(cfg.model_complexity), "refine_face": bool(cfg.refine_face),
                  "tracker": str(cfg.get("tracker") or "auto"), "model_asset": cfg.get("model_asset") or None,
                  "pause_seconds": cfg.get("pause_seconds")}
    if cfg.get("model_path"):
        recognizer = Recognizer.from_exported(cfg.model_path, decoding, **extraction)
    else:
        recognizer = Recognizer.from_checkpoint(cfg.ckpt_path, decoding, **extraction)
    results = []
    for sid, lm in landmarks_of(cfg):
        prediction = recognizer.predict_landmarks(lm, id=sid)
        results.append(prediction.to_dict())
        print(f"{sid}\t{' '.join(prediction.glosses)}")
        if not prediction.detected:
            print(f"predict: {sid}: nobody was detected in any of its {len(lm)} frames", file=sys.stderr)
    write_text_atomic(Path(cfg.paths.output_dir) / "predictions.json", json.dumps(results, indent=1) + "\n")
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_command("predict", _checked_run, cfg)


def _checked_run(cfg: DictConfig) -> None:
    from sign_ctc.decoding.decoders import require_decoding

    require_decoding(cfg.get("decoding"))  # before the checkpoint is loaded or a video extracted
    run(cfg)


if __name__ == "__main__":
    main()
