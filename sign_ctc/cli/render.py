"""Pictures of one sentence through a checkpoint: skeleton video with gloss tracks, posteriorgram, alignment.

    sign-ctc-render ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt sample=<id>
    sign-ctc-render ckpt_path=... pose=clip.pose [reference="HELLO YOU"]
    sign-ctc-render ckpt_path=... video=clip.mp4

``sample``: a sentence id of the corpus the checkpoint was trained on (or of ``data=...``), looked
up in ``split`` (default: test, dev, then train); its annotation is the reference track. A
``.pose`` or a video (MediaPipe extraction, as ``sign-ctc-predict``) has no reference unless
``reference=`` gives one. Written to the run folder: ``<id>.mp4`` (``.gif`` where no mp4 encoder
works), ``<id>_posteriorgram.png`` and ``<id>_alignment.json`` (every gloss's output and input
frames and seconds); ``still=<k>`` adds frame k of the video as ``<id>_frame<k>.png``. eval.py draws the same pictures for its best and worst sentences
(:func:`sign_ctc.viz.sentences.write_eval_figures`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR, run_command
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.models.checkpoint import load_module
from sign_ctc.models.ctc_module import CTCModule
from sign_ctc.run.backend import apply_backend
from sign_ctc.run.decoding_setup import with_tuned_values
from sign_ctc.run.evaluate import corpus_config
from sign_ctc.viz.figures import FigureStyle
from sign_ctc.viz.sentences import RenderError, view_of, write_sentence_figures

log = logging.getLogger(__name__)


SPLITS = ("test", "dev", "train")


def corpus_of(cfg: DictConfig, model: CTCModule) -> Any:
    """The corpus to look ``sample`` up in: ``data=...`` of the command line, else the checkpoint's."""
    datamodule = hydra.utils.instantiate(corpus_config(cfg, model.recipe))
    datamodule.prepare_data()
    return datamodule.corpus


def sample_inputs(cfg: DictConfig, model: CTCModule) -> tuple[str, Landmarks, list[str]]:
    """(id, landmarks with the file's frame rate, reference glosses) of corpus sentence ``cfg.sample``."""
    from sign_ctc.features.pose_io import read_pose

    corpus = corpus_of(cfg, model)
    if corpus.source != "pose":
        raise RenderError(f"corpus {corpus.root} holds precomputed features ({corpus.source}), not landmarks to draw")
    sid = str(cfg.sample)
    splits = [cfg.split] if cfg.get("split") else list(SPLITS)
    for split in splits:
        found = [s for s in corpus.sentences(split) if s.id == sid]
        if found:
            path = corpus.landmark_path(split, found[0])
            return sid, read_pose(path), list(found[0].glosses)
    raise RenderError(f"sample {sid!r} is not in split(s) {', '.join(splits)} of corpus {corpus.root}")


def inputs_of(cfg: DictConfig, model: CTCModule) -> list[tuple[str, Landmarks, list[str] | None]]:
    """Every sequence to draw: the corpus sample, or the `.pose` / video(s) with the optional reference."""
    given = [k for k in ("sample", "pose", "video") if cfg.get(k)]
    if len(given) != 1:
        raise RenderError("give exactly one of sample=<id>, pose=<file.pose> or video=<file | folder>"
                          + (f" (got {', '.join(given)})" if given else ""))
    if cfg.get("sample"):
        if cfg.get("reference"):
            log.warning("reference= is ignored for a corpus sample: its annotation is the reference")
        return [sample_inputs(cfg, model)]
    from sign_ctc.cli.predict import landmarks_of

    reference = str(cfg.reference).split() if cfg.get("reference") else None
    return [(sid, lm, reference) for sid, lm in landmarks_of(cfg)]


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    apply_backend(cfg, announce=False)
    decoding, _ = with_tuned_values(cfg.get("decoding"), cfg.ckpt_path)
    decoder = hydra.utils.instantiate(decoding) if decoding else None
    model = load_module(cfg.ckpt_path, test_decoder=decoder)
    style: FigureStyle = hydra.utils.instantiate(cfg.figure_style)
    folder = Path(cfg.paths.output_dir)
    results = []
    for sid, lm, reference in inputs_of(cfg, model):
        view = view_of(model, sid, lm, reference)
        still = cfg.get("still")
        files = write_sentence_figures(view, folder, style, still=None if still is None else int(still))
        results.append({"id": sid, "hypothesis": " ".join(view.hypothesis), **{k: str(v) for k, v in files.items()}})
        print(f"{sid}\t{' '.join(view.hypothesis)}")
        for kind, path in files.items():
            print(f"  {kind}: {path}")
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="render")
def main(cfg: DictConfig) -> None:
    run_command("render", _checked_run, cfg)


def _checked_run(cfg: DictConfig) -> None:
    from sign_ctc.decoding.decoders import require_decoding

    require_decoding(cfg.get("decoding"))  # before the checkpoint is loaded or a video extracted
    run(cfg)


if __name__ == "__main__":
    main()
