"""Pictures of one sentence through a checkpoint: skeleton video with gloss tracks, posteriorgram, alignment.

    python -m sign_ctc.render ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt sample=<id>
    python -m sign_ctc.render ckpt_path=... pose=clip.pose [reference="HELLO YOU"]
    python -m sign_ctc.render ckpt_path=... video=clip.mp4

``sample``: a sentence id of the corpus the checkpoint was trained on (or of ``data=...``), looked
up in ``split`` (default: test, dev, then train); its annotation is the reference track. A
``.pose`` or a video (MediaPipe extraction, as :mod:`sign_ctc.predict`) has no reference unless
``reference=`` gives one. Written to the run folder: ``<id>.mp4`` (``.gif`` where no mp4 encoder
works), ``<id>_posteriorgram.png`` and ``<id>_alignment.json`` (every gloss's output and input
frames and seconds); ``still=<k>`` adds frame k of the video as ``<id>_frame<k>.png``. eval.py draws the same pictures for its best and worst sentences
(:func:`write_eval_figures`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sign_ctc.atomic import write_bytes_atomic, write_text_atomic
from sign_ctc.backend import apply_backend
from sign_ctc.checkpoint import load_module
from sign_ctc.ctc_module import CTCModule
from sign_ctc.decoding import greedy_decode
from sign_ctc.decoding_tuning import with_tuned_values
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.figures import (FigureStyle, SentenceView, error_statistics, sentence_view, write_error_plots,
                              video_frames, write_posteriorgram, write_skeleton_video)

log = logging.getLogger(__name__)
SPLITS = ("test", "dev", "train")
DEFAULT_FPS = 25.0


class RenderError(ValueError):
    """An input render cannot draw; the message names the sample or file."""


def hypothesis_of(model: CTCModule, log_probs: torch.Tensor, out_lengths: torch.Tensor) -> list[str]:
    """The checkpoint's decoding of one sequence (its test decoder, else greedy)."""
    if model.test_decoder is not None:
        ids = model.test_decoder.decode(log_probs, out_lengths)[0]
    else:
        ids = greedy_decode(log_probs, out_lengths, model.vocab.blank_id)[0]
    return model.vocab.decode(ids)


def view_of(model: CTCModule, sid: str, lm: Landmarks, reference: Sequence[str] | None) -> SentenceView:
    """Forward one sequence as predict does, decode it, align hypothesis and reference."""
    from sign_ctc.predict import forward_landmarks

    if len(lm) == 0:
        raise RenderError(f"sample {sid}: no frames")
    log_probs, out_lengths = forward_landmarks(model, lm)
    hyp = hypothesis_of(model, log_probs, out_lengths)
    lp = log_probs[0, : int(out_lengths[0])].numpy()
    return sentence_view(sid, lm.points, lm.presence, lm.fps or DEFAULT_FPS, lp, model.net.total_stride,
                         model.vocab.tokens, hyp, reference, model.vocab.blank_id)


def alignment_record(view: SentenceView) -> dict[str, Any]:
    """What ``<id>_alignment.json`` holds: both tracks with frames, seconds and scoring ops."""
    out: dict[str, Any] = {"id": view.id, "frames": view.num_frames, "output_frames": int(view.log_probs.shape[0]),
                           "stride": view.stride, "fps": view.fps, "hypothesis": " ".join(view.hypothesis),
                           "hypothesis_alignment": [dict(s.to_dict(view.fps), op=op) for s, op in
                                                    zip(view.hyp_alignment.spans, view.hyp_ops, strict=True)],
                           "hypothesis_log_prob": round(view.hyp_alignment.score, 4)}
    if view.ref_alignment is not None:
        out.update(reference=" ".join(view.reference or []), reference_log_prob=round(view.ref_alignment.score, 4),
                   reference_alignment=[dict(s.to_dict(view.fps), op=op) for s, op in
                                        zip(view.ref_alignment.spans, view.ref_ops, strict=True)])
    return out


def write_sentence_figures(view: SentenceView, folder: str | Path, style: FigureStyle | None = None,
                           video: bool = True, name: str | None = None, still: int | None = None) -> dict[str, Path]:
    """``<name>.mp4`` (or .gif), ``<name>_posteriorgram.png`` and ``<name>_alignment.json`` in ``folder``;
    ``still``: also frame ``still`` (0-based) of the video as ``<name>_frame<still>.png`` (for documents)."""
    folder = Path(folder)
    name = name or view.id
    out = {"posteriorgram": write_posteriorgram(view, folder / f"{name}_posteriorgram.png", style)}
    if video:
        out["video"] = write_skeleton_video(view, folder / f"{name}.mp4", style)
    if still is not None:
        if not 0 <= still < view.num_frames:
            raise RenderError(f"sample {view.id}: still={still} is not one of its {view.num_frames} frames")
        import cv2

        frame = next(f for t, f in enumerate(video_frames(view, style)) if t == still)
        ok, png = cv2.imencode(".png", frame)
        out["still"] = folder / f"{name}_frame{still}.png"
        write_bytes_atomic(out["still"], png.tobytes())
    out["alignment"] = folder / f"{name}_alignment.json"
    write_text_atomic(out["alignment"], json.dumps(alignment_record(view), indent=1) + "\n")
    return out


# ------------------------------------------------------------------------------------ inputs


def corpus_of(cfg: DictConfig, model: CTCModule) -> Any:
    """The corpus to look ``sample`` up in: ``data=...`` of the command line, else the checkpoint's."""
    data_cfg = cfg.get("data")
    if data_cfg is None:
        if not model.recipe.get("data"):
            raise RenderError(f"{cfg.ckpt_path} does not record its corpus: pass data=<config> data.root=<corpus>")
        data_cfg = OmegaConf.create(model.recipe["data"])
    datamodule = hydra.utils.instantiate(data_cfg)
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
    from sign_ctc.predict import landmarks_of

    reference = str(cfg.reference).split() if cfg.get("reference") else None
    return [(sid, lm, reference) for sid, lm in landmarks_of(cfg)]


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    apply_backend(cfg)
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


# ----------------------------------------------------------------------------- eval figures


def corpus_fps(dataset: Any) -> float:
    """The split's frame rate: the first sentence's `.pose` header (corpora have one rate), else 25."""
    from sign_ctc.features.pose_io import PoseFileError, read_pose

    if dataset.corpus.source == "pose" and dataset.sentences:
        path = dataset.corpus.landmark_path(dataset.split, dataset.sentences[0])
        try:
            fps = read_pose(path).fps
            if fps and fps > 0:
                return float(fps)
        except PoseFileError as exc:
            log.info("frame rate unknown (%s): %g fps assumed", exc, DEFAULT_FPS)
    return DEFAULT_FPS


def pick_sentences(predictions: Sequence[dict[str, Any]], n: int) -> list[tuple[str, dict[str, Any]]]:
    """(``worst_k`` / ``best_k``, prediction) of the ``n`` sentences with the most errors (relative,
    then absolute) and the ``n`` best (fewest errors, longest reference first), never one twice."""
    def rate(p: dict[str, Any]) -> float:
        return p["errors"] / max(len(p["reference"].split()), 1)

    worst = sorted(predictions, key=lambda p: (-rate(p), -p["errors"], p["id"]))[:n]
    taken = {p["id"] for p in worst}
    best = [p for p in sorted(predictions, key=lambda p: (rate(p), -len(p["reference"].split()), p["id"]))
            if p["id"] not in taken][:n]
    return [(f"worst_{k + 1}", p) for k, p in enumerate(worst)] + [(f"best_{k + 1}", p) for k, p in enumerate(best)]


def write_eval_figures(folder: str | Path, split: str, predictions: Sequence[dict[str, Any]],
                       log_probs: dict[str, tuple[np.ndarray, int]], dataset: Any, model: CTCModule,
                       n: int, fps: float, style: FigureStyle | None = None, video: bool = True) -> dict[str, Any]:
    """eval.py's ``<run>/figures/``: error plots of the split and the pictures of its ``n`` worst and best sentences.

    ``log_probs``: id -> (log-probs [T', C] of the test pass, input frames), as recorded while testing.
    Returns {"plots": {name: path}, "sentences": [{"rank", "id", "errors", files...}]}.
    """
    folder = Path(folder)
    style = style or FigureStyle()
    stats = error_statistics([(p["reference"].split(), p["hypothesis"].split()) for p in predictions])
    out: dict[str, Any] = {"plots": write_error_plots(stats, folder, split, style), "sentences": []}
    index = {sid: i for i, sid in enumerate(dataset.ids)}
    landmarks = dataset.corpus.source == "pose"
    for rank, p in pick_sentences(predictions, n):
        if p["id"] not in log_probs or p["id"] not in index:
            log.warning("figures: no log-probs recorded for %s (another rank's sentence?): not drawn", p["id"])
            continue
        lp, frames = log_probs[p["id"]]
        if landmarks:
            points, presence = dataset.detections(index[p["id"]])
        else:  # precomputed features: a posteriorgram, no skeleton
            points, presence = np.zeros((frames, 543, 3), np.float32), np.zeros((frames, 4), bool)
        try:
            view = sentence_view(p["id"], points, presence, fps, lp.astype(np.float32), model.net.total_stride,
                                 model.vocab.tokens, p["hypothesis"].split(), p["reference"].split(),
                                 model.vocab.blank_id)
        except ValueError as exc:  # e.g. a reference longer than its frames allow: the others are still drawn
            log.warning("figures: %s not drawn: %s", p["id"], exc)
            continue
        files = write_sentence_figures(view, folder, style, video=video and landmarks, name=f"{rank}_{p['id']}")
        out["sentences"].append({"rank": rank, "id": p["id"], "errors": p["errors"], **files})
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="render")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
