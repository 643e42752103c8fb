"""A corpus class owns its release layout for extraction: discovery tries every class with a LAYOUT,
so a new layout is one class (here one defined in the test) and extraction/discover.py is untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from sign_ctc.data.corpus import (
    Corpus,
    CorpusLayoutError,
    CSLDailyCorpus,
    Phoenix2014Corpus,
    Phoenix2014TCorpus,
    Sentence,
    SentenceMedia,
)
from sign_ctc.data.synthetic import SyntheticCorpus
from sign_ctc.extraction.discover import ExtractInputError, WorkItem, discover


class ClipsCorpus(Corpus):
    """A new layout: ``clips.tsv`` (``split<TAB>id<TAB>glosses``) and one video per sentence in ``videos/<id>.mp4``."""

    LAYOUT = "clips (test)"

    def layout_files(self, split: str) -> list[Path]:
        return [self.root / "clips.tsv"]

    def sentences(self, split: str) -> list[Sentence]:
        rows = [line.split("\t") for line in (self.root / "clips.tsv").read_text().splitlines()]
        return [Sentence(sid, tuple(glosses.split())) for s, sid, glosses in rows if s == split]

    def work_items(self, split: str, frames_root: str | Path | None = None) -> list[SentenceMedia]:
        videos = Path(frames_root or self.root / "videos")
        missing = [s.id for s in self.sentences(split) if not (videos / f"{s.id}.mp4").is_file()]
        if missing:
            raise CorpusLayoutError(f"{videos}: no video for {', '.join(missing)}")
        return [SentenceMedia(s.id, "video", (str(videos / f"{s.id}.mp4"),)) for s in self.sentences(split)]


def test_a_new_corpus_class_is_discovered_without_touching_discover(tmp_path):
    root = tmp_path / "clips"
    (root / "videos").mkdir(parents=True)
    (root / "clips.tsv").write_text("train\tc2\tB C\ndev\tc1\tA\ntrain\tc0\tA B\n")
    for sid in ("c0", "c1", "c2"):
        (root / "videos" / f"{sid}.mp4").write_bytes(b"")
    assert Corpus.layouts()[0] is ClipsCorpus and isinstance(Corpus.find(root, "train"), ClipsCorpus)
    items = discover(root, split="train")
    assert items == [WorkItem("c0", "video", (str(root / "videos" / "c0.mp4"),), "train/c0.pose"),
                     WorkItem("c2", "video", (str(root / "videos" / "c2.mp4"),), "train/c2.pose")]
    # Its reader and its landmark path agree with the work list's output.
    corpus = ClipsCorpus(root, landmarks_dir=tmp_path / "lm")
    assert sorted(corpus.landmark_path("train", s) for s in corpus.sentences("train")) == [
        tmp_path / "lm" / it.output for it in items]
    # Its own error, as the extraction's one clear error.
    (root / "videos" / "c1.mp4").unlink()
    with pytest.raises(ExtractInputError, match="no video for c1"):
        discover(root, split="dev")


def test_known_layouts_are_tried_subclass_first_and_generated_corpora_are_not_layouts():
    layouts = Corpus.layouts()
    assert layouts[-1] is Corpus
    assert {Phoenix2014Corpus, Phoenix2014TCorpus, CSLDailyCorpus} <= set(layouts)
    assert SyntheticCorpus not in layouts  # it names no LAYOUT of its own: nothing to extract


def test_csl_daily_root_lists_its_split_from_the_split_file(tmp_path):
    from tests import corpora

    root = tmp_path / "CSL-Daily"
    corpora.csl_daily_labels({"train": [Sentence("S2", ("A",), "1"), Sentence("S1", ("B",), "1")],
                              "dev": [Sentence("S3", ("A",), "2")], "test": []}, root)
    with pytest.raises(ExtractInputError, match="CSL-Daily frame folder not found"):
        discover(root, split="train")
    frames = root / CSLDailyCorpus.FRAMES
    frames.mkdir(parents=True)
    items = discover(root, split="train")
    assert [(i.id, i.sources, i.output) for i in items] == [
        ("S1", (str(frames / "S1" / "*"),), "train/S1.pose"), ("S2", (str(frames / "S2" / "*"),), "train/S2.pose")]
    elsewhere = tmp_path / "frames"
    elsewhere.mkdir()
    assert discover(root, split="dev", frames_root=elsewhere)[0].sources == (str(elsewhere / "S3" / "*"),)
    with pytest.raises(ExtractInputError, match="lists no video of split 'test'"):
        discover(root, split="test")


def test_phoenix_and_own_roots_keep_their_frame_globs(tmp_path):
    """PHOENIX-2014 root: the csv's folder glob under features/fullFrame-210x260px/<split>, <id>/* after it;
    our own flat layout reads the same; a root of no layout names every file it looked for."""
    for root, ann in ((tmp_path / "p14", tmp_path / "p14" / "annotations" / "manual" / "dev.corpus.csv"),
                      (tmp_path / "own", tmp_path / "own" / "dev.corpus.csv")):
        ann.parent.mkdir(parents=True)
        ann.write_text("id|folder|signer|annotation\nS1|S1/1/*.png|Signer01|A B\n")
        base = root / "features" / "fullFrame-210x260px" / "dev"
        with pytest.raises(ExtractInputError, match="frame folder for split 'dev' not found"):
            discover(root, split="dev")
        base.mkdir(parents=True)
        (item,) = discover(root, split="dev")
        assert item.sources == (str(base / "S1/1/*.png"), str(base / "S1" / "*")) and item.output == "dev/S1.pose"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExtractInputError, match="no corpus layout found") as err:
        discover(tmp_path / "empty", split="dev")
    assert "PHOENIX-2014-T.dev.corpus.csv" in str(err.value) and "split_1.txt" in str(err.value)
