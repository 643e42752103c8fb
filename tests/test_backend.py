"""The backend group: oneDNN off by default, switchable, and without effect on the model's outputs."""

from __future__ import annotations

import pytest
import torch

from sign_ctc.run.backend import TorchBackend, apply_backend


@pytest.fixture
def restore_backend():
    saved = torch.backends.mkldnn.enabled, torch.get_float32_matmul_precision()
    yield
    torch.backends.mkldnn.enabled = saved[0]
    torch.set_float32_matmul_precision(saved[1])


@pytest.mark.parametrize("config_name", ["train", "eval", "predict", "diagnose"])
def test_every_entry_point_applies_the_backend_group(make_cfg, restore_backend, config_name):
    extra = ["ckpt_path=x.ckpt"] if config_name in ("eval", "predict") else []
    torch.backends.mkldnn.enabled = True
    apply_backend(make_cfg(*extra, config_name=config_name))
    assert torch.backends.mkldnn.enabled is False
    apply_backend(make_cfg(*extra, "backend.onednn=true", "backend.float32_matmul_precision=high",
                           config_name=config_name))
    assert torch.backends.mkldnn.enabled is True and torch.get_float32_matmul_precision() == "high"


def test_an_unknown_matmul_precision_is_refused(restore_backend):
    with pytest.raises(ValueError, match="highest, high or medium; got 'fast'"):
        TorchBackend(float32_matmul_precision="fast").apply()


def test_onednn_on_and_off_give_the_same_outputs_and_gradients(restore_backend):
    from sign_ctc.models.i3d import I3DTeacher

    torch.manual_seed(0)
    net = I3DTeacher(num_classes=20, dropout=0.0).eval()
    x, presence = torch.randn(3, 57, 6516), torch.ones(3, 57, 4, dtype=torch.bool)
    lengths = torch.tensor([57, 40, 23])
    out = {}
    for enabled in (True, False):
        torch.backends.mkldnn.enabled = enabled
        net.zero_grad()
        logits, out_lengths = net(x, presence, lengths)
        logits.log_softmax(-1).sum().backward()
        out[enabled] = logits.detach(), out_lengths, [p.grad.clone() for p in net.parameters() if p.grad is not None]
    assert torch.equal(out[True][1], out[False][1])
    assert torch.allclose(out[True][0], out[False][0], rtol=1e-4, atol=1e-4)
    for a, b in zip(out[True][2], out[False][2]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)
