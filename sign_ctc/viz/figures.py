"""What every picture of the model shares: the style, the colours, the scorer's edit operations and
one sentence's view (landmarks, log-probs, reference and hypothesis with their times), and writing a
matplotlib figure. The pictures themselves: skeleton videos with gloss tracks
(:mod:`sign_ctc.viz.skeleton_video`), posteriorgrams (:mod:`sign_ctc.viz.posteriorgram`), error plots
(:mod:`sign_ctc.viz.errors`).

Headless throughout: videos are drawn with OpenCV into arrays (mp4, GIF when no mp4 encoder is
available), plots with matplotlib's ``Figure`` on the Agg canvas (no pyplot, no display, no global
backend switch). cv2 and matplotlib are imported inside the functions that draw, so importing these
modules (eval.py, the training callbacks) costs nothing when no picture is drawn. Files are written
atomically (temp file in the target folder, then rename).

Colours say what the scorer made of each gloss (jiwer's minimum edit alignment, as the WER uses):
correct, substitution, insertion (hypothesis only), deletion (reference only).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sign_ctc.atomic import write_bytes_atomic
from sign_ctc.decoding.alignment import Alignment, align_sequence

# RGB; OpenCV gets them reversed.
OP_COLORS: dict[str, tuple[int, int, int]] = {
    "correct": (44, 160, 44),
    "substitution": (255, 140, 0),
    "insertion": (214, 39, 40),
    "deletion": (148, 103, 189),
    "unscored": (90, 120, 170),  # no reference to score against (a new video)
}
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "pose": (200, 200, 200), "left_hand": (80, 170, 255), "right_hand": (255, 120, 90), "face": (170, 170, 170),
}
MISSING_COLOR = (110, 110, 110)


@dataclass
class FigureStyle:
    """Sizes and formats of the pictures (sign_ctc/conf/figure_style)."""

    width: int = 480  # video width, px (even: mp4 encoders need it)
    skeleton_height: int = 360  # px above the gloss tracks
    video_format: str = "mp4"  # mp4 | gif
    max_glosses: int = 16  # rows of a posteriorgram
    dpi: int = 110
    top_pairs: int = 20  # bars of the substitution chart
    top_glosses: int = 30  # bars of the per-gloss error chart

    def __post_init__(self) -> None:
        if self.video_format not in ("mp4", "gif"):
            raise ValueError(f"figure_style.video_format must be mp4 or gif, got {self.video_format!r}")
        if self.width < 160 or self.skeleton_height < 120:
            raise ValueError(f"figure_style: video {self.width}x{self.skeleton_height} px is too small to draw on")
        self.width += self.width % 2
        self.skeleton_height += self.skeleton_height % 2


# ------------------------------------------------------------------------------------ scoring


def edit_ops(reference: Sequence[str], hypothesis: Sequence[str]) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(op of every reference gloss, op of every hypothesis gloss, substitution pairs (ref, hyp)).

    The same minimum edit alignment (jiwer) the WER counts, so the colours add up to its S/D/I.
    """
    import jiwer

    ref, hyp = list(reference), list(hypothesis)
    if not ref or not hyp:
        return ["deletion"] * len(ref), ["insertion"] * len(hyp), []
    ref_ops, hyp_ops, pairs = [""] * len(ref), [""] * len(hyp), []
    chunks = jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]
    for c in chunks:
        if c.type == "equal":
            ref_ops[c.ref_start_idx : c.ref_end_idx] = ["correct"] * (c.ref_end_idx - c.ref_start_idx)
            hyp_ops[c.hyp_start_idx : c.hyp_end_idx] = ["correct"] * (c.hyp_end_idx - c.hyp_start_idx)
        elif c.type == "substitute":
            ref_ops[c.ref_start_idx : c.ref_end_idx] = ["substitution"] * (c.ref_end_idx - c.ref_start_idx)
            hyp_ops[c.hyp_start_idx : c.hyp_end_idx] = ["substitution"] * (c.hyp_end_idx - c.hyp_start_idx)
            pairs += list(zip(ref[c.ref_start_idx : c.ref_end_idx], hyp[c.hyp_start_idx : c.hyp_end_idx]))
        elif c.type == "delete":
            ref_ops[c.ref_start_idx : c.ref_end_idx] = ["deletion"] * (c.ref_end_idx - c.ref_start_idx)
        else:
            hyp_ops[c.hyp_start_idx : c.hyp_end_idx] = ["insertion"] * (c.hyp_end_idx - c.hyp_start_idx)
    return ref_ops, hyp_ops, pairs


# ------------------------------------------------------------------------------ one sentence


@dataclass
class SentenceView:
    """One sentence as the pictures show it: landmarks, log-probs, both glosses' alignments and ops."""

    id: str
    points: np.ndarray  # [T, 543, 3] unit coordinates as detected (0 where not)
    presence: np.ndarray  # [T, 4] bool, layout.PARTS order
    fps: float
    log_probs: np.ndarray  # [T', C] this sentence's output frames
    stride: int
    vocab: list[str]
    hypothesis: list[str]
    hyp_alignment: Alignment
    reference: list[str] | None = None
    ref_alignment: Alignment | None = None
    ref_ops: list[str] = field(default_factory=list)
    hyp_ops: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])


def sentence_view(sid: str, points: np.ndarray, presence: np.ndarray, fps: float, log_probs: np.ndarray,
                  stride: int, vocab: Sequence[str], hypothesis: Sequence[str],
                  reference: Sequence[str] | None = None, blank: int = 0) -> SentenceView:
    """Align the hypothesis (and the reference, if any) to ``log_probs`` and score them against each other."""
    lp = np.asarray(log_probs, dtype=np.float32)
    T = int(points.shape[0])
    if T == 0:
        raise ValueError(f"sample {sid}: no frames to draw")
    if not fps or fps <= 0:
        raise ValueError(f"sample {sid}: frame rate {fps!r} is not usable")
    hyp_ali = align_sequence(lp, list(hypothesis), vocab, stride, T, blank, what=f"sample {sid} (hypothesis)")
    view = SentenceView(sid, points, presence.astype(bool), float(fps), lp, int(stride), list(vocab),
                        list(hypothesis), hyp_ali)
    if reference is not None:
        view.reference = list(reference)
        view.ref_alignment = align_sequence(lp, view.reference, vocab, stride, T, blank,
                                            what=f"sample {sid} (reference)")
        view.ref_ops, view.hyp_ops, _ = edit_ops(view.reference, view.hypothesis)
    else:
        view.hyp_ops = ["unscored"] * len(view.hypothesis)
    return view


def save_figure(fig, path: str | os.PathLike) -> Path:
    """PNG of a matplotlib Figure, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)

