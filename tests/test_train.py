"""End to end through the real Hydra config: compose, train, checkpoint, evaluate, log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF, SMALL_CORPUS

GROUPS = ["data", "model", "normalization", "decoding", "trainer", "logger", "callbacks", "experiment", "debug",
          "hparams_search", "backend", "paths", "hydra"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_config_group_option_composes(group, make_cfg):
    options = _options(group)
    assert options, f"conf/{group} is empty"
    for option in options:
        key = group
        cfg = make_cfg(f"{key}={option}" if group != "hydra" else f"hydra={option}")
        assert cfg.model._target_ == "sign_ctc.ctc_module.CTCModule"
        assert cfg.metric.name == "val/wer"


def test_every_group_folder_is_checked():
    assert {d.name for d in CONF.iterdir() if d.is_dir()} == set(GROUPS)


def test_required_groups_have_their_options():
    assert {"synthetic", "mediapipe_full", "phoenix2014", "phoenix2014t"} <= set(_options("data"))
    assert {"per_sample", "global", "none"} <= set(_options("normalization"))
    assert {"default", "cpu", "gpu", "ddp"} <= set(_options("trainer"))
    assert {"wandb", "csv", "none"} <= set(_options("logger"))
    assert {"fast_dev_run", "overfit", "limit"} <= set(_options("debug"))


def test_default_config_is_synthetic_i3d_offline_wandb():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train")
    assert cfg.data.corpus._target_.endswith("SyntheticCorpus")
    assert cfg.model.net._target_.endswith("I3DTeacher")
    assert cfg.logger.wandb.offline is True
    assert cfg.trainer.accelerator == "cpu"


def test_fast_dev_run_trains_a_few_steps(make_cfg, small_corpus):
    from train import train

    cfg = make_cfg("debug=fast_dev_run", "logger=none", *SMALL_CORPUS)
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert 0.0 <= metrics["test/wer"] <= 100.0


def test_overfit_eight_sentences_to_zero_wer(make_cfg, small_corpus):
    """The seed's overfit test: 8 training sentences recognized without error."""
    from train import train

    cfg = make_cfg("debug=overfit", "logger=none", "test=false", "callbacks.rich_progress_bar=null",
                   *SMALL_CORPUS)
    metrics = train(cfg)
    assert metrics["val/wer"] == 0.0
    assert metrics["train/loss"] < 0.5


def test_checkpoint_to_eval_gives_the_same_wer(make_cfg, small_corpus, tmp_path):
    from eval import evaluate
    from train import train

    run = tmp_path / "run"
    cfg = make_cfg("logger=csv", "trainer.max_epochs=2", "callbacks.rich_progress_bar=null", *SMALL_CORPUS,
                   output_dir=run)
    metrics = train(cfg)
    best = json.loads((run / "test_results.json").read_text())
    assert best["test"]["wer"] == pytest.approx(metrics["test/wer"])
    ckpt = Path(best["checkpoint"])
    assert ckpt.is_file() and (run / "vocab.json").is_file()
    lines = (run / "test_predictions.csv").read_text().splitlines()
    assert lines[0] == "id,reference,hypothesis,errors" and len(lines) == 1 + 12

    eval_cfg = make_cfg(f"ckpt_path={ckpt}", *SMALL_CORPUS, config_name="eval", output_dir=tmp_path / "eval")
    summary = evaluate(eval_cfg)
    assert summary["wer"] == pytest.approx(metrics["test/wer"], abs=1e-6)
    assert (tmp_path / "eval" / "test_predictions.csv").read_text() == (run / "test_predictions.csv").read_text()
    assert (tmp_path / "eval" / "test_hyp.ctm").is_file()

    # beam search of width 1 is the greedy decoder
    beam_cfg = make_cfg(f"ckpt_path={ckpt}", "decoding=beam", "decoding.beam_width=1", *SMALL_CORPUS,
                        config_name="eval", output_dir=tmp_path / "beam")
    assert evaluate(beam_cfg)["wer"] == pytest.approx(summary["wer"], abs=1e-6)

    # predict: one .pose through the checkpoint alone gives the hypothesis eval wrote for it
    from sign_ctc.predict import run as predict_run

    sid, _, hyp = lines[1].split(",")[:3]
    pose = small_corpus.landmark_path("test", next(s for s in small_corpus.sentences("test") if s.id == sid))
    pred_cfg = make_cfg(f"ckpt_path={ckpt}", f"pose={pose}", config_name="predict", output_dir=tmp_path / "pred")
    (result,) = predict_run(pred_cfg)
    assert result["glosses"] == hyp


def test_checkpoint_of_another_layout_is_refused(make_cfg, small_corpus, tmp_path):
    from sign_ctc.build import build_datamodule, build_model
    from sign_ctc.checkpoint import CheckpointError, load_module

    cfg = make_cfg("logger=none", *SMALL_CORPUS)
    model = build_model(cfg, build_datamodule(cfg))
    ckpt = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "ok.ckpt")
    loaded = load_module(tmp_path / "ok.ckpt")
    assert loaded.vocab.tokens == model.vocab.tokens
    assert torch.equal(loaded.normalizer.mean, model.normalizer.mean)  # statistics travel in the checkpoint
    ckpt["sign_ctc"]["layout_version"] = "mp-holistic-6516-v0"
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="layout"):
        load_module(tmp_path / "old.ckpt")
