"""One MediaPipe Holistic graph per worker process, and one sentence through it to a `.pose` file.

Files are interchangeable with pose-format's ``video_to_pose``: the same header (POSE 33 |
FACE 468/478 | LEFT_HAND 21 | RIGHT_HAND 21 | POSE_WORLD 33), pixel x/y, raw MediaPipe z,
body confidence = visibility and 1/0 for the other parts. Frame conversion reuses pose-format's
``_extract_frame_data``; we only replace its thread pool, because MediaPipe is not thread-safe:
here every worker *process* owns one Holistic graph, created in the pool initializer.
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
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.pose_io import holistic_header, landmarks_from_pose, write_pose_atomic

# Pose landmark model per ``model_complexity``; only "full" ships inside the mediapipe wheel.
POSE_MODELS: dict[int, str] = {
    0: "pose_landmark_lite.tflite",
    1: "pose_landmark_full.tflite",
    2: "pose_landmark_heavy.tflite",
}
MODEL_URL = "https://storage.googleapis.com/mediapipe-assets/"


class ModelUnavailableError(RuntimeError):
    """The requested pose model is not installed and would need a download."""


@dataclass(frozen=True)
class HolisticOptions:
    """Holistic settings; the same for every worker so results do not depend on scheduling."""

    model_complexity: int = 1
    refine_face: bool = False
    frames_fps: float = 25.0  # frame folders carry no rate; PHOENIX is 25 fps

    def holistic_kwargs(self) -> dict[str, Any]:
        return {"model_complexity": self.model_complexity, "refine_face_landmarks": self.refine_face}


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


def pose_model_path(model_complexity: int) -> Path:
    """Where mediapipe looks for the pose landmark model (inside its installed package)."""
    import importlib.util

    if model_complexity not in POSE_MODELS:
        raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
    spec = importlib.util.find_spec("mediapipe")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("mediapipe is not installed (pip install mediapipe==0.10.21)")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "modules" / "pose_landmark" / POSE_MODELS[model_complexity]


def check_model_available(model_complexity: int) -> None:
    """Fail fast and clearly where mediapipe would try (and, offline, fail) to download a model.

    mediapipe 0.10.21 bundles only the complexity-1 model; 0 and 2 are fetched from Google
    storage on first use, which ends in a urllib traceback without internet (or a permission
    error on a read-only site-packages).
    """
    path = pose_model_path(model_complexity)
    if path.is_file() and path.stat().st_size > 0:
        return
    raise ModelUnavailableError(
        f"model_complexity={model_complexity} needs the pose model {path.name}, which is not "
        f"installed at {path} (the mediapipe wheel bundles only {POSE_MODELS[1]}, i.e. "
        f"model_complexity=1, and downloads the others on first use). Either use "
        f"model_complexity=1, or download {MODEL_URL}{path.name} on a machine with internet "
        f"access and copy it to {path}."
    )


class _WorkerState:
    """The per-process Holistic graph (MediaPipe graphs must not be shared across threads)."""

    holistic: Any = None
    options: HolisticOptions | None = None
    used: bool = False


def init_worker(options: HolisticOptions) -> None:
    """Pool initializer: one Holistic per worker process, created once."""
    import mediapipe as mp

    if _WorkerState.holistic is not None:
        _WorkerState.holistic.close()
    _WorkerState.holistic = mp.solutions.holistic.Holistic(**options.holistic_kwargs())
    _WorkerState.options = options
    _WorkerState.used = False


def close_worker() -> None:
    if _WorkerState.holistic is not None:
        _WorkerState.holistic.close()
    _WorkerState.holistic, _WorkerState.options, _WorkerState.used = None, None, False


def extract_pose(item: WorkItem, options: HolisticOptions) -> tuple[Any, list[str]]:
    """Run this process's Holistic over one sentence; returns the pose-format ``Pose``.

    The graph is reset before each sentence (after its first): tracking state must not leak
    from one sentence into the next, or a sentence's landmarks would depend on which worker ran
    it and in what order. ``reset()`` restores the fresh-graph output exactly; pose-format's
    blank-frame flush does not (up to 20 px off on signer_58f.mp4 with mediapipe 0.10.21).
    """
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.utils.holistic import _extract_frame_data

    if _WorkerState.holistic is None or _WorkerState.options != options:
        init_worker(options)
    holistic = _WorkerState.holistic
    if _WorkerState.used:
        holistic.reset()
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

    extra_face = 10 if options.refine_face else 0
    datas: list[np.ndarray] = []
    confs: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for index, frame in enumerate(frames):
        height, width = frame.shape[:2]
        if size is None:
            size = (width, height)
        elif size != (width, height):
            raise FrameSourceError(f"frame {index} is {width}x{height}, the first was {size[0]}x{size[1]}")
        results = holistic.process(frame)
        data, conf = _extract_frame_data(results, width, height, extra_face)
        datas.append(data)
        confs.append(conf)
    if size is None:
        raise FrameSourceError("no frames decoded (corrupt, empty or unsupported video)")
    if declared and len(datas) < declared:
        warnings.append(f"decoded {len(datas)} of the {declared} frames the video header declares")

    body = NumPyPoseBody(fps=fps, data=np.stack(datas)[:, None], confidence=np.stack(confs)[:, None])
    header = holistic_header(size[0], size[1], world=True, refined_face=options.refine_face)
    return Pose(header, body), warnings


def run_item(item: WorkItem, output_dir: str, options: HolisticOptions) -> SentenceResult:
    """Extract and write one sentence; any error becomes a failed result, never a crash."""
    out = Path(output_dir) / item.output
    start = time.perf_counter()
    try:
        pose, warnings = extract_pose(item, options)
        write_pose_atomic(pose, out)
        lm = landmarks_from_pose(pose, source=str(out))
    except Exception as exc:  # recorded in the summary; the run continues
        return SentenceResult(item.id, "failed", item.output, seconds=time.perf_counter() - start,
                              reason=f"{type(exc).__name__}: {exc}")
    return SentenceResult(item.id, "extracted", item.output, frames=len(lm), detection_rate=detection_rates(lm),
                          seconds=time.perf_counter() - start, warnings=warnings)


def detection_rates(lm: Landmarks) -> dict[str, float]:
    return {k: round(v, 6) for k, v in lm.detection_rates().items()}
