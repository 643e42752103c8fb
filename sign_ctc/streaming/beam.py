"""Incremental CTC beam search with the gloss LM: glosses with their times, committed once the search
can no longer change them, with memory bounded on an endless stream.

It drives the offline decoder's own search (:meth:`sign_ctc.decoding.decoders.BeamSearchDecoder.new_search`:
flashlight-text's ``LexiconFreeDecoder``, same options, same LM) through its incremental API:
``decode_begin`` at a segment's start, ``decode_step`` on every chunk of final log-probs, ``decode_end``
when the segment ends. Feeding the frames in chunks searches exactly as one call on the whole segment
does, so without pruning the result equals :meth:`BeamSearchDecoder.decode` of the segment.

The search keeps every frame's hypotheses until it is pruned, so an endless stream must prune.
Every ``commit_every`` output frames the paths of all hypotheses still in the beam are read
(``get_all_final_hypothesis``): the frames on which they all agree can no longer change, whatever comes
later (every future hypothesis extends one of them), so they are committed and the search forgets
them (``prune(look_back)`` keeps only the frames after them). Committing these is exact (pruning also
shifts the beam's scores by the best one: its rounding could decide only a near-exact tie). Hypotheses
with different gloss histories can stay in the beam for long: without an LM they never merge, with a
gloss n-gram LM only when their contexts meet, and two glosses the model cannot tell apart keep both
alive. So where they still disagree on frames older than ``lookback``, the best hypothesis' path up to
there is committed anyway and the search pruned to ``lookback`` frames; if a hypothesis that disagreed
there wins in the end, the stream's result differs from the offline one (such commits are counted in
:attr:`BeamStream.forced`). The search then holds at most ``lookback + commit_every`` frames plus a chunk.

A gloss's times come from the path of the hypothesis that committed it (its CTC alignment): start at
its first frame, end after its last, in seconds like :class:`~sign_ctc.streaming.greedy.GreedyStream`.
"""

from __future__ import annotations

from typing import Any

import torch

from sign_ctc.decoding.decoders import BeamSearchDecoder
from sign_ctc.decoding.timed import TimedGloss
from sign_ctc.streaming.greedy import GreedyStream


def _shared_prefix(paths: list[list[int]]) -> int:
    """How many leading frames all paths have in common."""
    first = paths[0]
    n = min(len(p) for p in paths)
    for i in range(n):
        if any(p[i] != first[i] for p in paths[1:]):
            return i
    return n


class BeamStream:
    """Beam search over output frames pushed in order; the interface of
    :class:`~sign_ctc.streaming.greedy.GreedyStream` (push, take, pending, peek, finish).

    ``beam``: the offline decoder whose options and LM the search uses; ``commit_every`` (output frames;
    None: never prune, exact, memory grows with the segment) and ``lookback`` default to its own
    (``decoding.commit_every``, ``decoding.lookback``). ``seconds_per_frame``: one output frame's duration;
    ``offset``: the time of the first output frame.
    """

    def __init__(self, beam: BeamSearchDecoder, seconds_per_frame: float, offset: float = 0.0,
                 commit_every: int | None | str = "decoder", lookback: int | None = None):
        self.beam = beam
        self.tokens = beam.vocab_tokens
        self.commit_every = beam.commit_every if commit_every == "decoder" else commit_every
        self.lookback = int(lookback if lookback is not None else beam.lookback)
        if self.commit_every is not None and int(self.commit_every) < 1:
            raise ValueError(f"commit_every must be >= 1 output frames or None, got {self.commit_every}")
        if self.lookback < 1:
            raise ValueError(f"lookback must be >= 1 output frames, got {self.lookback}")
        self.search: Any = beam.new_search()
        self.search.decode_begin()
        # The committed path's glosses and times: the best-path run logic, fed the committed tokens.
        self.runs = GreedyStream(self.tokens, seconds_per_frame, beam.blank, offset)
        # Frames of the search: 0 is its start state, frame j >= 1 the token of output frame j - 1.
        self.decoded = 0  # output frames given to decode_step
        self.base = 0  # the search's first frame still held (earlier ones pruned)
        self.committed = 0  # frames up to this one are committed (0: only the start state)
        self.since = 0  # output frames since the last commit
        self.forced = 0  # commits of frames the hypotheses still disagreed on (may differ from offline)
        self.ended = False

    # ---- the search ---------------------------------------------------------------------------------
    def push(self, log_probs: torch.Tensor) -> None:
        """Final log-probs [k, C] of the next output frames."""
        if self.ended:
            raise RuntimeError("push after finish(): a segment's search ends once")
        if log_probs.dim() != 2 or log_probs.shape[-1] != len(self.tokens):
            raise ValueError(f"log_probs must be [k, {len(self.tokens)}], got {tuple(log_probs.shape)}")
        k = int(log_probs.shape[0])
        if k == 0:
            return
        emissions = log_probs.detach().to("cpu", torch.float32).contiguous()
        self.search.decode_step(emissions.data_ptr(), k, emissions.shape[1])  # read now, not kept
        self.decoded += k
        self.since += k
        if self.commit_every is not None and self.since >= int(self.commit_every):
            self.since = 0
            self._commit()

    def _commit(self) -> None:
        """Commit the frames every hypothesis agrees on (or, past ``lookback``, the best one's) and prune."""
        hyps = self.search.get_all_final_hypothesis()
        paths = [list(h.tokens) for h in hyps]  # frames base .. decoded
        best = max(range(len(hyps)), key=lambda i: hyps[i].score)  # the first best, as flashlight picks it
        upto = self.base + _shared_prefix(paths) - 1
        if self.decoded - upto > self.lookback:
            upto = self.decoded - self.lookback
            self.forced += 1
        if upto <= self.committed:
            return
        self.runs.push_path(paths[best][self.committed + 1 - self.base : upto + 1 - self.base])
        self.search.prune(self.decoded - upto)  # keeps frames upto .. decoded; upto becomes the first
        self.base = self.committed = upto

    @property
    def frames_held(self) -> int:
        """Frames the search holds now, read from the search itself (its best path's length)."""
        return len(self.search.get_best_hypothesis(0).tokens) - 1

    # ---- what the caller reads ----------------------------------------------------------------------
    def take(self) -> list[TimedGloss]:
        """The committed glosses closed since the last call."""
        return self.runs.take()

    def pending(self) -> list[TimedGloss]:
        """The committed gloss still running (certain, its end not yet)."""
        return self.runs.pending()

    def peek(self, log_probs: torch.Tensor) -> list[TimedGloss]:
        """The tentative tail after the pending gloss: the best hypothesis' frames not yet committed, then the
        best path of the look-ahead log-probs [k, C] (frames not final yet). The search cannot be copied,
        so the look-ahead is read by argmax rather than searched; it only shows what may come."""
        path = list(self.search.get_best_hypothesis(0).tokens)
        probe = self.runs.copy()
        probe.push_path(path[self.committed + 1 - self.base :])
        probe.push(log_probs)
        return self.runs.after_open(probe.finish())

    def finish(self) -> list[TimedGloss]:
        """The segment ended: the search ends (the LM's end of sentence) and the best hypothesis' remaining
        glosses are committed; every gloss not yet taken."""
        if not self.ended:
            self.ended = True
            self.search.decode_end()
            best = self.search.get_all_final_hypothesis()[0]  # sorted at the end, as decode() reads it
            path = list(best.tokens)[:-1]  # the last is decode_end's end marker, not a frame
            self.runs.push_path(path[self.committed + 1 - self.base :])
            self.committed = self.decoded
        return self.runs.finish()
