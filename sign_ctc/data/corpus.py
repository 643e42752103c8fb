"""Corpus annotation readers and the on-disk corpus form the datasets read.

A corpus is a set of splits; each split is a list of :class:`Sentence` and, for every
sentence, one landmark file: ``<landmarks_dir>/<split>/<id>.pose`` (or ``.npy`` holding
precomputed ``[T, 6516]`` float32 features, the seed's form).

A corpus class also owns its release layout for extraction: which files mark it (``layout_files``)
and where each sentence's frames are (``work_items``). Every class that names a ``LAYOUT`` is one
``sign_ctc.extraction.discover`` tries on a corpus root, so a new layout is one class here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from sign_ctc.errors import SignCtcError

SPLITS: tuple[str, ...] = ("train", "dev", "test")


@dataclass(frozen=True)
class Sentence:
    id: str
    glosses: tuple[str, ...]
    signer: str = ""
    folder: str = ""


class AnnotationError(SignCtcError, ValueError):
    """An annotation file that cannot be parsed; the message names the file and line."""


class CorpusLayoutError(SignCtcError, ValueError):
    """A corpus root whose media are not where its layout says (e.g. no frame folder for a split)."""


@dataclass(frozen=True)
class SentenceMedia:
    """Where one sentence's video or frames are, for extraction.

    ``sources``: a video path (kind "video") or glob patterns of frame images tried in order (kind
    "frames"; PHOENIX-2014-T lists ``<id>/1/*.png`` but ships ``<id>/*.png``).
    """

    id: str
    kind: Literal["video", "frames"]
    sources: tuple[str, ...]


def read_annotation(path: str | Path) -> list[Sentence]:
    """A PHOENIX-2014 or PHOENIX-2014-T form csv, told apart by its header (``name|`` is 2014-T)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open(encoding="utf-8") as f:
        header = f.readline()
    return read_phoenix2014t(path) if header.startswith("name|") else read_phoenix2014(path)


def frame_folder_media(sentences: list[Sentence], base: Path) -> list[SentenceMedia]:
    """PHOENIX form: a sentence's ``folder`` is a glob under ``base`` (``<id>/1/*.png`` if empty),
    with ``base/<id>/*`` as the fallback."""
    media = []
    for sentence in sentences:
        pattern = sentence.folder or f"{sentence.id}/1/*.png"
        sources = tuple(dict.fromkeys([str(base / pattern), str(base / sentence.id / "*")]))
        media.append(SentenceMedia(sentence.id, "frames", sources))
    return media


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

    For extraction: ``LAYOUT`` names the release layout (a subclass that sets it in its own body is
    one the extraction's discovery tries, most derived first; one that leaves it, like the synthetic
    corpus, is not), ``FRAMES`` is where the release keeps its frames under the root, one folder per
    split, and :meth:`work_items` lists a split's sentences with their frames. Discovery builds a
    layout class from the root alone (``cls(root)``), so one must construct so.
    """

    LAYOUT: ClassVar[str | None] = "own ({split}.corpus.csv)"
    FRAMES: ClassVar[Path] = Path("features") / "fullFrame-210x260px"
    _layouts: ClassVar[list[type[Corpus]]] = []

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("LAYOUT"):
            Corpus._layouts.append(cls)

    @staticmethod
    def layouts() -> list[type[Corpus]]:
        """The corpus classes with a release layout, in the order discovery tries them: a subclass
        before its bases, later-defined before earlier among the rest, this base (flat layout) last."""
        return sorted(reversed(Corpus._layouts), key=lambda c: -len(c.__mro__)) + [Corpus]

    @staticmethod
    def find(root: str | Path, split: str) -> Corpus | None:
        """The corpus of the first layout (:meth:`layouts`) whose marking files for ``split`` are all
        under ``root``; None if no layout's are."""
        for layout in Corpus.layouts():
            corpus = layout(root)
            if all(p.is_file() for p in corpus.layout_files(split)):
                return corpus
        return None

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
                    f"corpus annotation {path} not found: data.root must hold "
                    f"{{train,dev,test}}.corpus.csv (see README, 'Your own corpus')"
                )

    def annotation_path(self, split: str) -> Path:
        return self.root / f"{split}.corpus.csv"

    def sentences(self, split: str) -> list[Sentence]:
        return read_phoenix2014(self.annotation_path(split))

    def layout_files(self, split: str) -> list[Path]:
        """The files whose presence says a root has this layout for ``split``: its annotation."""
        return [self.annotation_path(split)]

    def frames_root(self) -> Path:
        """Where the release keeps its frames: ``root / FRAMES``."""
        return self.root / self.FRAMES

    def work_items(self, split: str, frames_root: str | Path | None = None) -> list[SentenceMedia]:
        """Every sentence of ``split`` with its frames: PHOENIX form, ``<frames_root>/<split>/<folder glob>``."""
        base = Path(frames_root or self.frames_root()) / split
        if not base.is_dir():
            raise CorpusLayoutError(f"frame folder for split {split!r} not found: {base}")
        return frame_folder_media(self.sentences(split), base)

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

    LAYOUT = "PHOENIX-2014"

    def annotation_path(self, split: str) -> Path:
        return self.root / "annotations" / "manual" / f"{split}.corpus.csv"


class Phoenix2014TCorpus(Corpus):
    """PHOENIX-2014-T release root: ``annotations/manual/PHOENIX-2014-T.{split}.corpus.csv``."""

    LAYOUT = "PHOENIX-2014-T"

    def annotation_path(self, split: str) -> Path:
        return self.root / "annotations" / "manual" / f"PHOENIX-2014-T.{split}.corpus.csv"

    def sentences(self, split: str) -> list[Sentence]:
        return read_phoenix2014t(self.annotation_path(split))


class CSLDailyCorpus(Corpus):
    """CSL-Daily release root: ``sentence_label/csl2020ct_v2.pkl`` + ``sentence_label/split_1.txt``.

    The pickle is a dict with ``info`` (one record per video: ``name``, ``signer``, ``label_gloss``
    as a list, ...) and the label maps; it is read with a restricted unpickler (builtin containers
    and scalars only). ``split_1.txt`` holds ``name|split`` lines. Frames are under
    ``sentence_frames-512x512/frames_512x512/<name>/`` (extract them with ``sign_ctc.cli.extract``);
    landmarks are ``<landmarks_dir>/<split>/<name>.pose``.
    """

    LAYOUT = "CSL-Daily"
    LABELS = Path("sentence_label") / "csl2020ct_v2.pkl"
    SPLIT_FILE = Path("sentence_label") / "split_1.txt"
    FRAMES = Path("sentence_frames-512x512") / "frames_512x512"

    def __init__(self, root: str | Path, landmarks_dir: str | Path | None = None, source: str = "pose"):
        super().__init__(root, landmarks_dir, source)
        self._splits: dict[str, list[Sentence]] | None = None

    def prepare(self) -> None:
        self._load()

    def annotation_path(self, split: str) -> Path:
        return self.root / self.LABELS

    def sentences(self, split: str) -> list[Sentence]:
        splits = self._load()
        if split not in splits:
            raise AnnotationError(f"{self.root / self.SPLIT_FILE}: no sentences of split {split!r}")
        return splits[split]

    def layout_files(self, split: str) -> list[Path]:
        return [self.root / self.SPLIT_FILE]

    def work_items(self, split: str, frames_root: str | Path | None = None) -> list[SentenceMedia]:
        """Every ``name`` of ``split`` in the split file (the labels are not needed to extract);
        frames are ``<frames_root>/<name>/*`` (default ``<root>/FRAMES``)."""
        names = [n for n, s in read_csl_split_file(self.root / self.SPLIT_FILE).items() if s == split]
        if not names:
            raise CorpusLayoutError(f"{self.root / self.SPLIT_FILE} lists no video of split {split!r}")
        frames = Path(frames_root or self.frames_root())
        if not frames.is_dir():
            raise CorpusLayoutError(f"CSL-Daily frame folder not found: {frames}")
        return [SentenceMedia(n, "frames", (str(frames / n / "*"),)) for n in names]

    def _load(self) -> dict[str, list[Sentence]]:
        if self._splits is None:
            self._splits = read_csl_daily(self.root / self.LABELS, self.root / self.SPLIT_FILE)
        return self._splits


def read_csl_split_file(path: Path) -> dict[str, str]:
    """``name|split`` lines (a ``name|split`` header is allowed) -> {name: split}."""
    if not path.is_file():
        raise FileNotFoundError(f"CSL-Daily split file not found: {path}")
    out: dict[str, str] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or (line_no == 1 and line.replace(" ", "") == "name|split"):
            continue
        fields = line.split("|")
        if len(fields) != 2 or fields[1] not in SPLITS:
            raise AnnotationError(f"{path}:{line_no}: expected 'name|train|dev|test', got {line!r}")
        out[fields[0]] = fields[1]
    return out


def read_csl_daily(labels: Path, split_file: Path) -> dict[str, list[Sentence]]:
    """CSL-Daily's label pickle and split file -> sentences per split, in split-file order."""
    from sign_ctc.data.safe_pickle import load_plain_pickle

    data = load_plain_pickle(labels)
    info = data.get("info") if isinstance(data, dict) else None
    if isinstance(info, dict):  # {name: record} as well as [record, ...]
        info = [{"name": k, **v} if isinstance(v, dict) else v for k, v in info.items()]
    if not isinstance(info, list):
        raise AnnotationError(f"{labels}: expected a dict with an 'info' list of per-video records")
    records: dict[str, Sentence] = {}
    for i, rec in enumerate(info):
        if not isinstance(rec, dict) or "name" not in rec or "label_gloss" not in rec:
            raise AnnotationError(f"{labels}: info[{i}] lacks 'name' or 'label_gloss'")
        glosses = rec["label_gloss"]
        if isinstance(glosses, str):
            glosses = glosses.split()
        if not isinstance(glosses, (list, tuple)) or not all(isinstance(g, str) for g in glosses):
            raise AnnotationError(f"{labels}: info[{i}] ({rec['name']}): label_gloss must be a list of strings")
        name = str(rec["name"])
        records[name] = Sentence(name, tuple(glosses), str(rec.get("signer", "")), name)
    splits: dict[str, list[Sentence]] = {s: [] for s in SPLITS}
    missing = []
    for name, split in read_csl_split_file(split_file).items():
        if name not in records:
            missing.append(name)
            continue
        splits[split].append(records[name])
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise AnnotationError(f"{split_file}: {len(missing)} video(s) have no record in {labels}: "
                              f"{', '.join(missing[:5])}{more}")
    return splits
