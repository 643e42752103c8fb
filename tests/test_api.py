"""The Python API (sign_ctc.api.Recognizer): the glosses sign-ctc-predict gives, each timed by the CTC alignment.

For a greedy hypothesis the forced alignment is the best path itself, so every gloss's time must be its
run of argmax frames, mapped through the net's stride to input frames and seconds: an independent check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import DATA, SMALL_CORPUS, compose_cfg

POSE = DATA / "signer_holistic_97f.pose"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, cache_dir, small_corpus) -> Path:
    """An untrained I3D checkpoint that emits glosses (blank bias -1), saved as train.py saves it."""
    from tests.test_export import write_tiny_checkpoint

    run = tmp_path_factory.mktemp("api")
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model.net.blank_bias=-1"], run, cache_dir)
    return write_tiny_checkpoint(cfg, run / "checkpoints" / "best.ckpt")


def _argmax_runs(log_probs: torch.Tensor, stride: int, frames: int, fps: float) -> list[tuple[int, float, float]]:
    """(token, start s, end s) of each run of one non-blank token on the argmax path."""
    best = log_probs.argmax(-1).tolist()
    runs, t = [], 0
    while t < len(best):
        end = t
        while end + 1 < len(best) and best[end + 1] == best[t]:
            end += 1
        if best[t] != 0:
            last = frames if end + 1 == len(best) else min((end + 1) * stride, frames)
            runs.append((best[t], t * stride / fps, last / fps))
        t = end + 1
    return runs


def test_checkpoint_prediction_is_timed_by_its_best_path(tiny_ckpt: Path) -> None:
    from sign_ctc import Recognizer
    from sign_ctc.features.pose_io import read_pose
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.models.inference import forward_landmarks

    result = Recognizer.from_checkpoint(tiny_ckpt, pause_seconds=None).predict(pose=POSE)  # one sentence, as the forward below
    lm = read_pose(POSE)
    module = load_module(tiny_ckpt)
    log_probs, lengths = forward_landmarks(module, lm)
    runs = _argmax_runs(log_probs[0, : int(lengths[0])], module.net.total_stride, len(lm), lm.fps)

    assert result.id == POSE.stem and result.frames == len(lm) == 97 and result.fps == lm.fps
    assert len(result.glosses) >= 2, "blank bias -1: the untrained model emits glosses, so times are compared"
    assert result.glosses == [module.vocab.tokens[tok] for tok, _, _ in runs]
    assert [t for s in result.spans for t in (s.start, s.end)] == pytest.approx([t for _, a, b in runs for t in (a, b)])
    assert result.spans[-1].end <= len(lm) / lm.fps
    record = result.to_dict()
    assert record["glosses"] == " ".join(result.glosses) and len(record["spans"]) == len(result.spans)


def test_exported_model_predicts_what_its_checkpoint_does(tiny_ckpt: Path, tmp_path: Path) -> None:
    from sign_ctc import Recognizer
    from sign_ctc.models.export import export_checkpoint

    out = tmp_path / "model.onnx"
    export_checkpoint(tiny_ckpt, "onnx", out)
    by_ckpt = Recognizer.from_checkpoint(tiny_ckpt).predict(pose=POSE)
    by_export = Recognizer.from_exported(out).predict(pose=POSE)
    assert by_export.glosses == by_ckpt.glosses and by_export.spans == by_ckpt.spans


def test_beam_decoding_config_gives_the_greedy_glosses_without_an_lm(tiny_ckpt: Path) -> None:
    """decoding= takes a decoding group's config; plain beam search (no LM) finds the best path's glosses here."""
    from omegaconf import OmegaConf

    from sign_ctc import Recognizer
    from tests.helpers import CONF

    beam = OmegaConf.load(CONF / "decoding" / "beam.yaml")
    greedy = Recognizer.from_checkpoint(tiny_ckpt).predict(pose=POSE)
    by_beam = Recognizer.from_checkpoint(tiny_ckpt, decoding=beam).predict(pose=POSE)
    assert by_beam.glosses == greedy.glosses and by_beam.spans == greedy.spans


def test_bad_input_is_one_clear_error(tiny_ckpt: Path, tmp_path: Path) -> None:
    from sign_ctc import Recognizer

    recognizer = Recognizer.from_checkpoint(tiny_ckpt)
    for kwargs in ({}, {"video": "a.mp4", "pose": POSE}):
        with pytest.raises(ValueError, match="give video=.* or pose="):
            recognizer.predict(**kwargs)
    with pytest.raises(Exception, match="missing.pose"):
        recognizer.predict(pose=tmp_path / "missing.pose")


def test_importing_sign_ctc_loads_no_torch() -> None:
    """`from sign_ctc import Recognizer` is resolved on first use; `import sign_ctc` alone stays light."""
    code = ("import sys, sign_ctc; assert 'torch' not in sys.modules; "
            "from sign_ctc import Recognizer; assert 'torch' in sys.modules; print(Recognizer.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "sign_ctc.api"


def test_argmax_runs_helper_reads_runs() -> None:
    """The test's own reference: blank 0, runs of 5 and 3 at stride 2 over 9 input frames, 10 fps."""
    lp = torch.log(torch.from_numpy(np.eye(6)[[0, 5, 5, 0, 3]]).float() * 0.9 + 0.02)
    assert _argmax_runs(lp, 2, 9, 10.0) == [(5, 0.2, 0.6), (3, 0.8, 0.9)]
