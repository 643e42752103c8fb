"""Live recognition: frames from a camera, a file or a stream URL -> MediaPipe -> the streaming recognizer.

    sign-ctc-live source=clip.mp4 ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt [realtime=true]
    sign-ctc-live source=0 ckpt_path=...          # camera 0; Ctrl+C ends cleanly
    sign-ctc-live source=clip.mp4 ckpt_path=... decoding=beam decoding.lm_path=gloss.arpa  # beam search + LM
    sign-ctc-live source=clip.mp4 model_path=.../best.stream.onnx   # the streaming ONNX export, onnxruntime

Tracking (MediaPipe, ~40 ms a frame on one CPU core) and recognition overlap: the tracker runs in the
main thread and hands each frame's landmarks to the recognizer's thread through a queue. With
``realtime=true`` (always for a camera or URL) a reader thread delivers frames at the source's rate; up
to ``backlog_seconds`` of them may wait for the tracker (MediaPipe's slow frames, ~44 ms at p95 against
40 ms at 25 fps, are absorbed instead of dropped, at the price of that much latency at worst). Older
frames beyond it are dropped, counted, and their places in the stream are taken by the last tracked
landmarks, so times stay true. Written to the run folder:
``live.ctm`` (each gloss with its start and duration in seconds) and ``live.json`` (glosses, frames,
drops, latencies); also after Ctrl+C, a camera that disappears or a stream that stalls.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from sign_ctc.atomic import write_text_atomic
from sign_ctc.cli import CONF_DIR, EXIT_BAD_INPUT, report_error, run_command  # noqa: F401 (callers of run() compare)
from sign_ctc.errors import ConfigError, SignCtcError
from sign_ctc.models.checkpoint import CheckpointError
from sign_ctc.run.backend import apply_backend
from sign_ctc.streaming.greedy import TimedGloss
from sign_ctc.streaming.recognizer import NotStreamableError, StreamingRecognizer

log = logging.getLogger(__name__)
STALL_SECONDS = 5.0  # a live source that delivers no frame for this long has stalled


class SourceError(SignCtcError, RuntimeError):
    """A source that cannot be opened; the message says which and why."""


@dataclass
class Frame:
    index: int
    arrival: float  # time.perf_counter() when the frame was read
    rgb: np.ndarray | None  # None: dropped (the tracker could not take it in time)


@dataclass
class Stats:
    frames: int = 0
    dropped: int = 0
    corrupt: int = 0
    tracker_s: list[float] = field(default_factory=list)
    recognizer_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)  # a gloss's last frame read -> the gloss committed
    compute_s: list[float] = field(default_factory=list)  # the frame that committed it read -> committed
    stopped_by: str = "end of source"


def open_source(source: Any) -> tuple[Any, float, bool]:
    """(cv2.VideoCapture, its fps or 0, is live): a camera index, a URL or a file."""
    import cv2

    text = str(source)
    live = text.isdigit() or "://" in text
    if not live and not Path(text).is_file():
        raise SourceError(f"source not found: {text} (give a video file, a camera index such as 0, or a URL)")
    cap = cv2.VideoCapture(int(text) if text.isdigit() else text)
    if not cap.isOpened():
        cap.release()
        what = "camera" if text.isdigit() else ("stream" if live else "video")
        raise SourceError(f"cannot open {what} {text}" + (" (is it connected and not in use?)" if text.isdigit() else ""))
    return cap, float(cap.get(cv2.CAP_PROP_FPS) or 0.0), live


def warm_up(cap: Any, tracker: Any, live: bool) -> None:
    """Track the first frame once and reset: MediaPipe loads its models on the first frames (about a
    second), which would otherwise count as falling behind and drop the frames behind it. A file is
    rewound; a camera or stream loses that one frame."""
    import cv2

    ok, bgr = cap.read()
    if ok and bgr is not None:
        tracker.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 0)
        tracker.reset()
    if not live:
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)


def frames_in_order(cap: Any, stats: Stats):
    """Every frame of a file, as fast as the tracker takes them (no drops)."""
    import cv2

    index = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            return
        arrival = time.perf_counter()
        if bgr is None or bgr.size == 0:
            stats.corrupt += 1
            continue
        yield Frame(index, arrival, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1


def frames_paced(cap: Any, fps: float, live: bool, stats: Stats, stop: threading.Event, backlog: int = 1):
    """Frames at the source's rate; the newest ``backlog`` frames waiting are kept: older frames the
    tracker did not take in time come out as dropped (``rgb`` None), in order, so the stream keeps its
    timing. ``backlog=1``: only the newest frame (lowest latency, most drops)."""
    if backlog < 1:
        raise ConfigError(f"backlog must be at least 1 frame, got {backlog}")
    import cv2

    slot: list[Frame] = []
    cond = threading.Condition()
    done = threading.Event()

    def reader() -> None:
        index, start = 0, time.perf_counter()
        try:
            while not stop.is_set():
                if not live:  # a file: wait for the frame's due time
                    delay = start + index / fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                ok, bgr = cap.read()
                if not ok:
                    return
                frame = Frame(index, time.perf_counter(), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr is not None else None)
                with cond:
                    slot.append(frame)
                    cond.notify()
                index += 1
        finally:
            done.set()
            with cond:
                cond.notify()

    thread = threading.Thread(target=reader, name="sign-ctc-live-reader", daemon=True)
    thread.start()
    last_seen = time.perf_counter()
    while True:
        with cond:
            while not slot and not done.is_set():
                if live and time.perf_counter() - last_seen > STALL_SECONDS:
                    stats.stopped_by = f"the source delivered no frame for {STALL_SECONDS:.0f} s (stalled)"
                    return
                cond.wait(0.1)
            if not slot:
                return
            late, slot[:] = slot[:-backlog], slot[-backlog:]  # beyond the backlog: dropped
            frame = slot.pop(0)  # the oldest frame kept, taken now
        last_seen = time.perf_counter()
        for old in late:  # not taken in time: dropped, their places kept
            stats.dropped += 1
            yield Frame(old.index, old.arrival, None)
        yield frame


class RecognizerThread:
    """The recognizer in its own thread: landmarks in through a queue, glosses out as they are committed."""

    def __init__(self, recognizer: StreamingRecognizer, stats: Stats, display: Any):
        self.recognizer = recognizer
        self.stats = stats
        self.display = display
        self.queue: queue.Queue = queue.Queue()
        self.glosses: list[TimedGloss] = []
        self.arrivals: dict[int, float] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="sign-ctc-live-recognizer", daemon=True)
        self.thread.start()

    def put(self, index: int, arrival: float, points: np.ndarray, presence: np.ndarray) -> None:
        self.queue.put((index, arrival, points, presence))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        try:
            ended = False
            while not ended:
                items = [self.queue.get()]
                while not self.queue.empty():  # whatever has queued up meanwhile: one chunk
                    items.append(self.queue.get())
                if items[-1] is None:
                    ended = True
                    items = items[:-1]
                t0 = time.perf_counter()
                update = None
                if items:
                    for index, arrival, _, _ in items:
                        self.arrivals[index] = arrival
                    update = self.recognizer.push(np.stack([i[2] for i in items]), np.stack([i[3] for i in items]))
                    self._committed(update.committed, items[-1][1])
                if ended:
                    final = self.recognizer.end()
                    self._committed(final.committed, items[-1][1] if items else t0)
                self.stats.recognizer_s.append(time.perf_counter() - t0)
                self.display.show(self.glosses, [] if ended or update is None else update.tentative)
        except BaseException as err:  # reported by the main thread, with what was recognized so far
            self.error = err

    def _committed(self, glosses: list[TimedGloss], trigger_arrival: float) -> None:
        now = time.perf_counter()
        for g in glosses:
            last = max(0, int(round(g.end * self.recognizer.fps)) - 1)
            if last in self.arrivals:
                self.stats.latency_s.append(now - self.arrivals[last])
            self.stats.compute_s.append(now - trigger_arrival)
            self.glosses.append(g)
            self.display.committed(g)
        for index in [i for i in self.arrivals if i < self.recognizer.frames - 4 * self.recognizer.fps]:
            del self.arrivals[index]  # bounded: only the last few seconds are looked up


class Display:
    """Committed glosses and the tentative tail: a rich live line on a terminal, one line per gloss elsewhere."""

    def __init__(self) -> None:
        self.live = None
        if sys.stdout.isatty():
            from rich.live import Live

            self.live = Live(auto_refresh=False, transient=False)
            self.live.start()

    def committed(self, gloss: TimedGloss) -> None:
        if self.live is None:
            print(f"{gloss.start:8.2f} {gloss.end:8.2f}  {gloss.gloss}", flush=True)

    def show(self, committed: list[TimedGloss], tentative: list[TimedGloss]) -> None:
        if self.live is None:
            return
        from rich.text import Text

        text = Text(" ".join(g.gloss for g in committed[-20:]), style="bold")
        if tentative:
            text.append("  " + " ".join(g.gloss for g in tentative), style="dim")
        self.live.update(text, refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median_ms": None, "p95_ms": None}
    arr = np.asarray(values) * 1000.0
    return {"median_ms": round(float(np.median(arr)), 2), "p95_ms": round(float(np.percentile(arr, 95)), 2)}


def _decoder_settings(rec: StreamingRecognizer) -> dict[str, Any]:
    """Which incremental decoder ran, with the beam search's settings."""
    if rec.beam is None:
        return {"name": "greedy"}
    b = rec.beam
    return {"name": "beam", "beam_width": b.beam_width, "lm_path": b.lm_path, "lm_weight": b.lm_weight,
            "word_bonus": b.word_bonus, "commit_every": b.commit_every, "lookback": b.lookback}


def write_results(out: Path, source: str, fps: float, stats: Stats, rec: StreamingRecognizer,
                  glosses: list[TimedGloss], wall: float) -> dict[str, Any]:
    """live.ctm and live.json in the run folder, atomically."""
    name = Path(source).stem if not str(source).isdigit() else f"camera{source}"
    ctm = "".join(f"{name} 1 {g.start:.3f} {g.end - g.start:.3f} {g.gloss}\n" for g in glosses)
    write_text_atomic(out / "live.ctm", ctm)
    seconds = stats.frames / fps if fps else 0.0
    result = {
        "source": str(source), "fps": fps, "frames": stats.frames, "processed": stats.frames - stats.dropped,
        "dropped": stats.dropped, "corrupt_frames": stats.corrupt, "detected": rec.detected, "segments": rec.segments,
        "decoder": _decoder_settings(rec),
        "glosses": " ".join(g.gloss for g in glosses), "timed_glosses": [g.as_dict() for g in glosses],
        "latency": {"end_to_end": _percentiles(stats.latency_s), "compute": _percentiles(stats.compute_s),
                    "lookahead_ms": round(1000.0 * rec.net.lookahead_frames / fps, 1) if fps else None},
        "tracker_ms_per_frame": _percentiles(stats.tracker_s),
        "recognizer_ms_per_call": _percentiles(stats.recognizer_s),
        "wall_s": round(wall, 3), "realtime_factor": round(wall / seconds, 3) if seconds else None,
        "stopped_by": stats.stopped_by,
    }
    write_text_atomic(out / "live.json", json.dumps(result, indent=1) + "\n")
    return result


def run(cfg: DictConfig) -> int:
    apply_backend(cfg, announce=False)
    try:
        if bool(cfg.get("ckpt_path")) == bool(cfg.get("model_path")):
            raise SourceError("give ckpt_path=<checkpoint of a streaming model, e.g. the student> or "
                              "model_path=<its streaming ONNX export (sign-ctc-export ... streaming=true)>, one of them")
        if cfg.get("source") is None:
            raise SourceError("give source=<video file | camera index | URL>")
        from sign_ctc.extraction.tracker import HolisticOptions, check_backend, make_tracker

        options = HolisticOptions(model_complexity=int(cfg.model_complexity), refine_face=bool(cfg.refine_face),
                                  backend=str(cfg.tracker), model_asset=cfg.get("model_asset"))
        check_backend(options)
        cap, source_fps, live = open_source(cfg.source)
        fps = float(cfg.fps or source_fps or 25.0)
        settings = {"fps": fps, "tentative": bool(cfg.tentative), "decoding": cfg.get("decoding"),
                    "pause_frames": max(1, round(float(cfg.pause_seconds) * fps)) if cfg.pause_seconds else None}
        rec = (StreamingRecognizer.from_exported(cfg.model_path, **settings) if cfg.get("model_path")
               else StreamingRecognizer.from_checkpoint(cfg.ckpt_path, **settings))
        tracker = make_tracker(options)
        warm_up(cap, tracker, live)
    except (SourceError, NotStreamableError, CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
        return report_error("live", exc)
    out = Path(cfg.paths.output_dir)
    stats = Stats()
    stop = threading.Event()
    display = Display()
    worker = RecognizerThread(rec, stats, display)
    window = LiveWindow() if cfg.show else None
    start = time.perf_counter()
    last = (np.zeros((543, 3), np.float32), np.zeros(4, bool))
    backlog = max(1, round(float(cfg.backlog_seconds) * fps))
    frames = (frames_paced(cap, fps, live, stats, stop, backlog) if (cfg.realtime or live)
              else frames_in_order(cap, stats))
    try:
        for frame in frames:
            if worker.error is not None:
                break
            if frame.rgb is not None:
                t0 = time.perf_counter()
                try:
                    last = tracker.process(frame.rgb, int(round(frame.index * 1000.0 / fps))).landmarks()
                except (ValueError, RuntimeError) as err:  # a frame MediaPipe cannot read: skipped, counted
                    stats.corrupt += 1
                    log.warning("frame %d could not be tracked (%s); the last landmarks stand in", frame.index, err)
                stats.tracker_s.append(time.perf_counter() - t0)
                if window is not None:
                    window.draw(frame.rgb, last[0], worker.glosses)
            worker.put(frame.index, frame.arrival, *last)
            stats.frames += 1
    except KeyboardInterrupt:
        stats.stopped_by = "interrupted (Ctrl+C)"
    finally:
        stop.set()
        cap.release()
        tracker.close()
        worker.close()
        display.close()
        if window is not None:
            window.close()
    result = write_results(out, cfg.source, fps, stats, rec, worker.glosses, time.perf_counter() - start)
    if worker.error is not None:
        print(f"live: error in recognition: {worker.error}; what was recognized before is in {out}", file=sys.stderr)
        return 1
    name = Path(str(cfg.source)).stem
    print(f"{name}\t{result['glosses']}")
    if not rec.detected:
        print(f"live: nobody was detected in any of the {stats.frames} frames", file=sys.stderr)
    drops = f", {stats.dropped} dropped" if stats.dropped else ""
    print(f"live: {stats.frames} frames{drops}; {stats.stopped_by}; live.ctm and live.json in {out}", file=sys.stderr)
    return 0


class LiveWindow:
    """``show=true``: the frame with its skeleton and the glosses in an OpenCV window (needs a display)."""

    def __init__(self) -> None:
        import cv2

        self.cv2 = cv2
        cv2.namedWindow("sign-ctc-live", cv2.WINDOW_NORMAL)

    def draw(self, rgb: np.ndarray, points: np.ndarray, glosses: list[TimedGloss]) -> None:
        cv2 = self.cv2
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        for x, y, _ in points:
            if x or y:
                cv2.circle(bgr, (int(x * w), int(y * h)), 2, (0, 255, 0), -1)
        cv2.putText(bgr, " ".join(g.gloss for g in glosses[-8:]), (10, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    (255, 255, 255), 2)
        cv2.imshow("sign-ctc-live", bgr)
        cv2.waitKey(1)

    def close(self) -> None:
        self.cv2.destroyAllWindows()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="live")
def main(cfg: DictConfig) -> None:
    run_command("live", run, cfg)


if __name__ == "__main__":
    main()
