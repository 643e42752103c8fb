"""The streaming recognizer: raw landmarks in, frame by frame or in chunks of any size; log-probs of the
output frames that are now final, and glosses with times, out.

It carries every piece of state the whole-sentence forward keeps implicitly: the last frames the
temporal features look back on, the normalizer's body frame and presence history, each convolution and
pooling layer's window (with the pooling phase) and the LSTM's (h, c). **Exactness is the contract**:
for any chunking, the log-probs of a segment equal ``CTCModule.forward`` over the same frames in eval
mode (tests/test_streaming.py: max abs difference <= 1e-5 on real and generated signers).

An endless stream has no sentence boundaries: a *pause* (:mod:`sign_ctc.features.pauses`) ends a
segment — its remaining frames are flushed, its glosses committed and the state reset — and the next
segment starts at the next frame with a hand. Memory stays bounded: committed glosses are handed to the
caller (:meth:`StreamingRecognizer.push` returns them), not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sign_ctc.decoding.decoders import BeamSearchDecoder
from sign_ctc.decoding.idle import blank_idle, idle_output_frames
from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import features_from_landmarks
from sign_ctc.features.pauses import PauseSegmenter, Step
from sign_ctc.models.ctc_module import CTCModule
from sign_ctc.streaming.beam import BeamStream
from sign_ctc.streaming.greedy import GreedyStream, TimedGloss

if TYPE_CHECKING:
    from sign_ctc.streaming.onnx_net import OnnxStreamingNet

HISTORY = 4  # frames the temporal features look back on (layout.TEMPORAL_LAGS)


class NotStreamableError(SignCtcError, ValueError):
    """The checkpoint's model or preprocessing cannot run on a stream; the message says what to change."""


def stream_refusal(module: CTCModule) -> str | None:
    """Why ``module`` cannot stream (None: it can): the net, the normalizer or the missing-landmark mode."""
    net = module.net
    if not callable(getattr(net, "step", None)) or not callable(getattr(net, "initial_state", None)):
        return (f"{type(net).__name__} has no streaming step (a bidirectional net reads the whole sentence): "
                "stream a causal model, e.g. the student (model=student, model.net.bidirectional=false)")
    reason = getattr(net, "stream_refusal", None)
    if reason:
        return reason
    if module.normalizer.streamable:
        return module.normalizer.streamable
    missing = module.recipe.get("features", {}).get("missing", "zero")
    if missing != "zero":
        return (f"data.missing={missing} fills a gap from the detection after it (a future frame): "
                "train with data.missing=zero to stream")
    return None


@dataclass
class Update:
    """What one call gave: glosses now committed (each given once), the tentative tail (may change),
    and the log-probs of the output frames that became final [k', C]."""

    committed: list[TimedGloss] = field(default_factory=list)
    tentative: list[TimedGloss] = field(default_factory=list)
    log_probs: torch.Tensor | None = None


class StreamingRecognizer:
    """One stream's recognizer. ``fps``: the input frame rate (for times); ``pause_frames``: frames
    without a hand that end a segment (None: one segment, as a whole sentence). ``decoder``: a
    :class:`~sign_ctc.decoding.decoders.BeamSearchDecoder` searches each segment incrementally with its
    options and LM (:class:`~sign_ctc.streaming.beam.BeamStream`); anything else, best path
    (:class:`~sign_ctc.streaming.greedy.GreedyStream`). Default: the module's test decoder, as the
    offline :class:`sign_ctc.api.Recognizer` does (greedy unless a beam decoding config built it)."""

    def __init__(self, module: CTCModule | OnnxStreamingNet, fps: float = 25.0, pause_frames: int | None = 25,
                 tentative: bool = True, decoder: Any = "module"):
        """``module``: a checkpoint's CTCModule (its normalizer, then ``net.step``), or a streaming export
        (:class:`~sign_ctc.streaming.onnx_net.OnnxStreamingNet`: normalizer and net in one graph, so it
        takes the features before normalization); everything after the model is the same for both."""
        if getattr(module, "normalizes", False):
            self.module = None
            self.net = module
            self.normalizer = None
        else:
            reason = stream_refusal(module)
            if reason:
                raise NotStreamableError(f"this model cannot stream: {reason}")
            self.module = module.eval()
            self.net = module.net
            self.normalizer = module.normalizer
        if isinstance(decoder, str) and decoder == "module":
            decoder = getattr(self.module, "test_decoder", None)
        self.beam = decoder if isinstance(decoder, BeamSearchDecoder) else None
        if self.beam is not None and list(self.beam.vocab_tokens) != list(module.vocab.tokens):
            raise ValueError(f"the beam decoder's vocabulary ({len(self.beam.vocab_tokens)} tokens) is not the "
                             f"model's ({len(module.vocab.tokens)}): build it with vocab_tokens=module.vocab.tokens")
        self.vocab = module.vocab
        self.fps = float(fps)
        self.stride = int(self.net.total_stride)
        self.pause_frames = pause_frames
        self.tentative = tentative
        self.frames = 0  # input frames received
        self.segmenter = PauseSegmenter(pause_frames)
        self.detected = False  # anything detected in any frame so far
        self._reset()

    @classmethod
    def from_checkpoint(cls, path: str | Path, decoding: Any = None, **kwargs: Any) -> StreamingRecognizer:
        """``decoding``: a decoding config (``sign_ctc/conf/decoding/*.yaml``; None: greedy). With beam search,
        the LM weight and word bonus tuned beside the checkpoint are used unless set
        (:mod:`sign_ctc.run.decoding_setup`), as ``sign-ctc-predict`` does."""
        from sign_ctc.run.decoding_setup import decoder_factory
        from sign_ctc.models.checkpoint import load_module

        module = load_module(path)
        factory = decoder_factory(decoding, path)
        if factory is not None:
            # Built here, not inside the module: a missing LM is its own FileNotFoundError, not Hydra's wrapper.
            module.test_decoder = factory(vocab_tokens=module.vocab.tokens)
        return cls(module, **kwargs)

    @classmethod
    def from_exported(cls, path: str | Path, decoding: Any = None, **kwargs: Any) -> StreamingRecognizer:
        """A streaming ONNX export (``sign-ctc-export ... streaming=true``) run by onnxruntime; ``decoding``
        as in :meth:`from_checkpoint` (values tuned beside a checkpoint do not travel with an export)."""
        from sign_ctc.run.decoding_setup import decoder_factory
        from sign_ctc.streaming.onnx_net import OnnxStreamingNet

        net = OnnxStreamingNet.load(path)
        factory = decoder_factory(decoding)
        if factory is not None:
            kwargs["decoder"] = factory(vocab_tokens=net.vocab.tokens)
        return cls(net, **kwargs)

    def _reset(self) -> None:
        """A new segment: no history, fresh states; its times count from the next frame fed."""
        self.active = False
        self.idle_run = 0
        self.hist_points: torch.Tensor | None = None  # [<= HISTORY, 543, 3]
        self.hist_presence: torch.Tensor | None = None
        self.norm_state = None
        self.net_state = self.net.initial_state(1)
        self.seg_presence: list[torch.Tensor] = []  # this segment's presence rows not yet covered by output
        self.seg_out = 0  # output frames of this segment emitted
        self.decoder: GreedyStream | BeamStream | None = None
        self._covered = 0
        self.held: list[tuple[torch.Tensor, torch.Tensor]] = []  # frames without a hand, pause or not yet known

    # ---- the model on a segment ---------------------------------------------------------------------
    def _features(self, points: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        """Features [1, k, input_dim] of the next k frames, exactly those of the whole segment."""
        k = points.shape[0]
        if self.hist_points is not None:
            points = torch.cat([self.hist_points, points])
            presence_all = torch.cat([self.hist_presence, presence])
        else:
            presence_all = presence
        feats = features_from_landmarks(points, presence_all, self.net.input_dim)[-k:]
        self.hist_points, self.hist_presence = points[-HISTORY:], presence_all[-HISTORY:]
        return feats[None]

    @torch.no_grad()
    def _model(self, points: torch.Tensor, presence: torch.Tensor, final: bool) -> torch.Tensor:
        """Log-probs [k', C] of the output frames these frames make final (``final``: the segment ends)."""
        if points.shape[0] and self.normalizer is None:  # the net normalizes (a streaming export)
            x = self._features(points, presence)
        elif points.shape[0]:
            x, self.norm_state = self.normalizer.stream(self._features(points, presence), presence[None],
                                                        self.norm_state)
        else:
            x = torch.zeros(1, 0, self.net.input_dim)
        logits, self.net_state = self.net.step(x, presence[None], self.net_state, final=final)
        return logits[0].float().log_softmax(-1)

    # ---- the public calls ---------------------------------------------------------------------------
    def push(self, points: np.ndarray | torch.Tensor, presence: np.ndarray | torch.Tensor) -> Update:
        """The next frames: raw landmarks [k, 543, 3] (unit image coordinates, 0 where undetected) and
        part presence [k, 4] (pose, left hand, right hand, face), as the store and the extractor give them."""
        points = torch.as_tensor(points, dtype=torch.float32)
        presence = torch.as_tensor(presence, dtype=torch.bool)
        update = Update(log_probs=torch.zeros(0, len(self.vocab)))
        k = points.shape[0]
        self.detected = self.detected or bool(presence.any())
        start = None  # first frame of the run being fed
        for i, hands in enumerate((presence[:, 1] | presence[:, 2]).tolist()):
            step = self.segmenter.step(hands)
            if step is Step.SKIP:
                continue
            if step is Step.FEED:
                if self.held:  # a hand came back: the frames without one are the segment's
                    self._feed_held(self.frames + i, update, final=False)
                elif not self.active:
                    self._begin(self.frames + i)
                start = i if start is None else start
                continue
            if start is not None:  # the run so far is the segment's whatever comes next
                self._feed(points[start:i], presence[start:i], update, final=False)
                start = None
            if step is Step.HOLD:
                self.held.append((points[i : i + 1], presence[i : i + 1]))
            else:  # END: the pause is complete; the segment ended with its last frame with a hand
                self.held = []
                if self.active:
                    self._feed(points[:0], presence[:0], update, final=True)
        if start is not None:
            self._feed(points[start:], presence[start:], update, final=False)
        self.frames += k
        if self.active and self.tentative:
            update.tentative = self.peek()
        return update

    def end(self) -> Update:
        """The stream ended: the last segment flushed and every remaining gloss committed."""
        update = Update(log_probs=torch.zeros(0, len(self.vocab)))
        if self.held:  # no pause yet: they are the segment's
            self._feed_held(self.frames, update, final=True)
        elif self.active:
            self._feed(torch.zeros(0, 543, 3), torch.zeros(0, 4, dtype=torch.bool), update, final=True)
        return update

    def _feed_held(self, next_frame: int, update: Update, final: bool) -> None:
        """Feed the held frames (those without a hand just before input frame ``next_frame``) to the segment,
        beginning it if they are its first frames."""
        points = torch.cat([p for p, _ in self.held])
        presence = torch.cat([q for _, q in self.held])
        self.held = []
        if not self.active:
            self._begin(next_frame - points.shape[0])
        self._feed(points, presence, update, final=final)

    def peek(self) -> list[TimedGloss]:
        """The tentative tail: the glosses the frames still inside the look-ahead would add if the stream
        ended now (computed on copies of the states, which are not changed)."""
        if not self.active or self.decoder is None:
            return []
        with torch.no_grad():
            logits, _ = self.net.step(torch.zeros(1, 0, self.net.input_dim), torch.zeros(1, 0, 4, dtype=torch.bool),
                                      self.net_state, final=True)
        rows = torch.cat(self.seg_presence) if self.seg_presence else torch.zeros(0, 4, dtype=torch.bool)
        return self.decoder.pending() + self.decoder.peek(self._without_idle(logits[0].float().log_softmax(-1), rows))

    def _without_idle(self, log_probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The next output frames' log-probs, certainly blank where nobody was in view in the segment's
        presence ``rows`` they stand for (:mod:`sign_ctc.decoding.idle`)."""
        rows = rows[self.seg_out * self.stride - self._covered :]
        return blank_idle(log_probs, idle_output_frames(rows, self.stride, log_probs.shape[0]), self.vocab.blank_id)

    @property
    def segments(self) -> int:
        """Segments begun so far."""
        return self.segmenter.segments

    def _begin(self, frame: int) -> None:
        self.active = True
        self.seg_start = frame
        self._covered = 0  # presence rows dropped from seg_presence (already covered by output frames)
        if self.beam is not None:
            self.decoder = BeamStream(self.beam, self.stride / self.fps, offset=frame / self.fps)
        else:
            self.decoder = GreedyStream(self.vocab.tokens, self.stride / self.fps, self.vocab.blank_id,
                                        offset=frame / self.fps)

    def _feed(self, points: torch.Tensor, presence: torch.Tensor, update: Update, final: bool) -> None:
        self.seg_presence.append(presence)
        log_probs = self._model(points, presence, final)
        rows = torch.cat(self.seg_presence)
        decoded = self._without_idle(log_probs, rows)
        self.seg_out += log_probs.shape[0]
        drop = min(self.seg_out * self.stride - self._covered, rows.shape[0])  # rows no later output frame reads
        self.seg_presence = [rows[drop:]]
        self._covered += drop
        assert self.decoder is not None
        self.decoder.push(decoded)
        update.log_probs = torch.cat([update.log_probs, log_probs])
        if final:  # the last output frame may stand for fewer than `stride` frames: times end with the segment
            end = (self.seg_start + self._covered + rows.shape[0] - drop) / self.fps
            done = self.decoder.finish()
            for g in done:
                g.end = min(g.end, end)
            update.committed += done
        else:
            update.committed += self.decoder.take()
        if final:
            self._reset()
