"""The decoding group of a run's config made into a decoder, with the values tuned on dev.

Why here, in the run layer: reading Hydra overrides (did the command line set ``decoding.lm_weight``?),
resolving paths as Hydra's runs see them, instantiating the decoding config and running the dev pass
through Lightning's test loop are config and trainer work; the tuning itself (the grid, its WER, the
``<ckpt stem>.decoding.json`` record) stays in :mod:`sign_ctc.decoding.tuning`. ``eval.py``,
``sign-ctc-render``, :class:`sign_ctc.Recognizer` and the streaming recognizer all build their decoder
through :func:`decoder_factory` / :func:`with_tuned_values`, the one place a tuned file is applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from sign_ctc.checksum import sha256_of
from sign_ctc.decoding.decoders import decoder_class, greedy_decode
from sign_ctc.decoding.tuning import DevSample, read_tuned, tune_grid, tuned_path, write_tuned

if TYPE_CHECKING:
    from sign_ctc.data.batch import Batch

log = logging.getLogger(__name__)

#: Command-line keys that win over a tuned file (the user asked for those values).
EXPLICIT_KEYS = ("decoding.lm_weight", "decoding.word_bonus")


def set_on_command_line(key: str) -> bool:
    """Whether a Hydra override of this run sets ``key`` (``key=``, ``+key=``, ``++key=``)."""
    if not HydraConfig.initialized():
        return False
    overrides = HydraConfig.get().overrides.task
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides)


def is_beam(decoding: Any) -> bool:
    """Whether the ``decoding`` group (a config node, a mapping or None) builds a beam decoder: the class
    its ``_target_`` names says so (``is_beam``, :mod:`sign_ctc.decoding.decoders`)."""
    return bool(getattr(decoder_class(decoding), "is_beam", False))


def _absolute(path: str | None) -> str | None:
    """An absolute, resolved path (relative to where the command was run, as Hydra's runs see it),
    so ``gloss.arpa`` and ``./gloss.arpa`` name the same tuned LM."""
    return str(Path(to_absolute_path(str(path))).resolve()) if path else None


# ------------------------------------------------------------------------- dev pass


class _DevCapture(pl.Callback):
    """The module's test decoder during the dev pass: keeps each batch's log-probs (and decodes
    greedily so the module's test loop runs unchanged); as a callback it pairs them with the
    batch's ids and references after each test step."""

    def __init__(self, vocab: Any):
        self.vocab = vocab
        self.samples: dict[str, DevSample] = {}
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        self._last = (log_probs.detach().float().cpu(), lengths.detach().cpu())
        return greedy_decode(log_probs, lengths, self.vocab.blank_id)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                          batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        assert self._last is not None, "the test step did not decode"
        log_probs, lengths = self._last
        self._last = None
        for i, (sid, target) in enumerate(zip(batch.ids, batch.target_lists(), strict=True)):
            self.samples[sid] = DevSample(sid, log_probs[i, : int(lengths[i])].clone(), self.vocab.decode(target))


def collect_dev(model: Any, loader: Any, make_trainer: Callable[[list[pl.Callback]], pl.Trainer]) -> list[DevSample]:
    """Log-probs of every sentence of ``loader``, by one pass of the module's test loop.

    ``make_trainer(callbacks)`` builds the trainer (the run's trainer config, no loggers: these are
    not test metrics). One device only: the cache is per process.
    """
    capture = _DevCapture(model.vocab)
    trainer = make_trainer([capture])
    if trainer.world_size > 1:
        raise ValueError("decoding.tune=true runs the dev pass on one device: set trainer.devices=1")
    saved = model.test_decoder
    model.test_decoder = capture
    try:
        trainer.test(model, dataloaders=loader, verbose=False)
    finally:
        model.test_decoder = saved
    return [capture.samples[k] for k in sorted(capture.samples)]


def tune_on_dev(decoding: DictConfig, ckpt_path: str | Path, model: Any, loader: Any,
                make_trainer: Callable[[list[pl.Callback]], pl.Trainer]) -> tuple[DictConfig, dict[str, Any]]:
    """Tune lm_weight and word_bonus on dev, write ``<ckpt stem>.decoding.json``.

    Returns the decoding config with the chosen values and the written record.
    """
    lm_path = _absolute(decoding.get("lm_path"))
    if lm_path is None:
        log.warning("decoding.tune=true without decoding.lm_path: only word_bonus is tuned")
    for key in EXPLICIT_KEYS:
        if set_on_command_line(key):
            log.warning("%s on the command line is ignored: decoding.tune=true chooses it on dev", key)
    samples = collect_dev(model, loader, make_trainer)
    factory = hydra.utils.instantiate(OmegaConf.merge(decoding, {"lm_path": lm_path}))
    tuning = tune_grid(factory, model.vocab.tokens, samples, decoding.get("tune_lm_weights") or [0.0],
                       decoding.get("tune_word_bonuses") or [0.0], with_lm=lm_path is not None,
                       blank=model.vocab.blank_id)
    if not tuning["plain_beam_equals_greedy"]:
        log.warning("beam search without LM gave other hypotheses than greedy on dev (WER %.2f%% vs greedy %.2f%%)",
                    tuning["plain_beam_dev_wer"], tuning["greedy_dev_wer"])
    if tuning["greedy_dev_wer"] < tuning["dev_wer"]:
        log.warning("greedy decoding beats every grid point on dev (%.2f%% vs %.2f%%): consider decoding=greedy",
                    tuning["greedy_dev_wer"], tuning["dev_wer"])
    record = write_tuned(ckpt_path, tuning, lm_path, int(decoding.beam_width))
    chosen = OmegaConf.merge(decoding, {"lm_path": lm_path, "lm_weight": tuning["lm_weight"],
                                        "word_bonus": tuning["word_bonus"], "tune": False})
    return chosen, record


# ------------------------------------------------------------------------ reusing


def decoder_factory(decoding: Any, ckpt_path: str | Path | None = None) -> Any:
    """The decoding group's partial (``sign_ctc/conf/decoding/*.yaml``; a mapping is taken as a config),
    called with ``vocab_tokens=``; None for greedy. With ``ckpt_path``, beam search takes the values
    tuned beside that checkpoint (:func:`with_tuned_values`), as ``eval.py`` and ``predict`` do."""
    if decoding is None:
        return None
    decoding = decoding if OmegaConf.is_config(decoding) else OmegaConf.create(dict(decoding))
    if ckpt_path is not None:
        decoding, _ = with_tuned_values(decoding, ckpt_path)
    return hydra.utils.instantiate(decoding)


def with_tuned_values(decoding: DictConfig | None,
                      ckpt_path: str | Path) -> tuple[DictConfig | None, dict[str, Any] | None]:
    """The decoding config ``eval.py`` (without ``decoding.tune``) and ``predict`` decode with.

    For ``decoding=beam``, a matching ``<ckpt stem>.decoding.json`` supplies lm_path, lm_weight and
    word_bonus, unless the command line sets ``decoding.lm_weight`` or ``decoding.word_bonus`` (then
    the config is used as given), or names another LM than the one tuned (warning). Returns the
    config and the record used (None: the config as given).
    """
    if not is_beam(decoding):
        return decoding, None
    path = tuned_path(ckpt_path)
    if not path.is_file():
        return decoding, None
    explicit = [k for k in EXPLICIT_KEYS if set_on_command_line(k)]
    if explicit:
        log.info("%s set on the command line: the tuned values of %s are not used", ", ".join(explicit), path)
        return decoding, None
    record = read_tuned(ckpt_path)
    if record is None:
        return decoding, None
    tuned_lm = record.get("lm_path")
    given_lm = _absolute(decoding.get("lm_path"))
    if given_lm is not None and given_lm != tuned_lm:
        log.warning("ignoring %s: it was tuned with lm_path=%s, not %s", path, tuned_lm, given_lm)
        return decoding, None
    if tuned_lm is not None and (not Path(tuned_lm).is_file() or sha256_of(tuned_lm) != record.get("lm_sha256")):
        log.warning("ignoring %s: its language model %s is missing or has changed since tuning", path, tuned_lm)
        return decoding, None
    if int(decoding.beam_width) != int(record["beam_width"]):
        log.warning("decoding.beam_width=%s, but %s was tuned at beam width %s", decoding.beam_width, path,
                    record["beam_width"])
    log.info("decoding with the values tuned on dev in %s: lm_path=%s lm_weight=%g word_bonus=%g", path,
             tuned_lm, record["lm_weight"], record["word_bonus"])
    chosen = OmegaConf.merge(decoding, {"lm_path": tuned_lm, "lm_weight": record["lm_weight"],
                                        "word_bonus": record["word_bonus"]})
    return chosen, {"file": str(path.resolve()), **record}
