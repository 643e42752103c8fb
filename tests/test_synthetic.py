"""The embedded synthetic corpus: deterministic, written in the real on-disk form, realistic faults."""

import numpy as np
import pytest

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


def test_default_and_hard_corpora_are_unchanged_by_the_signer_shift(tmp_path):
    """Digests of the default corpus (24 training sentences, six signers, the left-handed one among
    them) and of the harder corpus, computed with the generator before the signer-shift corpus existed
    (sign_ctc 566897b): the shift's draws come from their own stream."""
    corpus = SyntheticCorpus(tmp_path / "a", train=24, dev=3, test=3)
    corpus.build(progress=False)
    assert _digest(corpus) == "1a39b3407835245da0f22c77ff313aa53865d04b6d328f31abec28a9d232efad"
    assert "signer_shift" not in corpus.settings
    hard = SyntheticCorpus(tmp_path / "h", train=6, dev=2, test=2, num_signers=20, dev_signers=(16, 17),
                           test_signers=(18, 19), left_handed=(2, 9, 17), lexicon_size=200, min_glosses=9,
                           max_glosses=18, detection_noise=2.0)
    hard.build(progress=False)
    assert _digest(hard) == "115771d736c5ea28ab3d682f1f18e752004267ae6f460652bdf2a53593ef1b25"


SHIFT = dict(num_signers=12, dev_signers=(9,), test_signers=(10, 11), left_handed=(2, 10))


def _per_signer(corpus: SyntheticCorpus) -> dict[str, dict[str, float]]:
    """Per signer: the face's and the hands' missing share, the shoulder line's tilt (degrees) and width (pixels)."""
    frames: dict[str, list] = {}
    for split in ("train", "test"):
        for s in corpus.sentences(split):
            frames.setdefault(s.signer, []).append(read_pose(corpus.landmark_path(split, s)))
    out = {}
    for signer, lms in frames.items():
        presence = np.concatenate([lm.presence for lm in lms])
        pts = np.concatenate([lm.points for lm in lms])[presence[:, 0]]
        line = (pts[:, 11, :2] - pts[:, 12, :2]) * np.array([210, 260])
        out[signer] = {"face_missing": float((~presence[:, 3]).mean()), "hands_missing": float((~presence[:, 1:3]).mean()),
                       "tilt": float(np.degrees(np.arctan2(line[:, 1], line[:, 0])).mean()),
                       "width": float(np.hypot(*line.T).mean())}
    return out


def test_signer_shift_corpus_has_cameras_variants_and_occlusion(tmp_path):
    shifted = SyntheticCorpus(tmp_path / "shift", train=60, dev=6, test=12, signer_shift=1.0, **SHIFT)
    shifted.build(progress=False)
    plain = SyntheticCorpus(tmp_path / "plain", train=60, dev=6, test=12, **SHIFT)
    plain.build(progress=False)
    assert shifted.settings["signer_shift"] == 1.0
    assert {s.signer for s in shifted.sentences("train")}.isdisjoint({"S09", "S10", "S11"})
    a, b = _per_signer(shifted), _per_signer(plain)
    # camera roll: the shoulder line is level for the default signers, tilted per signer here
    assert max(abs(v["tilt"]) for v in b.values()) < 0.5
    assert np.std([v["tilt"] for v in a.values()]) > 3.0
    # camera distance: the shoulder width varies more between signers
    assert np.std([v["width"] for v in a.values()]) > np.std([v["width"] for v in b.values()])
    # occlusion: the face is lost with a hand over it (default: only in frames where nothing is found)
    assert np.mean([v["face_missing"] for v in b.values()]) < 0.02 < np.mean([v["face_missing"] for v in a.values()])
    assert np.mean([v["hands_missing"] for v in a.values()]) > np.mean([v["hands_missing"] for v in b.values()]) + 0.03


def test_signers_sign_their_own_variant_of_each_gloss():
    from sign_ctc.data.synthetic import _make_lexicon, _make_signers, _signer_shift

    rng = np.random.default_rng(0)
    lexicon = _make_lexicon(rng)
    signers = _make_signers(rng, 4, (2,))
    variants, cameras = _signer_shift(np.random.default_rng(1), lexicon, signers, 1.0)
    a, b = variants["S00"], variants["S01"]
    starts = np.mean([np.linalg.norm(a[g].start - b[g].start) for g in lexicon])
    assert 0.1 < starts < 0.4  # shoulder widths: the same gloss starts elsewhere for another signer
    for key in ("hands", "shape_from", "duration"):
        differ = np.mean([getattr(a[g], key) != getattr(b[g], key) for g in lexicon])
        assert differ > 0.15, key  # one- vs two-handed, handshape, tempo
    assert len({round(c.roll, 4) for c in cameras.values()}) == 4
    same, _ = _signer_shift(np.random.default_rng(1), lexicon, signers, 0.0)
    assert all(np.allclose(same["S03"][g].start, lexicon[g].start) and same["S03"][g].hands == lexicon[g].hands
               for g in lexicon)
    with pytest.raises(ValueError, match="signer_shift"):
        SyntheticCorpus("unused", signer_shift=3.0)


def test_a_hand_over_the_face_is_lost_far_more_often():
    from sign_ctc.data.synthetic import P_DOM, Signer, _occlusion_detections, _rest_state

    signer = Signer(id="S00", centre=np.array([105.0, 110.0]), scale=55.0, speed=1.0, space=1.0,
                    offset=np.zeros(2), dominant="right")
    params = np.tile(_rest_state(), (4000, 1))
    params[:, P_DOM] = (0.05, -0.8)  # the dominant wrist in front of the face
    on_face = _occlusion_detections(params, signer, np.random.default_rng(0))
    params[:, P_DOM] = (0.6, -0.8)  # at the same height, beside the head
    beside = _occlusion_detections(params, signer, np.random.default_rng(0))
    # beside the head only the ordinary bursts (stationary share 0.05 / (0.05 + 0.25) = 1/6)
    assert (~on_face[:, 2]).mean() > 0.5 > 0.25 > (~beside[:, 2]).mean()  # right hand (dominant) column
    assert (~on_face[:, 3]).mean() > 0.2 > 0.02 > (~beside[:, 3]).mean()  # the face goes with it
