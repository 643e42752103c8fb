"""Pictures of sentences through a model: decode, align hypothesis and reference, write the skeleton
video, posteriorgram and alignment record; eval.py's error plots and best/worst sentences."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sign_ctc.atomic import write_bytes_atomic, write_text_atomic
from sign_ctc.errors import SignCtcError
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.models.ctc_module import CTCModule
from sign_ctc.models.inference import decode, forward_landmarks
from sign_ctc.viz.errors import error_statistics, write_error_plots
from sign_ctc.viz.figures import FigureStyle, SentenceView, sentence_view
from sign_ctc.viz.posteriorgram import write_posteriorgram
from sign_ctc.viz.skeleton_video import video_frames, write_skeleton_video

log = logging.getLogger(__name__)
DEFAULT_FPS = 25.0


class RenderError(SignCtcError, ValueError):
    """An input render cannot draw; the message names the sample or file."""


def view_of(model: CTCModule, sid: str, lm: Landmarks, reference: Sequence[str] | None) -> SentenceView:
    """Forward one sequence as predict does, decode it, align hypothesis and reference."""
    if len(lm) == 0:
        raise RenderError(f"sample {sid}: no frames")
    log_probs, out_lengths = forward_landmarks(model, lm)
    hyp = decode(log_probs, out_lengths, model.test_decoder, model.vocab)
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
