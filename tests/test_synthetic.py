"""The embedded synthetic corpus: deterministic, written in the real on-disk form, realistic faults."""

import numpy as np

from sign_ctc.data.corpus import read_phoenix2014
from sign_ctc.data.synthetic import LEXICON, SyntheticCorpus
from sign_ctc.features.pose_io import read_pose


def test_same_seed_same_bytes(tmp_path):
    a = SyntheticCorpus(tmp_path / "a", train=6, dev=2, test=2)
    b = SyntheticCorpus(tmp_path / "b", train=6, dev=2, test=2)
    a.build(progress=False)
    b.build(progress=False)
    for split in ("train", "dev", "test"):
        assert a.annotation_path(split).read_bytes() == b.annotation_path(split).read_bytes()
        for s in a.sentences(split):
            assert a.landmark_path(split, s).read_bytes() == b.landmark_path(split, s).read_bytes()
    c = SyntheticCorpus(tmp_path / "c", seed=99, train=6, dev=2, test=2)
    c.build(progress=False)
    assert c.annotation_path("train").read_bytes() != a.annotation_path("train").read_bytes()


def test_real_form_and_statistics(small_corpus):
    from pose_format import Pose

    train = read_phoenix2014(small_corpus.annotation_path("train"))
    test = small_corpus.sentences("test")
    assert len(train) == 48 and len(test) == 12
    assert {s.signer for s in train}.isdisjoint({s.signer for s in test})  # unseen test signers
    assert all(2 <= len(s.glosses) <= 10 for s in train)
    vocab = {g for role in LEXICON.values() for g in role}
    assert len(vocab) == 60 and all(set(s.glosses) <= vocab for s in train)
    pose = Pose.read(small_corpus.landmark_path("train", train[0]).read_bytes())
    names = [(c.name, len(c.points)) for c in pose.header.components]
    assert names == [("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", 468), ("LEFT_HAND_LANDMARKS", 21),
                     ("RIGHT_HAND_LANDMARKS", 21)]
    assert (pose.header.dimensions.width, pose.header.dimensions.height) == (210, 260)
    lms = [read_pose(small_corpus.landmark_path("train", s)) for s in train]
    presence = np.concatenate([lm.presence for lm in lms])
    lengths = [len(lm) for lm in lms]
    # hands undetected in bursts (like PHOENIX, where one hand is missing ~50% of frames)
    hand_missing = 1 - presence[:, 1:3].mean()
    assert 0.25 < hand_missing < 0.6
    assert 0.003 < (~presence[:, 0]).mean() < 0.05  # frames where nothing was detected
    assert 25 < np.mean(lengths) < 200
    nums = small_corpus.num_frames("train")
    assert [nums[s.id] for s in train] == lengths


def test_prepare_reuses_a_built_corpus(small_corpus):
    before = small_corpus.manifest.stat().st_mtime_ns
    small_corpus.prepare()
    assert small_corpus.manifest.stat().st_mtime_ns == before


def _digest(corpus: SyntheticCorpus) -> str:
    import hashlib

    h = hashlib.sha256()
    for split in ("train", "dev", "test"):
        h.update(corpus.annotation_path(split).read_bytes())
        for s in corpus.sentences(split):
            h.update(corpus.landmark_path(split, s).read_bytes())
    return h.hexdigest()


def test_default_corpus_is_unchanged_by_the_harder_settings(tmp_path):
    """The bytes of a small default corpus as the generator wrote them before the harder-corpus
    settings existed (sign_ctc 7d65a54): results on the default corpus stay comparable."""
    corpus = SyntheticCorpus(tmp_path / "a", train=4, dev=2, test=2)
    corpus.build(progress=False)
    assert _digest(corpus) == "649de644eb75b3261d80458b5eb0353dd2add03272dcbe712a4ea622bd18ee05"
    assert set(corpus.settings) == {"version", "seed", "sizes", "num_signers", "dev_signers", "test_signers",
                                    "left_handed", "width", "height"}  # cached default corpora stay valid


def test_harder_corpus_has_its_lexicon_lengths_signers_and_noise(tmp_path):
    settings = dict(num_signers=20, dev_signers=(16, 17), test_signers=(18, 19), left_handed=(2, 9, 17))
    hard = SyntheticCorpus(tmp_path / "hard", train=30, dev=6, test=6, lexicon_size=200, min_glosses=9,
                           max_glosses=18, detection_noise=2.0, **settings)
    hard.build(progress=False)
    same = SyntheticCorpus(tmp_path / "same", train=30, dev=6, test=6, lexicon_size=200, min_glosses=9,
                           max_glosses=18, **settings)
    same.build(progress=False)
    train = hard.sentences("train")
    assert all(9 <= len(s.glosses) <= 18 for s in train)
    glosses = {g for s in train for g in s.glosses}
    assert len(glosses - {g for role in LEXICON.values() for g in role}) > 20  # the numbered variants occur
    assert {s.signer for s in train}.isdisjoint({s.signer for s in hard.sentences("test")})
    assert {s.signer for s in hard.sentences("dev")} <= {"S16", "S17"}

    def hand_missing(corpus: SyntheticCorpus) -> float:
        presence = np.concatenate([read_pose(corpus.landmark_path("train", s)).presence for s in corpus.sentences("train")])
        return float(1 - presence[:, 1:3].mean())

    assert hand_missing(hard) > hand_missing(same) + 0.02  # detection_noise=2 loses more hands
    from sign_ctc.data.synthetic import _roles

    roles = _roles(200)
    names = [g for words in roles.values() for g in words]
    assert len(names) == len(set(names)) == 200 and roles["Q"] == LEXICON["Q"]
