"""`python -m sign_ctc.cli.render`, eval.py's figures and CTM timings, and the W&B posteriorgram callback."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch.loggers
import pytest
import torch

from tests.helpers import SMALL_CORPUS, compose_cfg

# A small net (the real recipe otherwise); untrained: the tests check the mechanics, not the WER.
TINY = ["logger=none", "normalization=per_sample", "model.net.fusion_dim=32", "model.net.lstm_hidden=32",
        "model.net.modality_widths={pose:16,hands:16,face:16,temporal:16}", "callbacks.rich_progress_bar=null"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, cache_dir, small_corpus) -> Path:
    from sign_ctc.run.build import build_datamodule, build_model

    out = tmp_path_factory.mktemp("render_ckpt")
    torch.manual_seed(0)
    cfg = compose_cfg("train", [*TINY, *SMALL_CORPUS], out, cache_dir)
    model = build_model(cfg, build_datamodule(cfg))
    state = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(state)
    torch.save(state, out / "tiny.ckpt")
    return out / "tiny.ckpt"


def render_cfg(ckpt: Path, out: Path, cache: Path, *overrides: str):
    return compose_cfg("render", [f"ckpt_path={ckpt}", "figure_style.width=240", "figure_style.skeleton_height=180",
                                  *overrides], out, cache)


def test_render_a_corpus_sample(ckpt, small_corpus, cache_dir, tmp_path) -> None:
    import cv2

    from sign_ctc.cli.render import run
    from sign_ctc.decoding.alignment import forced_align
    from sign_ctc.features.pose_io import read_pose
    from sign_ctc.models.checkpoint import load_module
    from sign_ctc.models.inference import forward_landmarks

    sentence = small_corpus.sentences("dev")[3]
    (result,) = run(render_cfg(ckpt, tmp_path, cache_dir, f"sample={sentence.id}"))
    lm = read_pose(small_corpus.landmark_path("dev", sentence))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        [f"{sentence.id}.mp4", f"{sentence.id}_posteriorgram.png", f"{sentence.id}_alignment.json"])
    cap = cv2.VideoCapture(result["video"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(lm) and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(lm.fps)
    cap.release()
    record = json.loads(Path(result["alignment"]).read_text())
    assert record["reference"] == " ".join(sentence.glosses) and record["frames"] == len(lm)
    # the reference track is the forced alignment of the model's log-probs, in input frames and seconds
    model = load_module(ckpt)
    log_probs, out_lengths = forward_landmarks(model, lm)
    assert record["output_frames"] == int(out_lengths[0]) == math.ceil(len(lm) / model.net.total_stride)
    ids = model.vocab.encode(sentence.glosses)
    ali = forced_align(log_probs[0, : int(out_lengths[0])], ids, list(sentence.glosses), model.net.total_stride, len(lm))
    assert [(s["gloss"], s["input_start"], s["input_end"]) for s in record["reference_alignment"]] == \
        [(s.gloss, s.input_start, s.input_end) for s in ali.spans]
    assert record["reference_log_prob"] == pytest.approx(ali.score, abs=1e-3)
    first = record["reference_alignment"][0]
    assert first["start_s"] == pytest.approx(first["input_start"] / lm.fps, abs=1e-4)


def test_render_a_pose_file_with_a_reference_and_refuse_bad_input(ckpt, small_corpus, cache_dir, tmp_path) -> None:
    from sign_ctc.cli.render import run
    from sign_ctc.viz.sentences import RenderError

    sentence = small_corpus.sentences("test")[0]
    pose = small_corpus.landmark_path("test", sentence)
    (result,) = run(render_cfg(ckpt, tmp_path, cache_dir, f"pose={pose}", f"reference='{' '.join(sentence.glosses)}'",
                               "figure_style.video_format=gif"))
    assert result["id"] == pose.stem and result["video"].endswith(".gif")
    record = json.loads(Path(result["alignment"]).read_text())
    assert record["reference"].split() == list(sentence.glosses)
    with pytest.raises(RenderError, match="'no_such_id' is not in split.s. test, dev, train of corpus"):
        run(render_cfg(ckpt, tmp_path, cache_dir, "sample=no_such_id"))
    with pytest.raises(RenderError, match="exactly one of .*got sample, pose"):
        run(render_cfg(ckpt, tmp_path, cache_dir, f"sample={sentence.id}", f"pose={pose}"))
    from sign_ctc.features.pose_io import PoseFileError

    with pytest.raises(PoseFileError, match="missing.pose: file not found"):
        run(render_cfg(ckpt, tmp_path, cache_dir, f"pose={tmp_path / 'missing.pose'}"))


@pytest.mark.parametrize("name", ["signer_reduced_holistic_97f.pose", "openpose_93f.pose", "right_hand_only_170f.pose"])
def test_render_and_predict_read_every_skeleton(ckpt, cache_dir, tmp_path, name) -> None:
    """pose-format's reduced Holistic, OpenPose and a hand-only file go through predict and render as they are."""
    import cv2

    from sign_ctc.cli.predict import run as predict_run
    from sign_ctc.cli.render import run
    from sign_ctc.features.pose_io import read_pose
    from tests.helpers import DATA

    frames = len(read_pose(DATA / name))
    (result,) = run(render_cfg(ckpt, tmp_path / "render", cache_dir, f"pose={DATA / name}"))
    cap = cv2.VideoCapture(result["video"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    cap.release()
    assert json.loads(Path(result["alignment"]).read_text())["frames"] == frames
    (pred,) = predict_run(compose_cfg("predict", [f"ckpt_path={ckpt}", f"pose={DATA / name}"], tmp_path / "pred",
                                      cache_dir))
    assert pred["id"] == Path(name).stem and isinstance(pred["glosses"], str)


def eval_cfg(ckpt: Path, out: Path, cache: Path, *overrides: str):
    return compose_cfg("eval", [f"ckpt_path={ckpt}", "figure_style.width=240", "figure_style.skeleton_height=180",
                                *overrides], out, cache)


def test_eval_writes_figures_and_a_ctm_timed_by_the_alignment(ckpt, cache_dir, tmp_path) -> None:
    from sign_ctc.run.evaluate import evaluate
    from sign_ctc.scoring.ctm import read_ctm

    summary = evaluate(eval_cfg(ckpt, tmp_path, cache_dir, "figures.n=2"))
    figures = tmp_path / "figures"
    names = sorted(p.name for p in figures.iterdir())
    assert {"substitutions.png", "gloss_errors.png", "gloss_errors.csv", "wer_by_length.png"} <= set(names)
    ranks = sorted({n.split("_test_")[0] for n in names if "_test_" in n})
    assert ranks == ["best_1", "best_2", "worst_1", "worst_2"]
    assert len([n for n in names if n.endswith(".mp4")]) == len([n for n in names if n.endswith("_posteriorgram.png")]) == 4
    predictions = {p.split(",")[0]: p.split(",") for p in (tmp_path / "test_predictions.csv").read_text().splitlines()[1:]}
    worst = sorted(predictions.values(), key=lambda p: (-int(p[3]) / len(p[1].split()), -int(p[3]), p[0]))[0]
    assert any(n.startswith(f"worst_1_{worst[0]}") for n in names)
    # the CTM's times are those of each hypothesis's alignment (the drawn ones checked here)
    ctm = read_ctm(tmp_path / "test_hyp.ctm")
    for record_path in figures.glob("*_alignment.json"):
        record = json.loads(record_path.read_text())
        lines = [(x.start, x.duration, x.token) for x in ctm if x.id == record["id"]]
        assert lines == [(pytest.approx(s["start_s"], abs=1e-3), pytest.approx(s["duration_s"], abs=1e-3), s["gloss"])
                         for s in record["hypothesis_alignment"]]
        assert record["hypothesis"] == " ".join(predictions[record["id"]][2].split())
    # every line is timed in whole input frames at 25 fps (not the made-up 0.03 s steps)
    assert ctm and all(x.duration > 0 and round(x.duration / 0.04, 6) == round(x.duration / 0.04) for x in ctm)
    assert all(round(x.start / 0.16, 6) == round(x.start / 0.16) for x in ctm)  # spans start on an output frame (stride 4)
    assert summary["sentences"] == 12


def test_eval_with_figures_false_draws_nothing(ckpt, cache_dir, tmp_path) -> None:
    from sign_ctc.run.evaluate import evaluate

    evaluate(eval_cfg(ckpt, tmp_path, cache_dir, "figures=false"))
    assert not (tmp_path / "figures").exists()
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.mp4"))
    assert (tmp_path / "test_hyp.ctm").is_file()


def test_eval_logs_figures_to_wandb(ckpt, cache_dir, tmp_path) -> None:
    from sign_ctc.run.evaluate import evaluate

    evaluate(eval_cfg(ckpt, tmp_path, cache_dir, "figures.n=1", "logger=wandb"))
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    media = offline / "files" / "media"
    videos = sorted(p.name for p in (media / "videos" / "test" / "video").iterdir())
    images = sorted(p.name for p in (media / "images" / "test").rglob("*.png"))
    assert len(videos) == 2 and all(v.endswith(".mp4") for v in videos)  # worst_1 and best_1
    assert sum(n.startswith(("worst_1", "best_1")) for n in images) == 2
    assert {"substitutions", "gloss_errors", "wer_by_length"} <= {n.rsplit("_", 2)[0] for n in images}


class RecordingWandbLogger(lightning.pytorch.loggers.WandbLogger):
    """A W&B logger (the callback recognises it by type) that records images instead of starting a run."""

    def __init__(self) -> None:  # no run, no wandb import
        self.images: list[tuple[str, list, int]] = []

    def log_image(self, key: str, images: list, step: int) -> None:
        self.images.append((key, images, step))


def test_posteriorgram_callback_logs_fixed_dev_sentences_only_with_wandb(ckpt, cache_dir, small_corpus) -> None:
    from sign_ctc.callbacks.posteriorgram import PosteriorgramLogger
    from sign_ctc.data.datamodule import SignDataModule
    from sign_ctc.models.checkpoint import load_module

    model = load_module(ckpt)
    dm = SignDataModule(small_corpus, num_workers=0)
    dm.vocab = model.vocab
    wandb_logger = RecordingWandbLogger()
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, loggers=[wandb_logger], current_epoch=0,
                              max_epochs=10, global_step=7, datamodule=dm)
    callback = PosteriorgramLogger(every_n_epochs=3, num_sentences=2)
    callback.on_validation_end(trainer, model)
    # one key per sentence, one image per key: W&B's "Images sizes do not match" (several figures of
    # different sizes under one key) cannot arise
    assert [(key, len(images), step) for key, images, step in wandb_logger.images] == [
        ("val/posteriorgram/0", 1, 7), ("val/posteriorgram/1", 1, 7)]
    images = [im for _, ims, _ in wandb_logger.images for im in ims]
    assert [im._caption for im in images] == [f"{s.id} epoch 0" for s in dm.dataset("dev").sentences[:2]]
    assert all(im.image.size[0] > 300 for im in images)
    assert not model.training  # left as it was
    for epoch, due in ((1, False), (3, True), (9, True)):  # every 3rd, and the last
        trainer.current_epoch = epoch
        assert callback.due(trainer) is due
    # no W&B logger (or the sanity check): nothing is computed at all
    trainer.current_epoch = 3
    trainer.loggers = []
    callback.images = lambda *a: pytest.fail("drew without a W&B logger")  # type: ignore[method-assign]
    callback.on_validation_end(trainer, model)
    trainer.loggers, trainer.sanity_checking = [wandb_logger], True
    callback.on_validation_end(trainer, model)
    assert len(wandb_logger.images) == 2 and callback.logged == 1
