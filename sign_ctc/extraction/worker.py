"""One Holistic tracker per worker process, and one sentence through it to a `.pose` file.

Files are interchangeable with pose-format's ``video_to_pose``: the same header (POSE 33 |
FACE 468/478 | LEFT_HAND 21 | RIGHT_HAND 21 | POSE_WORLD 33), pixel x/y, raw MediaPipe z,
body confidence = visibility and 1/0 for the other parts (:meth:`TrackedFrame.pose_data`), whichever
backend tracked the frames (:mod:`sign_ctc.extraction.tracker`); the backend, mediapipe version and
model are recorded beside each file (:mod:`sign_ctc.features.provenance`). MediaPipe is not
thread-safe: every worker *process* owns one tracker, created in the pool initializer.
mediapipe is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sign_ctc.extraction.discover import WorkItem
from sign_ctc.extraction.frames import FrameSourceError, frame_files, rgb_image_frames, rgb_video_frames
from sign_ctc.features.header import extraction_header
from sign_ctc.extraction.tracker import (  # noqa: F401  (re-exported: the legacy model checks lived here)
    MODEL_URL,
    POSE_MODELS,
    HolisticOptions,
    ModelUnavailableError,
    Tracker,
    backend_provenance,
    check_model_available,
    make_tracker,
    pose_model_path,
)
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.pose_io import landmarks_from_pose, write_pose_atomic
from sign_ctc.features.provenance import write_provenance


@dataclass
class SentenceResult:
    """What one sentence did, as stored in the run summary."""

    id: str
    status: Literal["extracted", "skipped", "failed"]
    output: str
    frames: int = 0
    detection_rate: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


class _WorkerState:
    """The per-process tracker (MediaPipe graphs must not be shared across threads)."""

    tracker: Tracker | None = None
    options: HolisticOptions | None = None
    provenance: dict[str, Any] | None = None
    used: bool = False


def init_worker(options: HolisticOptions) -> None:
    """Pool initializer: one tracker per worker process, created once."""
    if _WorkerState.tracker is not None:
        _WorkerState.tracker.close()
    _WorkerState.tracker = make_tracker(options)
    _WorkerState.options = options
    _WorkerState.provenance = backend_provenance(options)
    _WorkerState.used = False


def close_worker() -> None:
    if _WorkerState.tracker is not None:
        _WorkerState.tracker.close()
    _WorkerState.tracker, _WorkerState.options, _WorkerState.provenance, _WorkerState.used = None, None, None, False


def extract_pose(item: WorkItem, options: HolisticOptions) -> tuple[Any, list[str]]:
    """Run this process's tracker over one sentence; returns the pose-format ``Pose``.

    The tracker is reset before each sentence (after its first): tracking state must not leak
    from one sentence into the next, or a sentence's landmarks would depend on which worker ran
    it and in what order.
    """
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    if _WorkerState.tracker is None or _WorkerState.options != options:
        init_worker(options)
    tracker = _WorkerState.tracker
    if _WorkerState.used:
        tracker.reset()
    _WorkerState.used = True

    warnings: list[str] = []
    declared = 0
    if item.kind == "video":
        frames, fps, declared = rgb_video_frames(item.sources[0])
        if not fps or not np.isfinite(fps) or fps <= 0:
            warnings.append(f"video reports no frame rate; using {options.frames_fps}")
            fps = options.frames_fps
    else:
        frames, fps = rgb_image_frames(frame_files(item.sources)), options.frames_fps

    datas: list[np.ndarray] = []
    confs: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for index, frame in enumerate(frames):
        height, width = frame.shape[:2]
        if size is None:
            size = (width, height)
        elif size != (width, height):
            raise FrameSourceError(f"frame {index} is {width}x{height}, the first was {size[0]}x{size[1]}")
        tracked = tracker.process(frame, round(index * 1000.0 / fps))
        data, conf = tracked.pose_data(width, height)
        datas.append(data)
        confs.append(conf)
    if size is None:
        raise FrameSourceError("no frames decoded (corrupt, empty or unsupported video)")
    if declared and len(datas) < declared:
        warnings.append(f"decoded {len(datas)} of the {declared} frames the video header declares")

    body = NumPyPoseBody(fps=fps, data=np.stack(datas)[:, None], confidence=np.stack(confs)[:, None])
    header = extraction_header(size[0], size[1], refined_face=options.refine_face)
    return Pose(header, body), warnings


def provenance() -> dict[str, Any]:
    """What this process's tracker is (backend, mediapipe, model): written beside every file."""
    return dict(_WorkerState.provenance or {})


def run_item(item: WorkItem, output_dir: str, options: HolisticOptions) -> SentenceResult:
    """Extract and write one sentence; any error becomes a failed result, never a crash."""
    out = Path(output_dir) / item.output
    start = time.perf_counter()
    try:
        pose, warnings = extract_pose(item, options)
        write_provenance(out, provenance())  # before the file: a .pose never lacks its record
        write_pose_atomic(pose, out)
        lm = landmarks_from_pose(pose, source=str(out))
    except Exception as exc:  # recorded in the summary; the run continues
        return SentenceResult(item.id, "failed", item.output, seconds=time.perf_counter() - start,
                              reason=f"{type(exc).__name__}: {exc}")
    return SentenceResult(item.id, "extracted", item.output, frames=len(lm), detection_rate=detection_rates(lm),
                          seconds=time.perf_counter() - start, warnings=warnings)


def detection_rates(lm: Landmarks) -> dict[str, float]:
    return {k: round(v, 6) for k, v in lm.detection_rates().items()}
