"""The I3D teacher: exact output lengths, parameter count, batch independence."""

import pytest
import torch

from sign_ctc.data.batch import Batch
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


def _alone_and_padded(model: I3DTeacher) -> tuple[torch.Tensor, ...]:
    """A 37-frame sentence run alone and padded beside a 90-frame one: (alone, n alone, batched, n batched)."""
    torch.manual_seed(1)
    short, long = torch.randn(1, 37, 6516), torch.randn(1, 90, 6516)
    batch = torch.zeros(2, 90, 6516)
    batch[0, :37], batch[1] = short[0], long[0]
    presence = torch.ones(2, 90, 4)
    with torch.no_grad():
        alone, n_alone = model(short, presence[:1, :37], torch.tensor([37]))
        both, n_both = model(batch, presence, torch.tensor([37, 90]))
    return alone, n_alone, both, n_both


def test_sample_output_does_not_depend_on_batch_padding():
    alone, n_alone, both, n_both = _alone_and_padded(make())
    assert int(n_both[0]) == int(n_alone[0])
    torch.testing.assert_close(both[0, : int(n_alone[0])], alone[0], atol=1e-4, rtol=1e-4)


def test_modalities_subset_reads_only_those_blocks():
    torch.manual_seed(0)
    net = I3DTeacher(10, WIDTHS, modalities=["pose", "hands", "face"]).eval()
    assert set(net.fusion.projections) == {"pose", "hands", "face"}
    x = torch.randn(1, 40, 6516)
    y = x.clone()
    y[..., 1629:] = torch.randn(1, 40, 6516 - 1629)  # a different temporal block
    with torch.no_grad():
        assert torch.equal(net(x, torch.ones(1, 40, 4), torch.tensor([40]))[0],
                           net(y, torch.ones(1, 40, 4), torch.tensor([40]))[0])
    with pytest.raises(ValueError, match="modalities"):
        I3DTeacher(10, WIDTHS, modalities=["hands", "mouth"])


def test_aux_head_and_blank_bias():
    torch.manual_seed(0)
    net = I3DTeacher(10, WIDTHS, aux_ctc=True, blank_bias=2.5).eval()
    assert float(net.classifier.bias[0]) == 2.5 and float(net.aux_classifier.bias[0]) == 2.5
    with torch.no_grad():
        logits, n, aux = net(torch.randn(2, 40, 6516), torch.ones(2, 40, 4), torch.tensor([40, 21]), return_aux=True)
    assert logits.shape == aux.shape == (2, 10, 10) and n.tolist() == [10, 6]
    assert len(net(torch.randn(1, 8, 6516), torch.ones(1, 8, 4), torch.tensor([8]))) == 2  # eval path unchanged


def test_aux_ctc_loss_enters_the_training_loss():
    from sign_ctc.models.ctc_module import CTCModule
    from sign_ctc.models.normalization import Normalizer

    def module(weight: float) -> CTCModule:
        torch.manual_seed(0)
        net = lambda num_classes: I3DTeacher(num_classes, WIDTHS, aux_ctc=True, dropout=0.0)  # noqa: E731
        return CTCModule(net, Normalizer("none", body_relative=False, body_per_frame=False), ["<blank>", "<unk>", "A", "B"],
                         optimizer=lambda params: torch.optim.SGD(params, lr=0.1), aux_ctc_weight=weight)

    batch = Batch(features=torch.randn(2, 40, 6516), presence=torch.ones(2, 40, 4, dtype=torch.bool),
                  lengths=torch.tensor([40, 32]), targets=torch.tensor([2, 3, 3, 2]),
                  target_lengths=torch.tensor([2, 2]), ids=["a", "b"])
    plain, with_aux = module(0.0), module(1.0)
    for m in (plain, with_aux):
        m.log = lambda *a, **k: None
    main_loss = plain.training_step(batch, 0)
    total = with_aux.training_step(batch, 0)
    assert float(total) > float(main_loss) > 0  # same weights (seed 0): the aux CTC loss is added
    with pytest.raises(ValueError, match="aux_ctc"):
        CTCModule(lambda num_classes: I3DTeacher(num_classes, WIDTHS, aux_ctc=False), Normalizer("none", body_relative=False, body_per_frame=False),
                  ["<blank>", "<unk>", "A"],
                  optimizer=lambda params: torch.optim.SGD(params, lr=0.1), aux_ctc_weight=1.0)


def test_masked_batchnorm_ignores_padding_in_training():
    """With masked_bn a sample's training-mode output does not depend on the batch's padding."""
    torch.manual_seed(0)
    net = I3DTeacher(10, WIDTHS, masked_bn=True, dropout=0.0).train()
    a = torch.randn(2, 37, 6516)
    padded = torch.zeros(2, 90, 6516)
    padded[:, :37] = a
    ones = torch.ones(2, 90, 4)
    lengths = torch.tensor([37, 37])
    out_a, n_a = net(a, ones[:, :37], lengths)
    out_p, n_p = net(padded, ones, lengths)
    assert n_a.tolist() == n_p.tolist()
    torch.testing.assert_close(out_p[:, : int(n_a[0])], out_a, atol=1e-4, rtol=1e-4)
    plain = I3DTeacher(10, WIDTHS, dropout=0.0).train()
    plain.load_state_dict(net.state_dict())
    diff = (plain(padded, ones, lengths)[0][:, : int(n_a[0])] - plain(a, ones[:, :37], lengths)[0]).abs().max()
    assert float(diff) > 1e-3  # plain BatchNorm: the padding changes the real frames' outputs


def test_trained_batchnorm_shift_does_not_leak_padding_in_eval():
    """Eval mode with non-trivial BatchNorm statistics (as after training): padding changes nothing.
    (Before the mask between the Inception reduce and k=3 units, relu(BN(0)) of padded frames
    leaked into the last real frames; a fresh model hid it, its BN maps 0 to 0.)"""
    net = make()
    torch.manual_seed(3)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    short = torch.randn(1, 36, 6516)
    batch = torch.zeros(2, 90, 6516)
    batch[0, :36] = short[0]
    presence = torch.ones(2, 90, 4)
    with torch.no_grad():
        alone, n = net(short, presence[:1, :36], torch.tensor([36]))
        both, _ = net(batch, presence, torch.tensor([36, 90]))
    torch.testing.assert_close(both[0, : int(n[0])], alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("T", [33, 34, 35, 36, 70])
def test_no_padding_leak_for_any_length_after_strided_pools(T):
    net = make()
    torch.manual_seed(T)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.bias.data.uniform_(-1, 1)
    short = torch.randn(1, T, 6516)
    batch = torch.zeros(2, 97, 6516)
    batch[0, :T] = short[0]
    presence = torch.ones(2, 97, 4)
    with torch.no_grad():
        alone, n = net(short, presence[:1, :T], torch.tensor([T]))
        both, _ = net(batch, presence, torch.tensor([T, 97]))
    torch.testing.assert_close(both[0, : int(n[0])], alone[0], atol=1e-4, rtol=1e-4)


def test_residual_shortcuts_add_no_parameters_and_keep_padding_out():
    res = make()
    assert res.residual  # the default
    plain = I3DTeacher(62, WIDTHS, fusion_dim=256, lstm_hidden=288, residual=False).eval()
    assert sum(p.numel() for p in res.parameters()) == sum(p.numel() for p in plain.parameters())
    plain.load_state_dict(res.state_dict())  # same weights, same keys: only the forward differs
    alone, n_alone, both, n_both = _alone_and_padded(res)
    other = _alone_and_padded(plain)[0]
    assert alone.shape == other.shape and (alone - other).abs().max() > 1e-3
    assert int(n_both[0]) == int(n_alone[0])
    torch.testing.assert_close(both[0, : int(n_alone[0])], alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_default_student_streams_with_a_bounded_look_ahead(make_cfg, bidirectional):
    """model=student's output frame j (input frames 4j..4j+3) reads no input past frame 4j + 17, so it
    can run on a live stream 14 frames (0.56 s at 25 fps) behind; the BiLSTM variant reads the whole sentence."""
    from hydra.utils import instantiate

    cfg = make_cfg("model=student", *(["model.net.bidirectional=true"] if bidirectional else []))
    torch.manual_seed(0)
    net = instantiate(cfg.model.net)(num_classes=20).eval()
    assert 0.85e6 < sum(p.numel() for p in net.parameters()) < (1.1e6 if bidirectional else 0.9e6)
    assert bidirectional or net.lookahead_frames == 14
    T = 64
    x, presence, lengths = torch.randn(1, T, 6516), torch.ones(1, T, 4), torch.tensor([T])
    with torch.no_grad():
        base, n = net(x, presence, lengths)
        assert int(n[0]) == 16
        for t in range(0, T, 3):
            x2 = x.clone()
            x2[0, t] += 3.0
            changed = ((net(x2, presence, lengths)[0] - base).abs().amax(-1)[0] > 1e-6).nonzero().flatten()
            first = int(changed[0])
            assert first == (0 if bidirectional else max(0, -(-(t - 17) // 4))), t


def test_stochastic_depth_skips_blocks_along_their_shortcut_in_training_only():
    """model.net.drop_path: evaluation runs every block unscaled (equal to the net without it); in training
    a skipped block passes its shortcut alone, and the survivors are scaled so the expectation is kept."""
    torch.manual_seed(0)
    net = I3DTeacher(10, WIDTHS, dropout=0.0, drop_path=0.3)
    plain = I3DTeacher(10, WIDTHS, dropout=0.0)
    plain.load_state_dict(net.state_dict())
    x, ones, lengths = torch.randn(2, 40, 6516), torch.ones(2, 40, 4), torch.tensor([40, 31])
    with torch.no_grad():
        assert torch.equal(net.eval()(x, ones, lengths)[0], plain.eval()(x, ones, lengths)[0])
        net.train()
        # every block skipped: the output no longer depends on any block's weights
        net._kept = lambda batch, p, like: torch.zeros(batch, 1, 1, dtype=like.dtype)
        skipped = net(x, ones, lengths)[0]
        for block in net.blocks.values():
            for p in block.parameters():
                p.add_(1.0)
        assert torch.equal(net(x, ones, lengths)[0], skipped)
    del net._kept
    kept = torch.cat([I3DTeacher._kept(10_000, 0.3, torch.zeros(())) for _ in range(4)]).flatten()
    assert abs(float((kept == 0).float().mean()) - 0.3) < 0.02  # skipped with probability p
    assert abs(float(kept.mean()) - 1.0) < 0.03  # 1 / (1 - p) on the rest: unbiased
    assert torch.unique(kept).tolist() == pytest.approx([0.0, 1 / 0.7])
    with pytest.raises(ValueError, match="residual"):
        I3DTeacher(10, WIDTHS, residual=False, drop_path=0.1)


def test_entropy_regularization_subtracts_the_posteriors_mean_entropy():
    """model.entropy_weight: the training loss is CTC minus the weight times each sentence's mean frame
    entropy over its valid frames (padding not counted), averaged over the batch."""
    from sign_ctc.models.ctc_module import CTCModule, posterior_entropy
    from sign_ctc.models.normalization import Normalizer

    log_probs = torch.log_softmax(torch.randn(2, 6, 4), -1)
    log_probs[1, 3:] = torch.log(torch.tensor([0.97, 0.01, 0.01, 0.01]))  # padding: must not count
    frames = -(log_probs.exp() * log_probs).sum(-1)
    want = (frames[0].mean() + frames[1, :3].mean()) / 2
    torch.testing.assert_close(posterior_entropy(log_probs, torch.tensor([6, 3])), want)
    uniform = torch.full((1, 5, 4), 0.25).log()
    torch.testing.assert_close(posterior_entropy(uniform, torch.tensor([5])), torch.log(torch.tensor(4.0)))

    def module(weight: float) -> CTCModule:
        torch.manual_seed(0)
        net = lambda num_classes: I3DTeacher(num_classes, WIDTHS, aux_ctc=False, dropout=0.0)  # noqa: E731
        m = CTCModule(net, Normalizer("none", body_relative=False, body_per_frame=False), ["<blank>", "<unk>", "A", "B"],
                      optimizer=lambda params: torch.optim.SGD(params, lr=0.1), aux_ctc_weight=0.0, entropy_weight=weight)
        m.log = lambda *a, **k: None
        return m.eval()  # BatchNorm on running statistics: both modules compute the same posteriors

    batch = Batch(features=torch.randn(2, 40, 6516), presence=torch.ones(2, 40, 4, dtype=torch.bool),
                  lengths=torch.tensor([40, 32]), targets=torch.tensor([2, 3, 3, 2]),
                  target_lengths=torch.tensor([2, 2]), ids=["a", "b"])
    plain, regularized = module(0.0), module(0.5)
    with torch.no_grad():
        log_probs, out_lengths = plain(batch.features, batch.presence, batch.lengths)
        entropy = posterior_entropy(log_probs, out_lengths)
        assert float(entropy) > 0.5
        torch.testing.assert_close(regularized.training_step(batch, 0), plain.training_step(batch, 0) - 0.5 * entropy)
    with pytest.raises(ValueError, match="entropy_weight"):
        module(-0.1)
