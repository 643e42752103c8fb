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


def _csl_release(root, sentences_by_split):
    from tests import corpora

    corpora.csl_daily_labels(sentences_by_split, root)
    return root


def test_csl_daily_release_labels_parse(tmp_path):
    from sign_ctc.data.corpus import CSLDailyCorpus, Sentence

    split = {"train": [Sentence("S000000_P0000_T00", ("我", "想", "回家"), "3")],
             "dev": [Sentence("S000001_P0001_T00", ("你", "好"), "7")], "test": [Sentence("S000002_P0002_T00", ("好",), "9")]}
    corpus = CSLDailyCorpus(_csl_release(tmp_path / "CSL-Daily", split), landmarks_dir=tmp_path / "lm")
    corpus.prepare()
    (train,) = corpus.sentences("train")
    assert train.id == "S000000_P0000_T00" and train.glosses == ("我", "想", "回家") and train.signer == "3"
    assert [s.id for s in corpus.sentences("test")] == ["S000002_P0002_T00"]
    assert corpus.landmark_path("dev", corpus.sentences("dev")[0]) == tmp_path / "lm" / "dev" / "S000001_P0001_T00.pose"


def test_csl_daily_pickle_with_classes_is_refused_and_never_run(tmp_path):
    import os
    import pickle

    import numpy as np

    from sign_ctc.data.corpus import CSLDailyCorpus
    from sign_ctc.data.safe_pickle import UnsafePickleError

    labels = tmp_path / "sentence_label"
    labels.mkdir()
    (labels / "split_1.txt").write_text("name|split\nv1|train\n")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for payload, named in ((Payload(), "system"), (np.arange(3), "numpy")):
        (labels / "csl2020ct_v2.pkl").write_bytes(pickle.dumps({"info": [{"name": "v1", "label_gloss": ["A"],
                                                                          "extra": payload}]}))
        with pytest.raises(UnsafePickleError, match=named):
            CSLDailyCorpus(tmp_path).prepare()
    assert not marker.exists()


def test_csl_daily_bad_split_file_and_missing_record_are_named(tmp_path):
    from sign_ctc.data.corpus import CSLDailyCorpus, Sentence

    root = _csl_release(tmp_path, {"train": [Sentence("a", ("X",))], "dev": [], "test": []})
    (root / "sentence_label" / "split_1.txt").write_text("name|split\na|train\nb|dev\n")
    with pytest.raises(AnnotationError, match=r"1 video\(s\) have no record .*: b"):
        CSLDailyCorpus(root).prepare()
    (root / "sentence_label" / "split_1.txt").write_text("a|validation\n")
    with pytest.raises(AnnotationError, match=r"split_1.txt:1: expected"):
        CSLDailyCorpus(root).prepare()
