"""MediaPipe Holistic landmark extraction: videos or frame folders -> one `.pose` per sentence.

Files are interchangeable with pose-format's ``video_to_pose``: the same header (POSE 33 |
FACE 468/478 | LEFT_HAND 21 | RIGHT_HAND 21 | POSE_WORLD 33), pixel x/y, raw MediaPipe z,
body confidence = visibility and 1/0 for the other parts. Frame conversion reuses pose-format's
``_extract_frame_data``; we only replace its thread pool, because MediaPipe is not thread-safe:
here every worker *process* owns one Holistic graph, created in the pool initializer.

The run is resumable and safe to kill: outputs are written to a temp name and renamed, finished
outputs that read back are skipped, a sentence that fails is recorded with its reason and the run
goes on, and ``shard=k/n`` takes a deterministic slice of the sorted work list per machine.
mediapipe and cv2 are imported lazily (inside functions) so importing this module is cheap.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sign_ctc.atomic import write_text_atomic
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import PARTS
from sign_ctc.features.pose_io import holistic_header, landmarks_from_pose, read_pose, write_pose_atomic

if TYPE_CHECKING:
    from rich.progress import Progress

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
# PHOENIX release layout: the ``folder`` column is relative to <root>/<FRAMES_SUBDIR>/<split>/.
FRAMES_SUBDIR = "features/fullFrame-210x260px"
# Pose landmark model per ``model_complexity``; only "full" ships inside the mediapipe wheel.
POSE_MODELS: dict[int, str] = {
    0: "pose_landmark_lite.tflite",
    1: "pose_landmark_full.tflite",
    2: "pose_landmark_heavy.tflite",
}
MODEL_URL = "https://storage.googleapis.com/mediapipe-assets/"


class ExtractInputError(ValueError):
    """Bad inputs for an extraction run (missing path, nothing to extract, bad shard)."""


class ModelUnavailableError(RuntimeError):
    """The requested pose model is not installed and would need a download."""


class FrameSourceError(RuntimeError):
    """A video or frame folder that yields no usable frames; the message says why."""


@dataclass(frozen=True)
class WorkItem:
    """One sentence to extract.

    ``sources``: a video path (kind "video") or glob patterns of frame images tried in order
    (kind "frames"; PHOENIX-2014-T lists ``<id>/1/*.png`` but ships ``<id>/*.png``).
    ``output``: path of the `.pose` relative to the output folder.
    """

    id: str
    kind: Literal["video", "frames"]
    sources: tuple[str, ...]
    output: str


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


# --------------------------------------------------------------------------- model check


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


# --------------------------------------------------------------------------- work list


def _natural_key(text: str) -> list[Any]:
    """Sort ``img2`` before ``img10``: frame file names are not always zero-padded."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text)]


def _images_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]


def _videos_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]


def _check_unique(items: list[WorkItem], where: str) -> list[WorkItem]:
    seen: dict[str, WorkItem] = {}
    for item in items:
        if item.output in seen:
            raise ExtractInputError(
                f"{where}: two inputs map to the same output {item.output}: "
                f"{seen[item.output].sources[0]} and {item.sources[0]}"
            )
        seen[item.output] = item
    return sorted(items, key=lambda it: it.output)


def find_annotation(root: Path, split: str) -> Path | None:
    """The split's annotation csv in a PHOENIX-2014 / 2014-T release root, if there is one."""
    for name in (f"{split}.corpus.csv", f"PHOENIX-2014-T.{split}.corpus.csv"):
        for candidate in (root / "annotations" / "manual" / name, root / name):
            if candidate.is_file():
                return candidate
    return None


def _split_from_annotation(path: Path) -> str | None:
    """``dev.corpus.csv`` / ``PHOENIX-2014-T.dev.corpus.csv`` -> ``dev``."""
    name = path.name
    if not name.endswith(".corpus.csv"):
        return None
    return name[: -len(".corpus.csv")].split(".")[-1] or None


def corpus_items(annotation: Path, frames_root: Path, split: str) -> list[WorkItem]:
    """One item per annotated sentence; frames are ``frames_root/<split>/<folder pattern>``."""
    from sign_ctc.data.corpus import read_phoenix2014, read_phoenix2014t

    if not annotation.is_file():
        raise ExtractInputError(f"annotation file not found: {annotation}")
    with annotation.open(encoding="utf-8") as f:
        header = f.readline()
    reader = read_phoenix2014t if header.startswith("name|") else read_phoenix2014
    base = frames_root / split
    items = []
    for sentence in reader(annotation):
        pattern = sentence.folder or f"{sentence.id}/1/*.png"
        fallback = str(base / sentence.id / "*")
        sources = tuple(dict.fromkeys([str(base / pattern), fallback]))
        items.append(WorkItem(sentence.id, "frames", sources, f"{split}/{sentence.id}.pose"))
    return _check_unique(items, str(annotation))


def csl_daily_items(root: Path, frames_root: Path, split: str) -> list[WorkItem]:
    """CSL-Daily: one item per ``name`` of ``split`` in ``sentence_label/split_1.txt``; frames are
    ``frames_root/<name>/*.jpg`` (default ``<root>/sentence_frames-512x512/frames_512x512``)."""
    from sign_ctc.data.corpus import CSLDailyCorpus, read_csl_split_file

    names = [n for n, s in read_csl_split_file(root / CSLDailyCorpus.SPLIT_FILE).items() if s == split]
    if not names:
        raise ExtractInputError(f"{root / CSLDailyCorpus.SPLIT_FILE} lists no video of split {split!r}")
    if not frames_root.is_dir():
        raise ExtractInputError(f"CSL-Daily frame folder not found: {frames_root}")
    items = [WorkItem(n, "frames", (str(frames_root / n / "*"),), f"{split}/{n}.pose") for n in names]
    return _check_unique(items, str(root / CSLDailyCorpus.SPLIT_FILE))


def discover(
    input: str | os.PathLike | None,
    *,
    annotation: str | os.PathLike | None = None,
    split: str | None = None,
    frames_root: str | os.PathLike | None = None,
) -> list[WorkItem]:
    """Turn the run's inputs into a sorted work list.

    ``input`` is a video file, a folder of videos, a frame folder (one sentence), a folder of
    frame folders, or a corpus root (with ``split``): PHOENIX-2014 / 2014-T, or CSL-Daily (its
    ``sentence_label/split_1.txt`` and ``sentence_frames-512x512/frames_512x512/<name>/``). Corpus mode: ``annotation`` (or the
    release's own csv for ``split``) plus ``frames_root`` (default
    ``<input>/features/fullFrame-210x260px``); outputs go to ``<split>/<id>.pose``.
    """
    in_path = Path(input) if input not in (None, "") else None
    if in_path is not None and not in_path.exists():
        raise ExtractInputError(f"input not found: {in_path}")
    ann = Path(annotation) if annotation not in (None, "") else None
    if ann is None and split and in_path is not None and in_path.is_dir():
        from sign_ctc.data.corpus import CSLDailyCorpus

        if (in_path / CSLDailyCorpus.SPLIT_FILE).is_file():
            frames = Path(frames_root) if frames_root not in (None, "") else in_path / CSLDailyCorpus.FRAMES
            return csl_daily_items(in_path, frames, split)
        ann = find_annotation(in_path, split)
        if ann is None and not (_videos_in(in_path) or _images_in(in_path)):
            raise ExtractInputError(
                f"split={split!r} given but no {split}.corpus.csv or PHOENIX-2014-T.{split}.corpus.csv "
                f"under {in_path}/annotations/manual; pass annotation=<csv>"
            )
    if ann is not None:
        split = split or _split_from_annotation(ann)
        if not split:
            raise ExtractInputError(f"cannot tell the split from {ann.name}; pass split=train|dev|test")
        if frames_root not in (None, ""):
            root = Path(frames_root)
        elif in_path is not None and in_path.is_dir():
            root = in_path / FRAMES_SUBDIR
        else:
            raise ExtractInputError("corpus mode needs frames_root=<.../fullFrame-210x260px> or input=<corpus root>")
        if not (root / split).is_dir():
            raise ExtractInputError(f"frame folder for split {split!r} not found: {root / split}")
        return corpus_items(ann, root, split)

    if in_path is None:
        raise ExtractInputError("no input given: set input=<video | folder of videos | frame folder>")
    if in_path.is_file():
        if in_path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise ExtractInputError(f"{in_path}: not a video file (known: {', '.join(sorted(VIDEO_EXTENSIONS))})")
        return [WorkItem(in_path.stem, "video", (str(in_path),), f"{in_path.stem}.pose")]
    videos = _videos_in(in_path)
    if videos:
        items = [WorkItem(v.stem, "video", (str(v),), f"{v.stem}.pose") for v in videos]
        return _check_unique(items, str(in_path))
    if _images_in(in_path):
        return [WorkItem(in_path.name, "frames", (str(in_path / "*"),), f"{in_path.name}.pose")]
    subdirs = [d for d in sorted(in_path.iterdir()) if d.is_dir() and _images_in(d)]
    if subdirs:
        items = [WorkItem(d.name, "frames", (str(d / "*"),), f"{d.name}.pose") for d in subdirs]
        return _check_unique(items, str(in_path))
    raise ExtractInputError(f"{in_path}: no videos, frame images or frame folders found")


def parse_shard(spec: str | int | Sequence[int]) -> tuple[int, int]:
    """``"k/n"`` -> (k, n) with 0 <= k < n."""
    text = "/".join(str(x) for x in spec) if isinstance(spec, (list, tuple)) else str(spec)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ExtractInputError(f"shard must look like k/n (e.g. 0/4), got {spec!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= k < n:
        raise ExtractInputError(f"shard {k}/{n}: need n >= 1 and 0 <= k < n")
    return k, n


def select_shard(items: Sequence[WorkItem], k: int, n: int) -> list[WorkItem]:
    """Every n-th item of the sorted list from k: disjoint, covering and balanced per machine."""
    ordered = sorted(items, key=lambda it: it.output)
    return ordered[k::n]


# --------------------------------------------------------------------------- frame sources


def _rgb_video_frames(path: str) -> tuple[Iterator[np.ndarray], float, int]:
    """RGB frames of a video via cv2, its fps, and the frame count its header declares."""
    import cv2

    if not Path(path).is_file():
        raise FrameSourceError(f"video not found: {path}")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise FrameSourceError("cannot open video (not a video or unsupported codec)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return frames(), fps, declared


def _frame_files(patterns: Sequence[str]) -> list[str]:
    for pattern in patterns:
        files = [p for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
        if files:
            return sorted(files, key=_natural_key)
    raise FrameSourceError(f"no frame images match {' or '.join(patterns)}")


def _rgb_image_frames(files: Sequence[str]) -> Iterator[np.ndarray]:
    import cv2

    for file in files:
        bgr = cv2.imread(file, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameSourceError(f"cannot read image {file}")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- worker


class _WorkerState:
    """The per-process Holistic graph (MediaPipe graphs must not be shared across threads)."""

    holistic: Any = None
    options: HolisticOptions | None = None
    used: bool = False


def _init_worker(options: HolisticOptions) -> None:
    """Pool initializer: one Holistic per worker process, created once."""
    import mediapipe as mp

    if _WorkerState.holistic is not None:
        _WorkerState.holistic.close()
    _WorkerState.holistic = mp.solutions.holistic.Holistic(**options.holistic_kwargs())
    _WorkerState.options = options
    _WorkerState.used = False


def _close_worker() -> None:
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
        _init_worker(options)
    holistic = _WorkerState.holistic
    if _WorkerState.used:
        holistic.reset()
    _WorkerState.used = True

    warnings: list[str] = []
    declared = 0
    if item.kind == "video":
        frames, fps, declared = _rgb_video_frames(item.sources[0])
        if not fps or not np.isfinite(fps) or fps <= 0:
            warnings.append(f"video reports no frame rate; using {options.frames_fps}")
            fps = options.frames_fps
    else:
        frames, fps = _rgb_image_frames(_frame_files(item.sources)), options.frames_fps

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


def _run_item(item: WorkItem, output_dir: str, options: HolisticOptions) -> SentenceResult:
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
    return SentenceResult(item.id, "extracted", item.output, frames=len(lm), detection_rate=_rates(lm),
                          seconds=time.perf_counter() - start, warnings=warnings)


def _rates(lm: Landmarks) -> dict[str, float]:
    return {k: round(v, 6) for k, v in lm.detection_rates().items()}


# --------------------------------------------------------------------------- run


def _finished(item: WorkItem, output_dir: Path) -> SentenceResult | None:
    """A skipped result when the output exists and reads back, else None (redo it)."""
    out = output_dir / item.output
    if not out.is_file():
        return None
    try:
        lm = read_pose(out)
    except Exception:  # PoseFileError or worse: an unreadable output is simply redone
        return None
    if len(lm) == 0:
        return None
    return SentenceResult(item.id, "skipped", item.output, frames=len(lm), detection_rate=_rates(lm))


def _remove_stale_temps(item: WorkItem, output_dir: Path) -> None:
    """Temp files an interrupted run left for this item (``write_bytes_atomic`` naming)."""
    out = output_dir / item.output
    if out.parent.is_dir():
        for tmp in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _progress(enabled: bool) -> Progress:
    """Sentence-level bar with ETA (rich); disabled bars draw nothing."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]extract[/]"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[frames]} frames"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled)


def _summarize(results: dict[str, SentenceResult], meta: dict[str, Any], wall: float) -> dict[str, Any]:
    done = [r for r in results.values() if r.status != "failed"]
    frames = sum(r.frames for r in done)
    extracted = [r for r in done if r.status == "extracted"]
    extracted_frames = sum(r.frames for r in extracted)
    overall = {p: (sum(r.detection_rate.get(p, 0.0) * r.frames for r in done) / frames if frames else 0.0)
               for p in PARTS}
    return {
        **meta,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 3),
        "counts": {
            "total": meta["total"],
            "extracted": len(extracted),
            "skipped": sum(r.status == "skipped" for r in done),
            "failed": sum(r.status == "failed" for r in results.values()),
            "not_run": meta["total"] - len(results),
        },
        "frames": frames,
        "extracted_frames": extracted_frames,
        "frames_per_second": round(extracted_frames / wall, 3) if wall > 0 else 0.0,
        "detection_rate": {p: round(v, 6) for p, v in overall.items()},
        "sentences": {r.id: {k: v for k, v in asdict(r).items() if k != "id"}
                      for r in sorted(results.values(), key=lambda r: r.output)},
        "failures": [{"id": r.id, "output": r.output, "reason": r.reason}
                     for r in sorted(results.values(), key=lambda r: r.output) if r.status == "failed"],
    }


def summary_name_for_shard(summary: str, k: int, n: int) -> str:
    """Shards sharing an output folder must not overwrite each other's summary."""
    if n == 1:
        return summary
    stem, dot, ext = summary.rpartition(".")
    return f"{stem}.shard-{k}-of-{n}.{ext}" if dot else f"{summary}.shard-{k}-of-{n}"


def extract(
    items: Sequence[WorkItem],
    output_dir: str | os.PathLike,
    *,
    options: HolisticOptions = HolisticOptions(),
    workers: int = 1,
    shard: str = "0/1",
    summary: str | None = "extract_summary.json",
    progress: bool = True,
) -> dict[str, Any]:
    """Extract this shard of ``items`` into ``output_dir``; returns (and writes) the run summary.

    ``workers`` > 1 runs a spawn-started process pool (one Holistic per process); 1 runs in this
    process; 0 means one per CPU. Already finished outputs are skipped.
    """
    check_model_available(options.model_complexity)
    k, n = parse_shard(shard)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mine = select_shard(items, k, n)
    started = time.perf_counter()
    meta: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "output_dir": str(out_dir),
        "shard": f"{k}/{n}",
        "total": len(mine),
        "workers": workers,
        "options": asdict(options),
        "interrupted": False,
    }
    results: dict[str, SentenceResult] = {}
    todo: list[WorkItem] = []
    for item in mine:
        _remove_stale_temps(item, out_dir)
        done = _finished(item, out_dir)
        if done is None:
            todo.append(item)
        else:
            results[item.output] = done

    workers = (os.cpu_count() or 1) if workers <= 0 else workers
    workers = max(1, min(workers, len(todo)))
    meta["workers"] = workers
    try:
        with _progress(progress) as bar:
            task = bar.add_task("extract", total=len(mine), completed=len(results),
                                frames=sum(r.frames for r in results.values()))

            def record(result: SentenceResult) -> None:
                results[result.output] = result
                bar.update(task, advance=1, frames=sum(r.frames for r in results.values()))

            if workers == 1:
                try:
                    for item in todo:
                        record(_run_item(item, str(out_dir), options))
                finally:
                    _close_worker()
            else:
                _run_pool(todo, out_dir, options, workers, record)
    except KeyboardInterrupt:
        meta["interrupted"] = True
        raise
    finally:
        report = _summarize(results, meta, time.perf_counter() - started)
        if summary:
            write_text_atomic(out_dir / summary_name_for_shard(summary, k, n), json.dumps(report, indent=2) + "\n")
    return report


def _run_pool(todo: list[WorkItem], out_dir: Path, options: HolisticOptions, workers: int,
              record: Callable[[SentenceResult], None]) -> None:
    """Process pool over ``todo``.

    A worker that dies (a native MediaPipe abort, the OOM killer) breaks the whole pool, so every
    unfinished sentence is then retried alone in a fresh one-process pool: that pins the crash on
    the sentence that causes it, which is recorded as failed while the others complete.
    """
    crashed = _pool_round(todo, out_dir, options, workers, record)
    for item in crashed:
        if _pool_round([item], out_dir, options, 1, record):
            record(SentenceResult(item.id, "failed", item.output,
                                  reason="the worker process died while extracting it (crash or out of memory)"))


def _pool_round(items: list[WorkItem], out_dir: Path, options: HolisticOptions, workers: int,
                record: Callable[[SentenceResult], None]) -> list[WorkItem]:
    """Run ``items`` in one spawn-started pool; returns those lost to a broken pool."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fork after rich/mediapipe threads is unsafe
    crashed: list[WorkItem] = []
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx,
                             initializer=_init_worker, initargs=(options,)) as pool:
        futures: dict[Future, WorkItem] = {pool.submit(_run_item, it, str(out_dir), options): it for it in items}
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                record(fut.result())
            except BrokenProcessPool:
                crashed.append(item)
            except Exception as exc:  # e.g. a result that failed to pickle
                record(SentenceResult(item.id, "failed", item.output, reason=f"{type(exc).__name__}: {exc}"))
    return crashed
