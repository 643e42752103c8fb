"""One browser tab's stream: its own recognizer and tracker, fed in order, freed when the tab goes.

The tracker (MediaPipe Holistic in video mode, the extractor's :mod:`sign_ctc.extraction.tracker`) keeps
tracking state between frames and is not thread-safe, so every client owns one, made on its first
image frame (a client that sends landmarks never pays for it). The recognizer is the live command's
:class:`~sign_ctc.streaming.recognizer.StreamingRecognizer` over the one loaded model the clients share
(eval mode; each recognizer carries its own state), so a page gets the glosses ``sign-ctc-live`` gives
on the same frames. All calls come from one worker thread at a time (the app awaits each).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sign_ctc.extraction.tracker import HolisticOptions, Tracker, make_tracker
from sign_ctc.features.layout import NUM_POINTS
from sign_ctc.serve.limits import Limits, MessageError, decode_frame
from sign_ctc.streaming.greedy import TimedGloss
from sign_ctc.streaming.recognizer import StreamingRecognizer

DIGITS = 4  # landmark coordinates sent back for drawing: 1e-4 of the image is below a pixel


@dataclass
class Item:
    """One unit of work from the page: ``kind`` frame | dropped | landmarks | end | clear | hello."""

    kind: str
    payload: bytes = b""
    points: np.ndarray | None = None
    presence: np.ndarray | None = None
    fps: float | None = None


@dataclass
class Settings:
    """What every session of a server shares: the loaded module, the tracker options, the limits, the
    recognizer's options (``fps`` None: the page's camera rate; ``pause_seconds`` None: no pauses)."""

    module: Any
    tracker: HolisticOptions
    limits: Limits = field(default_factory=Limits)
    fps: float | None = None
    default_fps: float = 25.0
    pause_seconds: float | None = 1.0
    tentative: bool = True
    frame_format: str = "png"  # what the page encodes frames as: png (lossless) | jpeg (quality 0.9, smaller)


class Session:
    """One client's recognizer state; ``process`` turns one item into the messages for that client."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.tracker: Tracker | None = None
        self.fps = settings.fps or settings.default_fps
        self.recognizer = self._recognizer()
        self.last = (np.zeros((NUM_POINTS, 3), np.float32), np.zeros(4, bool))
        self.frames = 0  # frames of this stream (its index of the next frame)
        self.dropped = 0
        self.undecodable = 0

    def _recognizer(self) -> StreamingRecognizer:
        s = self.settings
        pause = max(1, round(s.pause_seconds * self.fps)) if s.pause_seconds else None
        return StreamingRecognizer(s.module, fps=self.fps, pause_frames=pause, tentative=s.tentative)

    def _restart(self) -> None:
        """A fresh stream: new recognizer state, tracking forgotten (the tracker's graph is kept)."""
        self.recognizer = self._recognizer()
        if self.tracker is not None:
            self.tracker.reset()
        self.last = (np.zeros((NUM_POINTS, 3), np.float32), np.zeros(4, bool))
        self.frames = self.dropped = self.undecodable = 0

    def close(self) -> None:
        """Free the tracker's graph and the recognizer's state now (a worker thread may still hold a
        reference to this session from its last call)."""
        if self.tracker is not None:
            self.tracker.close()
        self.tracker = None
        self.recognizer = None  # type: ignore[assignment]

    def _timed(self, glosses: list[TimedGloss]) -> list[dict[str, Any]]:
        """Glosses as sent: with ``frame``, the index of the gloss's last input frame (for latency)."""
        return [{**g.as_dict(), "frame": max(0, int(round(g.end * self.fps)) - 1)} for g in glosses]

    def _push(self, points: np.ndarray, presence: np.ndarray) -> dict[str, Any]:
        update = self.recognizer.push(points, presence)
        self.frames += points.shape[0]
        return {"type": "update", "frame": self.frames - 1, "committed": self._timed(update.committed),
                "tentative": self._timed(update.tentative)}

    def process(self, item: Item) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        out: list[dict[str, Any]] = []
        if item.kind == "hello":
            if self.frames:
                raise MessageError("hello after frames: send it first (or clear the stream)")
            self.fps = self.settings.fps or item.fps or self.settings.default_fps
            self.recognizer = self._recognizer()
            return [{"type": "hello", "fps": self.fps}]
        if item.kind == "clear":
            self._restart()
            return [{"type": "cleared"}]
        if item.kind == "end":
            final = self.recognizer.end()
            msg = {"type": "update", "frame": self.frames - 1, "committed": self._timed(final.committed),
                   "tentative": [], "ended": True, "frames": self.frames}
            self._restart()
            return [msg]
        if item.kind == "landmarks":
            msg = self._push(item.points, item.presence)
        else:
            points2d = None
            if item.kind == "frame":
                try:
                    rgb = decode_frame(item.payload, self.settings.limits)
                except MessageError as err:  # the last landmarks stand in; the stream keeps its timing
                    self.undecodable += 1
                    out.append({"type": "error", "message": f"frame {self.frames}: {err}"})
                else:
                    if self.tracker is None:
                        self.tracker = make_tracker(self.settings.tracker)
                    tracked = self.tracker.process(rgb, int(round(self.frames * 1000.0 / self.fps)))
                    self.last = tracked.landmarks()
                    points2d = np.round(self.last[0][:, :2].astype(np.float64), DIGITS).tolist()
            else:
                self.dropped += 1
            msg = self._push(self.last[0][None], self.last[1][None])
            msg["points"] = points2d
            msg["presence"] = self.last[1].tolist()
        msg.update(dropped=self.dropped, segments=self.recognizer.segments,
                   server_ms=round(1000.0 * (time.perf_counter() - t0), 2))
        out.append(msg)
        return out
