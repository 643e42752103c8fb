"""CTC forced alignment (sign_ctc.decoding.alignment) against brute force, the CTC loss and the greedy path."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sign_ctc.decoding.alignment import AlignmentError, align_sequence, ctc_viterbi, forced_align, frame_labels
from sign_ctc.decoding.decoders import greedy_decode


def collapse(path: tuple[int, ...], blank: int = 0) -> list[int]:
    out, prev = [], None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return out


def brute_force(lp: np.ndarray, targets: list[int]) -> tuple[float, float, list[tuple[int, ...]]]:
    """(best path log-prob, total log-prob, best paths) over every label path of length T."""
    T, C = lp.shape
    best, best_paths, total = -math.inf, [], -math.inf
    for path in itertools.product(range(C), repeat=T):
        if collapse(path) != targets:
            continue
        s = float(sum(lp[t, c] for t, c in enumerate(path)))
        total = np.logaddexp(total, s)
        if s > best + 1e-12:
            best, best_paths = s, [path]
        elif abs(s - best) <= 1e-12:
            best_paths.append(path)
    return best, float(total), best_paths


def random_log_probs(rng: np.random.Generator, T: int, C: int, sharpness: float = 2.0) -> np.ndarray:
    return torch.log_softmax(torch.from_numpy(rng.normal(0, sharpness, (T, C))), -1).numpy()


CASES = [([1], 1), ([1], 4), ([1, 2], 3), ([1, 1], 3), ([1, 1], 5), ([2, 1, 2], 5), ([1, 2, 2], 6), ([], 3),
         ([3, 3, 3], 5)]


@pytest.mark.parametrize("targets,T", CASES)
def test_viterbi_matches_brute_force_and_stays_below_the_ctc_total(targets: list[int], T: int) -> None:
    rng = np.random.default_rng(len(targets) * 10 + T)
    for _ in range(3):
        lp = random_log_probs(rng, T, 4)
        best, total, best_paths = brute_force(lp, targets)
        states, score = ctc_viterbi(lp, targets)
        ali = forced_align(lp, targets)
        assert score == pytest.approx(best, abs=1e-9)
        assert tuple(ali.labels.tolist()) in best_paths
        assert float(sum(lp[t, c] for t, c in enumerate(ali.labels))) == pytest.approx(score, abs=1e-9)
        assert collapse(tuple(ali.labels.tolist())) == targets
        # the best path's probability is at most the sum over all paths, which is exp(-CTC loss)
        loss = F.ctc_loss(torch.from_numpy(lp)[:, None], torch.tensor([targets], dtype=torch.long).reshape(1, -1),
                          torch.tensor([T]), torch.tensor([len(targets)]), blank=0, reduction="sum")
        assert -float(loss) == pytest.approx(total, abs=1e-6)
        assert score <= -float(loss) + 1e-9


def test_spans_cover_each_gloss_run_and_map_back_through_the_stride() -> None:
    # 8 output frames, clear peaks: A at 1-2, B at 4, A at 6 (blank elsewhere).
    T, C = 8, 3
    lp = np.full((T, C), math.log(0.05))
    lp[:, 0] = math.log(0.9)
    for t, c in [(1, 1), (2, 1), (4, 2), (6, 1)]:
        lp[t] = math.log(0.05)
        lp[t, c] = math.log(0.9)
    ali = forced_align(lp, [1, 2, 1], ["A", "B", "A"], stride=4, num_input_frames=30)
    assert ali.labels.tolist() == [0, 1, 1, 0, 2, 0, 1, 0]
    assert [(s.gloss, s.start, s.end) for s in ali.spans] == [("A", 1, 3), ("B", 4, 5), ("A", 6, 7)]
    assert [(s.input_start, s.input_end) for s in ali.spans] == [(4, 12), (16, 20), (24, 28)]
    assert ali.spans[1].seconds(25.0) == pytest.approx((0.64, 0.16))
    labels = frame_labels(ali.spans, 30)
    assert labels[3] == -1 and labels[4] == 0 and labels[11] == 0 and labels[12] == -1 and labels[16] == 1
    # a gloss on the last output frame runs to the end of the input (30 frames, 8 outputs of stride 4)
    end = forced_align(lp, [1, 2, 1, 2], stride=4, num_input_frames=30)
    assert end.spans[-1].end == 8 and end.spans[-1].input_end == 30


def test_forced_alignment_of_the_greedy_hypothesis_is_the_greedy_path() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        lp = random_log_probs(rng, 30, 6, sharpness=3.0)
        (hyp,) = greedy_decode(torch.from_numpy(lp)[None], torch.tensor([30]))
        ali = forced_align(lp, hyp)
        assert ali.labels.tolist() == lp.argmax(-1).tolist()
        assert ali.score == pytest.approx(float(lp.max(-1).sum()))


def test_infeasible_and_unknown_sequences_are_refused_by_name() -> None:
    lp = np.log(np.full((2, 3), 1 / 3))
    with pytest.raises(AlignmentError, match="2 output frames cannot hold 2 glosses .3 frames needed"):
        ctc_viterbi(lp, [1, 1])
    with pytest.raises(AlignmentError, match="sent_7: 2 output frames cannot hold 3 glosses"):
        align_sequence(lp, ["A", "B", "A"], ["<blank>", "A", "B"], stride=4, num_input_frames=8, what="sent_7")
    with pytest.raises(AlignmentError, match=r"sent_7: glosses \['ZZZ'\] are not in the model's vocabulary"):
        align_sequence(lp, ["ZZZ"], ["<blank>", "A", "B"], stride=4, num_input_frames=8, what="sent_7")


@pytest.mark.parametrize("strides", [(2, 1, 2, 1), (2, 1, 2, 2)])
def test_spans_tile_the_input_through_the_nets_exact_output_lengths(strides: tuple[int, ...]) -> None:
    """The I3D's output length is ceil(T / stride): output frame t stands for input frames [tS, (t+1)S)."""
    from sign_ctc.models.i3d import I3DTeacher

    net = I3DTeacher(num_classes=5, temporal_strides=strides)
    for n_in in (29, 37, 40, 41, 64):
        n_out = int(net.output_lengths(torch.tensor([n_in]))[0])
        assert n_out == math.ceil(n_in / net.total_stride)
        lp = torch.log_softmax(torch.randn(n_out, 5, generator=torch.Generator().manual_seed(n_in)), -1)
        ali = forced_align(lp, [1, 2, 3], stride=net.total_stride, num_input_frames=n_in)
        covered = frame_labels(ali.spans, n_in)
        for k, s in enumerate(ali.spans):
            assert s.input_start == s.start * net.total_stride
            assert s.input_end == min(s.end * net.total_stride, n_in)
            assert set(np.flatnonzero(covered == k)) == set(range(s.input_start, s.input_end))
