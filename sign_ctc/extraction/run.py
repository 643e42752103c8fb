"""An extraction run: this shard's sentences through a pool of worker processes, resumable and safe to kill.

Outputs are written to a temp name and renamed, finished outputs that read back are skipped, a
sentence that fails is recorded with its reason and the run goes on, and a worker that dies is
pinned on its sentence; the run summary (counts, detection rates, failures) is written atomically.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sign_ctc.atomic import write_text_atomic
from sign_ctc.extraction.discover import WorkItem, parse_shard, select_shard
from sign_ctc.extraction.tracker import HolisticOptions, backend_provenance, check_backend
from sign_ctc.extraction.worker import (
    SentenceResult,
    close_worker,
    detection_rates,
    init_worker,
    run_item,
)
from sign_ctc.features.layout import PARTS
from sign_ctc.features.pose_io import read_pose
from sign_ctc.features.provenance import read_provenance

if TYPE_CHECKING:
    from rich.progress import Progress


# What must match for a finished file to be kept (a mediapipe patch release alone does not redo a corpus).
SAME_EXTRACTOR = ("backend", "model", "model_sha256", "model_complexity", "refine_face")


def _finished(item: WorkItem, output_dir: Path, extractor: dict[str, Any] | None = None) -> SentenceResult | None:
    """A skipped result when the output exists and reads back, else None (redo it).

    A file whose sidecar records another extractor (``tracker``, model, ``refine_face``) is redone:
    rerunning a folder with other settings must not leave it a silent mix. Files without a sidecar
    (older runs, other tools) are kept.
    """
    out = output_dir / item.output
    if not out.is_file():
        return None
    recorded = read_provenance(out)
    if extractor and recorded and any(recorded.get(k) != extractor.get(k) for k in SAME_EXTRACTOR):
        return None
    try:
        lm = read_pose(out)
    except Exception:  # PoseFileError or worse: an unreadable output is simply redone
        return None
    if len(lm) == 0:
        return None
    return SentenceResult(item.id, "skipped", item.output, frames=len(lm), detection_rate=detection_rates(lm))


def _remove_stale_temps(item: WorkItem, output_dir: Path) -> None:
    """Temp files an interrupted run left for this item (``write_bytes_atomic`` naming)."""
    out = output_dir / item.output
    if out.parent.is_dir():
        for tmp in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _progress(enabled: bool) -> Progress:
    """Sentence-level bar with ETA (rich); disabled bars draw nothing."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
    check_backend(options)
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
        "extractor": backend_provenance(options),
        "interrupted": False,
    }
    results: dict[str, SentenceResult] = {}
    todo: list[WorkItem] = []
    for item in mine:
        _remove_stale_temps(item, out_dir)
        done = _finished(item, out_dir, meta["extractor"])
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
                        record(run_item(item, str(out_dir), options))
                finally:
                    close_worker()
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
                             initializer=init_worker, initargs=(options,)) as pool:
        futures: dict[Future, WorkItem] = {pool.submit(run_item, it, str(out_dir), options): it for it in items}
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                record(fut.result())
            except BrokenProcessPool:
                crashed.append(item)
            except Exception as exc:  # e.g. a result that failed to pickle
                record(SentenceResult(item.id, "failed", item.output, reason=f"{type(exc).__name__}: {exc}"))
    return crashed
