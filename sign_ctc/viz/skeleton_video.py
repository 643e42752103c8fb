"""Skeleton videos: the landmarks drawn frame by frame under gloss tracks (reference and hypothesis
coloured by what the scorer made of each gloss, the current gloss highlighted).

Drawn with OpenCV into arrays and written as mp4 (a GIF where no mp4 encoder is available); cv2 is
imported inside the functions that draw, and files are written atomically (temp file, then rename).
The style, colours and the sentence view are shared with the other figures (:mod:`sign_ctc.viz.figures`).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from sign_ctc.atomic import write_bytes_atomic
from sign_ctc.decoding.alignment import GlossSpan
from sign_ctc.features.layout import PARTS, RAW_PARTS
from sign_ctc.viz.figures import MISSING_COLOR, OP_COLORS, PART_COLORS, FigureStyle, SentenceView

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
