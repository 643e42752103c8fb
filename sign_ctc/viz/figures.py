"""Pictures of what the model does: skeleton videos with gloss tracks, posteriorgrams, error plots.

Headless throughout: videos are drawn with OpenCV into arrays (mp4, GIF when no mp4 encoder is
available), plots with matplotlib's ``Figure`` on the Agg canvas (no pyplot, no display, no global
backend switch). cv2 and matplotlib are imported inside the functions that draw, so importing this
module (eval.py, the training callbacks) costs nothing when no picture is drawn. Files are written
atomically (temp file in the target folder, then rename).

Colours say what the scorer made of each gloss (jiwer's minimum edit alignment, as the WER uses):
correct, substitution, insertion (hypothesis only), deletion (reference only).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sign_ctc.atomic import write_bytes_atomic, write_text_atomic
from sign_ctc.decoding.alignment import Alignment, GlossSpan, align_sequence
from sign_ctc.features.layout import PARTS, RAW_PARTS

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

# MediaPipe pose edges of the upper body (legs are rarely in a signing video's frame).
POSE_EDGES: tuple[tuple[int, int], ...] = (
    (11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (15, 17), (15, 19), (15, 21), (17, 19), (16, 18),
    (16, 20), (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (0, 1), (1, 2), (2, 3), (3, 7), (0, 4),
    (4, 5), (5, 6), (6, 8), (9, 10),
)
HAND_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
    (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)
# Pose points that frame the signing space (head, arms, hands; not the legs).
_FRAMING_POSE = np.arange(0, 25)


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


# ---------------------------------------------------------------------------------- skeleton


def _bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return rgb[2], rgb[1], rgb[0]


def _framing(points: np.ndarray, presence: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the signing space over the whole sequence, so the skeleton does not jump."""
    keep = [np.arange(*RAW_PARTS[p]) if p != "pose" else _FRAMING_POSE for p in PARTS]
    chunks = []
    for i, idx in enumerate(keep):
        pts = points[presence[:, i]][:, idx, :2].reshape(-1, 2)
        chunks.append(pts[(pts != 0).any(-1)])
    xy = np.concatenate(chunks) if chunks else np.zeros((0, 2))
    if len(xy) == 0:
        return 0.0, 0.0, 1.0, 1.0
    lo, hi = np.percentile(xy, 0.5, axis=0), np.percentile(xy, 99.5, axis=0)
    span = np.maximum(hi - lo, 1e-3)
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


class _Projector:
    """Unit coordinates -> pixels of the skeleton panel, one scale for x and y (no distortion)."""

    def __init__(self, box: tuple[float, float, float, float], width: int, height: int, top: int = 24):
        x0, y0, x1, y1 = box
        self.scale = min(width / (x1 - x0), (height - top) / (y1 - y0))
        self.ox = (width - (x1 - x0) * self.scale) / 2 - x0 * self.scale
        self.oy = top + (height - top - (y1 - y0) * self.scale) / 2 - y0 * self.scale

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        return np.stack([xy[..., 0] * self.scale + self.ox, xy[..., 1] * self.scale + self.oy], -1).round().astype(np.int32)


def _hand_icon(img: np.ndarray, x: int, y: int, color: tuple[int, int, int], crossed: bool) -> None:
    """A small hand (palm and five fingers); crossed out when the hand was not detected."""
    import cv2

    cv2.circle(img, (x, y + 6), 7, color, -1, cv2.LINE_AA)
    for k, ang in enumerate(np.linspace(-2.4, -0.5, 5)):
        length = 11 if k in (1, 2, 3) else 9
        cv2.line(img, (x, y + 6), (int(x + length * np.cos(ang) * 1.3), int(y + 6 + length * np.sin(ang) * 1.3)),
                 color, 3, cv2.LINE_AA)
    if crossed:
        cv2.line(img, (x - 11, y - 9), (x + 11, y + 15), (0, 0, 220), 2, cv2.LINE_AA)


def draw_skeleton(img: np.ndarray, points: np.ndarray, presence: np.ndarray, project: _Projector) -> None:
    """Pose, both hands and a face outline of one frame; undetected parts are left out."""
    import cv2

    for i, part in enumerate(PARTS):
        if not presence[i]:
            continue
        lo, hi = RAW_PARTS[part]
        pts = points[lo:hi, :2]
        ok = (pts != 0).any(-1)
        px = project(pts)
        color = _bgr(PART_COLORS[part])
        if part == "face":
            hull = cv2.convexHull(px[ok]) if ok.sum() >= 3 else None
            if hull is not None:
                cv2.polylines(img, [hull], True, color, 1, cv2.LINE_AA)
            for p in px[ok][::6]:
                cv2.circle(img, (int(p[0]), int(p[1])), 1, color, -1)
            continue
        edges = POSE_EDGES if part == "pose" else HAND_EDGES
        for a, b in edges:
            if ok[a] and ok[b]:
                cv2.line(img, tuple(int(v) for v in px[a]), tuple(int(v) for v in px[b]), color, 2, cv2.LINE_AA)
        radius = 3 if part == "pose" else 2
        shown = np.flatnonzero(ok[:25] if part == "pose" else ok)  # pose: not the legs
        for p in px[shown]:
            cv2.circle(img, (int(p[0]), int(p[1])), radius, color, -1, cv2.LINE_AA)


# Track panel geometry (px).
_LABEL_W, _ROW_H, _GAP, _DET_H, _LEGEND_H = 44, 26, 6, 6, 20


def _track_height() -> int:
    return _GAP + 2 * (_ROW_H + _GAP) + 2 * _DET_H + _GAP + _LEGEND_H + _GAP


def track_rows(view: SentenceView) -> list[tuple[str, tuple[GlossSpan, ...], list[str]]]:
    """(row label, spans, ops) of the tracks under the video: reference (if any), then hypothesis."""
    rows = []
    if view.ref_alignment is not None:
        rows.append(("REF", view.ref_alignment.spans, view.ref_ops))
    rows.append(("HYP", view.hyp_alignment.spans, view.hyp_ops))
    return rows


def _frame_x(frame: float, T: int, width: int) -> int:
    return int(round(_LABEL_W + frame / max(T, 1) * (width - _LABEL_W - 4)))


def _put_text_in(img: np.ndarray, text: str, x0: int, x1: int, y: int, color: tuple[int, int, int],
                 center: bool = True) -> None:
    """``text`` between x0 and x1, shortened (``ABC.``) until it fits."""
    import cv2

    font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    while text:
        (w, _), _ = cv2.getTextSize(text, font, fs, 1)
        if w <= x1 - x0 - 2:
            x = x0 + (x1 - x0 - w) // 2 if center else x0 + 1
            cv2.putText(img, text, (x, y), font, fs, color, 1, cv2.LINE_AA)
            return
        text = text[:-2] + "." if len(text) > 2 else ""


def _track_background(view: SentenceView, width: int) -> np.ndarray:
    """The gloss tracks, detection strips and legend without the highlight (drawn once per video)."""
    import cv2

    T = view.num_frames
    img = np.full((_track_height(), width, 3), 32, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    y = _GAP
    for label, spans, ops in track_rows(view):
        cv2.putText(img, label, (4, y + 17), font, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
        cv2.rectangle(img, (_frame_x(0, T, width), y), (_frame_x(T, T, width), y + _ROW_H), (55, 55, 55), -1)
        for k, (span, op) in enumerate(zip(spans, ops, strict=True)):
            x0, x1 = _frame_x(span.input_start, T, width), _frame_x(span.input_end, T, width)
            dim = tuple(int(c * 0.55) for c in _bgr(OP_COLORS[op]))
            cv2.rectangle(img, (x0, y), (max(x1 - 1, x0), y + _ROW_H), dim, -1)
        for k, span in enumerate(spans):  # a label may use the gap up to the next gloss (CTC spikes are narrow)
            x0 = _frame_x(span.input_start, T, width)
            x1 = _frame_x(spans[k + 1].input_start, T, width) if k + 1 < len(spans) else _frame_x(T, T, width)
            _put_text_in(img, span.gloss, x0, x1, y + 17, (235, 235, 235), center=False)
        y += _ROW_H + _GAP
    # Detection strips: left hand, right hand; grey where the hand was not detected.
    for i, part in ((1, "left_hand"), (2, "right_hand")):
        for t in range(T):
            color = _bgr(PART_COLORS[part]) if view.presence[t, i] else MISSING_COLOR
            cv2.rectangle(img, (_frame_x(t, T, width), y), (max(_frame_x(t + 1, T, width) - 1, _frame_x(t, T, width)),
                                                            y + _DET_H - 2), color, -1)
        y += _DET_H
    y += _GAP
    x = 6
    for op in ("correct", "substitution", "insertion", "deletion"):
        cv2.rectangle(img, (x, y + 4), (x + 10, y + 14), _bgr(OP_COLORS[op]), -1)
        cv2.putText(img, op, (x + 14, y + 14), font, 0.38, (220, 220, 220), 1, cv2.LINE_AA)
        x += 24 + cv2.getTextSize(op, font, 0.38, 1)[0][0]
    cv2.putText(img, "hand strips L/R: grey = none", (x, y + 14), font, 0.33, (170, 170, 170), 1, cv2.LINE_AA)
    return img


def current_span(spans: Sequence[GlossSpan], frame: int) -> int:
    """Index of the span that holds input frame ``frame``, -1 between glosses."""
    for i, s in enumerate(spans):
        if s.input_start <= frame < s.input_end:
            return i
    return -1


def last_span(spans: Sequence[GlossSpan], frame: int) -> int:
    """Index of the latest span that started at or before ``frame``, -1 before the first: CTC emits a
    gloss as a spike of a frame or two, so the caption holds it until the next one."""
    started = [i for i, s in enumerate(spans) if s.input_start <= frame]
    return started[-1] if started else -1


def video_frames(view: SentenceView, style: FigureStyle | None = None) -> Iterator[np.ndarray]:
    """BGR frames [H, W, 3] of the skeleton video, one per input frame: skeleton above, tracks below."""
    import cv2

    style = style or FigureStyle()
    W, H = style.width, style.skeleton_height
    T = view.num_frames
    project = _Projector(_framing(view.points, view.presence), W, H - 30)
    background = _track_background(view, W)
    rows = track_rows(view)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in range(T):
        top = np.full((H, W, 3), 18, dtype=np.uint8)
        draw_skeleton(top, view.points[t], view.presence[t], project)
        cv2.putText(top, f"{view.id}  frame {t + 1}/{T}  {t / view.fps:5.2f} s", (6, 16), font, 0.42,
                    (220, 220, 220), 1, cv2.LINE_AA)
        # Undetected parts: grey crossed-out hand icons (and a note for pose / face).
        for k, (i, name) in enumerate(((1, "L"), (2, "R"))):
            x = W - 62 + k * 32
            _hand_icon(top, x, 10, _bgr(PART_COLORS[PARTS[i]]) if view.presence[t, i] else MISSING_COLOR,
                       not view.presence[t, i])
            cv2.putText(top, name, (x - 4, 44), font, 0.35, (200, 200, 200), 1, cv2.LINE_AA)
        missing = [p for i, p in ((0, "pose"), (3, "face")) if not view.presence[t, i]]
        if missing:
            cv2.putText(top, f"{' + '.join(missing)} not detected", (6, 34), font, 0.4, _bgr(MISSING_COLOR), 1,
                        cv2.LINE_AA)
        # The current glosses, large, under the skeleton.
        x = 8
        for label, spans, ops in rows:
            k, now = last_span(spans, t), current_span(spans, t)
            text, color = (spans[k].gloss, _bgr(OP_COLORS[ops[k]])) if k >= 0 else ("-", (120, 120, 120))
            if k >= 0 and now < 0:  # held since its spike: dimmed
                color = tuple(int(c * 0.6) for c in color)
            cv2.putText(top, f"{label}:", (x, H - 10), font, 0.5, (200, 200, 200), 1, cv2.LINE_AA)
            x += 42
            cv2.putText(top, text, (x, H - 10), font, 0.6, color, 2, cv2.LINE_AA)
            x += max(90, cv2.getTextSize(text, font, 0.6, 2)[0][0] + 24)
        bottom = background.copy()
        y = _GAP
        for _, spans, ops in rows:
            k = current_span(spans, t)
            if k >= 0:
                s = spans[k]
                x0, x1 = _frame_x(s.input_start, T, W), _frame_x(s.input_end, T, W)
                cv2.rectangle(bottom, (x0, y), (max(x1 - 1, x0), y + _ROW_H), _bgr(OP_COLORS[ops[k]]), -1)
                cv2.rectangle(bottom, (x0, y), (max(x1 - 1, x0), y + _ROW_H), (255, 255, 255), 2)
                _put_text_in(bottom, s.gloss, x0, x1, y + 17, (255, 255, 255))
            y += _ROW_H + _GAP
        cx = _frame_x(t + 0.5, T, W)
        cv2.line(bottom, (cx, 0), (cx, y + 2 * _DET_H), (255, 255, 255), 1)
        yield np.concatenate([top, bottom], axis=0)


def video_size(style: FigureStyle | None = None) -> tuple[int, int]:
    """(width, height) of the skeleton video's frames."""
    style = style or FigureStyle()
    return style.width, style.skeleton_height + _track_height()


def _replace_from_temp(path: Path, suffix: str, write: Callable[[str], None]) -> None:
    """Let ``write`` fill a temp file beside ``path`` (an encoder that wants a file name), then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the file normal permissions
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_video(frames: Iterator[np.ndarray], path: str | os.PathLike, fps: float, fmt: str = "mp4") -> Path:
    """Write BGR frames as an mp4 (OpenCV's MPEG-4 encoder); a GIF when ``fmt='gif'`` or no mp4 encoder works.

    Returns the written path (its suffix says which format it became).
    """
    import cv2

    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    if fmt == "mp4":
        target = path.with_suffix(".mp4")
        rest: list[np.ndarray] = []
        ok = {"opened": False}

        def encode(tmp: str) -> None:
            writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (first.shape[1], first.shape[0]))
            if not writer.isOpened():
                raise OSError("no mp4 encoder")
            ok["opened"] = True
            try:
                writer.write(first)
                for frame in frames:
                    writer.write(frame)
            finally:
                writer.release()

        try:
            _replace_from_temp(target, ".mp4", encode)
            return target
        except OSError:
            if ok["opened"]:
                raise
            rest = list(frames)
        frames = iter(rest)
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f[..., ::-1])) for f in [first, *frames]]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=max(int(round(1000 / fps)), 20),
                   loop=0)
    target = path.with_suffix(".gif")
    write_bytes_atomic(target, buf.getvalue())
    return target


def write_skeleton_video(view: SentenceView, path: str | os.PathLike, style: FigureStyle | None = None) -> Path:
    """The skeleton video of one sentence at its real frame rate."""
    style = style or FigureStyle()
    return write_video(video_frames(view, style), path, view.fps, style.video_format)


# ------------------------------------------------------------------------------- posteriorgram


def posteriorgram_glosses(view: SentenceView, limit: int = 16, floor: float = 0.1) -> list[int]:
    """Token ids worth a row: the reference's and hypothesis' glosses, then any other gloss whose
    probability reaches ``floor`` somewhere (most probable first), at most ``limit``."""
    index = {tok: i for i, tok in enumerate(view.vocab)}
    chosen: list[int] = []
    for g in [*(view.reference or []), *view.hypothesis]:
        if index.get(g) is not None and index[g] not in chosen and index[g] != 0:
            chosen.append(index[g])
    peak = np.exp(view.log_probs).max(0)
    for tok in np.argsort(-peak):
        if len(chosen) >= limit:
            break
        if int(tok) != 0 and int(tok) not in chosen and peak[tok] >= floor:
            chosen.append(int(tok))
    return chosen[:limit]


def posteriorgram_figure(view: SentenceView, style: FigureStyle | None = None):
    """A matplotlib Figure: P(blank) on top (shaded), gloss probabilities over output frames below,
    the greedy path (x) and the reference's forced alignment (boxes) drawn over them."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    style = style or FigureStyle()
    probs = np.exp(view.log_probs)
    Tp = probs.shape[0]
    rows = posteriorgram_glosses(view, style.max_glosses)
    fig = Figure(figsize=(max(6.0, min(16.0, 2.5 + Tp * 0.12)), 2.2 + 0.28 * max(len(rows), 1)), dpi=style.dpi)
    gs = fig.add_gridspec(2, 1, height_ratios=[1, max(len(rows), 1) * 0.45 + 0.5], hspace=0.08)
    ax_blank = fig.add_subplot(gs[0])
    ax = fig.add_subplot(gs[1], sharex=ax_blank)
    t = np.arange(Tp)
    greedy = probs.argmax(-1)
    ax_blank.fill_between(t, probs[:, 0], step="mid", color="0.6", alpha=0.8, label="P(blank)")
    ax_blank.set_ylim(0, 1.05)
    ax_blank.set_ylabel("blank", fontsize=8)
    ax_blank.tick_params(labelbottom=False, labelsize=7)
    title = f"{view.id}"
    if view.reference is not None:
        title += f"\nREF: {' '.join(view.reference)}"
    title += f"\nHYP: {' '.join(view.hypothesis)}"
    ax_blank.set_title(title, fontsize=8, loc="left", pad=22)
    image = probs[:, rows].T if rows else np.zeros((1, Tp))
    im = ax.imshow(image, aspect="auto", origin="upper", interpolation="nearest", cmap="magma", vmin=0, vmax=1,
                   extent=(-0.5, Tp - 0.5, len(rows) - 0.5 if rows else 0.5, -0.5))
    # Blank frames of the greedy path: shaded columns.
    for a, b in _runs(greedy == 0):
        ax.axvspan(a - 0.5, b - 0.5, color="white", alpha=0.12, lw=0)
    ax.set_yticks(range(len(rows)), [view.vocab[r] for r in rows], fontsize=7)
    row_of = {tok: k for k, tok in enumerate(rows)}
    gx = [i for i in range(Tp) if greedy[i] != 0 and int(greedy[i]) in row_of]
    ax.scatter(gx, [row_of[int(greedy[i])] for i in gx], marker="x", s=18, color="#00e5ff", lw=1.2,
               label="greedy path", zorder=3)
    if view.ref_alignment is not None:
        for k, span in enumerate(view.ref_alignment.spans):
            if span.token in row_of:
                ax.add_patch(Rectangle((span.start - 0.5, row_of[span.token] - 0.5), span.end - span.start, 1.0,
                                       fill=False, lw=1.6, ec="#7CFC00", zorder=4,
                                       label="reference alignment" if k == 0 else None))
    ax.set_xlim(-0.5, Tp - 0.5)
    ax.set_xlabel(f"output frame (x{view.stride} input frames; {view.fps:g} fps input)", fontsize=8)
    ax.tick_params(labelsize=7)
    secs = ax_blank.secondary_xaxis("top", functions=(lambda x: x * view.stride / view.fps,
                                                lambda s: s * view.fps / view.stride))
    secs.set_xlabel("seconds", fontsize=7)
    secs.tick_params(labelsize=6)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=2, fontsize=7, frameon=False)
    fig.colorbar(im, ax=[ax_blank, ax], fraction=0.025, pad=0.01).ax.tick_params(labelsize=6)
    return fig


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(padded)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def save_figure(fig, path: str | os.PathLike) -> Path:
    """PNG of a matplotlib Figure, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)


def write_posteriorgram(view: SentenceView, path: str | os.PathLike, style: FigureStyle | None = None) -> Path:
    return save_figure(posteriorgram_figure(view, style), path)


# ------------------------------------------------------------------------------ error plots


@dataclass
class ErrorStatistics:
    """What went wrong over a corpus split, gloss by gloss (the data behind the error plots)."""

    substitutions: Counter = field(default_factory=Counter)  # (ref, hyp) -> count
    occurrences: Counter = field(default_factory=Counter)  # reference gloss -> count
    substituted: Counter = field(default_factory=Counter)
    deleted: Counter = field(default_factory=Counter)
    inserted: Counter = field(default_factory=Counter)  # hypothesis gloss -> count
    by_length: dict[int, list[int]] = field(default_factory=dict)  # ref length -> [sentences, errors, ref glosses]

    def gloss_rows(self) -> list[tuple[str, int, int, int, float]]:
        """(gloss, occurrences, substituted, deleted, error rate %) sorted by errors, then by name."""
        rows = [(g, n, self.substituted[g], self.deleted[g], 100.0 * (self.substituted[g] + self.deleted[g]) / n)
                for g, n in self.occurrences.items()]
        return sorted(rows, key=lambda r: (-(r[2] + r[3]), -r[4], r[0]))


def error_statistics(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> ErrorStatistics:
    """Per-gloss errors, substitution pairs and WER by reference length of (reference, hypothesis) pairs."""
    stats = ErrorStatistics()
    for ref, hyp in pairs:
        ref_ops, hyp_ops, subs = edit_ops(ref, hyp)
        stats.substitutions.update(subs)
        stats.occurrences.update(ref)
        stats.substituted.update(g for g, op in zip(ref, ref_ops) if op == "substitution")
        stats.deleted.update(g for g, op in zip(ref, ref_ops) if op == "deletion")
        stats.inserted.update(g for g, op in zip(hyp, hyp_ops) if op == "insertion")
        row = stats.by_length.setdefault(len(ref), [0, 0, 0])
        row[0] += 1
        row[1] += sum(op != "correct" for op in ref_ops) + sum(op == "insertion" for op in hyp_ops)
        row[2] += len(ref)
    return stats


def _barh(title: str, labels: list[str], values: list[float], xlabel: str, dpi: int, notes: list[str] | None = None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 1.2 + 0.24 * max(len(labels), 1)), dpi=dpi)
    ax = fig.add_subplot()
    if not labels:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        y = np.arange(len(labels))
        ax.barh(y, values, color="#4c72b0")
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        for yi, v, note in zip(y, values, notes or [""] * len(labels)):
            ax.text(v, yi, f" {note or (f'{v:g}')}", va="center", fontsize=6)
        ax.margins(x=0.15)
    ax.set_title(title, fontsize=9, loc="left")
    return fig


def write_error_plots(stats: ErrorStatistics, folder: str | os.PathLike, split: str,
                      style: FigureStyle | None = None) -> dict[str, Path]:
    """substitutions.png, gloss_errors.png (+ .csv with every gloss) and wer_by_length.png in ``folder``."""
    from matplotlib.figure import Figure

    style = style or FigureStyle()
    folder = Path(folder)
    out: dict[str, Path] = {}
    top = stats.substitutions.most_common(style.top_pairs)
    out["substitutions"] = save_figure(_barh(
        f"{split}: most frequent substitutions (reference -> hypothesis)", [f"{r} -> {h}" for (r, h), _ in top],
        [c for _, c in top], "count", style.dpi), folder / "substitutions.png")
    rows = [r for r in stats.gloss_rows() if r[2] + r[3] > 0][: style.top_glosses]
    out["gloss_errors"] = save_figure(_barh(
        f"{split}: per-gloss error rate (substituted + deleted / occurrences)", [r[0] for r in rows],
        [r[4] for r in rows], "error rate (%)", style.dpi,
        [f"{r[4]:.0f}% ({r[2]}S {r[3]}D / {r[1]})" for r in rows]), folder / "gloss_errors.png")
    csv = ["gloss,occurrences,substituted,deleted,inserted,error_rate"] + [
        f"{g},{n},{s},{d},{stats.inserted[g]},{rate:.2f}" for g, n, s, d, rate in stats.gloss_rows()]
    write_text_atomic(folder / "gloss_errors.csv", "\n".join(csv) + "\n")
    out["gloss_errors_csv"] = folder / "gloss_errors.csv"
    lengths = sorted(stats.by_length)
    fig = Figure(figsize=(6.5, 3.2), dpi=style.dpi)
    ax = fig.add_subplot()
    if lengths:
        wer = [100.0 * stats.by_length[n][1] / max(stats.by_length[n][2], 1) for n in lengths]
        ax.bar(lengths, wer, color="#dd8452")
        for n, w in zip(lengths, wer):
            ax.text(n, w, f"{w:.0f}%\n({stats.by_length[n][0]})", ha="center", va="bottom", fontsize=6)
        ax.set_xticks(lengths)
        ax.margins(y=0.2)
    ax.set_xlabel("reference length (glosses)", fontsize=8)
    ax.set_ylabel("WER (%)", fontsize=8)
    ax.set_title(f"{split}: WER by sentence length (sentences in brackets)", fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    out["wer_by_length"] = save_figure(fig, folder / "wer_by_length.png")
    return out
