"""The I3D teacher: exact output lengths, parameter count, batch independence."""

import pytest
import torch

from sign_ctc.models.i3d import I3DTeacher

WIDTHS = {"pose": 64, "hands": 128, "face": 64, "temporal": 96}


def make(strides=(2, 1, 2, 1)) -> I3DTeacher:
    torch.manual_seed(0)
    return I3DTeacher(62, WIDTHS, fusion_dim=256, lstm_hidden=288, temporal_strides=strides).eval()


def test_parameter_count_is_the_teachers():
    n = sum(p.numel() for p in make().parameters())
    assert 7.0e6 < n < 7.5e6


@pytest.mark.parametrize("strides,total", [((2, 1, 2, 1), 4), ((2, 1, 2, 2), 8), ((1, 1, 1, 1), 1)])
def test_output_length_method_matches_forward(strides, total):
    model = make(strides)
    assert model.total_stride == total
    lengths = list(range(1, 40)) + [63, 64, 65, 99, 100, 141, 299]
    with torch.no_grad():
        for T in lengths:
            x = torch.randn(1, T, 6516)
            logits, n = model(x, torch.ones(1, T, 4), torch.tensor([T]))
            assert logits.shape[1] == int(n[0]) == int(model.output_lengths(torch.tensor([T]))[0]), T
            assert int(n[0]) == -(-T // total) if total in (1, 4, 8) else True


def test_sample_output_does_not_depend_on_batch_padding():
    model = make()
    torch.manual_seed(1)
    short, long = torch.randn(1, 37, 6516), torch.randn(1, 90, 6516)
    batch = torch.zeros(2, 90, 6516)
    batch[0, :37], batch[1] = short[0], long[0]
    presence = torch.ones(2, 90, 4)
    with torch.no_grad():
        alone, n_alone = model(short, presence[:1, :37], torch.tensor([37]))
        both, n_both = model(batch, presence, torch.tensor([37, 90]))
    assert int(n_both[0]) == int(n_alone[0])
    torch.testing.assert_close(both[0, : int(n_alone[0])], alone[0], atol=1e-4, rtol=1e-4)
