"""Evaluate a checkpoint on a corpus split: WER table (S/D/I), per-sentence hypotheses, the CTM timed
by forced alignment, optional LM tuning on dev and the error figures.

What the model saw in training (vocabulary, normalization statistics, missing-landmark mode) comes
from the checkpoint, never from the command line. The commands are ``python eval.py`` and
``sign-ctc-eval``; eval.py's docstring shows their options.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from sign_ctc.callbacks.log_probs import LogProbRecorder
from sign_ctc.decoding.alignment import AlignmentError, align_sequence
from sign_ctc.decoding.tuning import decoder_settings, format_tuning
from sign_ctc.errors import ConfigError
from sign_ctc.models.checkpoint import load_module
from sign_ctc.models.ctc_module import CTCModule
from sign_ctc.run.backend import apply_backend
from sign_ctc.run.build import fit_signer_statistics
from sign_ctc.run.decoding_setup import is_beam, set_on_command_line, tune_on_dev, with_tuned_values
from sign_ctc.run.instantiate import instantiate_group
from sign_ctc.run.reports import format_result, result_summary, write_predictions, write_results
from sign_ctc.scoring.ctm import CtmLine, ctm_lines, read_stm, timed_ctm_lines, write_ctm
from sign_ctc.scoring.official import format_report, score
from sign_ctc.viz.sentences import corpus_fps, write_eval_figures

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Decode one split with the checkpoint's own vocabulary and normalization statistics."""
    apply_backend(cfg)
    output_dir = Path(cfg.paths.output_dir)
    decoding = cfg.get("decoding")
    tune = is_beam(decoding) and bool(decoding.get("tune"))
    tuning = None
    if not tune:  # a matching <ckpt stem>.decoding.json supplies the tuned LM weight and bonus
        decoding, tuning = with_tuned_values(decoding, cfg.ckpt_path)
    decoder = hydra.utils.instantiate(decoding) if decoding and not tune else None
    model = load_module(cfg.ckpt_path, test_decoder=decoder)
    data_cfg = corpus_config(cfg, model.recipe)
    missing = trained_missing_mode(model.recipe, data_cfg.get("missing"), set_on_command_line("data.missing"))
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(data_cfg, missing=missing)
    datamodule.prepare_data()
    datamodule.vocab = model.vocab  # decode with the checkpoint's vocabulary, never a rebuilt one
    split = cfg.get("split", "test")
    if model.normalizer.signer_level:  # statistics of the signers of the split evaluated (never saved)
        fit_signer_statistics(model.normalizer, datamodule, ("dev", split) if tune else (split,))
    loggers = instantiate_group(cfg.get("logger"))
    if tune:
        if split == "dev":
            log.warning("split=dev with decoding.tune=true: the WER is measured on the split the values were tuned on")
        dev_loader = datamodule.loader("dev", False, datamodule.eval_batch_size)

        def dev_trainer(callbacks: list[pl.Callback]) -> pl.Trainer:  # no loggers: dev is not the test metric
            return hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=callbacks, enable_progress_bar=False)

        decoding, tuning = tune_on_dev(decoding, cfg.ckpt_path, model, dev_loader, dev_trainer)
        model.test_decoder = hydra.utils.instantiate(decoding)(vocab_tokens=model.vocab.tokens)
        print(format_tuning(tuning))
    recorder = LogProbRecorder()  # the test pass's log-probs: CTM timings and pictures without a second pass
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=[recorder])
    loader = datamodule.loader(split, False, datamodule.eval_batch_size)
    trainer.test(model, dataloaders=loader)

    result = model.last_result
    if not trainer.is_global_zero:  # every rank holds the gathered result; one writes it
        return result_summary(result)
    source = ("tuned on dev (this run)" if tune else tuning["file"]) if tuning else "config"
    summary = {**result_summary(result), "split": split, "decoding": type(model.test_decoder).__name__,
               "decoder": decoder_settings(model.test_decoder, source), "missing": datamodule.missing}
    if tuning:
        summary["tuning"] = tuning
    if is_beam(decoding):
        d = summary["decoder"]
        print(f"decoding: beam width {d['beam_width']}, lm_path={d['lm_path']}, lm_weight={d['lm_weight']:g}, "
              f"word_bonus={d['word_bonus']:g} ({source})")
    predictions = model.predictions
    dataset = datamodule.dataset(split)
    fps = float(cfg.get("fps") or corpus_fps(dataset))
    write_predictions(output_dir / f"{split}_predictions.csv", predictions)
    write_ctm(output_dir / f"{split}_hyp.ctm", hypothesis_ctm(predictions, recorder.log_probs, model, fps))
    figures = None
    if cfg.get("figures"):
        started = time.perf_counter()
        style = hydra.utils.instantiate(cfg.figure_style)
        figures = write_eval_figures(output_dir / "figures", split, predictions, recorder.log_probs, dataset, model,
                                     int(cfg.figures.n), fps, style, video=bool(cfg.figures.get("video", True)))
        print(f"figures: {output_dir / 'figures'} ({time.perf_counter() - started:.1f} s)")
    print(format_result(split, result))
    if cfg.scoring.get("stm"):
        report = score({p["id"]: p["hypothesis"].split() for p in predictions}, read_stm(cfg.scoring.stm),
                       rules=cfg.scoring.rules, use_sclite=None, workdir=output_dir / "scoring")
        summary["official"] = report.to_dict()
        print(format_report(report))
    write_results(output_dir / f"{split}_results.json", {"checkpoint": str(cfg.ckpt_path), split: summary})
    _log_wandb(loggers, split, summary, predictions, figures)
    return summary


def hypothesis_ctm(predictions: list[dict[str, Any]], log_probs: dict[str, tuple[Any, int]], model: CTCModule,
                   fps: float) -> list[CtmLine]:
    """CTM lines timed by each hypothesis's forced alignment; made-up consecutive times for a
    sentence without recorded log-probs (another DDP rank's), with a warning."""
    lines: list[CtmLine] = []
    untimed = []
    for p in predictions:
        hyp = p["hypothesis"].split()
        if p["id"] in log_probs:
            lp, frames = log_probs[p["id"]]
            try:
                ali = align_sequence(lp, hyp, model.vocab.tokens, model.net.total_stride, frames,
                                     model.vocab.blank_id, what=f"sample {p['id']}")
                lines += timed_ctm_lines(p["id"], ali.spans, fps)
                continue
            except AlignmentError as exc:
                log.warning("CTM: %s", exc)
        untimed.append(p["id"])
        lines += ctm_lines([(p["id"], hyp)])
    if untimed:
        log.warning("CTM: %d hypothesis(es) without an alignment got made-up times, e.g. %s", len(untimed),
                    ", ".join(untimed[:5]))
    return lines


def corpus_config(cfg: DictConfig, recipe: dict[str, Any]) -> DictConfig:
    """The data config to score: the command line's (``data=... data.root=...``), else the one the
    checkpoint was trained with, so ``eval.py ckpt_path=...`` alone scores the run's own corpus."""
    if cfg.get("data") is not None:
        return cfg.data
    if not recipe.get("data"):
        raise ConfigError(f"{cfg.ckpt_path} does not record the corpus it was trained on: "
                          "pass data=<config> data.root=<corpus> (and data.landmarks_dir=...)")
    return OmegaConf.create(recipe["data"])


def trained_missing_mode(recipe: dict[str, Any], configured: str | None, explicit: bool) -> str | None:
    """The missing-landmark mode to evaluate with: the one the checkpoint was trained with.

    A model trained on interpolated landmarks scored on zero-filled ones (the data config's default)
    gives a silently wrong WER, so the checkpoint wins. ``explicit``: the command line set
    ``data.missing`` (a disagreement is then a warning, otherwise only noted). Checkpoints that
    predate the recipe's ``features`` entry keep the configured mode.
    """
    trained = (recipe.get("features") or {}).get("missing")
    if trained is None:
        log.warning("the checkpoint does not record its missing-landmark mode: evaluating with data.missing=%s",
                    configured)
        return configured
    if configured is not None and configured != trained:
        if explicit:
            log.warning("data.missing=%s is ignored: the model was trained with missing=%s, the checkpoint's "
                        "mode is used", configured, trained)
        else:
            log.info("missing-landmark mode from the checkpoint: %s (data config: %s)", trained, configured)
    return trained


def _log_wandb(loggers: list[Any], split: str, summary: dict[str, Any], predictions: list[dict[str, Any]],
               figures: dict[str, Any] | None = None) -> None:
    """A WER summary and the worst sentences as a W&B table; the figures as images and videos."""
    if not any(isinstance(lg, WandbLogger) for lg in loggers):
        return
    import wandb

    worst = sorted(predictions, key=lambda p: -p["errors"])[:50]
    columns = ["id", "reference", "hypothesis", "errors"]
    pictures: dict[str, Any] = {}
    if figures:
        pictures = {f"{split}/figures/{name}": wandb.Image(str(path)) for name, path in figures["plots"].items()
                    if str(path).endswith(".png")}
        for s in figures["sentences"]:
            caption = f"{s['rank']}: {s['id']} ({s['errors']} errors)"
            pictures[f"{split}/posteriorgram/{s['rank']}"] = wandb.Image(str(s["posteriorgram"]), caption=caption)
            if "video" in s:
                pictures[f"{split}/video/{s['rank']}"] = wandb.Video(str(s["video"]), caption=caption,
                                                                     format=Path(s["video"]).suffix.lstrip("."))
    wandb.log({f"{split}/worst_sentences": wandb.Table(columns=columns, data=[[p[c] for c in columns] for p in worst]),
               **{f"{split}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}, **pictures})
    wandb.finish()
