"""Faults injected into real batches: each is skipped and reported, refused, or trained through."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from sign_ctc.callbacks.nan_guard import NaNGuard, NonFiniteTrainingError
from sign_ctc.data.collate import collate
from sign_ctc.data.dataset import MediaPipeFeatureDataset
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.features.layout import SLICES
from sign_ctc.models.ctc_module import CTCModule, ctc_required_lengths, nonfinite_samples
from sign_ctc.run.build import build_datamodule, build_model, warn_infeasible
from tests.helpers import SMALL_CORPUS


@pytest.fixture
def batches(small_corpus):
    vocab = Vocabulary.from_glosses(s.glosses for s in small_corpus.sentences("train"))
    ds = MediaPipeFeatureDataset(small_corpus, "train", vocab)
    items = [ds[i] for i in range(16)]
    return vocab, [collate(items[:4]), collate(items[4:8]), collate(items[8:12]), collate(items[12:16])]


def _module(vocab: Vocabulary, normalization: str = "per_sample") -> CTCModule:
    from functools import partial

    from sign_ctc.models.i3d import I3DTeacher
    from sign_ctc.models.normalization import Normalizer

    torch.manual_seed(0)
    return CTCModule(net=partial(I3DTeacher, dropout=0.0), normalizer=Normalizer(normalization, body_relative=False, body_per_frame=False), vocab=vocab.tokens,
                     optimizer=partial(torch.optim.AdamW, lr=1e-3))


def _fit(module, batches, guard, tmp_path, **trainer_kw):
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[guard],
                         default_root_dir=tmp_path, **trainer_kw)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, collate_fn=lambda b: b))
    return trainer


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _all_finite(module) -> bool:
    return all(torch.isfinite(p).all() for p in module.parameters())


def test_nonfinite_samples_flags_exactly_the_samples_with_nan_or_inf():
    x = torch.zeros(6, 50, 6516)
    x[1, 7, 3] = float("nan")
    x[3, 0, 0] = float("inf")
    x[4, 1, 1], x[4, 2, 2] = float("inf"), float("-inf")  # sums to NaN
    x[5] = 3e38  # finite, but its sum overflows: not flagged
    assert nonfinite_samples(x).tolist() == [False, True, False, True, True, False]
    assert nonfinite_samples(torch.zeros(2, 4, 3)).tolist() == [False, False]
    assert nonfinite_samples(x.to(torch.bfloat16))[[1, 3, 4]].all()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_input_frames_are_skipped_and_reported(batches, tmp_path, value):
    vocab, bs = batches
    bad = replace(bs[0], features=bs[0].features.clone())
    bad.features[2, 5] = value  # one frame of sample 2
    module = _module(vocab)
    before = _params(module)
    guard = NaNGuard(max_consecutive=3, dump_dir=str(tmp_path / "dumps"))
    _fit(module, [bad], guard, tmp_path)
    assert guard.events == 1 and guard.history[0].where == "input"
    assert guard.history[0].ids == [bad.ids[2]]
    after = _params(module)
    assert all(torch.equal(before[k], after[k]) for k in before)  # no parameter change
    dump = json.loads(next((tmp_path / "dumps").glob("*_input.json")).read_text())
    assert dump["offending_ids"] == [bad.ids[2]]
    assert dump["batch"][2]["nonfinite_frames"] == [5]
    # training goes on with healthy batches and stays finite
    _fit(module, [bad, bs[1], bs[2]], guard, tmp_path)
    assert guard.events == 2 and _all_finite(module)
    assert not all(torch.equal(before[k], v) for k, v in _params(module).items())


def test_consecutive_bad_steps_stop_with_the_sample_ids(batches, tmp_path):
    vocab, bs = batches
    bad = []
    for b in bs[:3]:
        b = replace(b, features=b.features.clone())
        b.features[0, 0, 0] = float("nan")
        bad.append(b)
    guard = NaNGuard(max_consecutive=3, dump_dir=str(tmp_path))
    with pytest.raises(NonFiniteTrainingError, match="3 consecutive") as err:
        _fit(_module(vocab), bad, guard, tmp_path)
    for b in bad:
        assert b.ids[0] in str(err.value)


def test_clipping_reuses_the_guards_norm_and_matches_lightnings_own_clipping(batches, tmp_path, monkeypatch):
    from functools import partial

    vocab, bs = batches
    lightning_clips = []
    original = CTCModule.clip_gradients
    monkeypatch.setattr(CTCModule, "clip_gradients", lambda self, *a, **k: (lightning_clips.append(1), original(self, *a, **k)))
    params = []
    for guard in (NaNGuard(dump_dir=str(tmp_path)), pl.Callback()):
        module = _module(vocab)
        module.optimizer_factory = partial(torch.optim.SGD, lr=0.1)  # update = -lr * clipped gradient
        _fit(module, bs[:2], guard, tmp_path, gradient_clip_val=0.5)
        params.append(_params(module))
    assert len(lightning_clips) == 2  # only the run without the guard went through Lightning's clipping
    initial = _params(_module(vocab))
    assert any(not torch.equal(params[0][k], initial[k]) for k in initial if initial[k].is_floating_point())
    for k in params[0]:
        assert torch.allclose(params[0][k], params[1][k], rtol=1e-5, atol=1e-6), k


def test_nonfinite_gradients_are_dropped_without_an_update(batches, tmp_path):
    vocab, bs = batches
    module = _module(vocab)
    before = _params(module)
    module.net.classifier.weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    guard = NaNGuard(max_consecutive=5)
    _fit(module, [bs[0]], guard, tmp_path)
    assert [e.where for e in guard.history] == ["backward"]
    assert guard.history[0].ids == bs[0].ids
    assert "net.classifier.weight" in guard.history[0].detail["first_params"]
    after = _params(module)
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)
    assert _all_finite(module)


def test_sequence_too_short_for_its_glosses_is_left_out_and_named(batches, tmp_path):
    vocab, bs = batches
    b = replace(bs[0], lengths=bs[0].lengths.clone())
    b.lengths[1] = 6  # 6 frames -> 2 outputs at stride 4, for a sentence of several glosses
    need = ctc_required_lengths(b.targets, b.target_lengths)
    assert need[1] > 2
    module = _module(vocab)
    log_probs, out_lengths = module(b.features, b.presence, b.lengths)
    per_sample, feasible, _ = module.ctc_loss(log_probs, out_lengths, b)
    assert feasible.tolist() == [True, False, True, True]
    assert torch.isfinite(per_sample[feasible]).all()
    assert not torch.isfinite(per_sample[1])  # what zero_infinity=False would have summed into the loss
    loss = module.training_step(b, 0)
    assert torch.isfinite(loss) and module.infeasible_ids == [b.ids[1]]


def test_required_lengths_count_adjacent_repeats():
    targets = torch.tensor([3, 3, 4, 5, 5, 5, 7])
    assert ctc_required_lengths(targets, torch.tensor([3, 4])).tolist() == [4, 6]
    # equal glosses across two samples' boundary are no repeat; an empty target needs nothing
    assert ctc_required_lengths(torch.tensor([3, 3, 3, 4, 4]), torch.tensor([2, 0, 2, 1])).tolist() == [3, 0, 2, 1]
    assert ctc_required_lengths(torch.tensor([9]), torch.tensor([1])).tolist() == [1]


def test_both_hands_missing_and_outliers_train_stably(batches, tmp_path):
    vocab, bs = batches
    b = replace(bs[0], features=bs[0].features.clone(), presence=bs[0].presence.clone())
    b.presence[0, :, 1:3] = False  # both hands missing throughout
    b.features[0, :, SLICES["hands"]] = 0.0
    b.features[1, 3, 40] = 1e30  # a huge outlier
    b.features[2, :, 7] = 0.25  # a zero-variance channel
    module = _module(vocab)
    guard = NaNGuard()
    _fit(module, [b, b, b], guard, tmp_path)
    assert guard.events == 0 and _all_finite(module)


def test_checkpoint_with_nonfinite_weights_is_refused(batches, tmp_path):
    vocab, bs = batches
    module = _module(vocab)
    guard = NaNGuard()
    trainer = _fit(module, [bs[0]], guard, tmp_path)
    trainer.save_checkpoint(tmp_path / "ok.ckpt")
    with torch.no_grad():
        module.net.classifier.bias[0] = float("nan")
    with pytest.raises(NonFiniteTrainingError, match="net.classifier.bias"):
        trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


def test_setup_warns_with_the_number_of_infeasible_sentences(make_cfg, small_corpus, caplog):
    cfg = make_cfg("logger=none", *SMALL_CORPUS)
    datamodule = build_datamodule(cfg)
    ds = datamodule.dataset("train")
    ds._lengths = [8] * len(ds)  # 8 frames -> 2 outputs at stride 4
    expected = [s.id for s in ds.sentences
                if len(s.glosses) + sum(a == b for a, b in zip(s.glosses, s.glosses[1:])) > 2]
    assert 0 < len(expected) < len(ds)
    with caplog.at_level(logging.WARNING):
        model = build_model(cfg, datamodule)
    assert f"{len(expected)} of 48 train sentences" in caplog.text and "stride 4" in caplog.text
    assert warn_infeasible(model, datamodule) == expected


# ------------------------------------------------------------------ CTC-infeasible samples


def _infeasible_longest(module: CTCModule, items, sid: str = "too_short"):
    """A sample longer than every other item (so it sets the batch's padding) whose glosses need
    more CTC frames than the net outputs for it: infeasible by length alone."""
    from sign_ctc.data.sample import Sample

    T = max(s.features.shape[0] for s in items) + 7
    feats = torch.cat([s.features for s in items])[:T]
    presence = torch.cat([s.presence for s in items])[:T]
    assert feats.shape[0] == T
    n_out = int(module.net.output_lengths(torch.tensor([T]))[0])
    targets = torch.cat([s.targets for s in items] * 4)[: n_out + 1]
    assert int(ctc_required_lengths(targets, torch.tensor([len(targets)]))[0]) > n_out
    return Sample(sid, feats, presence, targets)


def _feasible(vocab: Vocabulary, batch) -> list[bool]:
    return _module(vocab).feasible(batch).tolist()


@pytest.fixture
def infeasible_batches(small_corpus):
    """(vocab, batch of 7 samples + 1 infeasible at index 3, the real collate of the 7 alone)."""
    vocab = Vocabulary.from_glosses(s.glosses for s in small_corpus.sentences("train"))
    ds = MediaPipeFeatureDataset(small_corpus, "train", vocab)
    items = [ds[i] for i in range(7)]
    bad = _infeasible_longest(_module(vocab), items)
    with_bad = collate(items[:3] + [bad] + items[3:])
    without = collate(items)
    assert with_bad.features.shape[1] > without.features.shape[1]  # the bad sample sets the padding
    return vocab, with_bad, without


def test_infeasible_sample_is_dropped_before_the_forward_and_the_update_is_that_of_the_batch_without_it(
        infeasible_batches, tmp_path, capsys):
    vocab, with_bad, without = infeasible_batches
    assert _feasible(vocab, with_bad) == [True, True, True, False, True, True, True, True]
    initial = _params(_module(vocab))
    runs = {}
    for name, batch in (("with", with_bad), ("without", without)):
        module = _module(vocab)
        guard = NaNGuard(max_consecutive=1, dump_dir=str(tmp_path / name / "nan_guard"))
        trainer = _fit(module, [batch], guard, tmp_path / name, gradient_clip_val=1.0)
        assert guard.events == 0 and guard.history == []  # the guard stays silent
        assert not list((tmp_path / name).rglob("*.json"))  # and writes no dump
        assert trainer.global_step == 1
        runs[name] = (_params(module), dict(trainer.callback_metrics))
    (p_with, m_with), (p_without, m_without) = runs["with"], runs["without"]
    assert set(p_with) == set(p_without) == set(initial)
    changed = [k for k in initial if not torch.equal(initial[k], p_with[k])]
    assert "net.classifier.weight" in changed and any("running_mean" in k for k in changed)
    for k in initial:  # weights, BatchNorm running statistics and counters: bit for bit
        assert torch.equal(p_with[k], p_without[k]), k
    assert torch.equal(m_with["train/loss"], m_without["train/loss"])
    assert float(m_with["train/infeasible"]) == 1.0 and float(m_without["train/infeasible"]) == 0.0
    out = capsys.readouterr().out
    assert "1 sample(s) too short for their glosses at stride 4, left out of the loss: too_short" in out


def test_batch_select_equals_the_collate_of_the_kept_samples(infeasible_batches):
    from dataclasses import fields

    _, with_bad, without = infeasible_batches
    kept = with_bad.select(torch.tensor([True, True, True, False, True, True, True, True]))
    for f in fields(without):
        v, got = getattr(without, f.name), getattr(kept, f.name)
        assert (torch.equal(got, v) if torch.is_tensor(v) else got == v), f.name


def test_a_batch_with_no_feasible_sample_is_skipped_without_an_event(infeasible_batches, tmp_path):
    vocab, with_bad, _ = infeasible_batches
    only_bad = with_bad.select(torch.tensor([False, False, False, True, False, False, False, False]))
    module = _module(vocab)
    before = _params(module)
    guard = NaNGuard(max_consecutive=1, dump_dir=str(tmp_path / "nan_guard"))
    trainer = _fit(module, [only_bad, only_bad], guard, tmp_path)
    assert guard.events == 0 and not (tmp_path / "nan_guard").exists()
    # Lightning still counts the (gradient-free) optimizer steps; no parameter or buffer moves
    assert all(torch.equal(before[k], v) for k, v in _params(module).items())
    assert float(trainer.callback_metrics["train/infeasible"]) == 2.0  # reported once per occurrence


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_evaluation_masks_infeasible_samples_out_of_the_loss_and_still_decodes_them(infeasible_batches, tmp_path,
                                                                                   stage):
    vocab, with_bad, _ = infeasible_batches
    module = _module(vocab)
    module.eval()
    with torch.no_grad():
        log_probs, out_lengths = module(with_bad.features, with_bad.presence, with_bad.lengths)
        per_sample, feasible, _ = module.ctc_loss(log_probs, out_lengths, with_bad)
    assert feasible.tolist() == [True, True, True, False, True, True, True, True]
    assert not torch.isfinite(per_sample[3]) and torch.isfinite(per_sample[feasible]).all()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    loader = DataLoader([with_bad], batch_size=None, collate_fn=lambda b: b)
    prefix = "val" if stage == "validate" else "test"
    (metrics,) = getattr(trainer, stage)(module, dataloaders=loader)
    assert metrics[f"{prefix}/loss"] == pytest.approx(float(per_sample[feasible].mean()), rel=1e-6)
    # every sample, the infeasible one too, is decoded and scored against its full reference
    assert sorted(p["id"] for p in module.predictions) == sorted(with_bad.ids)
    assert module.last_result.num_ref == int(with_bad.target_lengths.sum())
    assert len(module.last_result.sentences) == 8
