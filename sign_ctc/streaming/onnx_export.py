"""Streaming export: the normalizer and the causal student as one ONNX graph that runs a stream chunk by chunk.

    sign-ctc-export ckpt_path=.../best.ckpt streaming=true [chunk_frames=4] [out=best.stream.onnx]

Why a fixed chunk and fixed-shape state. The PyTorch stream (:mod:`sign_ctc.models.stream_buffers`) keeps
variable-length buffers and python-int counters, and emits as many output frames as a call completes;
an ONNX graph with such data-dependent shapes is fragile in every runtime. Here every call takes exactly
``chunk_frames`` feature frames (a multiple of the total stride ``S``), every conv and pool layer carries
a buffer of a fixed number of its input frames, and every call returns ``chunk_frames / S`` output frames
with a ``valid`` flag each. The price is a fixed delay: the first ``delay`` output rows of a stream are
not real frames (``out_valid`` = 0), and the end of a stream is flushed by chunks of frames marked
``valid`` = 0, which act exactly as the whole sentence's right padding. A stream starts with ``lead``
frames marked ``valid`` = 0 (copies of its first frame, so the normalizer's history is the first frame
held, as the layout's): they put the chunk ends where output windows complete, so the look-ahead is the
PyTorch stream's (14 frames with the defaults) instead of up to a chunk more.

How it stays exact. A layer with kernel ``K``, stride ``s`` and padding ``P`` emits output ``j`` from its
input frames ``s*j - P .. s*j - P + K - 1``. Each layer keeps ``K - s + e`` frames (``e`` >= 0 chosen so
that its windows fall on the offline windows: :func:`chunk_rules`), and before the layer every carried
or new frame outside the real ones (before the stream's start or after its end, known from the valid
flags) is set to the layer's padding value (0 for convolutions, -inf for max-pooling): the offline
padding. An output is real exactly when the frame at its window's centre is (``j*s`` inside the layer's
input): so the flags travel down the stack with the frames. The LSTM's ``(h, c)`` only advance on real
frames. The normalizer carries the body frame (centre, width) and the last 4 presence rows (the
temporal channels' masks; before the first chunk the first frame is held, as the layout does).

Beside the model, ``<out>.json`` (as for the offline export) has a ``streaming`` section: the chunk size,
the inputs, every state tensor's name, shape and initial value, the output delay, the look-ahead, and
how to end a stream; :class:`sign_ctc.streaming.onnx_net.OnnxStreamingNet` obeys it. Nothing is written
unless onnxruntime's output on random streams matches the PyTorch stream (``normalizer.stream`` +
``net.step``, what :class:`~sign_ctc.streaming.recognizer.StreamingRecognizer` runs) within ``atol``.
"""

from __future__ import annotations

import io
import json
import logging
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sign_ctc.atomic import write_bytes_atomic, write_text_atomic
from sign_ctc.features.layout import FEATURE_DIM, LAYOUT_VERSION, PARTS, group_presence
from sign_ctc.models.export import (EXPORT_VERSION, ExportError, example_inputs, meta_path, sha256_bytes,
                                    with_embedded_meta)
from sign_ctc.models.normalization import DEFAULT_CENTRE, DEFAULT_WIDTH, PRESENCE_HISTORY, body_frame

log = logging.getLogger(__name__)

INPUTS = ("features", "presence", "valid")
OUTPUTS = ("log_probs", "out_valid")
NEXT = "next_"  # the output carrying state tensor <name> on is next_<name>


@dataclass(frozen=True)
class StageRule:
    """One conv or pool layer on a chunked stream: its geometry and the input frames it carries."""

    kernel: int
    stride: int
    padding: int
    pad_value: float
    channels: int  # of its input
    carried: int  # input frames kept between chunks (K - s + e)


@dataclass(frozen=True)
class ChunkRules:
    """What a chunk is: ``chunk_frames`` input frames in, ``chunk_frames / total_stride`` output rows out."""

    chunk_frames: int
    strides: tuple[int, ...]
    stages: tuple[StageRule, ...]
    delay: int  # output rows of a stream before its first real output frame (out_valid 0), lstm_delay included
    lead: int = 0  # frames (copies of the first, valid 0) a stream starts with, to align chunks with windows
    lstm_delay: int = 0  # the student's output_delay: LSTM rows consumed before the first that labels a frame

    @property
    def total_stride(self) -> int:
        out = 1
        for s in self.strides:
            out *= s
        return out

    @property
    def out_per_chunk(self) -> int:
        return self.chunk_frames // self.total_stride

    def output_frames(self, n: int) -> int:
        """The whole sentence's output frames for ``n`` input frames (each pool: ceil(n / s))."""
        for s in self.strides:
            n = (n + s - 1) // s
        return n

    @property
    def lookahead_frames(self) -> int:
        """Input frames past the last one an output frame stands for until it comes out (worst case over the
        output frames): the layers' reach, and the wait for the chunk to fill (the PyTorch stream's
        ``lookahead_frames`` or more). Output ``j`` is row ``j + delay`` of the stream, in chunk
        ``(j + delay) // out_per_chunk``, which is complete once real frame ``(chunk + 1) * C - 1 - lead`` came."""
        S, n = self.total_stride, self.out_per_chunk
        return max(((j + self.delay) // n + 1) * self.chunk_frames - 1 - self.lead - (j * S + S - 1)
                   for j in range(n))

    @property
    def max_flush_chunks(self) -> int:
        """Chunks of invalid frames that always suffice, after the one holding the last real frame, to bring
        every output frame out (the output positions repeat with a period of one chunk)."""
        worst = 0
        for frames in range(1, 2 * self.chunk_frames + 1):
            last_chunk = (frames - 1 + self.lead) // self.chunk_frames
            worst = max(worst, (self.output_frames(frames) - 1 + self.delay) // self.out_per_chunk - last_chunk)
        return worst


def chunk_rules(net: nn.Module, chunk_frames: int | None = None) -> ChunkRules:
    """The chunk rules of a streaming student with the least look-ahead.

    Layer ``l``'s first new input frame is its frame ``-d_l`` (``d`` counts the frames in front that are
    not real: ``d_0`` is the stream's lead); with ``M`` carried frames a chunk's first window starts at
    frame ``-d_l - M``, which must be an offline window start ``s*j - P``: ``e`` is the least that makes
    ``d_l + M - P`` a multiple of ``s``, and then ``d_{l+1} = (d_l + M - P) / s``. The lead (0 .. C-1
    frames) shifts where chunks end against where output windows complete: the one with the least
    look-ahead is taken (with the defaults, 2 frames give the PyTorch stream's 14)."""
    S = int(net.total_stride)
    C = int(chunk_frames) if chunk_frames else S
    if C <= 0 or C % S:
        raise ExportError(f"chunk_frames must be a positive multiple of the model's total stride {S}, got {C}")
    widths = net.stage_channels()
    options = []
    for lead in range(C):
        stages, d = [], lead
        for (window, _), channels in zip(net._stages(), widths):
            base = window.kernel - window.stride
            extra = -(d + base - window.padding) % window.stride
            if base + extra == 0:  # a 1-wide layer: carry one stride of frames (no empty tensors in the graph)
                extra = window.stride
            carried = base + extra
            stages.append(StageRule(window.kernel, window.stride, window.padding, window.pad_value, channels, carried))
            d = (d + carried - window.padding) // window.stride
        D = int(getattr(net, "output_delay", 0))
        options.append(ChunkRules(C, tuple(net.strides), tuple(stages), d + D, lead, D))
    return min(options, key=lambda rules: (rules.lookahead_frames, rules.lead))


def state_spec(rules: ChunkRules, lstm_hidden: int) -> list[dict[str, Any]]:
    """Every state tensor: name, shape, initial value (``fill``, or explicit ``values``), what it holds."""
    spec: list[dict[str, Any]] = [
        {"name": "body_centre", "shape": [1, 2], "values": [list(DEFAULT_CENTRE)],
         "holds": "the normalizer's body frame: the last anchored centre (x, y)"},
        {"name": "body_width", "shape": [1], "values": [DEFAULT_WIDTH],
         "holds": "the normalizer's body frame: the last anchored width"},
        {"name": "presence_history", "shape": [1, PRESENCE_HISTORY, len(PARTS)], "fill": 0.0,
         "holds": "the last frames' part presence (0/1), for the temporal channels' masks"},
        {"name": "started", "shape": [1], "fill": 0.0,
         "holds": "1 once a chunk was run (before: presence_history is the first frame held)"},
    ]
    for i, stage in enumerate(rules.stages):
        kind = "conv" if stage.pad_value == 0.0 else "pool"
        spec.append({"name": f"window{i}", "shape": [1, stage.channels, stage.carried], "fill": 0.0,
                     "holds": f"layer {i} ({kind}, kernel {stage.kernel}, stride {stage.stride}): its last input frames"})
        spec.append({"name": f"window{i}_valid", "shape": [1, stage.carried], "fill": 0.0,
                     "holds": f"layer {i}: 1 where those frames are real"})
    spec.append({"name": "h", "shape": [1, 1, lstm_hidden], "fill": 0.0, "holds": "the LSTM's hidden state"})
    spec.append({"name": "c", "shape": [1, 1, lstm_hidden], "fill": 0.0, "holds": "the LSTM's cell state"})
    if rules.lstm_delay:
        spec.append({"name": "lstm_rows", "shape": [1], "fill": 0.0,
                     "holds": f"rows the LSTM consumed, counted up to the output delay ({rules.lstm_delay})"})
        spec.append({"name": "tail_rows", "shape": [1], "fill": 0.0,
                     "holds": "zero rows the LSTM consumed after the stream's last frame (the sentence's "
                              f"{rules.lstm_delay} trailing zero frames)"})
    return spec


def initial_tensors(spec: list[dict[str, Any]]) -> list[torch.Tensor]:
    """The state tensors before a stream's first chunk, as the JSON describes them."""
    out = []
    for entry in spec:
        if "values" in entry:
            out.append(torch.tensor(entry["values"], dtype=torch.float32).reshape(entry["shape"]))
        else:
            out.append(torch.full(entry["shape"], float(entry["fill"]), dtype=torch.float32))
    return out


class StreamGraph(nn.Module):
    """What is exported: one chunk through the normalizer and the student, state in and state out.

    Inputs ``features`` [1, C, input_dim] (not normalized), ``presence`` [1, C, 4] and ``valid`` [1, C]
    (0/1 floats), then the state tensors of :func:`state_spec` in order; outputs ``log_probs``
    [1, C/S, classes], ``out_valid`` [1, C/S] and the next state tensors in the same order."""

    def __init__(self, normalizer: nn.Module, net: nn.Module, rules: ChunkRules):
        super().__init__()
        self.normalizer = normalizer
        self.net = net
        self.rules = rules
        self.layers = [layer for _, layer in net._stages()]

    def forward(self, features: torch.Tensor, presence: torch.Tensor, valid: torch.Tensor,
                *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        centre, width, history, started = state[:4]
        n_stages = len(self.rules.stages)
        windows = state[4 : 4 + 2 * n_stages]
        h, c = state[4 + 2 * n_stages : 6 + 2 * n_stages]
        present = presence > 0.5
        C = features.shape[1]
        # -- the normalizer (Normalizer.stream, with a history of fixed length)
        first = presence[:, :1].expand(-1, PRESENCE_HISTORY, -1)  # (onnxruntime has no Where on booleans)
        history = torch.where(started[:, None, None] > 0.5, history, first) > 0.5
        rows = torch.cat([history, present], 1)
        groups = group_presence(rows)[:, PRESENCE_HISTORY:]
        lengths = torch.full((1,), C, dtype=torch.long)
        frame = None
        if self.normalizer.body_relative:  # once: it normalizes the chunk, and its last frame is carried on
            frame = body_frame(features, present, lengths, per_frame=True, fallback="causal", initial=(centre, width))
        x = self.normalizer(features, present, lengths, initial=(centre, width), groups=groups, frame=frame)
        if frame is not None:
            centre, width = frame[0][:, -1, :2], frame[1][:, -1]
        next_state: list[torch.Tensor] = [centre, width, rows[:, -PRESENCE_HISTORY:].float(), torch.ones_like(started)]
        # -- the conv and pool layers over carried + new frames, padding where frames are not real
        y = self.net.fusion(x, present).transpose(1, 2)  # [1, F, C]
        v = valid
        for i, (stage, layer) in enumerate(zip(self.rules.stages, self.layers)):
            frames = torch.cat([windows[2 * i], y], -1)
            flags = torch.cat([windows[2 * i + 1], v], -1)
            frames = frames.masked_fill(flags[:, None, :] <= 0.5, stage.pad_value)
            n = y.shape[-1]
            y = layer(frames[..., : n + stage.kernel - stage.stride])
            v = flags[:, stage.padding : stage.padding + n : stage.stride]  # real iff its window's centre is
            next_state += [frames[..., -stage.carried :], flags[:, -stage.carried :]]
        # -- the LSTM, advanced only on real frames (and, with an output delay D, on the D zero rows after the
        # last one, as the whole sentence's forward), and the classifier
        top = y.transpose(1, 2).masked_fill(v[..., None] <= 0.5, 0.0)  # [1, C/S, F]
        D = self.rules.lstm_delay
        if D:
            consumed, tail = state[6 + 2 * n_stages :]
        outs, flags = [], []
        for t in range(top.shape[1]):
            out, (h2, c2) = self.net.lstm(top[:, t : t + 1], (h, c))
            active = v[:, t]
            if D:  # a zero row after the stream's end (rows came, the row is not real) while fewer than D came
                after_end = (1.0 - active) * (consumed > 0.5).float() * (tail < D - 0.5).float()
                active = active + after_end
                flags.append(active * (consumed > D - 0.5).float())  # the first D rows label no frame
                consumed, tail = torch.clamp(consumed + active, max=float(D)), tail + after_end
            keep = active[None, :, None] > 0.5
            h, c = torch.where(keep, h2, h), torch.where(keep, c2, c)
            outs.append(out)
        log_probs = self.net.classifier(torch.cat(outs, 1)).float().log_softmax(-1)
        if D:
            return (log_probs, torch.stack(flags, 1), *next_state, h, c, consumed, tail)
        return (log_probs, v, *next_state, h, c)


def streaming_refusal(module: Any) -> str | None:
    """Why ``module`` cannot be exported for streaming (None: it can): the recognizer's reasons, and a
    net other than the student (the graph is built from its layers)."""
    from sign_ctc.models.student import CTCStudent
    from sign_ctc.streaming.recognizer import stream_refusal

    reason = stream_refusal(module)
    if reason:
        return reason
    if not isinstance(module.net, CTCStudent):
        return f"the streaming export builds its graph from the student's layers, not {type(module.net).__name__}"
    return None


def export_stream_bytes(graph: StreamGraph, spec: list[dict[str, Any]], opset: int) -> bytes:
    """``graph`` traced on one chunk and serialized with every shape fixed (torch.onnx's TorchScript-based
    exporter, as the offline export: the dynamo exporter does not take the LSTM with an initial state)."""
    C, dim = graph.rules.chunk_frames, graph.net.input_dim
    example = (torch.zeros(1, C, dim), torch.ones(1, C, len(PARTS)), torch.ones(1, C), *initial_tensors(spec))
    names = [entry["name"] for entry in spec]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)
        torch.onnx.export(graph, example, buffer, dynamo=False, opset_version=opset,
                          input_names=[*INPUTS, *names], output_names=[*OUTPUTS, *(NEXT + n for n in names)])
    return buffer.getvalue()


def pytorch_stream(module: Any, features: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """The PyTorch stream's log-probs [T', C] of one sequence (normalizer.stream + net.step, final)."""
    with torch.no_grad():
        x, _ = module.normalizer.stream(features, presence, None)
        logits, _ = module.net.step(x, presence, module.net.initial_state(1), final=True)
    return logits[0].float().log_softmax(-1)


def verify_stream(module: Any, net: Any, frames: Sequence[int], atol: float, seed: int, source: str) -> dict[str, float]:
    """Max abs difference of the ONNX stream (fed in random pieces of 1-9 frames) to the PyTorch stream per
    length; raises :class:`ExportError` above ``atol`` or on a different number of output frames."""
    diffs: dict[str, float] = {}
    rng = random.Random(seed)
    for T in frames:
        features, presence = example_inputs(1, int(T), seed + int(T))
        features, presence = features[..., : net.input_dim], presence > 0.5
        ref = pytorch_stream(module, features, presence)
        state, parts, start = net.initial_state(), [], 0
        while start < T:
            k = min(rng.randint(1, 9), T - start)
            out, state = net.step(features[:, start : start + k], presence[:, start : start + k], state,
                                  final=start + k == T)
            parts.append(out[0])
            start += k
        got = torch.cat(parts)
        if got.shape != ref.shape:
            raise ExportError(f"{source}: the streaming model gives {got.shape[0]} output frames for {T} frames, "
                              f"PyTorch {ref.shape[0]}; nothing was written")
        diffs[str(int(T))] = float((got - ref).abs().max())
        if diffs[str(int(T))] > atol:
            raise ExportError(f"{source}: the streaming model differs from PyTorch by {diffs[str(int(T))]:.3g} "
                              f"(> verify.atol={atol:g}) on {T} frames; nothing was written")
    return diffs


def stream_out(ckpt_path: str | Path) -> Path:
    """``best.ckpt`` -> ``best.stream.onnx`` beside it (not over the whole-sentence ``best.onnx``)."""
    ckpt_path = Path(ckpt_path)
    return ckpt_path.with_name(ckpt_path.stem + ".stream.onnx")


def export_streaming(ckpt_path: str | Path, out: str | Path | None = None, chunk_frames: int | None = None,
                     opset: int = 17, verify_frames: Sequence[int] = (17, 64, 150), atol: float = 1e-4,
                     seed: int = 0) -> dict[str, Any]:
    """Export, verify and write ``out`` and ``<out>.json`` (atomically, model first); returns the JSON."""
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.streaming.onnx_net import OnnxStreamingNet, session_runner
    from sign_ctc.streaming.recognizer import NotStreamableError

    ckpt_path = Path(ckpt_path)
    module = load_module(ckpt_path).eval()
    reason = streaming_refusal(module)
    if reason:
        raise NotStreamableError(f"{ckpt_path}: this model cannot stream: {reason}")
    net = module.net
    rules = chunk_rules(net, chunk_frames)
    spec = state_spec(rules, net.lstm.hidden_size)
    graph = StreamGraph(module.normalizer, net, rules).eval()
    out = Path(out) if out else stream_out(ckpt_path)
    payload = export_stream_bytes(graph, spec, opset)
    meta: dict[str, Any] = {
        "export_version": EXPORT_VERSION,
        "format": "onnx",
        "checkpoint": str(ckpt_path.resolve()),
        "net": type(net).__name__,
        "parameters": module.num_parameters(),
        "layout_version": LAYOUT_VERSION,
        "feature_dim": FEATURE_DIM,
        "normalization": module.normalizer.describe(),
        "missing": module.recipe.get("features", {}).get("missing", "zero"),
        "total_stride": rules.total_stride,
        "vocab": list(module.vocab.tokens),
        "blank_id": int(module.vocab.blank_id),
        "streaming": {
            "chunk_frames": rules.chunk_frames,
            "output_frames_per_chunk": rules.out_per_chunk,
            "input_dim": int(net.input_dim),
            "strides": list(rules.strides),
            "inputs": {
                "features": f"float32 [1, {rules.chunk_frames}, {net.input_dim}]: the chunk's sign_ctc.features.layout "
                            f"features (the leading {net.input_dim} channels), not normalized; 0 where valid = 0",
                "presence": f"float32 [1, {rules.chunk_frames}, {len(PARTS)}]: 1 where the part ({', '.join(PARTS)}) "
                            "is present; 0 where valid = 0",
                "valid": f"float32 [1, {rules.chunk_frames}]: 1 for the stream's frames, 0 for frames after its end",
            },
            "state": spec,
            "state_outputs": f"{NEXT}<name> for every state tensor: feed it back as <name> with the next chunk",
            "outputs": {
                "log_probs": f"float32 [1, {rules.out_per_chunk}, classes]: log-softmax, class 0 = CTC blank",
                "out_valid": f"float32 [1, {rules.out_per_chunk}]: 1 where the row is one of the stream's output "
                             "frames (in order); rows with 0 are dropped",
            },
            "lead_frames": rules.lead,
            "start_of_stream": ("start from the initial state, and put lead_frames copies of the stream's first "
                                "frame (its features and presence), with valid = 0, before it"),
            "output_delay_rows": rules.delay,
            "lookahead_frames": rules.lookahead_frames,
            "end_of_stream": ("pad the last partial chunk with valid = 0 frames, then run chunks of valid = 0 frames "
                              "until output_frames(n) rows with out_valid = 1 have come out in all (n: the stream's "
                              "frames; output_frames: n -> ceil(n / s) for each of `strides`); never more than "
                              "max_flush_chunks after the chunk with the last real frame."),
            "max_flush_chunks": rules.max_flush_chunks,
        },
    }
    payload = with_embedded_meta(payload, "onnx", meta)
    runner = OnnxStreamingNet(session_runner(payload), meta, str(out))
    meta["verified_max_abs_diff"] = verify_stream(module, runner, verify_frames, atol, seed, str(out))
    meta["model_sha256"] = sha256_bytes(payload)
    meta["model_file"] = out.name
    write_bytes_atomic(out, payload)
    write_text_atomic(meta_path(out), json.dumps(meta, indent=1) + "\n")
    log.info("exported %s (streaming ONNX, chunks of %d frames, %.1f MB) and %s; max abs diff to the PyTorch "
             "stream per length: %s", out, rules.chunk_frames, len(payload) / 1e6, meta_path(out),
             meta["verified_max_abs_diff"])
    return meta
