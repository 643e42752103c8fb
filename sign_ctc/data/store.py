"""The packed landmark store: one split's raw landmarks in two flat files, read without loading them.

A split's `.pose` files are packed once into a folder::

    <store root>/<split>/
        points.f16      float16 [total_frames, 543, 3]   raw unit-coordinate landmarks (0 where undetected)
        presence.u8     bool    [total_frames, 4]        part presence (layout.PARTS order)
        index.json      ids, glosses, offsets, lengths   (sentence i = rows offsets[i] : offsets[i] + lengths[i])
        manifest.json   store version, shapes, dtypes and the fingerprint of the sources + settings

3262 bytes per frame, against 26 064 for the seed's float32 [T, 6516] features (8x less to read per
epoch). Only raw landmarks are stored: the 6516-dim features are derived per batch from them, and
normalization happens only in the model (``sign_ctc.normalization``).

The fingerprint covers the split's annotation (ids and glosses in order), every source file's size
and modification time, the store version and the layout version: the store is rebuilt when any of
them changes (a touched or rewritten `.pose` file, an edited annotation) and reused otherwise.
Packing writes into a temporary folder beside the store and renames it into place, so an interrupted
pack leaves the previous store or none, never half of one.

Reading uses ``os.preadv`` into a small per-sample buffer: nothing is mapped, so the process'
resident memory stays flat whatever the corpus size (the page cache is the kernel's, not counted in
RSS). :meth:`LandmarkStore.points_memmap` gives a read-only ``np.memmap`` view for analysis.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sign_ctc.data.corpus import Corpus, Sentence
from sign_ctc.features.layout import LAYOUT_VERSION, NUM_POINTS, PARTS

STORE_VERSION = 1
POINTS_FILE = "points.f16"
PRESENCE_FILE = "presence.u8"
INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"
POINT_DTYPE = np.dtype("<f2")
FRAME_POINT_BYTES = NUM_POINTS * 3 * POINT_DTYPE.itemsize  # 3258
FRAME_PRESENCE_BYTES = len(PARTS)  # 4
BYTES_PER_FRAME = FRAME_POINT_BYTES + FRAME_PRESENCE_BYTES  # 3262
# float16 keeps ~11 significant bits: unit coordinates in [0, 1] come back within 2^-11 (~5e-4).
FLOAT16_ATOL = 1e-3


class StoreError(RuntimeError):
    """A store that cannot be built or read; the message names the store or source file."""


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
    """Hash of the settings, the annotation and every source file's (size, mtime): changes -> rebuild."""
    h = hashlib.sha256()
    h.update(json.dumps({"store": STORE_VERSION, "layout": LAYOUT_VERSION, "dtype": POINT_DTYPE.str,
                         "split": split}).encode())
    missing = []
    for s in sentences:
        path = corpus.landmark_path(split, s)
        try:
            st = path.stat()
        except FileNotFoundError:
            missing.append(str(path))
            continue
        h.update(f"{s.id}\t{' '.join(s.glosses)}\t{path.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise StoreError(f"cannot pack split {split!r}: {len(missing)} landmark file(s) not found: "
                         f"{', '.join(missing[:5])}{more}")
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


def _default_reader(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from sign_ctc.features.pose_io import read_pose

    lm = read_pose(path)
    return lm.points, lm.presence


def pack(corpus: Corpus, split: str, root: str | os.PathLike, *, progress: bool = False,
         reader: Callable[[Path], tuple[np.ndarray, np.ndarray]] | None = None,
         force: bool = False, log: Callable[[str], None] | None = None) -> LandmarkStore:
    """Pack (or reuse) the store of one split under ``root/<split>`` and open it.

    Reuses the store when its fingerprint matches the sources; otherwise packs them into a temp
    folder and renames it into place (atomic: an interrupted pack leaves no half store).
    """
    if corpus.source != "pose":
        raise StoreError(f"only .pose corpora can be packed (this corpus reads {corpus.source!r} files)")
    root = Path(root)
    final = root / split
    sentences = corpus.sentences(split)
    fp = fingerprint(corpus, split, sentences)
    if not force and is_current(final, fp):
        return LandmarkStore(final)
    reader = reader or _default_reader
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale(root, split)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}.tmp-{os.getpid()}-", dir=root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the installed store is shared like any data folder
    start = time.perf_counter()
    try:
        offsets, lengths = [], []
        total = 0
        bar = None
        if progress:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(f"packing {split} ({len(sentences)} files) into {final}", total=len(sentences))
        try:
            with open(tmp / POINTS_FILE, "wb") as fp_points, open(tmp / PRESENCE_FILE, "wb") as fp_presence:
                for s in sentences:
                    path = corpus.landmark_path(split, s)
                    points, presence = reader(path)
                    if points.ndim != 3 or points.shape[1:] != (NUM_POINTS, 3) or presence.shape != (len(points), len(PARTS)):
                        raise StoreError(f"{path}: landmarks {points.shape} / presence {presence.shape} are not "
                                         f"[T, {NUM_POINTS}, 3] / [T, {len(PARTS)}]")
                    with np.errstate(over="raise"):
                        try:
                            half = np.ascontiguousarray(points, dtype=POINT_DTYPE)
                        except FloatingPointError as exc:
                            raise StoreError(f"{path}: a coordinate does not fit float16 ({exc})") from exc
                    fp_points.write(half.tobytes())
                    fp_presence.write(np.ascontiguousarray(presence, dtype=np.bool_).tobytes())
                    offsets.append(total)
                    lengths.append(len(points))
                    total += len(points)
                    if bar is not None:
                        bar.advance(task)
                for f in (fp_points, fp_presence):
                    f.flush()
                    os.fsync(f.fileno())
        finally:
            if bar is not None:
                bar.stop()
        index = {"ids": [s.id for s in sentences], "glosses": [" ".join(s.glosses) for s in sentences],
                 "offsets": offsets, "lengths": lengths}
        (tmp / INDEX_FILE).write_text(json.dumps(index))
        manifest = {
            "version": STORE_VERSION, "layout": LAYOUT_VERSION, "fingerprint": fp, "split": split,
            "sentences": len(sentences), "total_frames": total,
            "points": {"file": POINTS_FILE, "dtype": POINT_DTYPE.str, "shape": [total, NUM_POINTS, 3]},
            "presence": {"file": PRESENCE_FILE, "dtype": "|b1", "shape": [total, len(PARTS)], "parts": list(PARTS)},
            "bytes_per_frame": BYTES_PER_FRAME, "sources": str(corpus.landmarks_dir / split),
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
        log(f"packed {split}: {len(sentences)} sentences, {total} frames, {total * BYTES_PER_FRAME / 1e6:.1f} MB "
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
               log: Callable[[str], None] | None = None) -> LandmarkStore:
    """The split's store, packed first if missing or outdated (the automatic first-use pack)."""
    loc = store_location(corpus, store_dir, cache_dir)
    return pack(corpus, split, loc.root, progress=progress, log=log)
