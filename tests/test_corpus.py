"""Corpus readers on the real PHOENIX annotation files; the vocabulary."""

from pathlib import Path

import pytest

from sign_ctc.data.corpus import AnnotationError, Phoenix2014TCorpus, read_phoenix2014, read_phoenix2014t
from sign_ctc.data.vocabulary import Vocabulary

DATA = Path(__file__).parent / "data"


def test_phoenix2014_annotations_parse_with_published_counts():
    splits = {s: read_phoenix2014(DATA / "phoenix2014" / f"{s}.corpus.csv") for s in ("train", "dev", "test")}
    assert {s: len(v) for s, v in splits.items()} == {"train": 5671, "dev": 540, "test": 629}
    vocab = Vocabulary.from_glosses(s.glosses for s in splits["train"])
    assert len(vocab) - 2 == 1231  # gloss types in train, plus blank and <unk>
    assert max(len(s.glosses) for s in splits["train"]) == 28
    assert len({s.signer for s in splits["train"]}) == 9
    first = splits["dev"][0]
    assert first.folder.endswith("*.png") and first.glosses


def test_phoenix2014t_sample_row_parses():
    (row,) = read_phoenix2014t(DATA / "PHOENIX-2014-T.test.corpus.csv")
    assert row.id == "25October_2010_Monday_tagesschau-17"
    assert len(row.glosses) == 11


def test_phoenix2014t_corpus_layout(tmp_path):
    manual = tmp_path / "annotations" / "manual"
    manual.mkdir(parents=True)
    (manual / "PHOENIX-2014-T.test.corpus.csv").write_bytes((DATA / "PHOENIX-2014-T.test.corpus.csv").read_bytes())
    corpus = Phoenix2014TCorpus(tmp_path, landmarks_dir=tmp_path / "lm")
    (s,) = corpus.sentences("test")
    assert corpus.landmark_path("test", s) == tmp_path / "lm" / "test" / f"{s.id}.pose"


def test_bad_annotation_names_file_and_columns(tmp_path):
    bad = tmp_path / "train.corpus.csv"
    bad.write_text("name|gloss\na|B C\n")
    with pytest.raises(AnnotationError, match=r"train.corpus.csv.*lacks column"):
        read_phoenix2014(bad)


def test_vocabulary_blank_unk_and_round_trip(tmp_path):
    vocab = Vocabulary.from_glosses([["B", "A"], ["C"]])
    assert vocab.tokens == ["<blank>", "<unk>", "A", "B", "C"]
    assert vocab.encode(["A", "ZZZ"]) == [2, 1]
    assert vocab.decode([0, 2, 0, 4]) == ["A", "C"]
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").tokens == vocab.tokens
