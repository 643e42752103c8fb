"""Pauses split an endless stream into segments the model recognizes one at a time.

A live stream has no sentence boundaries and may run for hours, far beyond the sentence lengths a model
trained on; its LSTM state would drift. A *pause* — no hand detected for ``pause_frames`` frames in a
row — ends a segment (its frames, the pause's included, are recognized as one sentence and the state is
reset); the next segment starts at the next frame with a hand, and the frames between are skipped. The
first segment starts at the first frame, so a single sentence without such a pause is recognized whole,
exactly as offline. The live recognizer and the offline ``predict`` use this same rule, so both answer
alike on the same frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Step(Enum):
    SKIP = "skip"  # between segments: the frame is not recognized
    FEED = "feed"  # the frame belongs to the current segment
    END = "end"  # the frame belongs to the current segment, which ends with it


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
        if self.pause_frames is not None and self.idle_run >= self.pause_frames:
            self.active = False
            return Step.END
        return Step.FEED


def pause_segments(hands: Iterable[bool], pause_frames: int | None) -> list[tuple[int, int]]:
    """The segments [start, stop) of a whole sequence (``hands``: a hand detected, per frame)."""
    segmenter = PauseSegmenter(pause_frames)
    out: list[tuple[int, int]] = []
    start = None
    n = 0
    for i, h in enumerate(hands):
        n = i + 1
        step = segmenter.step(bool(h))
        if step is Step.SKIP:
            continue
        if start is None:
            start = i
        if step is Step.END:
            out.append((start, i + 1))
            start = None
    if start is not None:
        out.append((start, n))
    return out
