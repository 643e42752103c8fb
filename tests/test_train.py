"""End to end through the real Hydra config: compose, train, checkpoint, evaluate, log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from tests.helpers import CONF, SMALL_CORPUS

GROUPS = ["data", "model", "normalization", "augmentation", "distillation", "decoding", "trainer", "logger", "callbacks",
          "experiment", "debug", "hparams_search", "backend", "paths", "hydra"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_config_group_option_composes(group, make_cfg):
    options = _options(group)
    assert options, f"sign_ctc/conf/{group} is empty"
    for option in options:
        key = group
        cfg = make_cfg(f"{key}={option}" if group != "hydra" else f"hydra={option}")
        assert cfg.model._target_ == "sign_ctc.models.ctc_module.CTCModule"
        assert cfg.metric.name == "val/wer"


def test_every_group_folder_is_checked():
    # figure_style: a group of eval.py and sign_ctc.cli.render, not of train.py (tests/test_figures.py)
    assert {d.name for d in CONF.iterdir() if d.is_dir() and d.name != "__pycache__"} == set(GROUPS) | {"figure_style"}


def test_required_groups_have_their_options():
    assert {"synthetic", "mediapipe_full", "phoenix2014", "phoenix2014t"} <= set(_options("data"))
    assert {"per_sample", "global", "none"} <= set(_options("normalization"))
    assert {"default", "cpu", "gpu", "ddp"} <= set(_options("trainer"))
    assert {"wandb", "csv", "none"} <= set(_options("logger"))
    assert {"fast_dev_run", "overfit", "limit"} <= set(_options("debug"))


def test_default_config_is_synthetic_i3d_offline_wandb():
    GlobalHydra.instance().clear()
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        cfg = compose(config_name="train")
    assert cfg.data.corpus._target_.endswith("SyntheticCorpus")
    assert cfg.model.net._target_.endswith("I3DTeacher")
    assert cfg.logger.wandb.offline is True
    assert cfg.trainer.accelerator == "auto"  # the GPU where there is one (the design card's command)


class _Calls:
    """Counts the module's validation / test steps and the SimpleProfiler's reports of one run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        from lightning.pytorch.profilers import SimpleProfiler

        from sign_ctc.models.ctc_module import CTCModule

        self.val = self.test = 0
        self.reports: list[str] = []
        val_step, test_step, summary = CTCModule.validation_step, CTCModule.test_step, SimpleProfiler.summary

        def counted_val(module, *a, **k):
            self.val += 1
            return val_step(module, *a, **k)

        def counted_test(module, *a, **k):
            self.test += 1
            return test_step(module, *a, **k)

        def recorded_summary(profiler):
            text = summary(profiler)
            self.reports.append(text)
            return text

        monkeypatch.setattr(CTCModule, "validation_step", counted_val)
        monkeypatch.setattr(CTCModule, "test_step", counted_test)
        monkeypatch.setattr(SimpleProfiler, "summary", recorded_summary)


# Per debug option: overrides the test adds (never one the option itself sets) and what the run must show.
DEBUG_RUNS = {
    # one train, one val and one test batch; no checkpoint, so the current weights are tested
    "fast_dev_run": [],
    # Batches of 4 (the option does not set the batch size) so that every split has more batches
    # than the option's limits (train 12 > 10, dev 3 > 2, test 3 > 2) and each limit is exercised.
    "limit": ["data.batch_size=4", "data.eval_batch_size=4"],
    "overfit": ["test=false"],
    "profile": [],
}


@pytest.mark.parametrize("option", _options("debug"))
def test_every_debug_option_runs_train(option, make_cfg, small_corpus, tmp_path, monkeypatch):
    """`debug=<option>` composes AND trains on the small corpus (debug=limit used to crash in fit)."""
    from sign_ctc.run.train import train

    assert option in DEBUG_RUNS, f"sign_ctc/conf/debug/{option}.yaml has no run in this test: add what it must show"
    calls = _Calls(monkeypatch)
    cfg = make_cfg(f"debug={option}", "logger=none", "callbacks.rich_progress_bar=null", *SMALL_CORPUS,
                   *DEBUG_RUNS[option])
    metrics = train(cfg)
    done = json.loads((tmp_path / "metrics.json").read_text())
    assert done["status"] == "completed"
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    tested = (tmp_path / "test_predictions.csv").read_text().splitlines()[1:] if cfg.test else []
    if option == "fast_dev_run":
        assert (done["global_step"], calls.val, calls.test) == (1, 1, 1)
        assert len(tested) == 12 and 0.0 <= metrics["test/wer"] <= 100.0  # one test batch of 12
    elif option == "limit":
        assert (cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches, cfg.trainer.limit_test_batches) \
            == (10, 2, 2)
        assert (done["epochs"], done["global_step"], calls.val, calls.test) == (2, 2 * 10, 2 * 2, 2)
        assert len(tested) == 2 * 4  # of 12 test sentences
    elif option == "overfit":
        # the seed's overfit test: 8 training sentences recognized without error
        assert metrics["val/wer"] == 0.0 and metrics["train/loss"] < 0.5
        assert calls.test == 0 and done["global_step"] == done["epochs"] == calls.val * 5
    elif option == "profile":
        assert (done["global_step"], calls.val, calls.test) == (48 // 8, 1, 0)  # 6 train batches < its limit of 20
        assert not (tmp_path / "checkpoints").exists()
        (report,) = [r for r in calls.reports if "FIT Profiler Report" in r]
        assert "train_dataloader_next" in report and "training_step" in report


def test_checkpoint_to_eval_gives_the_same_wer(make_cfg, small_corpus, tmp_path):
    from sign_ctc.run.evaluate import evaluate
    from sign_ctc.run.train import train

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

    # no data= on the command line: the corpus recorded in the checkpoint
    eval_cfg = make_cfg(f"ckpt_path={ckpt}", config_name="eval", output_dir=tmp_path / "eval")
    assert eval_cfg.get("data") is None
    summary = evaluate(eval_cfg)
    assert summary["wer"] == pytest.approx(metrics["test/wer"], abs=1e-6)
    assert (tmp_path / "eval" / "test_predictions.csv").read_text() == (run / "test_predictions.csv").read_text()
    assert (tmp_path / "eval" / "test_hyp.ctm").is_file()

    # beam search of width 1 is the greedy decoder
    beam_cfg = make_cfg(f"ckpt_path={ckpt}", "decoding=beam", "decoding.beam_width=1", "data=synthetic",
                        *SMALL_CORPUS, config_name="eval", output_dir=tmp_path / "beam")
    assert evaluate(beam_cfg)["wer"] == pytest.approx(summary["wer"], abs=1e-6)

    # predict: one .pose through the checkpoint alone gives the hypothesis eval wrote for it
    from sign_ctc.cli.predict import run as predict_run

    sid, _, hyp = lines[1].split(",")[:3]
    pose = small_corpus.landmark_path("test", next(s for s in small_corpus.sentences("test") if s.id == sid))
    pred_cfg = make_cfg(f"ckpt_path={ckpt}", f"pose={pose}", config_name="predict", output_dir=tmp_path / "pred")
    (result,) = predict_run(pred_cfg)
    assert result["glosses"] == hyp


def test_checkpoint_of_another_layout_is_refused(make_cfg, small_corpus, tmp_path):
    from sign_ctc.models.checkpoint import CheckpointError, load_module
    from sign_ctc.run.build import build_datamodule, build_model

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


def test_eval_uses_the_checkpoints_missing_landmark_mode(make_cfg, small_corpus, tmp_path, caplog, monkeypatch):
    """A model trained on interpolated landmarks is scored on interpolated landmarks, whatever data.missing says."""
    import logging

    import sign_ctc.data.dataset as dataset_module
    from sign_ctc.data.dataset import MediaPipeFeatureDataset
    from sign_ctc.models.checkpoint import load_module, read_checkpoint
    from sign_ctc.run.evaluate import evaluate
    from sign_ctc.run.train import train

    run = tmp_path / "run"
    # One epoch (the test's choice: the default data/trainer config sets 12) is enough to compare.
    cfg = make_cfg("logger=none", "data.missing=interpolate", "trainer.max_epochs=1",
                   "callbacks.rich_progress_bar=null", *SMALL_CORPUS, output_dir=run)
    metrics = train(cfg)
    ckpt = Path(json.loads((run / "test_results.json").read_text())["checkpoint"])
    assert read_checkpoint(ckpt)["sign_ctc"]["recipe"]["features"]["missing"] == "interpolate"

    # The two modes give different features on this test split (landmarks do go missing) ...
    vocab = load_module(ckpt).vocab
    split = {m: MediaPipeFeatureDataset(small_corpus, "test", vocab, m) for m in ("zero", "interpolate")}
    assert all(not torch.equal(split["zero"][i].features, split["interpolate"][i].features)
               for i in range(len(split["zero"])))
    # ... and every feature eval computes must come from interpolated landmarks.
    modes: list[str] = []
    fill = dataset_module.fill_missing
    monkeypatch.setattr(dataset_module, "fill_missing", lambda p, pr, mode: (modes.append(mode), fill(p, pr, mode))[1])

    eval_cfg = make_cfg(f"ckpt_path={ckpt}", "data=synthetic", *SMALL_CORPUS, config_name="eval",
                        output_dir=tmp_path / "eval")
    assert eval_cfg.data.missing == "zero"  # the data config's default
    with caplog.at_level(logging.INFO, logger="sign_ctc.run.evaluate"):
        summary = evaluate(eval_cfg)
    assert summary["missing"] == "interpolate"
    assert len(modes) >= 12 and set(modes) == {"interpolate"}  # every test sentence, interpolated
    assert "missing-landmark mode from the checkpoint: interpolate (data config: zero)" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "sign_ctc.eval"]
    assert summary["wer"] == pytest.approx(metrics["test/wer"], abs=1e-6)
    assert (tmp_path / "eval" / "test_predictions.csv").read_text() == (run / "test_predictions.csv").read_text()
    results = json.loads((tmp_path / "eval" / "test_results.json").read_text())
    assert results["test"]["missing"] == "interpolate"

    # set explicitly on the command line to something else: the checkpoint's mode wins, with a warning
    caplog.clear()
    explicit = make_cfg(f"ckpt_path={ckpt}", "data=synthetic", "data.missing=zero", *SMALL_CORPUS, config_name="eval",
                        output_dir=tmp_path / "eval_zero")
    with caplog.at_level(logging.WARNING, logger="sign_ctc.run.evaluate"):
        again = evaluate(explicit)
    assert again["missing"] == "interpolate" and again["wer"] == summary["wer"] and set(modes) == {"interpolate"}
    assert "data.missing=zero is ignored: the model was trained with missing=interpolate" in caplog.text
    assert (tmp_path / "eval_zero" / "test_predictions.csv").read_text() == \
        (run / "test_predictions.csv").read_text()


def test_trained_missing_mode_prefers_the_checkpoint(caplog):
    import logging

    from sign_ctc.run.evaluate import trained_missing_mode

    recipe = {"features": {"missing": "interpolate"}}
    with caplog.at_level(logging.INFO, logger="sign_ctc.run.evaluate"):
        assert trained_missing_mode(recipe, "zero", explicit=True) == "interpolate"
        assert trained_missing_mode(recipe, "zero", explicit=False) == "interpolate"
        assert trained_missing_mode(recipe, "interpolate", explicit=True) == "interpolate"
        assert trained_missing_mode({}, "zero", explicit=False) == "zero"  # a checkpoint from before the recipe had it
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records] == [
        ("WARNING", "data.missing=zero is ignored"),
        ("INFO", "missing-landmark mode from the checkpoint"),
        ("WARNING", "the checkpoint does not record its missing-landmark mode"),
    ]


def test_every_epoch_writes_one_log_line(make_cfg, small_corpus, tmp_path, caplog):
    """A run not on a terminal still shows its progress: one line per epoch with the mean training loss
    of its steps, the validation loss and WER, its time and samples per second (debug=limit: 2 epochs of
    the small corpus's 6 training batches)."""
    import logging
    import re

    from sign_ctc.run.train import train

    cfg = make_cfg("debug=limit", "logger=none", "callbacks.rich_progress_bar=null", *SMALL_CORPUS)
    with caplog.at_level(logging.INFO, logger="sign_ctc.train"):
        train(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "sign_ctc.train" and r.getMessage().startswith("epoch ")]
    pattern = re.compile(r"epoch (\d)/2 \(step (\d+)\): train loss (\d+\.\d{3}), val loss (\d+\.\d{3}), "
                         r"val WER (\d+\.\d{2})%, (\d+\.\d) s, (\d+\.\d) samples/s")
    matches = [pattern.fullmatch(line) for line in lines]
    assert len(lines) == 2 and all(matches), lines
    assert [(int(m[1]), int(m[2])) for m in matches] == [(1, 6), (2, 12)]
    assert all(float(m[3]) > 0 and 0.0 <= float(m[5]) <= 100.0 and float(m[7]) > 0 for m in matches)


def test_importing_the_module_leaves_the_warnings_filters_alone():
    """No process-wide warnings filter at import: the datamodule-hook warning is silenced around a
    training job's fit and test only (sign_ctc.run.train)."""
    import subprocess
    import sys

    code = ("import warnings, lightning.pytorch, torch, scipy.special, sympy; before = list(warnings.filters); "
            "import sign_ctc.models.ctc_module, sign_ctc.run.train; print(warnings.filters == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]
