"""Streaming export (sign_ctc.streaming.onnx_export, sign_ctc.streaming.onnx_net): the ONNX stream run by
onnxruntime gives the PyTorch streaming recognizer's log-probs (max abs diff <= 1e-4) over 300-frame real and
generated sentences pushed in chunks of 1, 4 and random sizes, and the same glosses; the runner obeys the
JSON's chunk rules; models that cannot stream are refused by name; ``sign-ctc-live model_path=`` gives
``ckpt_path=``'s glosses on the real video."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.pose_io import read_pose
from sign_ctc.streaming.recognizer import StreamingRecognizer
from tests.helpers import DATA, SMALL_CORPUS, compose_cfg
from tests.test_streaming import _generated, chunks, streamed_log_probs

ATOL = 1e-4
FRAMES = 300


def tiny_student(tmp_path_factory, cache_dir: Path, *overrides: str) -> Path:
    """An untrained student checkpoint (blank bias -1: it emits glosses), as test_front_door's live test."""
    from tests.test_export import write_tiny_checkpoint

    run = tmp_path_factory.mktemp("stream_export")
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model=student", "model.net.blank_bias=-1", *overrides],
                      run, cache_dir)
    return write_tiny_checkpoint(cfg, run / "checkpoints" / "best.ckpt")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, cache_dir) -> Path:
    return tiny_student(tmp_path_factory, cache_dir)


@pytest.fixture(scope="module")
def exported(ckpt: Path, cache_dir: Path) -> Path:
    """The README's command: sign-ctc-export ckpt_path=... streaming=true (the CLI's run, in process)."""
    from sign_ctc.cli.export import out_path, run

    cfg = compose_cfg("export", [f"ckpt_path={ckpt}", "streaming=true"], ckpt.parent / "export", cache_dir)
    meta = run(cfg)
    out = out_path(cfg)
    assert out == ckpt.with_name("best.stream.onnx") and out.is_file()
    assert max(meta["verified_max_abs_diff"].values()) <= ATOL
    return out


def real_sentence() -> Landmarks:
    """300 frames of a real signer (MediaPipe Holistic): the 97-frame file forward, backward, forward, ..."""
    lm = read_pose(DATA / "signer_holistic_97f.pose")
    order = np.concatenate([np.arange(len(lm)), np.arange(len(lm))[::-1]] * 2)[:FRAMES]
    return Landmarks(points=lm.points[order], presence=lm.presence[order], fps=lm.fps)


SENTENCES = {"real": real_sentence, "generated": lambda: _generated(FRAMES, np.random.default_rng(3))}


@pytest.fixture(scope="module")
def pytorch_log_probs(ckpt) -> dict[str, torch.Tensor]:
    """The PyTorch streaming recognizer's log-probs of each sentence, pushed in chunks of 4 (they are the
    same for any chunking: tests/test_streaming.py), computed once."""
    from sign_ctc.models.checkpoint import load_module

    module = load_module(ckpt)
    out = {}
    for which, make in SENTENCES.items():
        lm = make()
        rec = StreamingRecognizer(module, fps=lm.fps, pause_frames=None, tentative=False)
        out[which] = streamed_log_probs(rec, lm, chunks(len(lm), 4, random.Random(0)))
    return out


@pytest.mark.parametrize("size", [1, 4, "random"])
@pytest.mark.parametrize("which", list(SENTENCES))
def test_onnx_stream_equals_the_pytorch_recognizer(exported, pytorch_log_probs, which, size):
    lm = SENTENCES[which]()
    sizes = chunks(len(lm), size, random.Random(11))
    onnx_rec = StreamingRecognizer.from_exported(exported, fps=lm.fps, pause_frames=None, tentative=False)
    ref, got = pytorch_log_probs[which], streamed_log_probs(onnx_rec, lm, sizes)
    assert ref.shape == got.shape == (75, len(onnx_rec.vocab))
    diff = float((got - ref).abs().max())
    assert diff <= ATOL, diff
    print(f"{which} in chunks of {size}: max abs diff {diff:.2e}")


def test_onnx_stream_gives_the_same_glosses_with_pauses(ckpt, exported):
    """Segments (pauses), the idle rule, the tentative tail and the timed glosses come from the shared
    recognizer: with the ONNX net they are the checkpoint's, call by call (the same look-ahead: each output
    frame comes out on the same call)."""
    from sign_ctc.models.checkpoint import load_module

    lm = real_sentence()
    recs = [StreamingRecognizer(load_module(ckpt), fps=lm.fps, pause_frames=10),
            StreamingRecognizer.from_exported(exported, fps=lm.fps, pause_frames=10)]
    calls: list[list[tuple]] = [[], []]
    log_probs: list[list[torch.Tensor]] = [[], []]
    for start in range(0, len(lm) + 1, 3):
        for rec, seen, rows in zip(recs, calls, log_probs):
            update = rec.push(lm.points[start : start + 3], lm.presence[start : start + 3]) if start < len(lm) \
                else rec.end()
            seen.append(([g.as_dict() for g in update.committed], [g.gloss for g in update.tentative],
                         update.log_probs.shape[0]))
            rows.append(update.log_probs)
    assert calls[0] == calls[1]
    assert sum(len(c) for c, _, _ in calls[0]) > 0, "the tiny model emits glosses (blank bias -1): a real comparison"
    assert any(t for _, t, _ in calls[0]), "tentative tails were compared"
    assert recs[0].segments == recs[1].segments >= 2, "the sentence has pauses: segments were reset"
    ref, got = torch.cat(log_probs[0]), torch.cat(log_probs[1])
    assert ref.shape == got.shape and float((got - ref).abs().max()) <= ATOL


def test_the_runner_obeys_the_json(ckpt: Path, exported: Path):
    """The chunk size, state tensors and initial values the JSON states are the graph's and the runner's;
    the graph takes nothing but a whole chunk; a stream's output frames are output_frames(n) for any n."""
    import onnx
    import onnxruntime as ort

    from sign_ctc.streaming.onnx_net import OnnxStreamingNet

    meta = json.loads(exported.with_name(exported.name + ".json").read_text())
    spec = meta["streaming"]
    C, S = spec["chunk_frames"], meta["total_stride"]
    assert C == S == 4 and spec["output_frames_per_chunk"] == 1 and spec["strides"] == [2, 2]
    graph = onnx.load(str(exported)).graph
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert shapes.pop("features") == [1, C, spec["input_dim"]] and shapes.pop("presence") == [1, C, 4]
    assert shapes.pop("valid") == [1, C]
    assert shapes == {e["name"]: e["shape"] for e in spec["state"]}
    outputs = [o.name for o in graph.output]
    assert outputs == ["log_probs", "out_valid", *("next_" + e["name"] for e in spec["state"])]
    from sign_ctc.models.checkpoint import load_module

    net = OnnxStreamingNet.load(exported)
    # The lead puts chunk ends where output windows complete: the PyTorch stream's look-ahead, not more.
    assert net.chunk_frames == C and net.lead_frames == spec["lead_frames"] == 2
    assert net.lookahead_frames == spec["lookahead_frames"] == load_module(ckpt).net.lookahead_frames == 14
    state = net.initial_state()
    assert [t.tolist() for t in state.tensors[:2]] == [spec["state"][0]["values"], spec["state"][1]["values"]]
    # Frames short of a chunk wait in the state; the rows of a stream come out delayed, then one per chunk.
    lead, delay = spec["lead_frames"], spec["output_delay_rows"]
    x, presence = torch.zeros(1, 3, net.input_dim), torch.ones(1, 3, 4, dtype=torch.bool)
    out, state = net.step(x, presence, state)
    assert out.shape[1] == 0 and state.features.shape[0] == (3 + lead) % C and state.seen == 3
    rows = []
    steps = C * (delay + 3)
    for _ in range(steps):
        out, state = net.step(x[:, :1], presence[:, :1], state)
        rows.append(out.shape[1])
    # after n real frames, n + lead frames were fed: chunk (n + lead) / C - 1 completes when that is whole,
    # and the first output_delay_rows rows of a stream are not frames
    assert rows == [int((n + lead) % C == 0 and (n + lead) // C > delay) for n in range(4, 4 + steps)]
    assert sum(rows) >= 2
    for n in (1, 2, 3, 4, 5, 9, 33):
        out, _ = net.step(torch.randn(1, n, net.input_dim) * 0.3, presence[:, :1].expand(1, n, 4),
                          net.initial_state(), final=True)
        assert out.shape[1] == net.output_frames(n) == -(-n // 4)
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    feeds = {e["name"]: t for e, t in zip(spec["state"], net.initial_state().tensors)}
    feeds.update(features=np.zeros((1, C + 1, spec["input_dim"]), np.float32),
                 presence=np.zeros((1, C + 1, 4), np.float32), valid=np.zeros((1, C + 1), np.float32))
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, feeds)


def test_other_chunk_sizes_stream_exactly(ckpt, tmp_path):
    """chunk_frames=8 (two output frames a chunk, more latency): the same log-probs."""
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.streaming.onnx_export import export_streaming

    out = tmp_path / "eight.onnx"
    meta = export_streaming(ckpt, out, chunk_frames=8, verify_frames=[23])
    assert meta["streaming"]["chunk_frames"] == 8 and meta["streaming"]["output_frames_per_chunk"] == 2
    lm = _generated(101, np.random.default_rng(5))
    sizes = chunks(len(lm), "random", random.Random(2))
    ref = streamed_log_probs(StreamingRecognizer(load_module(ckpt), pause_frames=None, tentative=False), lm, sizes)
    got = streamed_log_probs(StreamingRecognizer.from_exported(out, pause_frames=None, tentative=False), lm, sizes)
    assert ref.shape == got.shape and float((got - ref).abs().max()) <= ATOL


@pytest.mark.parametrize("chunk_frames", [4, 8])
def test_a_delayed_student_streams_exactly(ckpt, tmp_path, tmp_path_factory, cache_dir, chunk_frames):
    """model.net.output_delay=2: the graph runs the LSTM over the sentence's 2 trailing zero rows after the
    stream's end and drops its first 2 rows; the same log-probs and output frames as the PyTorch stream for
    any length, the look-ahead 8 frames longer than without the delay."""
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.streaming.onnx_export import export_streaming

    delayed = tiny_student(tmp_path_factory, cache_dir, "model.net.output_delay=2")
    module = load_module(delayed)
    assert module.net.output_delay == 2 and module.net.lookahead_frames == load_module(ckpt).net.lookahead_frames + 8
    out = tmp_path / "delayed.onnx"
    meta = export_streaming(delayed, out, chunk_frames=chunk_frames, verify_frames=[1, 5, 23])
    assert max(meta["verified_max_abs_diff"].values()) <= ATOL
    lookahead = meta["streaming"]["lookahead_frames"]
    assert lookahead == module.net.lookahead_frames if chunk_frames == 4 else lookahead > module.net.lookahead_frames
    for T, seed in ((2, 1), (101, 5)):
        lm = _generated(T, np.random.default_rng(seed))
        sizes = chunks(len(lm), "random", random.Random(2))
        ref = streamed_log_probs(StreamingRecognizer(module, pause_frames=None, tentative=False), lm, sizes)
        got = streamed_log_probs(StreamingRecognizer.from_exported(out, pause_frames=None, tentative=False), lm, sizes)
        assert ref.shape == got.shape == (-(-T // 4), len(module.vocab))
        assert float((got - ref).abs().max()) <= ATOL


def test_what_cannot_stream_is_refused_by_name(ckpt, exported, tmp_path, tmp_path_factory, cache_dir):
    from sign_ctc.cli.export import run
    from sign_ctc.models.export import ExportedModel, ExportError, export_checkpoint
    from sign_ctc.streaming.onnx_export import export_streaming
    from sign_ctc.streaming.onnx_net import OnnxStreamingNet
    from sign_ctc.streaming.recognizer import NotStreamableError

    bidirectional = tiny_student(tmp_path_factory, cache_dir, "model.net.bidirectional=true")
    with pytest.raises(NotStreamableError, match=r"best.ckpt: this model cannot stream: .*bidirectional"):
        export_streaming(bidirectional, tmp_path / "bi.onnx")
    assert not (tmp_path / "bi.onnx").exists()
    with pytest.raises(ExportError, match="chunk_frames must be a positive multiple of the model's total stride 4, got 6"):
        export_streaming(ckpt, tmp_path / "six.onnx", chunk_frames=6)
    with pytest.raises(ExportError, match="streaming=true exports ONNX only"):
        run(compose_cfg("export", [f"ckpt_path={ckpt}", "streaming=true", "format=torchscript"], tmp_path, cache_dir))
    with pytest.raises(ExportError, match="is a streaming export .* sign-ctc-live model_path="):
        ExportedModel(exported)
    offline = tmp_path / "offline.onnx"
    export_checkpoint(ckpt, "onnx", offline, verify_frames=[20], verify_batch_sizes=[1])
    with pytest.raises(ExportError, match="offline.onnx is a whole-sentence export: export the checkpoint with streaming=true"):
        OnnxStreamingNet.load(offline)
    with pytest.raises(ExportError, match="exported model not found"):
        StreamingRecognizer.from_exported(tmp_path / "missing.onnx")


def test_live_needs_exactly_one_model(tmp_path, cache_dir, capsys):
    from sign_ctc.cli.live import EXIT_BAD_INPUT, run

    for overrides in ([], ["ckpt_path=a.ckpt", "model_path=a.onnx"]):
        assert run(compose_cfg("live", [*overrides, "source=x.mp4"], tmp_path, cache_dir)) == EXIT_BAD_INPUT
        assert "give ckpt_path=<checkpoint of a streaming model" in capsys.readouterr().err


@pytest.mark.slow
def test_live_with_the_onnx_model_gives_the_checkpoints_glosses(ckpt, exported, tmp_path, cache_dir):
    """sign-ctc-live on the real video (MediaPipe, every frame): model_path= and ckpt_path= commit the same
    timed glosses."""
    from sign_ctc.cli.live import run

    video = DATA / "signer_58f.mp4"
    results = []
    for name, model in (("ckpt", f"ckpt_path={ckpt}"), ("onnx", f"model_path={exported}")):
        assert run(compose_cfg("live", [model, f"source={video}"], tmp_path / name, cache_dir)) == 0
        results.append(json.loads((tmp_path / name / "live.json").read_text()))
    assert results[0]["frames"] == results[1]["frames"] == 58
    assert results[0]["timed_glosses"] == results[1]["timed_glosses"] and results[0]["glosses"].split()
    assert (tmp_path / "ckpt" / "live.ctm").read_text() == (tmp_path / "onnx" / "live.ctm").read_text()
