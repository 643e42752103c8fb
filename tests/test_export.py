"""Export (sign_ctc.models.export): ONNX through onnxruntime and TorchScript through torch.jit.load give the
checkpoint's PyTorch log-probs (max abs diff <= 1e-4) at several lengths, the JSON beside the model
carries what inference needs, bad input is refused by name, and ``sign_ctc.cli.predict model_path=...``
on the real video gives the checkpoint's prediction."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers import CONF, DATA, SMALL_CORPUS, compose_cfg

VIDEO = DATA / "signer_58f.mp4"
LENGTHS = (17, 64, 150)
ATOL = 1e-4
MODELS = ["i3d", *(m for m in ("student", "reference") if (CONF / "model" / f"{m}.yaml").is_file())]


def write_tiny_checkpoint(cfg: DictConfig, path: Path) -> Path:
    """An untrained model's checkpoint, saved as train.py saves it (vocabulary, fitted global
    statistics, recipe), with random BatchNorm running statistics so that eval-mode BatchNorm is
    not the identity and the comparison covers it. No training: a step takes >10 s on 2 cores."""
    from sign_ctc.run.build import build_datamodule, build_model

    torch.manual_seed(1234)
    model = build_model(cfg, build_datamodule(cfg))
    g = torch.Generator().manual_seed(7)
    for m in model.net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module", params=MODELS)
def tiny_ckpt(request, tmp_path_factory, cache_dir, small_corpus) -> Path:
    """A small checkpoint of each model (blank bias -1: it emits glosses, so predictions compare)."""
    run = tmp_path_factory.mktemp(f"export_{request.param}")
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, f"model={request.param}", "model.net.blank_bias=-1"],
                      run, cache_dir)
    return write_tiny_checkpoint(cfg, run / "checkpoints" / "best.ckpt")


def real_inputs(small_corpus, missing: str, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``frames`` frames of synthetic test-split signing (sentences joined), derived as predict derives them."""
    from sign_ctc.features.pose_io import read_pose
    from sign_ctc.models.inference import model_inputs

    feats, presence = [], []
    for sentence in small_corpus.sentences("test"):
        f, p, _ = model_inputs(read_pose(small_corpus.landmark_path("test", sentence)), missing)
        feats.append(f)
        presence.append(p)
        if sum(x.shape[1] for x in feats) >= frames:
            break
    features, present = torch.cat(feats, 1)[:, :frames], torch.cat(presence, 1)[:, :frames]
    assert features.shape[1] == frames and not bool(present.all()), "want some undetected parts"
    return features, present, torch.tensor([frames])


def run_exported(path: Path, fmt: str, features: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exported file run by its own runtime (not through sign_ctc): what a deployment does."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        log_probs, lengths = session.run(["log_probs", "out_lengths"], {"features": features.numpy(),
                                                                       "presence": presence.float().numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(lengths)
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(features, presence.float())


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_matches_pytorch(tiny_ckpt: Path, small_corpus, tmp_path: Path, fmt: str) -> None:
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.models.export import export_checkpoint

    out = tmp_path / f"model.{fmt}"
    meta = export_checkpoint(tiny_ckpt, fmt, out)
    module = load_module(tiny_ckpt)
    missing = module.recipe["features"]["missing"]
    diffs = {}
    for T in LENGTHS:
        features, presence, lengths = real_inputs(small_corpus, missing, T)
        with torch.no_grad():
            ref, ref_lengths = module(features, presence, lengths)
        got, got_lengths = run_exported(out, fmt, features, presence)
        assert got.shape == ref.shape and got_lengths.tolist() == ref_lengths.tolist()
        assert ref_lengths.tolist() == module.net.output_lengths(lengths).tolist()
        diffs[T] = float((got - ref).abs().max())
        assert diffs[T] <= ATOL, (T, diffs[T])
        # a batch of two sequences of this length: rows are the two sequences alone
        other, other_presence, _ = real_inputs(small_corpus, missing, T + 5)
        batch, batch_presence = torch.cat([features, other[:, 5:]]), torch.cat([presence, other_presence[:, 5:]])
        got2, got2_lengths = run_exported(out, fmt, batch, batch_presence)
        assert got2.shape[0] == 2 and got2_lengths.tolist() == ref_lengths.tolist() * 2
        assert float((got2[:1] - ref).abs().max()) <= ATOL
    print(f"{meta['net']} {fmt} max abs diff to PyTorch per length: {diffs}")
    # the JSON beside it: everything inference needs, and the model it describes
    side = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    assert side["vocab"] == list(module.vocab.tokens) and side["blank_id"] == 0
    assert side["layout_version"] == "mp-holistic-6516-v1" and side["missing"] == missing
    assert side["normalization"] == module.normalizer.describe() and side["normalization"]["mode"] == "global"
    assert side["total_stride"] == module.net.total_stride and side["format"] == fmt
    assert side["model_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert set(side["verified_max_abs_diff"]) == {"17", "64", "150"}
    assert max(side["verified_max_abs_diff"].values()) <= ATOL


def test_export_command_config_writes_beside_the_checkpoint(tiny_ckpt: Path, tmp_path: Path, cache_dir: Path) -> None:
    from sign_ctc.cli.export import run
    from sign_ctc.models.export import ExportedModel

    cfg = compose_cfg("export", [f"ckpt_path={tiny_ckpt}", "format=torchscript"], tmp_path, cache_dir)
    run(cfg)
    out = tiny_ckpt.with_name("best.torchscript.pt")
    assert out.is_file() and out.with_name("best.torchscript.pt.json").is_file()
    model = ExportedModel(out)
    features, presence = torch.zeros(1, 30, 6516), torch.ones(1, 30, 4, dtype=torch.bool)
    log_probs, lengths = model(features, presence)
    assert log_probs.shape[:2] == (1, int(lengths[0])) and torch.allclose(log_probs.exp().sum(-1), torch.ones(1))
    # the metadata also travels inside the model file
    extra = {"sign_ctc.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["sign_ctc.json"])["vocab"] == model.meta["vocab"]


def test_bad_export_requests_are_refused_by_name(tiny_ckpt: Path, tmp_path: Path) -> None:
    from sign_ctc.models.checkpoint import CheckpointError
    from sign_ctc.models.export import ExportedModel, ExportError, export_checkpoint

    with pytest.raises(CheckpointError, match=f"checkpoint not found: {tmp_path / 'nope.ckpt'}"):
        export_checkpoint(tmp_path / "nope.ckpt", "onnx")
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_checkpoint(tiny_ckpt, "tflite")
    not_ours = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, not_ours)
    with pytest.raises(CheckpointError, match="not written by sign_ctc"):
        export_checkpoint(not_ours, "onnx")
    with pytest.raises(ExportError, match="exported model not found"):
        ExportedModel(tmp_path / "missing.onnx")
    out = tmp_path / "m.onnx"
    export_checkpoint(tiny_ckpt, "onnx", out, verify_frames=[20], verify_batch_sizes=[1])
    (tmp_path / "m.onnx.json").rename(tmp_path / "kept.json")
    with pytest.raises(ExportError, match="m.onnx.json not found"):
        ExportedModel(out)
    side = json.loads((tmp_path / "kept.json").read_text())
    (tmp_path / "m.onnx.json").write_text(json.dumps({**side, "model_sha256": "0" * 64}))
    with pytest.raises(ExportError, match="does not describe"):
        ExportedModel(out)
    (tmp_path / "m.onnx.json").write_text(json.dumps({**side, "layout_version": "mp-holistic-6516-v0"}))
    with pytest.raises(ExportError, match="layout"):
        ExportedModel(out)


def test_a_signer_level_model_is_not_exported(tmp_path: Path, cache_dir: Path) -> None:
    """Its signers' statistics are not in the checkpoint and a graph cannot take them: refused, by name."""
    from sign_ctc.models.export import ExportError, export_checkpoint

    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model=student", "normalization.signer_level=true"],
                      tmp_path, cache_dir)
    ckpt = write_tiny_checkpoint(cfg, tmp_path / "checkpoints" / "best.ckpt")
    with pytest.raises(ExportError, match=r"best\.ckpt was trained with normalization\.signer_level=true"):
        export_checkpoint(ckpt, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_predict_runs_the_exported_model_on_the_real_video(tiny_ckpt: Path, tmp_path: Path, cache_dir: Path) -> None:
    """The exported ONNX model through `sign_ctc.cli.predict model_path=...` on the real video gives the
    checkpoint's glosses; the log-probs of both agree within 1e-4 on the video's landmarks."""
    from sign_ctc.cli.predict import landmarks_of
    from sign_ctc.cli.predict import run as predict_run
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.models.export import ExportedModel, export_checkpoint
    from sign_ctc.models.inference import forward_landmarks, model_inputs

    out = tmp_path / "model.onnx"
    export_checkpoint(tiny_ckpt, "onnx", out)
    by_ckpt = predict_run(compose_cfg("predict", [f"ckpt_path={tiny_ckpt}", f"video={VIDEO}"], tmp_path / "ckpt",
                                      cache_dir))
    exported_cfg = compose_cfg("predict", [f"model_path={out}", f"video={VIDEO}"], tmp_path / "onnx", cache_dir)
    by_export = predict_run(exported_cfg)
    assert by_export == by_ckpt and by_export[0]["id"] == "signer_58f" and by_export[0]["frames"] == 58
    assert by_export[0]["glosses"], "the tiny model emits glosses (blank bias -1): a real comparison"
    assert json.loads((tmp_path / "onnx" / "predictions.json").read_text()) == by_export

    ((_, lm),) = landmarks_of(exported_cfg)
    module, exported = load_module(tiny_ckpt), ExportedModel(out)
    ref, ref_lengths = forward_landmarks(module, lm)
    features, presence, _ = model_inputs(lm, exported.missing)
    got, got_lengths = exported(features, presence)
    assert got_lengths.tolist() == ref_lengths.tolist() and float((got - ref).abs().max()) <= ATOL


def test_predict_needs_exactly_one_model(tmp_path: Path, cache_dir: Path) -> None:
    from sign_ctc.cli.predict import run as predict_run

    for overrides in ([], ["ckpt_path=a.ckpt", "model_path=a.onnx"]):
        with pytest.raises(ValueError, match="give ckpt_path=<checkpoint.ckpt> or model_path="):
            predict_run(compose_cfg("predict", [*overrides, f"pose={DATA / 'x.pose'}"], tmp_path, cache_dir))
