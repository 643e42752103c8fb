"""Every net a `sign_ctc/conf/model/*.yaml` builds keeps the contract of sign_ctc/models/contract.py: the
members the rest of the project reads, exact output lengths, no padding leak, and for causal nets a
stream that equals the whole-sequence forward."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from sign_ctc.features.layout import FEATURE_DIM, STATIC_DIM
from sign_ctc.models.contract import CTCNet, StreamingNet
from tests.helpers import ROOT

MODELS = sorted(p.stem for p in (ROOT / "sign_ctc" / "conf" / "model").glob("*.yaml"))
# every model config as it is, and the settings that change what a net reads past the frames it labels
NETS = [(name, ()) for name in MODELS] + [("student", ("model.net.output_delay=3",)),
                                          ("student", ("model.net.context_blocks=2", "model.net.kernel_size=3"))]
IDS = [" ".join((name, *overrides)) for name, overrides in NETS]


def _net(make_cfg, name: str, *overrides: str):
    cfg = make_cfg(f"model={name}", *overrides)
    torch.manual_seed(0)
    return instantiate(cfg.model.net)(num_classes=13).eval()


def test_every_model_config_is_tested():
    assert {"i3d", "student", "reference"} <= set(MODELS)


@pytest.mark.parametrize("name, overrides", NETS, ids=IDS)
def test_the_net_keeps_the_contract(make_cfg, name, overrides):
    net = _net(make_cfg, name, *overrides)
    assert isinstance(net, CTCNet)
    assert net.input_dim % STATIC_DIM == 0 and 0 < net.input_dim <= FEATURE_DIM
    stride = net.total_stride
    assert isinstance(stride, int) and stride >= 1
    lengths = torch.tensor([37, 1, 16, 23])
    T = int(lengths.max())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, T, FEATURE_DIM, generator=g)
    presence = torch.ones(4, T, 4)
    for b, n in enumerate(lengths.tolist()):
        x[b, n:], presence[b, n:] = 0.0, 0.0
    with torch.no_grad():
        logits, out = net(x, presence, lengths)[:2]
        assert torch.equal(out, net.output_lengths(lengths))
        assert logits.shape == (4, int(out.max()), 13)
        # every output frame stands for `total_stride` input frames (the last one for what is left)
        assert out.tolist() == [-(-n // stride) for n in lengths.tolist()]
        for b, n in enumerate(lengths.tolist()):  # alone, without the batch's padding: the same logits
            alone, n_alone = net(x[b : b + 1, :n], presence[b : b + 1, :n], lengths[b : b + 1])[:2]
            assert int(n_alone[0]) == int(out[b])
            torch.testing.assert_close(alone[0], logits[b, : int(out[b])], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name, overrides", NETS, ids=IDS)
def test_a_causal_net_streams_exactly_and_others_say_why_not(make_cfg, name, overrides):
    from types import SimpleNamespace

    from sign_ctc.models.normalization import Normalizer
    from sign_ctc.streaming.recognizer import stream_refusal

    net = _net(make_cfg, name, *overrides)
    if not isinstance(net, StreamingNet):  # the recognizer refuses it, naming the net and what to stream instead
        reason = stream_refusal(SimpleNamespace(net=net, normalizer=Normalizer("global"), recipe={}))
        assert reason and type(net).__name__ in reason and "model=student" in reason
        return
    if net.stream_refusal:
        assert "bidirectional" in net.stream_refusal
        net = _net(make_cfg, name, *overrides, "model.net.bidirectional=false")
    assert net.stream_refusal is None and net.lookahead_frames >= 0
    T = 41
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, T, net.input_dim, generator=g)
    presence = torch.ones(1, T, 4)
    with torch.no_grad():
        whole, _ = net(x, presence, torch.tensor([T]))[:2]
        state, parts = net.initial_state(1), []
        for a, b in ((0, 1), (1, 5), (5, 5), (5, 22), (22, T)):
            out, state = net.step(x[:, a:b], presence[:, a:b], state, final=b == T)
            parts.append(out)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-5, rtol=1e-5)
