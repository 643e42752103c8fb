"""The reference model: parameter count, exact output lengths, batch independence, the channels it reads."""

import pytest
import torch

from sign_ctc.features.layout import SLICES
from sign_ctc.models.reference import FACE_SUBSET, ReferenceNet, reference_channels


def make(**kwargs) -> ReferenceNet:
    torch.manual_seed(0)
    return ReferenceNet(62, **kwargs).eval()


def _trained_like(net: ReferenceNet) -> ReferenceNet:
    """Non-trivial BatchNorm statistics, as after training (a fresh BN maps padding's 0 to 0 and hides leaks)."""
    torch.manual_seed(3)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    return net


def test_parameter_count_and_config(make_cfg):
    from hydra.utils import instantiate

    assert 0.42e6 < sum(p.numel() for p in make().parameters()) < 0.55e6  # ~0.5M
    net = instantiate(make_cfg("model=reference").model.net)(num_classes=62)
    assert isinstance(net, ReferenceNet) and net.input_dim == 1629 and net.total_stride == 4
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in make().parameters())


def test_output_length_method_matches_forward():
    net = make()
    with torch.no_grad():
        for T in [*range(1, 30), 63, 64, 65, 141]:
            logits, n = net(torch.randn(1, T, 1629), torch.ones(1, T, 4), torch.tensor([T]))
            assert logits.shape == (1, -(-T // 4), 62)
            assert int(n[0]) == int(net.output_lengths(torch.tensor([T]))[0]) == -(-T // 4), T


@pytest.mark.parametrize("T", [33, 34, 35, 36, 70])
def test_sample_output_does_not_depend_on_batch_padding(T):
    net = _trained_like(make())
    torch.manual_seed(T)
    short = torch.randn(1, T, 6516)
    batch = torch.zeros(2, 97, 6516)
    batch[0, :T] = short[0]
    batch[1] = torch.randn(97, 6516)
    presence = torch.ones(2, 97, 4)
    with torch.no_grad():
        alone, n = net(short, presence[:1, :T], torch.tensor([T]))
        both, n_both = net(batch, presence, torch.tensor([T, 97]))
    assert int(n_both[0]) == int(n[0])
    torch.testing.assert_close(both[0, : int(n[0])], alone[0], atol=1e-5, rtol=1e-5)


def test_reads_pose_hands_and_the_face_subset_only():
    idx = reference_channels()
    assert len(idx) == 99 + 126 + 3 * len(FACE_SUBSET) == 357
    # the outer lip's left corner (face-mesh point 61): x, y, z in the face block
    assert idx[225:228].tolist() == [SLICES["face"].start + 183, SLICES["face"].start + 184, SLICES["face"].start + 185]
    net = make()
    x = torch.randn(1, 40, 6516)
    y = x.clone()
    others = torch.ones(6516, dtype=torch.bool)
    others[idx] = False
    y[..., others] = torch.randn(1, 40, int(others.sum()))  # other face points and the temporal block
    with torch.no_grad():
        assert torch.equal(net(x, torch.ones(1, 40, 4), torch.tensor([40]))[0],
                           net(y, torch.ones(1, 40, 4), torch.tensor([40]))[0])
        z = x.clone()
        z[0, :, SLICES["face"].start + 183] += 1.0  # a lip point it reads
        assert not torch.equal(net(x, torch.ones(1, 40, 4), torch.tensor([40]))[0],
                               net(z, torch.ones(1, 40, 4), torch.tensor([40]))[0])
    no_face = ReferenceNet(10, face_points=[])
    assert len(no_face.channels) == 225
    with pytest.raises(ValueError, match="face-mesh indices"):
        ReferenceNet(10, face_points=[468])


def test_trains_in_the_ctc_module():
    """One optimizer step through CTCModule's training step lowers the loss on the same batch."""
    from sign_ctc.data.batch import Batch
    from sign_ctc.models.ctc_module import CTCModule
    from sign_ctc.models.normalization import Normalizer

    torch.manual_seed(0)
    module = CTCModule(lambda num_classes: ReferenceNet(num_classes, dropout=0.0),
                       Normalizer("none", body_relative=False, body_per_frame=False), ["<blank>", "<unk>", "A", "B"],
                       optimizer=lambda params: torch.optim.Adam(params, lr=1e-2), aux_ctc_weight=0.0)
    module.log = lambda *a, **k: None
    batch = Batch(features=torch.randn(2, 40, 6516), presence=torch.ones(2, 40, 4, dtype=torch.bool),
                  lengths=torch.tensor([40, 32]), targets=torch.tensor([2, 3, 3, 2]),
                  target_lengths=torch.tensor([2, 2]), ids=["a", "b"])
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    first = module.training_step(batch, 0)
    losses = [float(first.detach())]
    first.backward()
    opt.step()
    for _ in range(5):
        opt.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
