"""Incremental beam search (sign_ctc/streaming/beam.py): after the segment ends, the streamed glosses equal
the offline BeamSearchDecoder's exactly without pruning, for any chunking, with and without a gloss LM; with
pruning, equal on a set of cases while the search holds a bounded number of frames on a long stream;
times increase and lie inside the segment; beam width 1 is the greedy stream."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sign_ctc.api import Recognizer
from sign_ctc.decoding.decoders import BeamSearchDecoder
from sign_ctc.decoding.lm import train_kneser_ney, write_arpa
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.pose_io import read_pose
from sign_ctc.streaming.beam import BeamStream
from sign_ctc.streaming.greedy import GreedyStream
from sign_ctc.streaming.recognizer import StreamingRecognizer
from tests.helpers import DATA
from tests.test_streaming import chunks, student_module

VOCAB = ["<blank>", "<unk>", *[f"G{i}" for i in range(12)]]
SPF = 4 / 25.0  # an output frame at stride 4, 25 fps


def synthetic(seed: int, T: int, peak: float = 5.0) -> torch.Tensor:
    """[T, C] log-probs like a trained CTC model's but less sure: runs of blank, runs of a gloss, and
    competitors close enough that the beam (and the LM) change the answer."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, len(VOCAB), generator=g)
    ids = torch.randint(2, len(VOCAB), (T,), generator=g)
    ids = ids.repeat_interleave(3)[:T]  # a gloss lasts a few frames
    ids[torch.rand(T, generator=g) < 0.45] = 0
    return (logits + peak * torch.nn.functional.one_hot(ids, len(VOCAB))).log_softmax(-1)


@pytest.fixture(scope="module")
def gloss_lm(tmp_path_factory) -> str:
    """A trigram over G-sentences with a strong order preference (G2 G3 G4 ...), so it changes hypotheses."""
    rng = random.Random(0)
    sentences = []
    for _ in range(200):
        start = rng.randint(2, 8)
        sentences.append([f"G{i}" for i in range(start, start + rng.randint(2, 5))])
        sentences.append([f"G{rng.randint(0, 11)}" for _ in range(rng.randint(1, 4))])
    path = tmp_path_factory.mktemp("lm") / "gloss.arpa"
    write_arpa(train_kneser_ney(sentences, order=3), path)
    return str(path)


def decoders(lm_path: str) -> dict[str, BeamSearchDecoder]:
    return {"no LM": BeamSearchDecoder(VOCAB, beam_width=8),
            "LM": BeamSearchDecoder(VOCAB, beam_width=8, lm_path=lm_path, lm_weight=0.8, word_bonus=1.0)}


def offline(decoder: BeamSearchDecoder, lp: torch.Tensor) -> list[str]:
    return [VOCAB[i] for i in decoder.decode(lp[None], torch.tensor([lp.shape[0]]))[0]]


def stream(decoder: BeamSearchDecoder, lp: torch.Tensor, sizes: list[int], offset: float = 0.0,
           **pruning) -> tuple[list, BeamStream, int]:
    """The glosses a BeamStream commits over ``lp`` pushed in chunks, the stream, the most frames it held."""
    s = BeamStream(decoder, SPF, offset=offset, **pruning)
    out, start, held = [], 0, 0
    for k in sizes:
        s.push(lp[start : start + k])
        start += k
        out += s.take()
        held = max(held, s.frames_held)
    return out + s.finish(), s, held


def check_times(glosses: list, T: int, offset: float = 0.0) -> None:
    assert all(offset - 1e-9 <= g.start < g.end <= offset + T * SPF + 1e-9 for g in glosses)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(glosses, glosses[1:]))


@pytest.mark.parametrize("which", ["no LM", "LM"])
def test_without_pruning_the_stream_equals_the_offline_decode_for_any_chunking(gloss_lm, which):
    decoder = decoders(gloss_lm)[which]
    differs_from_greedy = 0
    for seed in range(8):
        lp = synthetic(seed, 90)
        expected = offline(decoder, lp)
        differs_from_greedy += expected != offline(BeamSearchDecoder(VOCAB, beam_width=1), lp)
        for size in (1, 4, "random"):
            got, s, _ = stream(decoder, lp, chunks(90, size, random.Random(seed)), offset=1.5, commit_every=None)
            assert [g.gloss for g in got] == expected, (seed, size)
            assert s.frames_held == 91  # nothing pruned: every frame (and the end) still held
            check_times(got, 90, offset=1.5)
    if which == "LM":
        assert differs_from_greedy >= 2  # the LM changes answers: the cases test the LM's part


@pytest.mark.parametrize("which", ["no LM", "LM"])
def test_with_pruning_the_stream_equals_the_offline_decode_and_holds_few_frames(gloss_lm, which):
    decoder = decoders(gloss_lm)[which]
    for seed in range(8):
        lp = synthetic(100 + seed, 300)
        expected = offline(decoder, lp)
        for size in (1, 4, "random"):
            sizes = chunks(300, size, random.Random(seed))
            got, s, held = stream(decoder, lp, sizes, commit_every=4, lookback=40)
            assert [g.gloss for g in got] == expected, (seed, size, s.forced)
            assert held <= 40 + 4 + max(sizes)
            check_times(got, 300)


def test_an_endless_stream_holds_a_bounded_search():
    """Ten thousand output frames (half an hour at stride 4, 25 fps) in one segment: the frames the search
    holds stay under lookback + commit_every + the chunk, and the glosses are committed as it goes."""
    decoder = BeamSearchDecoder(VOCAB, beam_width=8)
    s = BeamStream(decoder, SPF, commit_every=8, lookback=32)
    held, committed = [], 0
    for seed in range(100):
        s.push(synthetic(1000 + seed, 100))
        committed += len(s.take())
        held.append(s.frames_held)
    assert max(held) <= 32 + 8 + 100 and max(held[50:]) <= max(held[:50])
    last = len(s.finish())
    assert committed > 1000 and last < 0.02 * committed  # committed on the way, not at the end


def test_beam_width_one_is_the_greedy_stream():
    for seed in range(4):
        lp = synthetic(200 + seed, 120)
        greedy = GreedyStream(VOCAB, SPF)
        greedy.push(lp)
        expected = greedy.finish()
        for pruning in ({"commit_every": None}, {"commit_every": 3, "lookback": 10}):
            got, _, _ = stream(BeamSearchDecoder(VOCAB, beam_width=1), lp, chunks(120, "random", random.Random(seed)),
                               **pruning)
            assert got == expected  # glosses and times


def test_pending_and_tentative_tail_lead_to_the_result():
    """During the stream, committed + pending + the tentative tail is the best hypothesis so far; after a last
    frame that changes nothing it is the final answer."""
    decoder = BeamSearchDecoder(VOCAB, beam_width=8)
    lp = synthetic(7, 80)
    s = BeamStream(decoder, SPF, commit_every=4, lookback=40)
    committed = []
    for start in range(0, 80, 4):
        s.push(lp[start : start + 4])
        committed += s.take()
    shown = [g.gloss for g in committed + s.pending() + s.peek(torch.zeros(0, len(VOCAB)))]
    assert shown == offline(decoder, lp)  # no LM: the end adds nothing
    assert [g.gloss for g in committed + s.finish()] == shown


def test_the_recognizer_streams_beam_search_like_the_offline_api(tmp_path):
    """The streaming recognizer with a beam decoder on a real signer, in chunks and across a pause: its glosses
    equal the Python API's (whole segments, the same decoder), with times inside the input."""
    module = student_module(seed=4, sharpen=30.0)
    vocab = module.vocab.tokens
    sentences = [[vocab[i] for i in random.Random(k).sample(range(2, len(vocab)), 3)] for k in range(50)]
    sentences += [["G1", "G11", "G1"]] * 10  # what this model says: the LM keeps some of it
    lm_path = tmp_path / "student.arpa"
    write_arpa(train_kneser_ney(sentences, order=2), lm_path)
    signer = read_pose(DATA / "signer_holistic_97f.pose")
    gap = 60
    points = np.concatenate([signer.points, np.zeros((gap, 543, 3), np.float32), signer.points])
    presence = np.concatenate([signer.presence, np.zeros((gap, 4), bool), signer.presence])
    both = Landmarks(points=points, presence=presence, fps=25.0)
    for beam in (BeamSearchDecoder(vocab, beam_width=6, commit_every=None),
                 BeamSearchDecoder(vocab, beam_width=6, lm_path=str(lm_path), lm_weight=0.5, word_bonus=0.5,
                                   commit_every=2, lookback=16)):
        module.test_decoder = beam
        expected = Recognizer.from_module(module, pause_seconds=1.0).predict_landmarks(both).glosses
        assert len(expected) >= 4
        for size in ("random", 16):  # sizes 1 and 4: BeamStream's tests above and the model's in test_streaming
            rec = StreamingRecognizer(module, fps=25.0, pause_frames=25)
            assert rec.beam is beam
            got, start = [], 0
            for k in chunks(len(points), size, random.Random(1)):
                got += rec.push(points[start : start + k], presence[start : start + k]).committed
                start += k
            got += rec.end().committed
            assert [g.gloss for g in got] == expected and rec.segments == 2
            assert all(0 <= g.start < g.end <= len(points) / 25.0 + 1e-6 for g in got)
            assert all(a.end <= b.start + 1e-9 for a, b in zip(got, got[1:]))
    module.test_decoder = None
    assert StreamingRecognizer(module).beam is None  # greedy stays the default
    with pytest.raises(ValueError, match="vocabulary"):
        StreamingRecognizer(module, decoder=BeamSearchDecoder(VOCAB[:5]))
