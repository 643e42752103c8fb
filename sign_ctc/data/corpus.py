"""Corpus annotation readers and the on-disk corpus form the datasets read.

A corpus is a set of splits; each split is a list of :class:`Sentence` and, for every
sentence, one landmark file: ``<landmarks_dir>/<split>/<id>.pose`` (or ``.npy`` holding
precomputed ``[T, 6516]`` float32 features, the seed's form).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "dev", "test")


@dataclass(frozen=True)
class Sentence:
    id: str
    glosses: tuple[str, ...]
    signer: str = ""
    folder: str = ""


class AnnotationError(ValueError):
    """An annotation file that cannot be parsed; the message names the file and line."""


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="|", quoting=csv.QUOTE_NONE)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"{path}: header {reader.fieldnames} lacks column(s) {missing}")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if None in row or any(row[c] is None for c in required):
                raise AnnotationError(f"{path}:{line_no}: wrong number of '|'-separated fields")
            rows.append(row)
    return rows


def read_phoenix2014(path: str | Path) -> list[Sentence]:
    """PHOENIX-2014 ``id|folder|signer|annotation`` (also our own corpora's form)."""
    rows = _read_rows(Path(path), ("id", "folder", "signer", "annotation"))
    return [Sentence(r["id"], tuple(r["annotation"].split()), r["signer"], r["folder"]) for r in rows]


def read_phoenix2014t(path: str | Path) -> list[Sentence]:
    """PHOENIX-2014-T ``name|video|start|end|speaker|orth|translation``."""
    rows = _read_rows(Path(path), ("name", "video", "speaker", "orth"))
    return [Sentence(r["name"], tuple(r["orth"].split()), r["speaker"], r["video"]) for r in rows]


def write_phoenix2014(path: Path, sentences: list[Sentence]) -> None:
    """Write sentences in PHOENIX-2014 form, atomically."""
    from sign_ctc.atomic import write_bytes_atomic

    lines = ["id|folder|signer|annotation"]
    lines += [f"{s.id}|{s.folder or s.id}|{s.signer}|{' '.join(s.glosses)}" for s in sentences]
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


class Corpus:
    """Splits of sentences plus where each sentence's landmarks live.

    ``root/{split}.corpus.csv`` (PHOENIX-2014 form) and ``landmarks_dir/{split}/{id}.pose``
    (or ``.npy``). Subclasses change where annotations come from.
    """

    def __init__(self, root: str | Path, landmarks_dir: str | Path | None = None, source: str = "pose"):
        if source not in ("pose", "npy"):
            raise ValueError(f"source must be 'pose' or 'npy', got {source!r}")
        self.root = Path(root)
        self.landmarks_dir = Path(landmarks_dir) if landmarks_dir else self.root
        self.source = source

    def prepare(self) -> None:
        """Make the corpus available on disk (generated corpora build themselves here)."""
        for split in SPLITS:
            path = self.annotation_path(split)
            if not path.is_file():
                raise FileNotFoundError(
                    f"corpus annotation {path} not found: data.corpus.root must hold "
                    f"{{train,dev,test}}.corpus.csv (see README, 'Your own corpus')"
                )

    def annotation_path(self, split: str) -> Path:
        return self.root / f"{split}.corpus.csv"

    def sentences(self, split: str) -> list[Sentence]:
        return read_phoenix2014(self.annotation_path(split))

    def landmark_path(self, split: str, sentence: Sentence) -> Path:
        return self.landmarks_dir / split / f"{sentence.id}.{self.source}"

    def num_frames(self, split: str) -> dict[str, int]:
        """Frame counts from ``landmarks_dir/num_frames.csv`` (``split|id|num_frames``), if present.

        It must describe the landmark files (PHOENIX's own num_frames counts video frames,
        which an extraction may not match), so only our own writers produce it.
        """
        path = self.landmarks_dir / "num_frames.csv"
        if not path.is_file():
            return {}
        rows = _read_rows(path, ("split", "id", "num_frames"))
        return {r["id"]: int(r["num_frames"]) for r in rows if r["split"] == split}


class Phoenix2014Corpus(Corpus):
    """RWTH-PHOENIX-Weather 2014 release root: ``annotations/manual/{split}.corpus.csv``."""

    def annotation_path(self, split: str) -> Path:
        return self.root / "annotations" / "manual" / f"{split}.corpus.csv"


class Phoenix2014TCorpus(Corpus):
    """PHOENIX-2014-T release root: ``annotations/manual/PHOENIX-2014-T.{split}.corpus.csv``."""

    def annotation_path(self, split: str) -> Path:
        return self.root / "annotations" / "manual" / f"PHOENIX-2014-T.{split}.corpus.csv"

    def sentences(self, split: str) -> list[Sentence]:
        return read_phoenix2014t(self.annotation_path(split))
