"""Incremental best-path decoding: glosses with their times, committed as soon as they are certain.

Best path reads each output frame on its own (argmax), so a gloss is certain as soon as its first frame
is final; its end is certain when a frame of another token follows. What is not yet final is the frames
still inside the model's look-ahead: a tentative tail is decoded from a look-ahead that assumes the stream
ended now (:meth:`sign_ctc.streaming.recognizer.StreamingRecognizer.peek`). After the stream ends the
committed glosses equal :func:`sign_ctc.decoding.decoders.greedy_decode` of the whole sentence.
"""

from __future__ import annotations

import torch

from sign_ctc.decoding.timed import TimedGloss


class GreedyStream:
    """Best path over output frames pushed in order. ``seconds_per_frame``: one output frame's duration
    (total stride / fps); ``offset``: the time of the first output frame."""

    def __init__(self, tokens: list[str], seconds_per_frame: float, blank: int = 0, offset: float = 0.0):
        self.tokens = tokens
        self.blank = blank
        self.spf = seconds_per_frame
        self.offset = offset
        self.frames = 0  # output frames seen
        self.prev = blank  # the previous frame's best token
        self.open: TimedGloss | None = None  # the gloss whose run is still going on
        self.done: list[TimedGloss] = []  # closed glosses not yet taken by the caller

    def _time(self, frame: int) -> float:
        return self.offset + frame * self.spf

    def push(self, log_probs: torch.Tensor) -> None:
        """Final log-probs [k, C] of the next output frames."""
        self.push_path(log_probs.argmax(-1).tolist())

    def push_path(self, path: list[int]) -> None:
        """The next output frames' tokens of a CTC path (best path here; a beam hypothesis' path in
        :mod:`sign_ctc.streaming.beam`): a run of one token is one gloss, a blank or another token ends it."""
        for token in path:
            if token != self.prev:
                if self.open is not None:
                    self.open.end = self._time(self.frames)
                    self.done.append(self.open)
                    self.open = None
                if token != self.blank:
                    self.open = TimedGloss(self.tokens[token], self._time(self.frames), self._time(self.frames + 1))
            elif self.open is not None:
                self.open.end = self._time(self.frames + 1)
            self.prev = token
            self.frames += 1

    def take(self) -> list[TimedGloss]:
        """The glosses closed since the last call (the caller keeps them; the decoder does not)."""
        out, self.done = self.done, []
        return out

    def pending(self) -> list[TimedGloss]:
        """The gloss still running (certain, its end not yet)."""
        return [self.open] if self.open is not None else []

    def finish(self) -> list[TimedGloss]:
        """The stream ended: every gloss closed; the ones not yet taken."""
        if self.open is not None:
            self.done.append(self.open)
            self.open = None
        return self.take()

    def peek(self, log_probs: torch.Tensor) -> list[TimedGloss]:
        """The glosses that look-ahead log-probs [k, C] (frames not final yet) would add after the open one."""
        probe = self.copy()
        probe.push(log_probs)
        return self.after_open(probe.finish())

    def copy(self) -> GreedyStream:
        """A probe that continues from here without touching this stream (taken glosses not carried)."""
        probe = GreedyStream(self.tokens, self.spf, self.blank, self.offset)
        probe.frames, probe.prev = self.frames, self.prev
        probe.open = TimedGloss(self.open.gloss, self.open.start, self.open.end) if self.open else None
        return probe

    def after_open(self, glosses: list[TimedGloss]) -> list[TimedGloss]:
        """A probe's glosses without this stream's open one (:meth:`pending` gives that)."""
        same = self.open is not None and glosses and glosses[0].start == self.open.start
        return glosses[1:] if same else glosses
