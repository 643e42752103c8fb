"""Pauses split an endless stream into segments the model recognizes one at a time.

A live stream has no sentence boundaries and may run for hours, far beyond the sentence lengths a model
trained on; its LSTM state would drift. A *pause* — no hand detected for ``pause_frames`` frames in a
row — ends a segment: the segment is its frames up to its last frame with a hand, recognized as one
sentence, and the state is reset; the pause is not part of it. The next segment starts at the next frame
with a hand, and the frames between are skipped. The first segment starts at the first frame, so a
single sentence without such a pause is recognized whole, exactly as offline. The live recognizer and
the offline ``predict`` use this same rule, so both answer alike on the same frames.

Why the pause is left out: a model trained on sentences has never seen a second of a signer holding
still with the hands down after the last sign, and a model that reads ahead (the student reads 14 frames
ahead) reads it into that sign. Fed with the pause, the default corpus's test sentences scored 16% WER
instead of 0.6% with a distilled student; cut at the last hand, exactly as without the pause. So the
frames without a hand inside a segment are held (``HOLD``) until it is known which they are: part of
the segment if a hand comes back (``FEED``), or the pause (``END``: they are dropped). The cost is
latency at the end of a segment only: its last gloss becomes final when the pause is complete.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Step(Enum):
    SKIP = "skip"  # between segments: the frame is not recognized
    FEED = "feed"  # the frame belongs to the current segment, and so do the frames held before it
    HOLD = "hold"  # no hand, inside a segment: it belongs to the segment only if a hand comes back in time
    END = "end"  # the pause is complete: the held frames and this one are not part of the segment, which ended


class PauseSegmenter:
    """Frame by frame: whether each frame is skipped, fed, or ends its segment (``pause_frames`` None:
    the stream is one segment)."""

    def __init__(self, pause_frames: int | None):
        if pause_frames is not None and pause_frames < 1:
            raise ValueError(f"pause_frames must be >= 1 or None, got {pause_frames}")
        self.pause_frames = pause_frames
        self.active = False
        self.segments = 0
        self.idle_run = 0

    def step(self, hands: bool) -> Step:
        if not self.active:
            if self.segments and not hands:
                return Step.SKIP
            self.active, self.idle_run = True, 0
            self.segments += 1
        self.idle_run = 0 if hands else self.idle_run + 1
        if self.pause_frames is None or not self.idle_run:
            return Step.FEED
        if self.idle_run >= self.pause_frames:
            self.active = False
            return Step.END
        return Step.HOLD


def pause_segments(hands: Iterable[bool], pause_frames: int | None) -> list[tuple[int, int]]:
    """The segments [start, stop) of a whole sequence (``hands``: a hand detected, per frame): a segment
    that a pause ends stops after its last frame with a hand; one the sequence ends keeps every frame. A
    first segment without any hand before its pause is empty, and left out."""
    segmenter = PauseSegmenter(pause_frames)
    out: list[tuple[int, int]] = []
    start = fed = None  # the segment's first frame, and one past its last fed frame
    n = 0
    for i, h in enumerate(hands):
        n = i + 1
        step = segmenter.step(bool(h))
        if step is Step.SKIP:
            continue
        if start is None:
            start = i
        if step is Step.FEED:
            fed = i + 1
        elif step is Step.END:
            if fed is not None:
                out.append((start, fed))
            start = fed = None
    if start is not None:
        out.append((start, n))
    return out
