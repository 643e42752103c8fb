"""Export a trained checkpoint (any net) to ONNX or TorchScript, verified against PyTorch.

    sign-ctc-export ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt format=onnx [out=model.onnx]

The exported graph is the checkpoint's CTCModule forward: normalization (the checkpoint's mode and
statistics, inside the graph) -> net -> log-softmax. It takes the 6516-dim *features* of
``sign_ctc.features.layout`` (not raw landmarks: the missing-landmark filling and the layout stay in
Python, where training computed them) and returns log-probabilities:

- inputs ``features`` float32 [B, T, 6516] and ``presence`` float32 [B, T, 4] (1 = the part holds
  values after ``missing`` filling, 0 = absent), every row a full sequence of T frames;
- outputs ``log_probs`` float32 [B, T', C] and ``out_lengths`` int64 [B] (= ``net.output_lengths(T)``).

B and T are dynamic. Sequences of different lengths are run one at a time (or as equal-length
batches): the graph has no padding input, because packed sequences do not survive export, and a
full-length batch is exactly what the net computes for each sequence alone.

Beside the model, ``<out>.json`` records what inference needs: vocabulary (blank id), feature layout
version, normalization mode, ``missing`` mode, total stride, the model file's SHA-256 (a stale pair is
refused) and the max abs differences to PyTorch measured at export. Before anything is written the
export is run (onnxruntime / ``torch.jit.load``) on random sequences of several lengths and batch
sizes and must match the checkpoint's PyTorch output within ``verify.atol``; otherwise nothing is
written. :class:`ExportedModel` loads the pair for ``sign-ctc-predict model_path=...``.

For live recognition, ``sign-ctc-export ... streaming=true`` writes a different graph (fixed chunks in,
state carried between calls): :mod:`sign_ctc.streaming.onnx_export`, run by ``sign-ctc-live model_path=...``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sign_ctc.atomic import write_bytes_atomic, write_text_atomic
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import FEATURE_DIM, LAYOUT_VERSION, PARTS

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
INPUT_NAMES = ("features", "presence")
OUTPUT_NAMES = ("log_probs", "out_lengths")
EXPORT_VERSION = 1
META_KEY = "sign_ctc"  # ONNX metadata_props key / TorchScript extra file stem holding the same JSON


class ExportError(SignCtcError, ValueError):
    """An export that cannot be made or used; the message names the file and says why."""


class InferenceGraph(nn.Module):
    """What is exported: the CTCModule forward for full-length sequences, presence as 0/1 floats.

    Holds only the normalizer and the net (not the LightningModule), so tracing sees plain modules.
    """

    def __init__(self, normalizer: nn.Module, net: nn.Module):
        super().__init__()
        self.normalizer = normalizer
        self.net = net

    def forward(self, features: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Shape arithmetic (not int()) keeps B and T dynamic in the trace.
        lengths = torch.full((features.shape[0],), features.shape[1], dtype=torch.long, device=features.device)
        present = presence > 0.5
        # = CTCModule.forward (the normalizer sees only the leading blocks the net reads)
        x = self.normalizer(features[..., : self.net.input_dim], present, lengths)
        logits, out_lengths = self.net(x, present, lengths)
        return logits.float().log_softmax(-1), out_lengths


def default_out(ckpt_path: str | Path, fmt: str) -> Path:
    """``best.ckpt`` -> ``best.onnx`` / ``best.torchscript.pt`` beside it."""
    ckpt_path = Path(ckpt_path)
    return ckpt_path.with_name(ckpt_path.stem + SUFFIXES[fmt])


def meta_path(model_path: str | Path) -> Path:
    """The JSON beside an exported model: ``<model file>.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def example_inputs(batch: int, frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features (unit-scale, as landmark coordinates are) and presence with absent parts."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, frames, FEATURE_DIM, generator=g) * 0.3
    presence = (torch.rand(batch, frames, len(PARTS), generator=g) > 0.25).float()
    return features, presence


def export_bytes(graph: InferenceGraph, fmt: str, example: tuple[torch.Tensor, torch.Tensor], opset: int) -> bytes:
    """Serialize ``graph`` (traced on ``example``) with a dynamic batch and time axis.

    ONNX uses torch.onnx's TorchScript-based exporter (``dynamo=False``): the dynamo exporter cannot
    trace the nets' packed LSTMs nor the normalizer's data-dependent checks, while tracing records the
    shape arithmetic and leaves both axes dynamic.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # Tracer and deprecation warnings are noise here: the export is verified numerically instead.
        for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        if fmt == "onnx":
            torch.onnx.export(graph, example, buffer, dynamo=False, opset_version=opset,
                              input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              dynamic_axes={"features": {0: "batch", 1: "frames"},
                                            "presence": {0: "batch", 1: "frames"},
                                            "log_probs": {0: "batch", 1: "out_frames"},
                                            "out_lengths": {0: "batch"}})
        else:
            traced = torch.jit.trace(graph, example, check_trace=False)
            torch.jit.save(traced, buffer)
    return buffer.getvalue()


def with_embedded_meta(payload: bytes, fmt: str, meta: dict[str, Any]) -> bytes:
    """The same model with the metadata inside too (ONNX metadata_props / TorchScript extra file),
    so a lone model file still says what it is."""
    text = json.dumps(meta, sort_keys=True)
    if fmt == "onnx":
        import onnx

        proto = onnx.load_model_from_string(payload)
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, text
        onnx.checker.check_model(proto)
        return proto.SerializeToString()
    module = torch.jit.load(io.BytesIO(payload), map_location="cpu")
    buffer = io.BytesIO()
    torch.jit.save(module, buffer, _extra_files={f"{META_KEY}.json": text})
    return buffer.getvalue()


class _Runner:
    """Runs serialized model bytes: onnxruntime for ONNX, ``torch.jit.load`` for TorchScript."""

    def __init__(self, payload: bytes, fmt: str, source: str):
        self.fmt = fmt
        if fmt == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])
        elif fmt == "torchscript":
            self.module = torch.jit.load(io.BytesIO(payload), map_location="cpu")
            self.module.eval()
        else:
            raise ExportError(f"{source}: unknown format {fmt!r}, expected one of {FORMATS}")

    @torch.no_grad()
    def __call__(self, features: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, presence = features.float().contiguous(), presence.float().contiguous()
        if self.fmt == "onnx":
            log_probs, out_lengths = self.session.run(list(OUTPUT_NAMES), {"features": features.numpy(),
                                                                          "presence": presence.numpy()})
            return torch.from_numpy(log_probs), torch.from_numpy(out_lengths).long()
        log_probs, out_lengths = self.module(features, presence)
        return log_probs, out_lengths.long()


@torch.no_grad()
def verify(graph: InferenceGraph, runner: _Runner, frames: Sequence[int], batch_sizes: Sequence[int], atol: float,
           seed: int, source: str) -> dict[str, float]:
    """Max abs difference of the exported model to PyTorch per length (over the batch sizes);
    raises :class:`ExportError` above ``atol`` or on any output-length mismatch."""
    diffs: dict[str, float] = {}
    for T in frames:
        worst = 0.0
        for B in batch_sizes:
            features, presence = example_inputs(int(B), int(T), seed + int(T) * 31 + int(B))
            ref, ref_lengths = graph(features, presence)
            try:
                got, got_lengths = runner(features, presence)
            except Exception as err:  # an export that only runs at its trace length fails here
                raise ExportError(f"{source}: the exported model fails on {B} x {T} frames: {err}") from err
            expected_lengths = torch.as_tensor(graph.net.output_lengths(torch.full((int(B),), int(T))))
            if got.shape != ref.shape or not torch.equal(got_lengths.cpu(), ref_lengths.cpu().long()) \
                    or not torch.equal(ref_lengths.cpu().long(), expected_lengths.long()):
                raise ExportError(f"{source}: the exported model gives shape {tuple(got.shape)} / lengths "
                                  f"{got_lengths.tolist()} on {B} x {T} frames, PyTorch {tuple(ref.shape)} / "
                                  f"{ref_lengths.tolist()} (net.output_lengths: {expected_lengths.tolist()})")
            worst = max(worst, float((got - ref).abs().max()))
        diffs[str(int(T))] = worst
        if worst > atol:
            raise ExportError(f"{source}: the exported model differs from PyTorch by {worst:.3g} (> verify.atol="
                              f"{atol:g}) on {T} frames; nothing was written")
    return diffs


def export_checkpoint(ckpt_path: str | Path, fmt: str = "onnx", out: str | Path | None = None, opset: int = 17,
                      verify_frames: Sequence[int] = (17, 64, 150), verify_batch_sizes: Sequence[int] = (1, 2),
                      atol: float = 1e-4, seed: int = 0, trace_frames: int = 50) -> dict[str, Any]:
    """Export, verify and write ``out`` and ``<out>.json`` (atomically, model first); returns the JSON."""
    from sign_ctc.models.checkpoint import load_module

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use format=onnx or format=torchscript")
    ckpt_path = Path(ckpt_path)
    module = load_module(ckpt_path)  # CheckpointError names a missing, foreign or other-layout file
    if module.normalizer.signer_level:
        raise ExportError(f"{ckpt_path} was trained with normalization.signer_level=true: each sentence is normalized "
                          "with its own signer's statistics, which an exported graph cannot carry (its constants "
                          "would be the train split's, which the model never saw); deploy a model trained with "
                          "normalization.signer_level=false")
    graph = InferenceGraph(module.normalizer, module.net).eval()
    out = Path(out) if out else default_out(ckpt_path, fmt)
    payload = export_bytes(graph, fmt, example_inputs(1, trace_frames, seed), opset)
    diffs = verify(graph, _Runner(payload, fmt, str(out)), verify_frames, verify_batch_sizes, atol, seed, str(out))
    recipe = module.recipe
    meta: dict[str, Any] = {
        "export_version": EXPORT_VERSION,
        "format": fmt,
        "checkpoint": str(ckpt_path.resolve()),
        "net": type(module.net).__name__,
        "parameters": module.num_parameters(),
        "layout_version": LAYOUT_VERSION,  # load_module refused any other
        "feature_dim": FEATURE_DIM,
        "normalization": module.normalizer.describe(),  # its statistics are constants inside the graph
        "missing": recipe.get("features", {}).get("missing", "zero"),
        "total_stride": int(module.net.total_stride),
        "vocab": list(module.vocab.tokens),
        "blank_id": int(module.vocab.blank_id),
        "inputs": {"features": f"float32 [batch, frames, {FEATURE_DIM}]: sign_ctc.features.layout features of "
                               "the landmarks after `missing` filling, not normalized (the graph normalizes)",
                   "presence": f"float32 [batch, frames, {len(PARTS)}]: 1 where the part ({', '.join(PARTS)}) "
                               "holds values after `missing` filling, else 0"},
        "outputs": {"log_probs": "float32 [batch, out_frames, classes]: log-softmax, class 0 = CTC blank",
                    "out_lengths": "int64 [batch]: out_frames of each row"},
        "batch_rows": "full sequences of equal length (no padding input)",
        "verified_max_abs_diff": diffs,
        "verify_batch_sizes": [int(b) for b in verify_batch_sizes],
    }
    payload = with_embedded_meta(payload, fmt, meta)
    meta["model_sha256"] = sha256_bytes(payload)
    meta["model_file"] = out.name
    write_bytes_atomic(out, payload)
    write_text_atomic(meta_path(out), json.dumps(meta, indent=1) + "\n")
    log.info("exported %s (%s, %.1f MB) and %s; max abs diff to PyTorch per length: %s", out, fmt,
             len(payload) / 1e6, meta_path(out), diffs)
    return meta


def read_exported(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """An exported model file and the JSON beside it, checked against each other and this sign_ctc's layout:
    (the JSON, the model's bytes). Offline (:class:`ExportedModel`) and streaming
    (:mod:`sign_ctc.streaming.onnx_net`) exports share these checks."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"exported model not found: {path}")
    json_path = meta_path(path)
    if not json_path.is_file():
        raise ExportError(f"{json_path} not found: an exported model needs the JSON `sign-ctc-export` "
                          f"writes beside it (vocabulary, layout, missing-landmark mode)")
    try:
        meta: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ExportError(f"{json_path} is not valid JSON: {err}") from err
    payload = path.read_bytes()
    if meta.get("model_sha256") != sha256_bytes(payload):
        raise ExportError(f"{json_path} does not describe {path} (SHA-256 differs): re-export the model")
    if meta.get("layout_version") != LAYOUT_VERSION:
        raise ExportError(f"{path} expects feature layout {meta.get('layout_version')!r} but this "
                          f"sign_ctc computes {LAYOUT_VERSION!r}")
    return meta, payload


class ExportedModel:
    """An exported model and its JSON, checked against each other and against this sign_ctc."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta, payload = read_exported(self.path)
        if self.meta.get("streaming"):
            raise ExportError(f"{self.path} is a streaming export (chunks of "
                              f"{self.meta['streaming'].get('chunk_frames')} frames plus state): run it with "
                              "sign-ctc-live model_path=..., or export with streaming=false for whole sentences")
        self.vocab = Vocabulary(self.meta["vocab"])
        self.missing: str = self.meta.get("missing", "zero")
        self.total_stride = int(self.meta.get("total_stride", 1))
        self._run = _Runner(payload, self.meta.get("format", ""), str(self.path))

    def __call__(self, features: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, T, 6516], presence [B, T, 4] (bool or 0/1) -> log_probs [B, T', C], out_lengths [B]."""
        return self._run(features, presence.float())
