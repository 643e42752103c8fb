"""A split's landmark files read and checked in one pass, before anything is packed: every bad sample
found and named (a file missing, empty, truncated or unreadable; a sentence with no glosses or fewer
frames than glosses), never lost silently.

Why a module of its own: checking the sources is one job and packing them is another
(:mod:`sign_ctc.data.store`); ``data.store=false`` runs the same check without a store
(:func:`scan_sources`). Any bad sample is one :class:`BadFilesError` listing them all (``path: reason
(sample id)``) unless ``skip_bad_files``; the pack writes the list, atomically, to
``<store root>/<split>.bad_files.json`` (:func:`record_bad`). Non-finite coordinates, skeletons and
extraction backends mixed in a split are warnings, not errors.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sign_ctc.atomic import write_text_atomic
from sign_ctc.data.corpus import Corpus, Sentence
from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import NUM_POINTS, PARTS
from sign_ctc.features.provenance import backend_mix

_log = logging.getLogger(__name__)

BAD_FILES_SUFFIX = ".bad_files.json"  # <store root>/<split>.bad_files.json
MAX_LISTED = 100  # bad samples spelled out in an error message (all of them are in the json)
# The store keeps float16 points: a source is read into it, and a coordinate that does not fit is a bad sample.
POINT_DTYPE = np.dtype("<f2")


class StoreError(SignCtcError, RuntimeError):
    """A store that cannot be built or read; the message names the store or source file."""


@dataclass(frozen=True)
class BadSample:
    """One unusable sample of a split: its id, its landmark file and what is wrong."""

    id: str
    file: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class BadFilesError(StoreError):
    """Every bad sample of a split, found in one pass: one error instead of one crash per file."""

    def __init__(self, split: str, bad: Sequence[BadSample], total: int, report: Path | None = None,
                 skipping: bool = False):
        self.split, self.bad, self.total, self.report = split, list(bad), total, report
        if skipping:
            head = (f"split {split!r}: all {total} samples are bad, nothing left to use even with "
                    "skip_bad_files=true")
        else:
            head = (f"split {split!r}: {len(self.bad)} of {total} samples are bad (fix them, or set "
                    "data.skip_bad_files=true to leave them out)")
        if report is not None:
            head += f"; the list is in {report}"
        lines = [f"  {b.file}: {b.reason} (sample {b.id})" for b in self.bad[:MAX_LISTED]]
        if len(self.bad) > MAX_LISTED:
            lines.append(f"  ... and {len(self.bad) - MAX_LISTED} more")
        super().__init__("\n".join([head + ":", *lines]))


def sentence_problem(sentence: Sentence, frames: int | None) -> str | None:
    """Why a sentence cannot be a CTC sample (no glosses, or under one frame per gloss), else None."""
    if not sentence.glosses:
        return "no glosses in the annotation"
    if frames is not None and frames < len(sentence.glosses):
        return f"{frames} frame(s) for {len(sentence.glosses)} glosses (fewer than one frame per gloss)"
    return None


@dataclass
class SourceRead:
    """One sample as read for packing: float16 landmarks and presence, or the reason it is bad."""

    sentence: Sentence
    path: Path
    points: np.ndarray | None  # float16 [T, 543, 3]; None when bad
    presence: np.ndarray | None  # bool [T, 4]
    nonfinite: int  # detected points whose coordinates were NaN/inf, read as missing
    problem: str | None  # "; "-joined reasons when the sample is bad
    skeleton: str | None = None  # what the file was read as (features.skeletons), when the reader says


def _reason(exc: BaseException, path: Path) -> str:
    """An exception as a bad-file reason (without the path prefix its message may carry)."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc})"
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def read_sources(corpus: Corpus, split: str, sentences: Sequence[Sentence],
                 reader: Callable[[Path], tuple] | None = None) -> Iterator[SourceRead]:
    """Read every sample's landmark file once, turning each problem into a reason instead of a crash.

    ``reader(path)`` returns ``(points, presence)``, ``(points, presence, nonfinite_points)`` or
    ``(points, presence, nonfinite_points, skeleton_name)``.
    """
    from sign_ctc.features.pose_io import PoseFileError

    reader = reader or _default_reader
    for s in sentences:
        path = corpus.landmark_path(split, s)
        reasons: list[str] = []
        half = presence = skeleton = None
        nonfinite = 0
        try:
            out = reader(path)
            points, presence = out[0], out[1]
            nonfinite = int(out[2]) if len(out) > 2 else 0
            skeleton = out[3] if len(out) > 3 else None
            if points.ndim != 3 or points.shape[1:] != (NUM_POINTS, 3) or presence.shape != (len(points), len(PARTS)):
                reasons.append(f"landmarks {points.shape} / presence {presence.shape} are not "
                               f"[T, {NUM_POINTS}, 3] / [T, {len(PARTS)}]")
            elif len(points) == 0:
                reasons.append("no frames")
            elif not np.isfinite(points).all():
                reasons.append("the reader returned non-finite coordinates")
            else:
                with np.errstate(over="raise"):
                    try:
                        half = np.ascontiguousarray(points, dtype=POINT_DTYPE)
                    except FloatingPointError:
                        reasons.append(f"coordinate {float(np.abs(points).max()):.6g} does not fit float16")
        except (PoseFileError, OSError) as exc:
            reasons.append(_reason(exc, path))
        problem = sentence_problem(s, len(half) if half is not None and not reasons else None)
        if problem:
            reasons.append(problem)
        if reasons:
            yield SourceRead(s, path, None, None, nonfinite, "; ".join(reasons), skeleton)
        else:
            yield SourceRead(s, path, half, np.ascontiguousarray(presence, dtype=np.bool_), nonfinite, None, skeleton)


def warn_mixed_skeletons(split: str, skeletons: dict[str, list[str]]) -> None:
    """One warning when a split's files were read as different skeletons (``features.skeletons``).

    They all pack into the same layout, but a point one skeleton lacks reads 0 in its files and a
    real value in the others', so a mixed split is worth knowing about; it is not an error.
    """
    if len(skeletons) < 2:
        return
    by_count = sorted(skeletons.items(), key=lambda kv: -len(kv[1]))
    parts = [f"{len(files)} {name} (e.g. {files[0]})" for name, files in by_count]
    _log.warning("%s: the landmark files are of %d skeletons: %s; points a skeleton lacks read as missing (0) in its "
                 "files", split, len(skeletons), ", ".join(parts))


def warn_nonfinite(split: str, counts: Sequence[dict[str, Any]]) -> None:
    """One warning naming the files whose non-finite coordinates were read as missing points."""
    if not counts:
        return
    listed = ", ".join(f"{c['file']} ({c['points']} points)" for c in counts[:20])
    more = f" and {len(counts) - 20} more" if len(counts) > 20 else ""
    _log.warning("%s: %d landmark file(s) had non-finite coordinates, read as missing points: %s%s",
                 split, len(counts), listed, more)


def warn_backend_mix(split: str, mix: str | None) -> None:
    """One warning when a split's files were made by different extraction backends (their models
    differ, so the same signing gives different landmarks): see :mod:`sign_ctc.features.provenance`."""
    if mix:
        _log.warning("%s: landmark files come from different extraction backends (%s); re-extract them with "
                     "one tracker (sign-ctc-extract tracker=...) so that train and test see the same landmarks",
                     split, mix)


def scan_sources(corpus: Corpus, split: str, skip_bad_files: bool = False,
                 reader: Callable[[Path], tuple] | None = None) -> tuple[dict[str, int], list[BadSample]]:
    """The store's one-pass check without a store (``data.store=false``): frame counts and bad samples.

    Raises :class:`BadFilesError` listing every bad sample unless ``skip_bad_files`` (no
    bad_files.json: there is no store folder to put it in).
    """
    sentences = corpus.sentences(split)
    frames: dict[str, int] = {}
    bad: list[BadSample] = []
    nonfinite: list[dict[str, Any]] = []
    read_ok: list[Path] = []
    for item in read_sources(corpus, split, sentences, reader):
        if item.problem:
            bad.append(BadSample(item.sentence.id, str(item.path), item.problem))
            continue
        frames[item.sentence.id] = len(item.points)
        read_ok.append(item.path)
        if item.nonfinite:
            nonfinite.append({"id": item.sentence.id, "file": str(item.path), "points": item.nonfinite})
    warn_nonfinite(split, nonfinite)
    warn_backend_mix(split, backend_mix(read_ok))
    if bad and (not skip_bad_files or len(bad) == len(sentences)):
        raise BadFilesError(split, bad, len(sentences), skipping=skip_bad_files)
    return frames, bad


def bad_files_path(root: str | os.PathLike, split: str) -> Path:
    """Where a split's bad-sample list lives: ``<store root>/<split>.bad_files.json``."""
    return Path(root) / f"{split}{BAD_FILES_SUFFIX}"


def record_bad(root: Path, split: str, bad: Sequence[BadSample], total: int, sources: Path,
                skip_bad_files: bool) -> Path | None:
    """Write (atomically) or remove the split's bad_files.json; None when it cannot be written."""
    path = bad_files_path(root, split)
    try:
        if not bad:
            if path.exists():  # a stale list from an earlier pack of other sources
                path.unlink()
            return None
        payload = {"split": split, "store": str(root / split), "sources": str(sources), "sentences": total,
                   "skip_bad_files": skip_bad_files, "bad": [b.as_dict() for b in bad]}
        text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
        if _read_text(path) != text:
            write_text_atomic(path, text)
    except OSError as exc:  # a read-only store folder: the error message still lists every sample
        _log.warning("cannot write %s: %s", path, exc)
        return None
    return path


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _default_reader(path: Path) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    from sign_ctc.features.pose_io import read_pose_counted

    lm, nonfinite = read_pose_counted(path)
    return lm.points, lm.presence, nonfinite, lm.skeleton
