"""Checkpoints written before the package move (and before today's defaults) still load, unchanged."""

from __future__ import annotations

from pathlib import Path

import torch

LEGACY = Path(__file__).parent / "data" / "legacy"


def test_a_checkpoint_saved_before_the_move_loads_and_gives_the_same_output() -> None:
    """A tiny student trained by main before the packages existed (its recipe names
    ``sign_ctc.ctc_module.CTCModule`` and ``sign_ctc.normalization.Normalizer``)."""
    from sign_ctc.models.checkpoint import load_module, read_checkpoint
    from sign_ctc.models.ctc_module import CTCModule

    ckpt = LEGACY / "student_tiny_main_2026-11-27.ckpt"
    assert torch.load(ckpt, weights_only=True)["sign_ctc"]["recipe"]["model"]["_target_"] == "sign_ctc.ctc_module.CTCModule"
    recipe = read_checkpoint(ckpt)["sign_ctc"]["recipe"]
    assert recipe["model"]["_target_"] == "sign_ctc.models.ctc_module.CTCModule"
    assert recipe["normalization"]["_target_"] == "sign_ctc.models.normalization.Normalizer"
    module = load_module(ckpt)
    assert isinstance(module, CTCModule)
    expected = torch.load(LEGACY / "student_tiny_main_2026-11-27.expected.pt", weights_only=True)
    torch.manual_seed(0)
    x = torch.randn(2, 40, 6516)
    with torch.no_grad():
        log_probs, lengths = module(x, torch.ones(2, 40, 4), torch.tensor([40, 31]))
    assert lengths.tolist() == expected["lengths"].tolist() == [10, 8]
    torch.testing.assert_close(log_probs, expected["log_probs"], atol=1e-5, rtol=1e-5)


def test_settings_a_recipe_predates_get_the_values_it_was_trained_with() -> None:
    from sign_ctc.models.checkpoint import upgrade_targets

    old = {"model": {"_target_": "sign_ctc.ctc_module.CTCModule",
                     "net": {"_target_": "sign_ctc.models.i3d.I3DTeacher", "_partial_": True, "dropout": 0.1}},
           "normalization": {"_target_": "sign_ctc.normalization.Normalizer", "mode": "global"},
           "decoding": {"_target_": "sign_ctc.decoding.BeamSearchDecoder", "beam_width": 10}}
    new = upgrade_targets(old)
    assert new["model"]["_target_"] == "sign_ctc.models.ctc_module.CTCModule"
    assert new["model"]["aux_ctc_weight"] == 0.0  # the class default before it followed sign_ctc/conf/model/i3d.yaml
    assert new["model"]["net"] == {"_target_": "sign_ctc.models.i3d.I3DTeacher", "_partial_": True, "dropout": 0.1,
                                   "aux_ctc": False, "residual": False}
    assert new["normalization"] == {"_target_": "sign_ctc.models.normalization.Normalizer", "mode": "global",
                                    "body_relative": False, "body_per_frame": False, "body_fallback": "sequence"}
    assert new["decoding"]["_target_"] == "sign_ctc.decoding.decoders.BeamSearchDecoder"
    # a recipe written today is left as it is
    assert upgrade_targets(new) == new
    # a student recipe without `modalities` read all four blocks (the class default then)
    student = upgrade_targets({"_target_": "sign_ctc.models.student.CTCStudent", "_partial_": True})
    assert student["modalities"] == ["pose", "hands", "face", "temporal"]
