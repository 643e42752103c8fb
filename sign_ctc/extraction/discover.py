"""The work list of an extraction run: which sentences, from which video or frame images, to which `.pose`.

Inputs are a video, a folder of videos, a frame folder, a folder of frame folders, or a corpus root
(PHOENIX-2014 / 2014-T annotations, CSL-Daily's split file, our own flat layout); ``shard=k/n`` takes
a deterministic slice of the sorted list per machine. A corpus root's layout -- which files mark it,
where each sentence's frames are -- belongs to its corpus class in ``sign_ctc.data.corpus``
(``Corpus.layouts``, ``Corpus.work_items``): this module only tries them, so a new layout is one class there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sign_ctc.data.corpus import Corpus, CorpusLayoutError, SentenceMedia, frame_folder_media, read_annotation
from sign_ctc.errors import SignCtcError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
# PHOENIX release layout (and our own): the ``folder`` column is relative to <root>/<FRAMES_SUBDIR>/<split>/.
FRAMES_SUBDIR = Corpus.FRAMES.as_posix()


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
    """The files that would mark ``root`` as each known corpus layout for ``split`` (in the order tried):
    the corpus classes' own paths, so the readers and discovery never disagree."""
    return [p for layout in Corpus.layouts() for p in layout(root).layout_files(split)]


def _split_from_annotation(path: Path) -> str | None:
    """``dev.corpus.csv`` / ``PHOENIX-2014-T.dev.corpus.csv`` -> ``dev``."""
    name = path.name
    if not name.endswith(".corpus.csv"):
        return None
    return name[: -len(".corpus.csv")].split(".")[-1] or None


def _items(media: list[SentenceMedia], split: str, where: str) -> list[WorkItem]:
    """A corpus split's sentences as work items writing ``<split>/<id>.pose``, the corpus's landmark path."""
    return _check_unique([WorkItem(m.id, m.kind, m.sources, f"{split}/{m.id}.pose") for m in media], where)


def corpus_work_items(corpus: Corpus, split: str, frames_root: str | os.PathLike | None = None) -> list[WorkItem]:
    """Every sentence of ``split`` of a corpus root, where its class says the frames are."""
    try:
        media = corpus.work_items(split, Path(frames_root) if frames_root not in (None, "") else None)
    except CorpusLayoutError as e:
        raise ExtractInputError(str(e)) from None
    return _items(media, split, f"{corpus.root} ({corpus.LAYOUT})")


def corpus_items(annotation: Path, frames_root: Path, split: str) -> list[WorkItem]:
    """One item per sentence of a named annotation csv (PHOENIX-2014 or -2014-T form); frames are
    ``frames_root/<split>/<folder pattern>``."""
    if not annotation.is_file():
        raise ExtractInputError(f"annotation file not found: {annotation}")
    return _items(frame_folder_media(read_annotation(annotation), frames_root / split), split, str(annotation))


def discover(
    input: str | os.PathLike | None,
    *,
    annotation: str | os.PathLike | None = None,
    split: str | None = None,
    frames_root: str | os.PathLike | None = None,
) -> list[WorkItem]:
    """Turn the run's inputs into a sorted work list.

    ``input`` is a video file, a folder of videos, a frame folder (one sentence), a folder of
    frame folders, or a corpus root (with ``split``) of any layout ``Corpus.layouts()`` knows:
    PHOENIX-2014 / 2014-T, CSL-Daily (its ``sentence_label/split_1.txt`` and
    ``sentence_frames-512x512/frames_512x512/<name>/``), our own ``{split}.corpus.csv``; the corpus class
    lists the sentences and their frames, ``frames_root`` replacing where its release keeps them.
    Or an ``annotation`` csv named outright plus ``frames_root`` (default
    ``<input>/features/fullFrame-210x260px``). Outputs go to ``<split>/<id>.pose``.
    """
    in_path = Path(input) if input not in (None, "") else None
    if in_path is not None and not in_path.exists():
        raise ExtractInputError(f"input not found: {in_path}")
    ann = Path(annotation) if annotation not in (None, "") else None
    if ann is None and split and in_path is not None and in_path.is_dir():
        corpus = Corpus.find(in_path, split)
        if corpus is not None:
            return corpus_work_items(corpus, split, frames_root)
        if not (_videos_in(in_path) or _images_in(in_path)):
            tried = ", ".join(str(p) for p in annotation_candidates(in_path, split))
            raise ExtractInputError(f"split={split!r} given but no corpus layout found (tried {tried}); "
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
