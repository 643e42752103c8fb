"""Frame-level KL distillation: the loss, a teacher checkpoint teaching a student through train.py,
the per-sample cache, and the refusals of teachers that cannot teach this student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sign_ctc.models.distillation import DistillationError, FrameKLDistillation, frame_kl
from tests.helpers import SMALL_CORPUS

TINY = ["logger=csv", "callbacks.rich_progress_bar=null", "test=false", *SMALL_CORPUS]


def test_frame_kl_is_zero_for_equal_outputs_and_matches_the_definition():
    torch.manual_seed(0)
    t = torch.randn(2, 5, 4).log_softmax(-1)
    s = torch.randn(2, 5, 4).log_softmax(-1)
    assert frame_kl(t, t, None, 8.0, drop_blank=False).item() == pytest.approx(0.0, abs=1e-7)
    pt, ps = (t / 2.0).log_softmax(-1), (s / 2.0).log_softmax(-1)
    expected = (pt.exp() * (pt - ps)).sum(-1).mean()
    assert frame_kl(t, s, None, 2.0, drop_blank=False).item() == pytest.approx(expected.item(), rel=1e-6)
    # the blank column dropped: the same KL over the renormalized gloss columns
    pt, ps = (t[..., 1:] / 2.0).log_softmax(-1), (s[..., 1:] / 2.0).log_softmax(-1)
    expected = (pt.exp() * (pt - ps)).sum(-1).mean()
    assert frame_kl(t, s, None, 2.0, drop_blank=True).item() == pytest.approx(expected.item(), rel=1e-6)


def test_frame_kl_ignores_padded_frames():
    torch.manual_seed(1)
    t = torch.randn(2, 6, 5).log_softmax(-1)
    s = torch.randn(2, 6, 5).log_softmax(-1)
    lengths = torch.tensor([6, 3])
    masked = frame_kl(t, s, lengths, 8.0, drop_blank=True)
    s_garbage = s.clone()
    s_garbage[1, 3:] = torch.randn(3, 5).log_softmax(-1)  # what padded frames hold does not matter
    assert frame_kl(t, s_garbage, lengths, 8.0, drop_blank=True).item() == pytest.approx(masked.item(), rel=1e-6)
    per_frame = torch.cat([
        torch.stack([frame_kl(t[b:b + 1, i:i + 1], s[b:b + 1, i:i + 1], None, 8.0, True) for i in range(n)])
        for b, n in enumerate(lengths.tolist())])
    assert masked.item() == pytest.approx(per_frame.mean().item(), rel=1e-5)  # a mean over the 9 real frames


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, cache_dir, small_corpus) -> Path:
    """A small I3D teacher trained for one epoch on the shared small corpus through train.py."""
    from sign_ctc.run.train import train
    from tests.helpers import compose_cfg

    run = tmp_path_factory.mktemp("teacher")
    cfg = compose_cfg("train", [*TINY, "trainer.max_epochs=1"], run, cache_dir)
    train(cfg)
    (ckpt,) = (run / "checkpoints").glob("best.ckpt")
    return ckpt


def test_student_learns_from_the_teacher_through_train_py(make_cfg, teacher_ckpt, tmp_path, cache_dir):
    from sign_ctc.run.train import train

    run = tmp_path / "student"
    cfg = make_cfg(*TINY, "trainer.max_epochs=2", "model=student", "distillation=frame_kl",
                   f"distillation.teacher_ckpt={teacher_ckpt}", output_dir=run)
    metrics = train(cfg)
    assert metrics["train/kd_loss"] > 0 and torch.isfinite(torch.tensor(metrics["train/kd_loss"]))
    assert metrics["train/loss"] == pytest.approx(metrics["train/ctc_loss"] + metrics["train/kd_loss"], rel=1e-4)
    # one cached teacher output per training sample, float16, with the student's output frame count
    (cache,) = (cache_dir / "teacher_outputs").iterdir()
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 48
    import numpy as np

    arr = np.load(files[0])
    assert arr.dtype == np.float16 and arr.shape[1] == len(json.loads((run / "vocab.json").read_text()))
    assert np.isfinite(arr).all() and np.allclose(np.exp(arr.astype(np.float64)).sum(-1), 1.0, atol=2e-2)
    # the student's checkpoint holds the student alone, and records what taught it
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not any("teacher" in k for k in ckpt["state_dict"])
    assert ckpt["state_dict"]["net.classifier.weight"].shape[1] == 128  # the student's unidirectional 128-unit LSTM
    assert ckpt["sign_ctc"]["recipe"]["distillation"]["teacher_ckpt"] == str(teacher_ckpt)


def test_a_run_that_fills_the_cache_trains_like_one_that_reads_it(make_cfg, teacher_ckpt, tmp_path):
    """The first distilled run computes the teacher's outputs, a second one reads them from the cache:
    both learn from the same float16 targets, so their checkpoints are equal tensor for tensor."""
    from sign_ctc.run.train import train

    states = []
    for name in ("fills", "reads"):
        run = tmp_path / name
        cfg = make_cfg(*TINY, "trainer.max_epochs=1", "model=student", "distillation=frame_kl", "test=false",
                       f"distillation.teacher_ckpt={teacher_ckpt}", f"distillation.cache_dir={tmp_path / 'cache'}",
                       output_dir=run)
        train(cfg)
        states.append(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"])
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 48
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_cached_outputs_equal_the_teachers_and_spare_its_forwards(make_cfg, teacher_ckpt, tmp_path):
    from sign_ctc.run.build import build_datamodule, build_model

    cfg = make_cfg(*TINY, "model=student", "distillation=frame_kl", f"distillation.teacher_ckpt={teacher_ckpt}",
                   f"distillation.cache_dir={tmp_path / 'cache'}")
    dm = build_datamodule(cfg)
    student = build_model(cfg, dm)
    dist: FrameKLDistillation = student.distillation
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader())).with_features()
    out_lengths = student.net.output_lengths(batch.lengths)
    frames = int(out_lengths.max())
    first = dist.teacher_log_probs(batch, out_lengths, frames)
    assert dist.teacher_forwards == len(batch.ids)
    again = dist.teacher_log_probs(batch, out_lengths, frames)
    assert dist.teacher_forwards == len(batch.ids)  # all read from the cache
    with torch.no_grad():
        direct, lengths = dist.teacher(batch.features, batch.presence, batch.lengths)
    assert torch.equal(lengths, out_lengths)
    # the values computed when the cache is filled are the float16 ones it keeps, so reading them back
    # gives the same targets bit for bit (a run that fills the cache trains like one that reads it)
    assert torch.equal(first, again)
    for i, n in enumerate(out_lengths.tolist()):
        assert torch.allclose(first[i, :n], direct[i, :n], atol=2e-2)  # float16 on disk
        assert torch.equal(first[i, :n], direct[i, :n].half().float())
        assert torch.all(first[i, n:] == 0)


def test_augmentation_runs_the_teacher_on_the_fly(make_cfg, teacher_ckpt, tmp_path):
    from sign_ctc.run.build import build_datamodule, build_model

    cfg = make_cfg(*TINY, "model=student", "augmentation=default", "distillation=frame_kl",
                   f"distillation.teacher_ckpt={teacher_ckpt}", f"distillation.cache_dir={tmp_path / 'cache'}")
    student = build_model(cfg, build_datamodule(cfg))
    assert student.distillation.cache is None and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("override, message", [
    ("model.net.conv_strides=[2,2,2] model.net.conv_channels=[64,64,64]", "total temporal stride 4, the student 8"),
    ("normalization=per_sample", "normalizes with"),
    ("data.missing=interpolate", "data.missing=zero"),
    ("data.corpus.seed=99", "vocabulary"),
])
def test_a_teacher_that_cannot_teach_is_refused(make_cfg, teacher_ckpt, override, message):
    from sign_ctc.run.build import build_datamodule, build_model

    cfg = make_cfg(*TINY, "model=student", "distillation=frame_kl", f"distillation.teacher_ckpt={teacher_ckpt}",
                   *override.split())
    with pytest.raises(DistillationError, match=message):
        build_model(cfg, build_datamodule(cfg))


def test_a_teacher_of_another_feature_layout_is_refused(make_cfg, teacher_ckpt, tmp_path):
    from sign_ctc.run.build import build_datamodule, build_model

    ckpt = torch.load(teacher_ckpt, map_location="cpu", weights_only=True)
    ckpt["sign_ctc"]["layout_version"] = "mp-holistic-0000-v0"
    other = tmp_path / "other_layout.ckpt"
    torch.save(ckpt, other)
    cfg = make_cfg(*TINY, "model=student", "distillation=frame_kl", f"distillation.teacher_ckpt={other}")
    with pytest.raises(DistillationError, match="expects feature layout 'mp-holistic-0000-v0'"):
        build_model(cfg, build_datamodule(cfg))


def test_missing_teacher_checkpoint_is_a_clear_error(make_cfg, tmp_path):
    from sign_ctc.run.build import build_datamodule, build_model

    cfg = make_cfg(*TINY, "model=student", "distillation=frame_kl", f"distillation.teacher_ckpt={tmp_path / 'no.ckpt'}")
    with pytest.raises(DistillationError, match="checkpoint not found"):
        build_model(cfg, build_datamodule(cfg))
