"""CTC forced alignment: where in time each gloss of a sequence sits, from the model's log-probabilities.

CSLR decoders give gloss sequences without timing (the field's CTM files carry made-up 0.01 s
steps). The best CTC path that collapses to a given sequence (Viterbi over the CTC trellis:
the glosses interleaved with blanks, ``2L + 1`` states) says, for every output frame, which gloss
or blank the model was emitting. Each gloss's run of output frames is its span; an output frame
``t`` of a net with temporal stride ``S`` stands for input frames ``[t*S, (t+1)*S)`` (the I3D's
output length is ``ceil(T / S)``, so these ranges tile the input; the last one is cut at ``T``).

The alignment of the greedy hypothesis is the greedy path itself (the unconstrained best path
collapses to it), so hypothesis and reference tracks come from the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sign_ctc.errors import SignCtcError


class AlignmentError(SignCtcError, ValueError):
    """A sequence that cannot be aligned (too few frames for its glosses); the message says which."""


@dataclass(frozen=True)
class GlossSpan:
    """One gloss in time: output frames ``[start, end)`` and the input frames they stand for."""

    position: int  # index of the gloss in the aligned sequence
    token: int
    gloss: str
    start: int
    end: int
    input_start: int
    input_end: int

    def seconds(self, fps: float) -> tuple[float, float]:
        """(start, duration) in seconds at the input's frame rate (for CTM lines)."""
        return self.input_start / fps, (self.input_end - self.input_start) / fps

    def to_dict(self, fps: float | None = None) -> dict[str, object]:
        out: dict[str, object] = {"position": self.position, "gloss": self.gloss, "start": self.start,
                                  "end": self.end, "input_start": self.input_start, "input_end": self.input_end}
        if fps:
            start, duration = self.seconds(fps)
            out.update(start_s=round(start, 4), duration_s=round(duration, 4))
        return out


@dataclass(frozen=True)
class Alignment:
    """The best CTC path for one sequence: its per-frame labels, log-probability and gloss spans."""

    labels: np.ndarray  # [T'] label id per output frame (blank included)
    score: float  # log-probability of the path
    spans: tuple[GlossSpan, ...]


def ctc_viterbi(log_probs: np.ndarray | torch.Tensor, targets: Sequence[int], blank: int = 0) -> tuple[np.ndarray, float]:
    """Best path over the CTC trellis: (state per output frame, its log-probability).

    ``log_probs`` [T', C] for one sequence (already cut to its output length); states are indices
    into ``blank t1 blank t2 ... tL blank`` (odd state ``2k+1`` = gloss ``k``). Raises
    :class:`AlignmentError` when T' frames cannot hold the targets (a blank must separate repeats).
    """
    lp = log_probs.detach().cpu().double().numpy() if isinstance(log_probs, torch.Tensor) else np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"log_probs must be [frames, classes], got shape {lp.shape}")
    targets = [int(t) for t in targets]
    T, L = lp.shape[0], len(targets)
    if any(t == blank for t in targets):
        raise AlignmentError(f"targets contain the blank id {blank}")
    need = L + sum(a == b for a, b in zip(targets, targets[1:]))
    if T < need:
        raise AlignmentError(f"{T} output frames cannot hold {L} glosses ({need} frames needed)")
    if L == 0:
        return np.zeros(T, dtype=np.int64), float(lp[:, blank].sum())
    ext = np.full(2 * L + 1, blank, dtype=np.int64)
    ext[1::2] = targets
    S = len(ext)
    # A skip (s-2 -> s) is allowed into a gloss state whose gloss differs from the previous gloss.
    skip = np.zeros(S, dtype=bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    neg = -np.inf
    score = np.full(S, neg)
    score[0] = lp[0, ext[0]]
    score[1] = lp[0, ext[1]]
    back = np.zeros((T, S), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, T):
        stay = score
        step = np.concatenate(([neg], score[:-1]))
        jump = np.where(skip, np.concatenate(([neg, neg], score[:-2])), neg)
        cand = np.stack([stay, step, jump])
        choice = cand.argmax(0)
        back[t] = choice
        score = cand[choice, np.arange(S)] + lp[t, ext]
    # The path ends in the last gloss or the final blank.
    end = S - 1 if score[S - 1] >= score[S - 2] else S - 2
    best = float(score[end])
    states = np.empty(T, dtype=np.int64)
    s = end
    for t in range(T - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    return states, best


def forced_align(log_probs: np.ndarray | torch.Tensor, targets: Sequence[int], glosses: Sequence[str] | None = None,
                 stride: int = 1, num_input_frames: int | None = None, blank: int = 0) -> Alignment:
    """Viterbi alignment of ``targets`` to one sequence's log-probs [T', C], with each gloss's span.

    ``stride``: the net's temporal stride (``net.total_stride``); ``num_input_frames``: the input
    length the output frames cover (default ``T' * stride``), so spans map back to input frames.
    """
    states, score = ctc_viterbi(log_probs, targets, blank)
    targets = [int(t) for t in targets]
    glosses = list(glosses) if glosses is not None else [str(t) for t in targets]
    if len(glosses) != len(targets):
        raise ValueError(f"{len(glosses)} gloss names for {len(targets)} targets")
    T = len(states)
    n_in = T * stride if num_input_frames is None else int(num_input_frames)
    ext = np.full(2 * len(targets) + 1, blank, dtype=np.int64)
    ext[1::2] = targets
    spans = []
    for k in range(len(targets)):
        frames = np.flatnonzero(states == 2 * k + 1)  # every gloss state is visited: contiguous run
        a, b = int(frames[0]), int(frames[-1]) + 1
        in_a = min(a * stride, n_in)
        in_b = n_in if b == T else min(b * stride, n_in)
        spans.append(GlossSpan(k, targets[k], glosses[k], a, b, in_a, max(in_b, in_a)))
    return Alignment(labels=ext[states], score=score, spans=tuple(spans))


def align_sequence(log_probs: np.ndarray | torch.Tensor, glosses: Sequence[str], vocab_tokens: Sequence[str],
                   stride: int, num_input_frames: int, blank: int = 0, what: str = "sequence") -> Alignment:
    """:func:`forced_align` of gloss names; unknown glosses and infeasible lengths raise naming ``what``."""
    index = {tok: i for i, tok in enumerate(vocab_tokens)}
    unknown = [g for g in glosses if g not in index]
    ids = [index.get(g, index.get("<unk>", -1)) for g in glosses]
    if any(i < 0 for i in ids):
        raise AlignmentError(f"{what}: glosses {unknown[:5]} are not in the model's vocabulary")
    try:
        return forced_align(log_probs, ids, glosses, stride, num_input_frames, blank)
    except AlignmentError as exc:
        raise AlignmentError(f"{what}: {exc}") from exc


def frame_labels(spans: Sequence[GlossSpan], num_input_frames: int) -> np.ndarray:
    """[T] index of the span each input frame lies in, -1 where none (what a video shows per frame)."""
    out = np.full(num_input_frames, -1, dtype=np.int64)
    for i, span in enumerate(spans):
        out[span.input_start : span.input_end] = i
    return out
