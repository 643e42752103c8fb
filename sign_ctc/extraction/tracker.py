"""One frame in, MediaPipe Holistic landmarks out: a tracker interface over MediaPipe's two Holistic APIs.

Two backends give the same per-frame result (:class:`TrackedFrame`), so the sentence loop that
writes `.pose` files (:mod:`sign_ctc.extraction.worker`) and a live recognizer share one code path:

- ``legacy``: ``mp.solutions.holistic`` in video (tracking) mode, with the models bundled in the
  mediapipe wheel. Present up to mediapipe 0.10.21; removed in 0.10.30.
- ``tasks``: ``mediapipe.tasks.python.vision.HolisticLandmarker`` in VIDEO running mode, with a
  ``holistic_landmarker.task`` model file the user downloads. Its face has 478 points (with
  irises): the first 468 are kept unless ``refine_face``, as the legacy graph gives them.

``auto`` (the configs' default) is resolved when the options are made (:func:`default_backend`):
legacy where the installed mediapipe still has it (the 0.10.21 pin of Python 3.11/3.12), tasks where
it does not (Python 3.13, which has no mediapipe wheel before 0.10.30), so the default is a backend
that exists in every supported install and records a real name beside each file.

Versions (checked in the wheels' sources, see docs/EXTRACTION.md): the Python HolisticLandmarker
first shipped in 0.10.10; up to 0.10.21 it is built on packet getters that abort the whole
process ("Check failed: holder_ != nullptr The packet is empty") on a frame where a hand (or the
pose) is not detected (google-ai-edge/mediapipe#5181, still open for those releases); 0.10.30 to
0.10.32 ship neither API in Python; from 0.10.33 the HolisticLandmarker is rebuilt on the C API
(ctypes), where an undetected part is an empty landmark list. We refuse ``tasks`` below 0.10.33
rather than run the landmarker in a restartable child process: on a signing video a frame without
one of the hands is the rule, not the exception (signer_58f.mp4: left hand in 0 of 58 frames), so
a guarded 0.10.21 landmarker would lose most frames, and a silently degraded corpus is worse than
a clear refusal. A native abort in a newer release is still contained by the process pool of
:mod:`sign_ctc.extraction.run` (``workers`` >= 2 pins it on its sentence).

mediapipe is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import NUM_POINTS, PARTS, RAW_PARTS

BACKENDS = ("legacy", "tasks")
AUTO = "auto"  # resolved by HolisticOptions to the backend the installed mediapipe has
# mp.solutions (the legacy graph) is gone from this release on.
LEGACY_LAST_EXCLUSIVE = (0, 10, 30)
# First release whose Python HolisticLandmarker does not abort on an undetected hand (C API based).
TASKS_FIRST = (0, 10, 33)
TASKS_MODEL_PAGE = "https://ai.google.dev/edge/mediapipe/solutions/vision/holistic_landmarker"

POSE_POINTS, HAND_POINTS, FACE_POINTS, FACE_POINTS_REFINED = 33, 21, 468, 478


# Pose landmark model per ``model_complexity`` (legacy); only "full" ships inside the mediapipe wheel.
POSE_MODELS: dict[int, str] = {
    0: "pose_landmark_lite.tflite",
    1: "pose_landmark_full.tflite",
    2: "pose_landmark_heavy.tflite",
}
MODEL_URL = "https://storage.googleapis.com/mediapipe-assets/"


class TrackerSetupError(SignCtcError, RuntimeError):
    """The chosen backend cannot run here (mediapipe version, model file); the message says what to do."""


class ModelUnavailableError(TrackerSetupError):
    """The requested legacy pose model is not installed and would need a download."""


def pose_model_path(model_complexity: int) -> Path:
    """Where mediapipe looks for the legacy pose landmark model (inside its installed package)."""
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


@dataclass(frozen=True)
class HolisticOptions:
    """Extraction settings; the same for every worker so results do not depend on scheduling.

    ``backend``: ``legacy`` (``mp.solutions.holistic``), ``tasks`` (``HolisticLandmarker`` with
    the model file ``model_asset``) or ``auto``, replaced here by :func:`default_backend` (so the
    options, a worker's cache key and the provenance record name the backend that runs).
    ``model_complexity`` selects the legacy pose model only; a ``.task`` file bundles its own models.
    """

    model_complexity: int = 1
    refine_face: bool = False
    frames_fps: float = 25.0  # frame folders carry no rate; PHOENIX is 25 fps
    backend: str = AUTO
    model_asset: str | None = None

    def __post_init__(self) -> None:
        if self.backend == AUTO:
            object.__setattr__(self, "backend", default_backend())

    def holistic_kwargs(self) -> dict[str, Any]:
        return {"model_complexity": self.model_complexity, "refine_face_landmarks": self.refine_face}

    @property
    def face_points(self) -> int:
        return FACE_POINTS_REFINED if self.refine_face else FACE_POINTS


@dataclass(frozen=True)
class TrackedFrame:
    """One frame's Holistic landmarks as MediaPipe reported them, in pose-format's component order.

    ``points`` float32 ``[33 + F + 21 + 21 + 33, 3]``: POSE, FACE (F = 468 or 478), LEFT_HAND,
    RIGHT_HAND in unit image coordinates (x, y) with MediaPipe's raw z, then POSE_WORLD (metres).
    ``confidence`` float32, same length: pose visibility for the two pose parts, 1 for a detected
    face or hand point, 0 for every point of an undetected part. MediaPipe's landmarks are float32,
    so these arrays hold its values exactly.
    """

    points: np.ndarray
    confidence: np.ndarray
    face_points: int = FACE_POINTS

    def pose_data(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """``(data [N, 3], confidence [N])`` for a `.pose` body: pixel x/y (the world part too, as
        pose-format's ``video_to_pose`` scales it), float64 like pose-format computes them, so files
        stay byte-identical to its output."""
        data = self.points.astype(np.float64)
        data[:, 0] *= width
        data[:, 1] *= height
        return data, self.confidence.astype(np.float64)

    def landmarks(self) -> tuple[np.ndarray, np.ndarray]:
        """``(points [543, 3] float32 unit coordinates, presence [4] bool in PARTS order)``: one
        frame as :class:`~sign_ctc.features.landmarks.Landmarks` holds it (a point is missing where
        its confidence is 0 or a coordinate is not finite; missing points are 0)."""
        offsets = {"pose": 0, "face": POSE_POINTS, "left_hand": POSE_POINTS + self.face_points,
                   "right_hand": POSE_POINTS + self.face_points + HAND_POINTS}
        points = np.zeros((NUM_POINTS, 3), dtype=np.float32)
        ok = np.zeros(NUM_POINTS, dtype=bool)
        for part, (lo, hi) in RAW_PARTS.items():
            src = slice(offsets[part], offsets[part] + hi - lo)
            points[lo:hi] = self.points[src]
            ok[lo:hi] = (self.confidence[src] > 0) & np.isfinite(self.points[src]).all(-1)
        points[~ok] = 0.0
        presence = np.array([ok[slice(*RAW_PARTS[p])].any() for p in PARTS], dtype=bool)
        return points, presence


def _part(landmarks: Any, count: int, visibility: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(xyz [count, 3], confidence [count])`` of one part; zeros where it was not detected.

    ``landmarks``: a sequence of objects with x, y, z (and visibility): the legacy protobuf list or
    a Tasks result list; ``None`` or empty means not detected. A Tasks landmark may leave
    visibility unset (``None``): a detected point then has confidence 1.
    """
    if not landmarks:
        return np.zeros((count, 3), dtype=np.float32), np.zeros(count, dtype=np.float32)
    if len(landmarks) < count:
        raise ValueError(f"MediaPipe returned {len(landmarks)} landmarks for a part of {count} points")
    pts = list(landmarks)[:count]
    xyz = np.array([[p.x, p.y, p.z] for p in pts], dtype=np.float32)
    if visibility:
        conf = np.array([1.0 if p.visibility is None else p.visibility for p in pts], dtype=np.float32)
    else:
        conf = np.ones(count, dtype=np.float32)
    return xyz, conf


def frame_from_parts(pose: Any, face: Any, left_hand: Any, right_hand: Any, pose_world: Any,
                     face_points: int) -> TrackedFrame:
    """A :class:`TrackedFrame` from the five landmark lists of either API (``face_points`` kept)."""
    parts = [_part(pose, POSE_POINTS, True), _part(face, face_points, False), _part(left_hand, HAND_POINTS, False),
             _part(right_hand, HAND_POINTS, False), _part(pose_world, POSE_POINTS, True)]
    return TrackedFrame(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), face_points)


class Tracker(Protocol):
    """A Holistic tracker over one video, frame by frame (tracking state carries between frames).

    ``process`` takes an RGB ``uint8 [H, W, 3]`` frame and its time in ms (increasing);
    ``reset`` forgets the tracking state before an unrelated video; ``close`` frees the graph.
    """

    backend: str

    def process(self, rgb_frame: np.ndarray, timestamp_ms: int) -> TrackedFrame: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


class LegacyHolisticTracker:
    """``mp.solutions.holistic.Holistic`` in video mode (``static_image_mode=False``).

    ``reset()`` restores the fresh-graph output exactly (pose-format's blank-frame flush does not:
    up to 20 px off on signer_58f.mp4 with mediapipe 0.10.21).
    """

    backend = "legacy"

    def __init__(self, options: HolisticOptions):
        import mediapipe as mp

        self.options = options
        self._holistic = mp.solutions.holistic.Holistic(**options.holistic_kwargs())

    def process(self, rgb_frame: np.ndarray, timestamp_ms: int = 0) -> TrackedFrame:
        r = self._holistic.process(rgb_frame)

        def lms(component: Any) -> Any:
            return None if component is None else component.landmark

        return frame_from_parts(lms(r.pose_landmarks), lms(r.face_landmarks), lms(r.left_hand_landmarks),
                                lms(r.right_hand_landmarks), lms(r.pose_world_landmarks), self.options.face_points)

    def reset(self) -> None:
        self._holistic.reset()

    def close(self) -> None:
        self._holistic.close()


def _create_landmarker(model_asset: str) -> Any:
    """The real MediaPipe Tasks HolisticLandmarker in VIDEO mode (tests replace this boundary)."""
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import HolisticLandmarker, HolisticLandmarkerOptions, RunningMode

    options = HolisticLandmarkerOptions(base_options=BaseOptions(model_asset_path=model_asset),
                                        running_mode=RunningMode.VIDEO)
    return HolisticLandmarker.create_from_options(options)


class TasksHolisticTracker:
    """``HolisticLandmarker`` (MediaPipe Tasks) in VIDEO running mode from a ``.task`` model file.

    The Tasks API has no reset: ``reset()`` closes the landmarker and the next frame opens a fresh
    one, so no tracking state leaks between videos. Timestamps are made strictly increasing (VIDEO
    mode refuses a repeated one, which rounding a high frame rate to ms could give).
    """

    backend = "tasks"

    def __init__(self, options: HolisticOptions, create: Callable[[str], Any] | None = None):
        if not options.model_asset:
            raise TrackerSetupError(_missing_model_message(None))
        self.options = options
        self._create = create or _create_landmarker
        self._landmarker: Any = None
        self._last_ms = -1

    def process(self, rgb_frame: np.ndarray, timestamp_ms: int) -> TrackedFrame:
        import mediapipe as mp

        if self._landmarker is None:
            self._landmarker = self._create(str(self.options.model_asset))
            self._last_ms = -1
        ms = max(int(timestamp_ms), self._last_ms + 1)
        self._last_ms = ms
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb_frame))
        r = self._landmarker.detect_for_video(image, ms)
        return frame_from_parts(r.pose_landmarks, r.face_landmarks, r.left_hand_landmarks, r.right_hand_landmarks,
                                r.pose_world_landmarks, self.options.face_points)

    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
        self._landmarker = None


def make_tracker(options: HolisticOptions) -> Tracker:
    """The tracker of ``options.backend`` (after :func:`check_backend`)."""
    if options.backend == "tasks":
        return TasksHolisticTracker(options)
    return LegacyHolisticTracker(options)


def mediapipe_version() -> str | None:
    """The installed mediapipe's version, read from its metadata (without importing it), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mediapipe")
    except PackageNotFoundError:
        return None


def _version_tuple(text: str) -> tuple[int, ...]:
    nums = []
    for tok in text.split("."):
        digits = "".join(ch for ch in tok if ch.isdigit()) if tok[:1].isdigit() else ""
        if not digits:
            break
        nums.append(int(digits))
    return tuple(nums)


def _fmt(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


def default_backend(installed: str | None = None) -> str:
    """The backend ``tracker=auto`` means with mediapipe ``installed`` (default: the installed version):
    ``tasks`` from 0.10.30 on (no ``mp.solutions`` any more), else ``legacy``, also when mediapipe is
    missing (:func:`check_backend` then says what to install)."""
    installed = installed if installed is not None else mediapipe_version()
    return "tasks" if installed is not None and _version_tuple(installed) >= LEGACY_LAST_EXCLUSIVE else "legacy"


def _missing_model_message(path: str | None) -> str:
    where = f"model file not found: {path}" if path else "no model file given"
    installed = mediapipe_version()
    only = ""
    if installed is not None and _version_tuple(installed) >= LEGACY_LAST_EXCLUSIVE:
        only = (f" The installed mediapipe {installed} has no legacy graph (mp.solutions was removed in "
                f"{_fmt(LEGACY_LAST_EXCLUSIVE)}; Python 3.13 has no older wheel), so tasks is the only backend here.")
    return (f"tracker=tasks: {where}. Set model_asset=<path to holistic_landmarker.task>; download the file "
            f"(about 14 MB) from the MediaPipe Holistic landmarker model page: {TASKS_MODEL_PAGE}.{only}")


def check_backend(options: HolisticOptions) -> None:
    """Fail fast, with one message that says what to do, where the chosen backend cannot run here."""
    if options.backend not in BACKENDS:
        raise TrackerSetupError(f"tracker must be one of {AUTO}, {', '.join(BACKENDS)}, got {options.backend!r}")
    installed = mediapipe_version()
    if installed is None:
        raise TrackerSetupError("mediapipe is not installed: pip install mediapipe==0.10.21 (tracker=legacy) "
                                f"or mediapipe>={_fmt(TASKS_FIRST)} (tracker=tasks)")
    v = _version_tuple(installed)
    if options.backend == "legacy":
        if v >= LEGACY_LAST_EXCLUSIVE:
            older = ("a Python 3.11/3.12 install (Python 3.13 has no mediapipe wheel before 0.10.30)"
                     if sys.version_info >= (3, 13) else "pip install mediapipe==0.10.21")
            raise TrackerSetupError(
                f"tracker=legacy needs mp.solutions.holistic, which mediapipe removed in "
                f"{_fmt(LEGACY_LAST_EXCLUSIVE)} (installed: {installed}). Use tracker=tasks "
                f"model_asset=<holistic_landmarker.task>, or {older}")
        check_model_available(options.model_complexity)
        return
    if v < TASKS_FIRST:
        raise TrackerSetupError(
            f"tracker=tasks needs mediapipe>={_fmt(TASKS_FIRST)} (installed: {installed}): before it, the "
            f"Python HolisticLandmarker aborts the whole process on a frame where a hand is not detected "
            f"(google-ai-edge/mediapipe#5181), and 0.10.30-0.10.32 have none. pip install "
            f"'mediapipe>={_fmt(TASKS_FIRST)}' in a separate environment (see docs/EXTRACTION.md), or use "
            f"tracker=legacy")
    path = Path(str(options.model_asset)) if options.model_asset else None
    if path is None or not path.is_file():
        raise TrackerSetupError(_missing_model_message(str(path) if path else None))
    import zipfile

    if not zipfile.is_zipfile(path):  # else every sentence fails alike in the landmarker ("Unable to open zip archive")
        raise TrackerSetupError(f"tracker=tasks: model_asset {path} is not a MediaPipe .task bundle "
                                f"(not a zip archive); "
                                f"download holistic_landmarker.task from {TASKS_MODEL_PAGE}")


def backend_provenance(options: HolisticOptions) -> dict[str, Any]:
    """What made a run's files: backend, mediapipe version, model (the `.task` file's name and
    SHA-256, or the legacy pose model); recorded beside every `.pose` (:mod:`sign_ctc.features.provenance`)."""
    info: dict[str, Any] = {"backend": options.backend, "mediapipe": mediapipe_version(),
                            "refine_face": options.refine_face}
    if options.backend == "tasks":
        path = Path(str(options.model_asset))
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        info.update(model=path.name, model_sha256=digest.hexdigest())
    else:
        info.update(model=POSE_MODELS.get(options.model_complexity, "?"), model_complexity=options.model_complexity)
    return info
