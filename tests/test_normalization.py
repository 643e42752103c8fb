"""Normalize once: every mode, safe statistics, and the refusal of a second place."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from sign_ctc.data.batch import Batch
from sign_ctc.data.collate import collate
from sign_ctc.data.dataset import MediaPipeFeatureDataset
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.features.layout import SLICES, channel_presence
from sign_ctc.models.normalization import NormalizationConfigError, Normalizer, check_single_normalization


def _batches(corpus, size=8):
    vocab = Vocabulary.from_glosses(s.glosses for s in corpus.sentences("train"))
    ds = MediaPipeFeatureDataset(corpus, "train", vocab)
    items = [ds[i] for i in range(len(ds))]
    return [collate(items[i : i + size]) for i in range(0, len(items), size)]


def test_streamed_global_statistics_equal_numpy_direct(small_corpus):
    batches = _batches(small_corpus)
    norm = Normalizer("global", std_floor=1e-6, body_relative=False, body_per_frame=False)
    info = norm.fit(batches)
    feats, valid = [], []
    for b in batches:
        for i, n in enumerate(b.lengths.tolist()):
            feats.append(b.features[i, :n].double().numpy())
            valid.append(channel_presence(b.presence[i, :n]).numpy())
    x = np.ma.masked_array(np.concatenate(feats), mask=~np.concatenate(valid))
    assert info["frames"] == sum(len(f) for f in feats)
    np.testing.assert_allclose(norm.mean.numpy(), x.mean(0).filled(0.0), atol=1e-6)
    np.testing.assert_allclose(norm.std.numpy(), np.maximum(x.std(0).filled(1.0), 1e-6), rtol=1e-3, atol=1e-6)


def test_missing_values_are_excluded_from_statistics():
    feats = torch.zeros(1, 6, 6516)
    feats[0, :3, SLICES["left_hand"]] = 2.0
    presence = torch.ones(1, 6, 4, dtype=torch.bool)
    presence[0, 3:, 1] = False  # left hand missing in the last 3 frames (zeros there)
    norm = Normalizer("global", body_relative=False, body_per_frame=False)
    norm.fit([Batch.unlabelled(feats, presence, torch.tensor([6]))])
    assert torch.allclose(norm.mean[SLICES["left_hand"]], torch.tensor(2.0))  # not 1.0 as zeros would give


@pytest.mark.parametrize("mode", ["per_sample", "global", "none"])
def test_constant_and_all_missing_channels_stay_finite(mode):
    torch.manual_seed(0)
    feats = torch.randn(2, 10, 6516)
    feats[..., 5] = 3.0  # zero-variance channel
    presence = torch.ones(2, 10, 4, dtype=torch.bool)
    presence[:, :, 2] = False  # right hand never detected
    feats[..., SLICES["right_hand"]] = 0.0
    lengths = torch.tensor([10, 7])
    norm = Normalizer(mode, body_relative=False, body_per_frame=False)
    if mode == "global":
        norm.fit([Batch.unlabelled(feats, presence, lengths)])
        assert norm.std[5] == norm.std_floor
    out = norm(feats, presence, lengths)
    assert torch.isfinite(out).all()
    assert (out[..., SLICES["right_hand"]] == 0).all()
    assert (out[1, 7:] == 0).all()  # padding stays 0
    if mode != "none":
        assert torch.allclose(out[..., 5], torch.zeros(()).expand_as(out[..., 5]).masked_fill(
            torch.arange(10)[None, :] >= lengths[:, None], 0.0))


def test_per_sample_standardizes_each_sequence_over_present_frames():
    torch.manual_seed(0)
    feats = torch.randn(1, 50, 6516) * 5 + 3
    presence = torch.ones(1, 50, 4, dtype=torch.bool)
    out = Normalizer("per_sample", body_relative=False, body_per_frame=False)(feats, presence, torch.tensor([50]))
    pose = out[0, :, SLICES["pose"]]
    assert pose.mean(0).abs().max() < 1e-4
    assert (pose.std(0, unbiased=False) - 1).abs().max() < 1e-3


def test_huge_outlier_is_clipped_not_propagated():
    feats = torch.rand(1, 20, 6516)
    feats[0, 4, 100] = 1e30
    out = Normalizer("per_sample", body_relative=False, body_per_frame=False)(feats, torch.ones(1, 20, 4, dtype=torch.bool), torch.tensor([20]))
    assert torch.isfinite(out).all() and out.abs().max() <= 10.0


def test_body_relative_is_invariant_to_signer_position_and_size():
    torch.manual_seed(0)
    feats = torch.rand(1, 12, 6516)
    # make the static block a signer, and derive a shifted + scaled copy of the same signer
    from sign_ctc.features.layout import STATIC_DIM, temporal_from_static

    static = feats[..., :STATIC_DIM]
    feats = torch.cat([static, temporal_from_static(static)], -1)
    moved = static.view(1, 12, -1, 3) * 1.7 + torch.tensor([0.2, -0.1, 0.0])
    moved = moved.flatten(-2)
    moved = torch.cat([moved, temporal_from_static(moved)], -1)
    presence = torch.ones(1, 12, 4, dtype=torch.bool)
    norm = Normalizer("none", body_relative=True, body_per_frame=False)
    a = norm(feats, presence, torch.tensor([12]))
    b = norm(moved, presence, torch.tensor([12]))
    torch.testing.assert_close(a[..., :STATIC_DIM], b[..., :STATIC_DIM], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a[..., STATIC_DIM:], b[..., STATIC_DIM:], atol=1e-4, rtol=1e-4)


SECOND_PLACES = ["+data.normalize=true", "+data.corpus.normalize=per_sample", "+model.normalize=true",
                 "+model.net.normalization=global", "+data.standardize=true", "+model.normalizer.mode=global"]


def _key(override: str) -> str:
    return ".".join(override.lstrip("+").split("=")[0].split(".")[:2])


def test_a_key_that_only_names_normalization_is_not_a_second_place(make_cfg):
    """Only the groups features pass through (data, augmentation, model) can normalize them again: a
    diagnostic switch that names normalization is harmless, the same key under `data` is refused."""
    for harmless in ("+callbacks.feature_diagnostics.after_normalization=true", "+logger.log_normalization=true",
                     "+trainer.normalize_grad=true"):
        check_single_normalization(make_cfg("normalization=global", harmless))
    with pytest.raises(NormalizationConfigError, match="data.after_normalization"):
        check_single_normalization(make_cfg("normalization=global", "+data.after_normalization=true"))
    with pytest.raises(NormalizationConfigError, match="augmentation.normalize"):
        check_single_normalization(make_cfg("normalization=global", "+augmentation.normalize=true"))


@pytest.mark.parametrize("mode", ["per_sample", "global", "none"])
def test_double_normalization_is_refused_for_every_combination(make_cfg, mode):
    cfg = make_cfg(f"normalization={mode}")
    check_single_normalization(cfg)  # the group alone is fine
    cfg = make_cfg(f"normalization={mode}", "normalization.body_relative=true")
    check_single_normalization(cfg)
    for a, b in itertools.combinations(SECOND_PLACES, 2):
        with pytest.raises(NormalizationConfigError, match="two places"):
            check_single_normalization(make_cfg(f"normalization={mode}", a, b))
    for a in SECOND_PLACES:
        if mode == "none":
            check_single_normalization(make_cfg("normalization=none", a))  # exactly one place: allowed
            with pytest.raises(NormalizationConfigError, match=_key(a)):
                check_single_normalization(make_cfg("normalization=none", "normalization.body_relative=true", a))
        else:
            with pytest.raises(NormalizationConfigError, match=_key(a)):
                check_single_normalization(make_cfg(f"normalization={mode}", a))


def test_train_refuses_double_normalization_before_any_work(make_cfg, tmp_path):
    from sign_ctc.run.train import train

    cfg = make_cfg("+data.normalize=true", "data.root=" + str(tmp_path / "never_built"))
    with pytest.raises(NormalizationConfigError, match="data.normalize"):
        train(cfg)
    assert not (tmp_path / "never_built").exists()


def test_the_dataset_cannot_normalize(small_corpus):
    import inspect

    params = inspect.signature(MediaPipeFeatureDataset).parameters
    assert not any("normal" in p for p in params)
    b = _batches(small_corpus)[0]
    valid = channel_presence(b.presence) & (torch.arange(b.features.shape[1])[None, :, None] < b.lengths[:, None, None])
    raw_pose = b.features[..., SLICES["pose"]][valid[..., SLICES["pose"]]]
    # raw unit image coordinates (mean ~0.4), not z-scores (mean 0, std 1)
    assert -0.5 < float(raw_pose.min()) and float(raw_pose.max()) < 2.0
    assert 0.2 < float(raw_pose.mean()) < 0.6 and float(raw_pose.std()) < 0.5


@pytest.mark.parametrize("mode", ["per_sample", "none"])
def test_interpolated_landmarks_reach_the_model(small_corpus, mode):
    """`data.missing=interpolate` must change what the model sees: the interpolated hand values
    survive normalization (they used to be zeroed by the detected-presence mask)."""
    from sign_ctc.data.collate import collate_landmarks
    from sign_ctc.data.dataset import LandmarkView
    from sign_ctc.features.layout import SLICES

    vocab = Vocabulary.from_glosses(s.glosses for s in small_corpus.sentences("train"))
    out = {}
    for missing in ("zero", "interpolate"):
        view = LandmarkView(MediaPipeFeatureDataset(small_corpus, "train", vocab, missing=missing))
        batch = collate_landmarks([view[i] for i in range(8)]).with_features()
        out[missing] = (Normalizer(mode, body_relative=False, body_per_frame=False)(batch.features, batch.presence, batch.lengths), batch)
    (zero, zb), (interp, ib) = out["zero"], out["interpolate"]
    hands = SLICES["left_hand"]
    filled_only = ib.presence[..., 1] & ~zb.presence[..., 1]  # left hand (PARTS[1]) interpolated only
    assert int(filled_only.sum()) > 0
    assert float(zero[..., hands][filled_only].abs().max()) == 0.0
    assert float(interp[..., hands][filled_only].abs().max()) > 0.1
    assert torch.equal(zero[~filled_only.unsqueeze(-1).expand_as(zero)].isfinite(),
                       interp[~filled_only.unsqueeze(-1).expand_as(interp)].isfinite())


def test_body_relative_per_frame_centres_every_frame_on_its_shoulders():
    from sign_ctc.models.normalization import LEFT_SHOULDER, RIGHT_SHOULDER

    torch.manual_seed(0)
    T = 6
    x = torch.zeros(1, T, 6516)
    shift = torch.linspace(0.0, 0.5, T)  # the signer walks to the right
    for t in range(T):
        x[0, t, 3 * LEFT_SHOULDER] = 0.6 + shift[t]
        x[0, t, 3 * RIGHT_SHOULDER] = 0.4 + shift[t]
        x[0, t, 0] = 0.5 + shift[t]  # the nose, centred between the shoulders
        x[0, t, 1] = 0.3
    presence = torch.ones(1, T, 4, dtype=torch.bool)
    lengths = torch.tensor([T])
    per_frame = Normalizer("none", body_relative=True, body_per_frame=True)(x, presence, lengths)
    per_seq = Normalizer("none", body_relative=True, body_per_frame=False)(x, presence, lengths)
    # shoulder width 0.2: the nose sits at x = 0 in every frame, y = 0.3 / 0.2 - 0 ... per frame
    assert torch.allclose(per_frame[0, :, 0], torch.zeros(T), atol=1e-6)
    assert torch.allclose(per_frame[0, :, 3 * LEFT_SHOULDER], torch.full((T,), 0.5), atol=1e-5)
    assert float(per_seq[0, :, 0].std()) > 0.5  # per sequence the walk stays in the coordinates


@pytest.mark.parametrize("mode,body_relative,per_frame",
                         [("global", True, True), ("global", False, False), ("per_sample", True, False),
                          ("none", True, True), ("none", False, False)])
def test_the_leading_blocks_are_normalized_exactly_as_in_the_whole_layout(small_corpus, mode, body_relative,
                                                                         per_frame):
    """A net without the temporal block gets the static 1629 channels only: the same values, not
    renormalized on their own."""
    batches = _batches(small_corpus)
    norm = Normalizer(mode, body_relative=body_relative, body_per_frame=per_frame)
    if mode == "global":
        norm.fit(batches)
    b = batches[0]
    whole = norm(b.features, b.presence, b.lengths)
    static = norm(b.features[..., :1629], b.presence, b.lengths)
    assert static.shape == (*b.features.shape[:2], 1629)
    torch.testing.assert_close(static, whole[..., :1629], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="leading blocks"):
        norm(b.features[..., :1000], b.presence, b.lengths)


def test_a_net_without_the_temporal_block_never_reads_it(make_cfg):
    """The student's default: the temporal channels can hold anything, even NaN, and the output stays."""
    import hydra

    cfg = make_cfg("model=student")
    torch.manual_seed(0)
    x, presence, lengths = torch.randn(2, 40, 6516), torch.ones(2, 40, 4, dtype=torch.bool), torch.tensor([40, 31])
    normalizer = hydra.utils.instantiate(cfg.normalization)
    normalizer.fit([Batch.unlabelled(x, presence, lengths)])
    module = hydra.utils.instantiate(cfg.model, normalizer=normalizer, vocab=["<blank>", "<unk>", "A", "B"]).eval()
    assert module.net.input_dim == 1629
    with torch.no_grad():
        ref, n = module(x, presence, lengths)
        x[..., 1629:] = float("nan")
        out, n2 = module(x, presence, lengths)
    assert torch.equal(n, n2) and torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_signer_level_standardizes_each_signer_on_their_own_statistics(small_corpus):
    """normalization.signer_level: every signer's present values come out with mean 0 and std 1 per channel
    over that signer's sentences (as the global mode does over the whole split); a sentence with no or an
    unknown signer is normalized exactly as without it; the global statistics are untouched."""
    batches = _batches(small_corpus)
    want = {s.id: s.signer for s in small_corpus.sentences("train")}
    assert all(b.signers == [want[i] for i in b.ids] for b in batches)  # collate carries each sentence's signer
    assert len(set(want.values())) >= 3
    plain = Normalizer("global", std_floor=1e-6, clip=1e9)
    norm = Normalizer("global", std_floor=1e-6, clip=1e9, signer_level=True)
    plain.fit(batches)
    norm.fit(batches)
    frames = norm.fit_signers(batches)
    assert frames == {s: sum(int(n) for b in batches for n, t in zip(b.lengths, b.signers) if t == s)
                      for s in set(want.values())}
    assert torch.equal(norm.mean, plain.mean) and torch.equal(norm.std, plain.std)
    per_signer: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for b in batches:
        out = norm(b.features, b.presence, b.lengths, signers=b.signers)
        valid = channel_presence(b.presence)
        for i, (n, s) in enumerate(zip(b.lengths.tolist(), b.signers)):
            per_signer.setdefault(s, []).append((out[i, :n].double().numpy(), valid[i, :n].numpy()))
        torch.testing.assert_close(norm(b.features, b.presence, b.lengths), plain(b.features, b.presence, b.lengths),
                                   rtol=0, atol=0)
        torch.testing.assert_close(norm(b.features, b.presence, b.lengths, signers=["unseen"] * len(b)),
                                   plain(b.features, b.presence, b.lengths), rtol=0, atol=0)
    for signer, rows in per_signer.items():
        x = np.ma.masked_array(np.concatenate([r[0] for r in rows]), mask=~np.concatenate([r[1] for r in rows]))
        mean, std = x.mean(0), x.std(0)
        spread = norm.signer_stats[signer][1].numpy() > 1e-3  # channels that vary for this signer
        assert np.abs(mean.filled(0.0)).max() < 1e-3, signer
        np.testing.assert_allclose(std.filled(1.0)[spread], 1.0, atol=1e-3, err_msg=signer)
    # the same sentence under another signer's statistics comes out differently
    b = batches[0]
    other = next(s for s in per_signer if s != b.signers[0])
    assert not torch.allclose(norm(b.features[:1], b.presence[:1], b.lengths[:1], signers=[b.signers[0]]),
                              norm(b.features[:1], b.presence[:1], b.lengths[:1], signers=[other]))


def test_signer_level_is_refused_where_it_cannot_work(make_cfg):
    import hydra

    from sign_ctc.streaming.recognizer import stream_refusal

    with pytest.raises(ValueError, match="mode=global"):
        Normalizer("per_sample", signer_level=True)
    norm = Normalizer("global", signer_level=True)
    with pytest.raises(RuntimeError, match="global statistics"):
        norm.fit_signers([])
    # a live signer has no statistics yet: the live recognizer and the streaming export refuse the student
    cfg = make_cfg("model=student", "normalization.signer_level=true")
    module = hydra.utils.instantiate(cfg.model, normalizer=hydra.utils.instantiate(cfg.normalization),
                                     vocab=["<blank>", "<unk>", "A"])
    assert "signer_level" in stream_refusal(module)
    cfg = make_cfg("model=student")
    module = hydra.utils.instantiate(cfg.model, normalizer=hydra.utils.instantiate(cfg.normalization),
                                     vocab=["<blank>", "<unk>", "A"])
    assert stream_refusal(module) is None


def test_a_signer_level_run_fits_every_split_s_signers(make_cfg):
    """build_model fits the statistics of the train, dev and test signers (the dev and test ones unseen in
    training), and the module's forward reads them through the batch's signers."""
    from sign_ctc.run.build import build_datamodule, build_model

    cfg = make_cfg("data=synthetic_shift", "data.corpus.train=24", "data.corpus.dev=6", "data.corpus.test=6",
                   "data.num_workers=0", "normalization.signer_level=true")
    datamodule = build_datamodule(cfg)
    module = build_model(cfg, datamodule).eval()
    signers = {s.signer for split in ("train", "dev", "test") for s in datamodule.dataset(split).sentences}
    assert set(module.normalizer.signer_stats) == signers and len(signers) >= 4
    batch = next(iter(datamodule.split_batches("test")))
    assert set(batch.signers) <= {s.signer for s in datamodule.dataset("test").sentences}
    with torch.no_grad():
        own, _ = module(batch.features, batch.presence, batch.lengths, batch.signers)
        train_stats, _ = module(batch.features, batch.presence, batch.lengths)
    assert (own - train_stats).abs().max() > 1e-3


def test_a_lone_recording_from_a_signer_level_model_says_which_statistics_it_gets(make_cfg, caplog):
    """predict / the Python API have no signer statistics for one recording: they say they use the train split's."""
    import hydra

    from sign_ctc.api import Recognizer

    cfg = make_cfg("model=student", "normalization.signer_level=true")
    module = hydra.utils.instantiate(cfg.model, normalizer=hydra.utils.instantiate(cfg.normalization),
                                     vocab=["<blank>", "<unk>", "A"])
    with caplog.at_level("WARNING", logger="sign_ctc.api"):
        Recognizer.from_module(module)
    assert "signer_level=true" in caplog.text and "train split's" in caplog.text
