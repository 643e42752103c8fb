"""The packed landmark store: one split's raw landmarks in two flat files, read without loading them.

A split's `.pose` files are packed once into a folder::

    <store root>/<split>/
        points.f16      float16 [total_frames, 543, 3]   raw unit-coordinate landmarks (0 where undetected)
        presence.u8     bool    [total_frames, 4]        part presence (layout.PARTS order)
        index.json      ids, glosses, offsets, lengths   (sentence i = rows offsets[i] : offsets[i] + lengths[i])
        manifest.json   store version, shapes, dtypes and the fingerprint of the sources + settings

3262 bytes per frame, against 26 064 for the seed's float32 [T, 6516] features (8x less to read per
epoch). Only raw landmarks are stored: the 6516-dim features are derived per batch from them, and
normalization happens only in the model (``sign_ctc.models.normalization``).

The fingerprint covers the split's annotation (ids and glosses in order), every source file's size
and modification time, the store version and the layout version: the store is rebuilt when any of
them changes (a touched or rewritten `.pose` file, an edited annotation) and reused otherwise.
Packing writes into a temporary folder beside the store and renames it into place, so an interrupted
pack leaves the previous store or none, never half of one.

Bad data is found in one pass and named, never lost silently: packing reads every file of the split
and collects each bad sample -- a landmark file that is missing, empty (0 bytes or 0 frames),
truncated or otherwise unreadable, and a sentence with no glosses or fewer frames than glosses --
with its reason. Any bad sample fails the pack with one :class:`BadFilesError` listing them all
(``path: reason (sample id)``) unless ``skip_bad_files``, which packs the split without them. Either
way the list is written, atomically, to ``<store root>/<split>.bad_files.json``::

    {"split": "train", "store": "<store root>/train", "sources": "<landmarks_dir>/train",
     "sentences": 300, "skip_bad_files": false,
     "bad": [{"id": "...", "file": "<path>", "reason": "file not found"}, ...]}

(removed again by a pack that finds none). A store packed with skips keeps the list in its manifest
(``skipped``), so a reused store still reports them, and refuses them when ``skip_bad_files`` is
off; the fingerprint counts a missing file too, so a fixed or restored file triggers a repack. A
non-finite coordinate is not a bad file: ``read_pose`` reads it as a missing point, and the pack
counts such points per file, warns, and records them in the manifest (``nonfinite_points``). The
manifest also counts the skeletons the files were read as (``skeletons``, see
``sign_ctc.features.skeletons``), and the pack warns when a split mixes them.

Reading uses ``os.preadv`` into a small per-sample buffer: nothing is mapped, so the process'
resident memory stays flat whatever the corpus size (the page cache is the kernel's, not counted in
RSS). :meth:`LandmarkStore.points_memmap` gives a read-only ``np.memmap`` view for analysis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sign_ctc.atomic import write_text_atomic
from sign_ctc.data.corpus import Corpus, Sentence
from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import LAYOUT_VERSION, NUM_POINTS, PARTS
from sign_ctc.features.provenance import backend_mix

_log = logging.getLogger(__name__)

STORE_VERSION = 1
POINTS_FILE = "points.f16"
PRESENCE_FILE = "presence.u8"
INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"
BAD_FILES_SUFFIX = ".bad_files.json"  # <store root>/<split>.bad_files.json
MAX_LISTED = 100  # bad samples spelled out in an error message (all of them are in the json)
POINT_DTYPE = np.dtype("<f2")
FRAME_POINT_BYTES = NUM_POINTS * 3 * POINT_DTYPE.itemsize  # 3258
FRAME_PRESENCE_BYTES = len(PARTS)  # 4
BYTES_PER_FRAME = FRAME_POINT_BYTES + FRAME_PRESENCE_BYTES  # 3262
# float16 keeps ~11 significant bits: unit coordinates in [0, 1] come back within 2^-11 (~5e-4).
FLOAT16_ATOL = 1e-3


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


def _record_bad(root: Path, split: str, bad: Sequence[BadSample], total: int, sources: Path,
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


@dataclass(frozen=True)
class StoreLocation:
    root: Path  # <root>/<split>/ holds a split's store
    reason: str


def _is_writable_dir(path: Path) -> bool:
    """Writable for us *and* not marked read-only (root ignores permission bits, we respect them)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    try:
        st = probe.stat()
        if not probe.is_dir() or (st.st_mode & 0o222) == 0 or not os.access(probe, os.W_OK):
            return False
        return not (os.statvfs(probe).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def store_location(corpus: Corpus, store_dir: str | os.PathLike | None = None,
                   cache_dir: str | os.PathLike | None = None) -> StoreLocation:
    """Where a corpus' stores live.

    ``store_dir`` if given; else ``<landmarks_dir>/store`` when the landmarks folder is writable;
    else ``<cache_dir>/store/<landmarks folder name>-<hash of its absolute path>`` (read-only corpora,
    e.g. a shared copy).
    """
    if store_dir is not None:
        return StoreLocation(Path(store_dir), "store_dir")
    base = corpus.landmarks_dir
    if _is_writable_dir(base):
        return StoreLocation(base / "store", "beside the landmarks")
    if cache_dir is None:
        raise StoreError(f"landmark folder {base} is read-only and no cache_dir was given for its packed store "
                         "(set data.store_dir or paths.cache_dir)")
    key = hashlib.sha1(str(base.resolve()).encode()).hexdigest()[:12]
    return StoreLocation(Path(cache_dir) / "store" / f"{base.name or 'corpus'}-{key}", "cache (landmarks read-only)")


def fingerprint(corpus: Corpus, split: str, sentences: Sequence[Sentence]) -> str:
    """Hash of the settings, the annotation and every source file's (size, mtime): changes -> rebuild.

    A missing file counts as such, so a store packed without it is rebuilt once it appears.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"store": STORE_VERSION, "layout": LAYOUT_VERSION, "dtype": POINT_DTYPE.str,
                         "split": split}).encode())
    for s in sentences:
        path = corpus.landmark_path(split, s)
        try:
            st = path.stat()
        except OSError:
            h.update(f"{s.id}\t{' '.join(s.glosses)}\t{path.name}\tmissing\n".encode())
            continue
        h.update(f"{s.id}\t{' '.join(s.glosses)}\t{path.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(root: Path, split: str) -> None:
    """Remove temp/old folders left by interrupted packs (their process is gone)."""
    pattern = re.compile(rf"^\.{re.escape(split)}\.(tmp|old)-(\d+)-")
    if not root.is_dir():
        return
    for child in root.iterdir():
        m = pattern.match(child.name)
        if m and child.is_dir() and (m.group(1) == "old" or not _pid_alive(int(m.group(2)))):
            shutil.rmtree(child, ignore_errors=True)


class LandmarkStore:
    """A packed split, read sample by sample without mapping or loading the arrays."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest = _read_json(self.path / MANIFEST_FILE)
        index = _read_json(self.path / INDEX_FILE)
        if not self.manifest or not index or self.manifest.get("version") != STORE_VERSION:
            raise StoreError(f"{self.path}: not a complete landmark store (version {STORE_VERSION})")
        self.ids: list[str] = index["ids"]
        self.glosses: list[tuple[str, ...]] = [tuple(g.split()) for g in index["glosses"]]
        self.offsets = np.asarray(index["offsets"], dtype=np.int64)
        self.lengths = np.asarray(index["lengths"], dtype=np.int64)
        self.total_frames = int(self.manifest["total_frames"])
        self.row = {sid: i for i, sid in enumerate(self.ids)}
        # Samples left out by skip_bad_files, and files whose non-finite points were read as missing.
        self.skipped: list[BadSample] = [BadSample(**b) for b in self.manifest.get("skipped", [])]
        self.nonfinite: list[dict[str, Any]] = list(self.manifest.get("nonfinite_points", []))
        # Extraction backends of the packed files when they were more than one (else None).
        self.backend_mix: str | None = self.manifest.get("backend_mix")
        expect = {POINTS_FILE: self.total_frames * FRAME_POINT_BYTES,
                  PRESENCE_FILE: self.total_frames * FRAME_PRESENCE_BYTES}
        for name, size in expect.items():
            have = (self.path / name).stat().st_size if (self.path / name).is_file() else -1
            if have != size:
                raise StoreError(f"{self.path / name}: {have} bytes, the manifest says {size}")
        self._fds: tuple[int, int, int] | None = None  # (pid, points fd, presence fd)

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict[str, Any]:  # file descriptors do not travel to spawned workers
        state = dict(self.__dict__)
        state["_fds"] = None
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        fds = getattr(self, "_fds", None)
        if fds and fds[0] == os.getpid():
            for fd in fds[1:]:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fds = None

    def _files(self) -> tuple[int, int]:
        # One pair of descriptors per process: pread has no shared file position, so a forked worker
        # could even share them, but opening its own keeps workers independent.
        if self._fds is None or self._fds[0] != os.getpid():
            self._fds = (os.getpid(), os.open(self.path / POINTS_FILE, os.O_RDONLY),
                         os.open(self.path / PRESENCE_FILE, os.O_RDONLY))
        return self._fds[1], self._fds[2]

    @staticmethod
    def _pread_into(fd: int, buf: np.ndarray, offset: int) -> None:
        view = memoryview(buf).cast("B")
        done = 0
        while done < len(view):
            n = os.preadv(fd, [view[done:]], offset + done)
            if n <= 0:
                raise StoreError(f"short read from a landmark store at byte {offset + done}")
            done += n

    @property
    def nbytes(self) -> int:
        return self.total_frames * BYTES_PER_FRAME

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks float16 [T, 543, 3] and presence bool [T, 4] of the index-th packed sentence."""
        start, n = int(self.offsets[index]), int(self.lengths[index])
        fd_points, fd_presence = self._files()
        points = np.empty((n, NUM_POINTS, 3), dtype=POINT_DTYPE)
        presence = np.empty((n, len(PARTS)), dtype=np.bool_)
        if n:
            self._pread_into(fd_points, points, start * FRAME_POINT_BYTES)
            self._pread_into(fd_presence, presence.view(np.uint8), start * FRAME_PRESENCE_BYTES)
        return points, presence

    def read_id(self, sentence_id: str) -> tuple[np.ndarray, np.ndarray]:
        return self.read(self.row[sentence_id])

    def points_memmap(self) -> np.memmap:
        """Read-only memory map of all landmarks [total_frames, 543, 3] (maps pages into RSS as touched)."""
        return np.memmap(self.path / POINTS_FILE, dtype=POINT_DTYPE, mode="r", shape=(self.total_frames, NUM_POINTS, 3))

    def presence_memmap(self) -> np.memmap:
        return np.memmap(self.path / PRESENCE_FILE, dtype=np.bool_, mode="r", shape=(self.total_frames, len(PARTS)))


def is_current(path: Path, fp: str) -> bool:
    manifest = _read_json(path / MANIFEST_FILE)
    return bool(manifest) and manifest.get("version") == STORE_VERSION and manifest.get("fingerprint") == fp


def _default_reader(path: Path) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    from sign_ctc.features.pose_io import read_pose_counted

    lm, nonfinite = read_pose_counted(path)
    return lm.points, lm.presence, nonfinite, lm.skeleton


def pack(corpus: Corpus, split: str, root: str | os.PathLike, *, progress: bool = False,
         reader: Callable[[Path], tuple] | None = None, force: bool = False,
         log: Callable[[str], None] | None = None, skip_bad_files: bool = False) -> LandmarkStore:
    """Pack (or reuse) the store of one split under ``root/<split>`` and open it.

    Reuses the store when its fingerprint matches the sources; otherwise packs them into a temp
    folder and renames it into place (atomic: an interrupted pack leaves no half store). Bad samples
    raise one :class:`BadFilesError` naming them all, or are left out with ``skip_bad_files`` (see
    the module doc). ``reader(path)`` returns ``(points, presence[, nonfinite_points[, skeleton]])``.
    """
    if corpus.source != "pose":
        raise StoreError(f"only .pose corpora can be packed (this corpus reads {corpus.source!r} files)")
    root = Path(root)
    final = root / split
    sources = corpus.landmarks_dir / split
    sentences = corpus.sentences(split)
    fp = fingerprint(corpus, split, sentences)
    if not force and is_current(final, fp):
        store = LandmarkStore(final)
        # Unchanged sources are as bad as when they were packed (with skip_bad_files): say so again.
        report = _record_bad(root, split, store.skipped, len(sentences), sources, skip_bad_files)
        warn_backend_mix(split, store.backend_mix)
        if store.skipped:
            if not skip_bad_files:
                raise BadFilesError(split, store.skipped, len(sentences), report)
        return store
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale(root, split)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}.tmp-{os.getpid()}-", dir=root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the installed store is shared like any data folder
    start = time.perf_counter()
    try:
        offsets, lengths = [], []
        packed: list[Sentence] = []
        packed_paths: list[Path] = []
        bad: list[BadSample] = []
        nonfinite: list[dict[str, Any]] = []
        skeletons: dict[str, list[str]] = {}  # skeleton read -> files
        total = 0
        bar = None
        if progress:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(f"packing {split} ({len(sentences)} files) into {final}", total=len(sentences))
        try:
            with open(tmp / POINTS_FILE, "wb") as fp_points, open(tmp / PRESENCE_FILE, "wb") as fp_presence:
                for item in read_sources(corpus, split, sentences, reader):
                    if bar is not None:
                        bar.advance(task)
                    if item.problem:
                        bad.append(BadSample(item.sentence.id, str(item.path), item.problem))
                        continue
                    fp_points.write(item.points.tobytes())
                    fp_presence.write(item.presence.tobytes())
                    packed.append(item.sentence)
                    packed_paths.append(item.path)
                    offsets.append(total)
                    lengths.append(len(item.points))
                    total += len(item.points)
                    if item.nonfinite:
                        nonfinite.append({"id": item.sentence.id, "file": str(item.path), "points": item.nonfinite})
                    if item.skeleton is not None:
                        skeletons.setdefault(item.skeleton, []).append(str(item.path))
                for f in (fp_points, fp_presence):
                    f.flush()
                    os.fsync(f.fileno())
        finally:
            if bar is not None:
                bar.stop()
        warn_nonfinite(split, nonfinite)
        warn_mixed_skeletons(split, skeletons)
        mix = backend_mix(packed_paths)
        warn_backend_mix(split, mix)
        report = _record_bad(root, split, bad, len(sentences), sources, skip_bad_files)
        if bad and (not skip_bad_files or not packed):
            raise BadFilesError(split, bad, len(sentences), report, skipping=skip_bad_files)
        index = {"ids": [s.id for s in packed], "glosses": [" ".join(s.glosses) for s in packed],
                 "offsets": offsets, "lengths": lengths}
        (tmp / INDEX_FILE).write_text(json.dumps(index))
        manifest = {
            "version": STORE_VERSION, "layout": LAYOUT_VERSION, "fingerprint": fp, "split": split,
            "sentences": len(packed), "total_frames": total,
            "skipped": [b.as_dict() for b in bad], "nonfinite_points": nonfinite, "backend_mix": mix,
            "skeletons": {name: len(files) for name, files in sorted(skeletons.items())},
            "points": {"file": POINTS_FILE, "dtype": POINT_DTYPE.str, "shape": [total, NUM_POINTS, 3]},
            "presence": {"file": PRESENCE_FILE, "dtype": "|b1", "shape": [total, len(PARTS)], "parts": list(PARTS)},
            "bytes_per_frame": BYTES_PER_FRAME, "sources": str(sources),
            "pack_seconds": round(time.perf_counter() - start, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        # The manifest is written last: a folder without it is never taken for a store.
        with open(tmp / MANIFEST_FILE, "w") as f:
            f.write(json.dumps(manifest, indent=1))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        _install(tmp, final, fp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if log:
        skipped = f" ({len(bad)} bad skipped)" if bad else ""
        log(f"packed {split}: {len(packed)} sentences{skipped}, {total} frames, {total * BYTES_PER_FRAME / 1e6:.1f} MB "
            f"in {time.perf_counter() - start:.1f} s -> {final}")
    return LandmarkStore(final)


def _install(tmp: Path, final: Path, fp: str) -> None:
    """Rename the packed temp folder into place, replacing an outdated store."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}-{int(time.time() * 1e6)}"
        try:
            os.rename(final, old)
        except FileNotFoundError:
            old = None  # someone else moved it
    try:
        os.rename(tmp, final)
    except OSError:
        # Another process (a DDP rank) installed the same store first: keep theirs.
        if is_current(final, fp):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def open_store(corpus: Corpus, split: str, store_dir: str | os.PathLike | None = None,
               cache_dir: str | os.PathLike | None = None, progress: bool = False,
               log: Callable[[str], None] | None = None, skip_bad_files: bool = False) -> LandmarkStore:
    """The split's store, packed first if missing or outdated (the automatic first-use pack)."""
    loc = store_location(corpus, store_dir, cache_dir)
    return pack(corpus, split, loc.root, progress=progress, log=log, skip_bad_files=skip_bad_files)
