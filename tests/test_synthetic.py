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
