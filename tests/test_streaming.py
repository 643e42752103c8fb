"""The streaming recognizer: for any chunking its log-probs equal the whole-sentence forward (max abs
difference <= 1e-5), its greedy glosses equal the offline decode, and models or settings that cannot
stream are refused before any work with a message that says what to change."""

from __future__ import annotations

import random
from functools import partial

import numpy as np
import pytest
import torch

from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.decoding.decoders import greedy_decode
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.pose_io import read_pose
from sign_ctc.models.ctc_module import CTCModule
from sign_ctc.models.i3d import I3DTeacher
from sign_ctc.api import Recognizer
from sign_ctc.models.inference import forward_landmarks, segments
from sign_ctc.models.normalization import Normalizer
from sign_ctc.models.student import CTCStudent
from sign_ctc.streaming.recognizer import NotStreamableError, StreamingRecognizer
from tests.helpers import DATA

TOLERANCE = 1e-5
WIDTHS = {"pose": 64, "hands": 128, "face": 64, "temporal": 64}
# Every real file of tests/data (Holistic, reduced Holistic, OpenPose, hands only): the same files as
# the workplace's ../shared/data/real, kept in the repository (tests/data/README.md) so any clone tests them.
REAL_FILES = sorted(DATA.glob("*.pose"))


def student_module(seed: int = 0, modalities=("pose", "hands", "face"), sharpen: float = 1.0, **net_kwargs) -> CTCModule:
    """A student as training leaves it, without the training: random weights, BatchNorm running statistics
    and global normalization statistics (the exactness contract holds for any weights). Without the context
    block unless asked (``context_blocks=``): these tests want a random student whose best path changes
    often; the default config's student streams exactly in test_net_contract.py and test_stream_export.py."""
    net_kwargs.setdefault("context_blocks", 0)
    torch.manual_seed(seed)
    vocab = Vocabulary(["<blank>", "<unk>", *[f"G{i}" for i in range(12)]])
    net = partial(CTCStudent, modality_widths=WIDTHS, fusion_dim=96, conv_channels=[96, 96], conv_strides=[2, 2],
                  kernel_size=5, lstm_hidden=64, bidirectional=False, dropout=0.1, modalities=list(modalities),
                  **net_kwargs)
    norm = Normalizer("global")
    norm.mean.normal_(0, 0.5)
    norm.std.uniform_(0.5, 2.0)
    norm.fitted.fill_(True)
    module = CTCModule(net, norm, vocab.tokens, optimizer=partial(torch.optim.AdamW, lr=1e-3), aux_ctc_weight=0.0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():  # sharper posteriors: the best path changes token often, as a trained model's does
        module.net.classifier.weight.mul_(sharpen)
    module.recipe = {"features": {"missing": "zero"}}
    return module.eval()


def predict(module: CTCModule, lm: Landmarks, pause_frames: int | None = None) -> list[str]:
    """sign-ctc-predict's glosses (the Python API) with a pause of ``pause_frames`` at 25 fps."""
    pause = None if pause_frames is None else pause_frames / 25.0
    return Recognizer.from_module(module, pause_seconds=pause).predict_landmarks(lm).glosses


def chunks(T: int, size: int | str, rng: random.Random) -> list[int]:
    out, left = [], T
    while left > 0:
        k = rng.randint(1, 9) if size == "random" else int(size)
        out.append(min(k, left))
        left -= out[-1]
    return out


def streamed_log_probs(rec: StreamingRecognizer, lm: Landmarks, sizes: list[int]) -> torch.Tensor:
    parts, start = [], 0
    for k in sizes:
        parts.append(rec.push(lm.points[start : start + k], lm.presence[start : start + k]).log_probs)
        start += k
    parts.append(rec.end().log_probs)
    return torch.cat(parts)


@pytest.fixture(scope="module")
def module() -> CTCModule:
    return student_module()


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("size", [1, 3, 4, 16, "random"])
def test_streamed_log_probs_equal_the_whole_sentence_on_real_signers(module, path, size):
    lm = read_pose(path)
    offline, n = forward_landmarks(module, lm)
    rec = StreamingRecognizer(module, fps=lm.fps, pause_frames=None, tentative=False)
    streamed = streamed_log_probs(rec, lm, chunks(len(lm), size, random.Random(len(lm))))
    assert streamed.shape == offline[0, : int(n[0])].shape
    assert float((streamed - offline[0]).abs().max()) <= TOLERANCE


def _generated(T: int, rng: np.random.Generator) -> Landmarks:
    """A signer-like sequence: a drifting skeleton, parts dropping out in runs."""
    base = rng.uniform(0.3, 0.7, size=(1, 543, 3)).astype(np.float32)
    walk = np.cumsum(rng.normal(0, 0.01, size=(T, 543, 3)), axis=0).astype(np.float32)
    presence = np.ones((T, 4), dtype=bool)
    for part in range(4):
        for _ in range(rng.integers(0, 3)):
            a = int(rng.integers(0, T))
            presence[a : a + int(rng.integers(1, 12)), part] = False
    points = (base + walk) * np.repeat(presence, [33, 21, 21, 468], axis=1)[..., None]
    # layout order of presence is pose, left hand, right hand, face; raw order pose, face, left, right
    raw = np.zeros_like(points)
    raw[:, :33], raw[:, 33:501], raw[:, 501:522], raw[:, 522:] = (points[:, :33], points[:, 75:], points[:, 33:54],
                                                                  points[:, 54:75])
    return Landmarks(points=raw, presence=presence, fps=25.0)


def worst_stream_difference(module: CTCModule, lengths, rng: np.random.Generator) -> float:
    """Max abs difference of the streamed log-probs to the whole sentence's over generated sentences of
    ``lengths``, each pushed in chunks of 1, of 4 and of random sizes (the output frames must match too)."""
    worst = 0.0
    for T in lengths:
        lm = _generated(T, rng)
        offline, n = forward_landmarks(module, lm)
        for size in (1, 4, "random"):
            rec = StreamingRecognizer(module, pause_frames=None, tentative=False)
            streamed = streamed_log_probs(rec, lm, chunks(T, size, random.Random(T)))
            assert streamed.shape[0] == int(n[0]), (T, size)
            worst = max(worst, float((streamed - offline[0]).abs().max()))
    return worst


@pytest.mark.parametrize("lengths", [range(1, 40), [57, 64, 101, 150]], ids=["1-39", "longer"])
def test_every_length_and_chunking_streams_exactly(module, lengths):
    assert worst_stream_difference(module, lengths, np.random.default_rng(0)) <= TOLERANCE


@pytest.mark.parametrize("context, delay", [(2, 0), (0, 1), (1, 3)])
def test_context_blocks_and_a_delay_stream_exactly(context, delay):
    """model.net.context_blocks=B: B conv blocks at the output rate, each reading 2 output frames (8 input
    frames) further ahead; model.net.output_delay=D: the stream holds each output frame back until D more
    came. The stream still equals the whole sentence (whose D trailing zero frames the end of the stream
    supplies) for every length and chunking."""
    module = student_module(seed=5, context_blocks=context, output_delay=delay)
    assert module.net.lookahead_frames == 6 + 8 * context + 4 * delay
    rng = np.random.default_rng(delay)
    assert worst_stream_difference(module, [*range(1, 30), 64, 101], rng) <= TOLERANCE
    if not context:  # the same weights: only the delay differs
        lm = _generated(64, rng)
        assert not torch.allclose(forward_landmarks(module, lm)[0],
                                  forward_landmarks(student_module(seed=5, context_blocks=0), lm)[0])


@pytest.mark.slow
def test_every_length_up_to_300_streams_exactly(module):
    rng = np.random.default_rng(1)
    for T in range(1, 301):
        lm = _generated(T, rng)
        offline, n = forward_landmarks(module, lm)
        rec = StreamingRecognizer(module, pause_frames=None, tentative=False)
        streamed = streamed_log_probs(rec, lm, chunks(T, "random", random.Random(T)))
        assert streamed.shape[0] == int(n[0]) and float((streamed - offline[0]).abs().max()) <= TOLERANCE, T


def test_a_model_that_reads_the_temporal_block_streams_exactly():
    module = student_module(seed=3, modalities=("pose", "hands", "face", "temporal"))
    lm = read_pose(DATA / "signer_holistic_97f.pose")
    offline, _ = forward_landmarks(module, lm)
    rec = StreamingRecognizer(module, fps=lm.fps, pause_frames=None, tentative=False)
    streamed = streamed_log_probs(rec, lm, chunks(len(lm), "random", random.Random(5)))
    assert float((streamed - offline[0]).abs().max()) <= TOLERANCE


def test_streamed_glosses_and_times_equal_the_offline_best_path():
    """A student whose best path changes token often: the committed glosses equal greedy_decode of the whole
    sentence, each with its best-path span in seconds."""
    module = student_module(seed=4, sharpen=30.0)
    lm = read_pose(DATA / "signer_holistic_97f.pose")
    offline, n = forward_landmarks(module, lm)
    expected = module.vocab.decode(greedy_decode(offline, n)[0])
    assert len(expected) >= 3
    for size in (1, 4, 16):
        rec = StreamingRecognizer(module, fps=lm.fps, pause_frames=None)
        glosses, tentative_seen = [], 0
        for start in range(0, len(lm), size):
            update = rec.push(lm.points[start : start + size], lm.presence[start : start + size])
            glosses += update.committed
            tentative_seen += bool(update.tentative)
        glosses += rec.end().committed
        assert [g.gloss for g in glosses] == expected
        assert tentative_seen > 0
        best = offline[0].argmax(-1).tolist()
        first = glosses[0]
        frame = round(first.start * lm.fps / module.net.total_stride)
        assert module.vocab.tokens[best[frame]] == first.gloss and (frame == 0 or best[frame - 1] != best[frame])
        assert all(0 <= g.start < g.end <= len(lm) / lm.fps + 1e-6 for g in glosses)
        assert all(a.end <= b.start + 1e-9 for a, b in zip(glosses, glosses[1:]))


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


@pytest.mark.slow
def test_soak_an_endless_stream_equals_sentence_by_sentence_in_constant_memory():
    """Ten minutes at 25 fps of generated sentences (20-150 frames) joined by 1.5 s rests (hands down),
    pushed in chunks of 1-9 frames to one recognizer with the live default pause of 1 s: every sentence's
    glosses equal sign-ctc-predict's on that sentence and its rest alone, nothing is carried from one
    sentence to the next, and RSS grows by less than 20 MB after the first minute."""
    module = student_module(seed=4, sharpen=30.0)
    rng, chunk_rng = np.random.default_rng(11), random.Random(11)
    rec = StreamingRecognizer(module, fps=25.0, pause_frames=25, tentative=True)
    frames, sentences, glossed, rss = 0, 0, 0, []
    while frames < 10 * 60 * 25:
        lm = _generated(int(rng.integers(20, 151)), rng)
        rest_points = np.repeat(lm.points[-1:], 38, 0)
        rest_points[:, 501:] = 0.0
        rest_presence = np.repeat(lm.presence[-1:], 38, 0)
        rest_presence[:, 1:3] = False
        points, presence = np.concatenate([lm.points, rest_points]), np.concatenate([lm.presence, rest_presence])
        got, start = [], 0
        for k in chunks(len(points), "random", chunk_rng):
            got += [g.gloss for g in rec.push(points[start : start + k], presence[start : start + k]).committed]
            start += k
        # sign-ctc-predict on the same frames: the segment stops at its last hand, as offline (features/pauses.py)
        same = Landmarks(points=points, presence=presence, fps=25.0)
        assert got == predict(module, same, pause_frames=25), f"sentence {sentences} ({len(lm)} frames)"
        assert not rec.active and rec.decoder is None  # the pause ended the segment: nothing carried over
        frames, sentences, glossed = frames + len(points), sentences + 1, glossed + bool(got)
        rss.append((frames, _rss_mb()))
    assert rec.end().committed == [] and rec.segments == sentences
    assert glossed >= 0.9 * sentences  # the sharpened student glosses nearly every sentence
    after_first_minute = next(mb for f, mb in rss if f >= 60 * 25)
    assert max(mb for _, mb in rss) - after_first_minute < 20.0


def test_a_pause_is_not_part_of_its_segment():
    """A segment that a pause ends stops after its last frame with a hand (features/pauses.py); a shorter
    run without hands stays in it. Live, in chunks of any size, the log-probs are those of each segment
    cut so, exactly as offline, and the glosses are sign-ctc-predict's."""
    from sign_ctc.features.pauses import pause_segments

    assert pause_segments([1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0], 3) == [(0, 5), (9, 12)]
    assert pause_segments([0, 0, 0, 0, 1], 3) == [(4, 5)]  # no hand before the first pause: no segment
    assert pause_segments([0, 1, 0], 3) == [(0, 3)]  # the stream's end is no pause
    module = student_module(seed=4, sharpen=30.0)
    signer = read_pose(DATA / "signer_holistic_97f.pose")  # hands in frames 17-63, none after
    hands = np.flatnonzero(signer.presence[:, 1] | signer.presence[:, 2])
    first_hand, last_hand = int(hands[0]), int(hands[-1])
    assert len(signer) - 1 - last_hand >= 25 and first_hand < 25
    rest = 40
    rest_points = np.repeat(signer.points[-1:], rest, 0)
    rest_presence = np.repeat(signer.presence[-1:], rest, 0)
    both = Landmarks(points=np.concatenate([signer.points, rest_points, signer.points]),
                     presence=np.concatenate([signer.presence, rest_presence, signer.presence]), fps=25.0)
    assert [(a, len(seg)) for a, seg in segments(both, 25)] == [(0, last_hand + 1), (len(signer) + rest + first_hand,
                                                                                     last_hand + 1 - first_hand)]
    cut = [Landmarks(points=signer.points[a : last_hand + 1], presence=signer.presence[a : last_hand + 1], fps=25.0)
           for a in (0, first_hand)]
    expected = torch.cat([forward_landmarks(module, lm)[0][0] for lm in cut])
    for size in (1, 7, "random"):
        rec = StreamingRecognizer(module, fps=25.0, pause_frames=25, tentative=True)
        parts, glosses, start = [], [], 0
        for k in chunks(len(both), size, random.Random(3)):
            update = rec.push(both.points[start : start + k], both.presence[start : start + k])
            parts.append(update.log_probs)
            glosses += [g.gloss for g in update.committed]
            start += k
        tail = rec.end()
        assert tail.committed == [] and tail.log_probs.shape[0] == 0  # both pauses were complete
        got = torch.cat(parts)
        assert got.shape == expected.shape and float((got - expected).abs().max()) <= TOLERANCE
        assert rec.segments == 2 and glosses == predict(module, both, pause_frames=25) == predict(module, cut[0]) + \
            predict(module, cut[1])


def test_nobody_in_view_gives_no_gloss():
    """An empty scene (nothing detected in any frame) answers nothing, even from a model whose biases
    favour a gloss; a signer who leaves and comes back is recognized on both sides of the gap."""
    module = student_module(seed=4, sharpen=30.0)
    empty = Landmarks(points=np.zeros((80, 543, 3), np.float32), presence=np.zeros((80, 4), bool))
    offline, n = forward_landmarks(module, empty)
    assert greedy_decode(offline, n)[0]  # the raw model answers glosses on an empty picture
    for pause in (None, 25):
        rec = StreamingRecognizer(module, pause_frames=pause)
        got = rec.push(empty.points, empty.presence).committed + rec.end().committed
        assert got == [] and not rec.detected and predict(module, empty, pause_frames=pause) == []
    signer = read_pose(DATA / "signer_holistic_97f.pose")
    gap = 60
    points = np.concatenate([signer.points, np.zeros((gap, 543, 3), np.float32), signer.points])
    presence = np.concatenate([signer.presence, np.zeros((gap, 4), bool), signer.presence])
    rec = StreamingRecognizer(module, fps=25.0, pause_frames=25)
    got = []
    for start in range(0, len(points), 5):
        got += rec.push(points[start : start + 5], presence[start : start + 5]).committed
    got += rec.end().committed
    both = Landmarks(points=points, presence=presence, fps=25.0)
    assert rec.segments == 2 and len(segments(both, 25)) == 2
    first, second = predict(module, segments(both, 25)[0][1]), predict(module, segments(both, 25)[1][1])
    h0 = int(np.flatnonzero(signer.presence[:, 1] | signer.presence[:, 2])[0])  # a pause ends at a hand
    again = Landmarks(points=signer.points[h0:], presence=signer.presence[h0:], fps=25.0)
    assert first and second == predict(module, again)  # after the pause: as the signer alone
    assert [g.gloss for g in got] == first + second == predict(module, both, pause_frames=25)
    assert not any(len(signer) / 25.0 + 1.0 < g.start < (len(signer) + gap) / 25.0 for g in got)  # none in the gap


def test_models_that_cannot_stream_are_refused_before_any_work():
    torch.manual_seed(0)
    teacher = CTCModule(partial(I3DTeacher, modality_widths=WIDTHS), Normalizer("global"), ["<blank>", "<unk>", "A"],
                        optimizer=partial(torch.optim.AdamW, lr=1e-3))
    with pytest.raises(NotStreamableError, match="I3DTeacher has no streaming step"):
        StreamingRecognizer(teacher)
    with pytest.raises(NotStreamableError, match="bidirectional=false"):
        StreamingRecognizer(_bidirectional())
    module = student_module()
    module.recipe = {"features": {"missing": "interpolate"}}
    with pytest.raises(NotStreamableError, match="data.missing=zero"):
        StreamingRecognizer(module)
    module = student_module()
    module.normalizer.body_fallback = "sequence"
    with pytest.raises(NotStreamableError, match="body_fallback"):
        StreamingRecognizer(module)
    module.normalizer.body_fallback, module.normalizer.mode = "causal", "per_sample"
    with pytest.raises(NotStreamableError, match="per_sample"):
        StreamingRecognizer(module)


def _bidirectional() -> CTCModule:
    torch.manual_seed(0)
    net = partial(CTCStudent, modality_widths=WIDTHS, fusion_dim=32, conv_channels=[32], conv_strides=[2],
                  kernel_size=3, lstm_hidden=16, bidirectional=True, dropout=0.0)
    return CTCModule(net, Normalizer("global"), ["<blank>", "<unk>", "A"], optimizer=partial(torch.optim.AdamW, lr=1e-3),
                     aux_ctc_weight=0.0)

