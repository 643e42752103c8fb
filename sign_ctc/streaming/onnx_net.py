"""A streaming ONNX export (:mod:`sign_ctc.streaming.onnx_export`) run by onnxruntime, with the streaming
net's interface, so :class:`~sign_ctc.streaming.recognizer.StreamingRecognizer` (pauses, idle rules,
decoding) runs it unchanged.

The graph takes fixed chunks; the recognizer pushes any number of frames. :meth:`OnnxStreamingNet.step`
puts the JSON's lead before a stream's first frame, keeps the frames short of a chunk in its state, runs
every full chunk, keeps the output rows the graph
marks valid, and at the end of a stream flushes by the JSON's rule. Everything it obeys (chunk size, the
state tensors and their initial values, the flush) is read from the JSON beside the model. One difference
to the PyTorch net's ``step``: the graph normalizes, so ``step`` takes the features *before* the
normalizer (``normalizes = True`` tells the recognizer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.models.export import ExportError, read_exported

Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def session_runner(payload: bytes) -> Run:
    """An onnxruntime session on the CPU over the model's bytes, as a function of its input dict. It uses
    torch's intra-op thread count, so both runtimes get the same cores (the live command gives the tracker
    the rest)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: session.run(names, feeds)


@dataclass(frozen=True)
class OnnxStreamState:
    """A stream's state between calls: the frames short of a chunk, the graph's state tensors (never
    modified: each chunk gives new ones), frames received and output frames given."""

    features: np.ndarray  # [k < chunk, input_dim]
    presence: np.ndarray  # [k, 4] float32
    valid: np.ndarray  # [k] float32: 0 for the lead frames
    tensors: tuple[np.ndarray, ...]
    seen: int
    emitted: int


class OnnxStreamingNet:
    """The streaming export behind the net interface of :class:`~sign_ctc.models.student.CTCStudent`:
    ``initial_state``, ``step``, ``total_stride``, ``input_dim``, ``lookahead_frames``."""

    normalizes = True  # step takes the features before normalization: the graph holds the normalizer

    def __init__(self, run: Run, meta: dict[str, Any], source: str):
        spec = meta.get("streaming")
        if not spec:
            raise ExportError(f"{source} is a whole-sentence export: export the checkpoint with streaming=true "
                              "(sign-ctc-export ckpt_path=... streaming=true) to run it live")
        self._run = run
        self.meta = meta
        self.source = source
        self.vocab = Vocabulary(meta["vocab"])
        self.missing: str = meta.get("missing", "zero")
        self.total_stride = int(meta["total_stride"])
        self.chunk_frames = int(spec["chunk_frames"])
        self.input_dim = int(spec["input_dim"])
        self.lookahead_frames = int(spec["lookahead_frames"])
        self.strides = [int(s) for s in spec["strides"]]
        self.max_flush_chunks = int(spec["max_flush_chunks"])
        self.lead_frames = int(spec.get("lead_frames", 0))
        self.state_names = [entry["name"] for entry in spec["state"]]
        self._initial = tuple(self._initial_value(entry) for entry in spec["state"])

    @classmethod
    def load(cls, path: str | Path) -> OnnxStreamingNet:
        """A streaming export and its JSON (checked against each other and this sign_ctc's layout)."""
        meta, payload = read_exported(path)
        if not meta.get("streaming"):
            return cls(lambda feeds: [], meta, str(path))  # raises: a whole-sentence export
        return cls(session_runner(payload), meta, str(path))

    @staticmethod
    def _initial_value(entry: dict[str, Any]) -> np.ndarray:
        if "values" in entry:
            return np.asarray(entry["values"], dtype=np.float32).reshape(entry["shape"])
        return np.full(entry["shape"], float(entry["fill"]), dtype=np.float32)

    def initial_state(self, batch: int = 1, device: torch.device | None = None) -> OnnxStreamState:
        """A stream before its first frame (one stream: the graph's batch is 1)."""
        if batch != 1:
            raise ValueError(f"{self.source}: a streaming export runs one stream at a time, not {batch}")
        return OnnxStreamState(np.zeros((0, self.input_dim), np.float32), np.zeros((0, 4), np.float32),
                               np.zeros(0, np.float32), self._initial, 0, 0)

    def output_frames(self, n: int) -> int:
        """The whole sentence's output frames for ``n`` input frames (each pool: ceil(n / s))."""
        for s in self.strides:
            n = (n + s - 1) // s
        return n

    def _chunk(self, features: np.ndarray, presence: np.ndarray, valid: np.ndarray,
               tensors: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        feeds = {"features": features[None], "presence": presence[None], "valid": valid[None]}
        feeds.update(zip(self.state_names, tensors))
        log_probs, out_valid, *next_tensors = self._run(feeds)
        return log_probs[0][out_valid[0] > 0.5], tuple(next_tensors)

    def step(self, x: torch.Tensor, presence: torch.Tensor, state: OnnxStreamState,
             final: bool = False) -> tuple[torch.Tensor, OnnxStreamState]:
        """The next frames: features [1, k, input_dim] (not normalized) and presence [1, k, 4]; the
        log-probs [1, k', C] of the output frames now final and the new state (``final``: the stream ends
        here and is flushed). The state given is not modified."""
        C = self.chunk_frames
        new_features = x[0].detach().float().cpu().numpy()
        new_presence = presence[0].detach().cpu().numpy().astype(np.float32)
        k = new_features.shape[0]
        new_valid = np.ones(k, np.float32)
        if state.seen == 0 and k and self.lead_frames:  # the stream's lead: its first frame, not valid
            lead = self.lead_frames
            new_features = np.concatenate([np.repeat(new_features[:1], lead, 0), new_features])
            new_presence = np.concatenate([np.repeat(new_presence[:1], lead, 0), new_presence])
            new_valid = np.concatenate([np.zeros(lead, np.float32), new_valid])
        features = np.concatenate([state.features, new_features])
        present = np.concatenate([state.presence, new_presence])
        valid = np.concatenate([state.valid, new_valid])
        seen = state.seen + k
        tensors, parts = state.tensors, []
        full = features.shape[0] // C
        for i in range(full):
            chunk = slice(i * C, (i + 1) * C)
            rows, tensors = self._chunk(features[chunk], present[chunk], valid[chunk], tensors)
            parts.append(rows)
        features, present, valid = features[full * C :], present[full * C :], valid[full * C :]
        if final and seen:
            expected = self.output_frames(seen)
            emitted = state.emitted + sum(len(p) for p in parts)
            left = features.shape[0]
            pad = ((0, C - left), (0, 0))
            chunks = 0
            if left:
                rows, tensors = self._chunk(np.pad(features, pad), np.pad(present, pad), np.pad(valid, (0, C - left)),
                                            tensors)
                parts.append(rows)
                emitted += len(rows)
            zeros_f, zeros_p, invalid = (np.zeros((C, self.input_dim), np.float32), np.zeros((C, 4), np.float32),
                                         np.zeros(C, np.float32))
            while emitted < expected:
                chunks += 1
                if chunks > self.max_flush_chunks:
                    raise ExportError(f"{self.source}: {emitted} of {expected} output frames after "
                                      f"max_flush_chunks={self.max_flush_chunks} flush chunks: the model does not "
                                      "follow its JSON's rules")
                rows, tensors = self._chunk(zeros_f, zeros_p, invalid, tensors)
                parts.append(rows)
                emitted += len(rows)
            if emitted != expected:
                raise ExportError(f"{self.source}: {emitted} output frames for {seen} frames, expected {expected}")
            features, present, valid = features[:0], present[:0], valid[:0]
        emitted = state.emitted + sum(len(p) for p in parts)
        classes = len(self.vocab)
        out = np.concatenate(parts) if parts else np.zeros((0, classes), np.float32)
        return torch.from_numpy(out)[None], OnnxStreamState(features, present, valid, tensors, seen, emitted)
