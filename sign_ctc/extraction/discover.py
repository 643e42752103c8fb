"""The work list of an extraction run: which sentences, from which video or frame images, to which `.pose`.

Inputs are a video, a folder of videos, a frame folder, a folder of frame folders, or a corpus root
(PHOENIX-2014 / 2014-T annotations, CSL-Daily's split file); ``shard=k/n`` takes a deterministic
slice of the sorted list per machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sign_ctc.errors import SignCtcError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
# PHOENIX release layout: the ``folder`` column is relative to <root>/<FRAMES_SUBDIR>/<split>/.
FRAMES_SUBDIR = "features/fullFrame-210x260px"


class ExtractInputError(SignCtcError, ValueError):
    """Bad inputs for an extraction run (missing path, nothing to extract, bad shard)."""


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


def annotation_candidates(root: Path, split: str) -> list[Path]:
    """Where the corpus readers look for a split's annotation csv under a release root (PHOENIX-2014,
    PHOENIX-2014-T, our own flat layout): the readers' own paths, so the two never disagree."""
    from sign_ctc.data.corpus import Corpus, Phoenix2014Corpus, Phoenix2014TCorpus

    return [cls(root).annotation_path(split) for cls in (Phoenix2014Corpus, Phoenix2014TCorpus, Corpus)]


def find_annotation(root: Path, split: str) -> Path | None:
    """The split's annotation csv in a corpus root, if there is one."""
    return next((p for p in annotation_candidates(root, split) if p.is_file()), None)


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
            tried = ", ".join(str(p) for p in annotation_candidates(in_path, split))
            raise ExtractInputError(f"split={split!r} given but no annotation csv found (tried {tried}); "
                                    "pass annotation=<csv>")
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
