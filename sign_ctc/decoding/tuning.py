"""The beam decoder's LM weight and word bonus, tuned on dev and reused beside the checkpoint.

Why: a gloss LM at a guessed weight can make beam search worse than greedy (it favours short
outputs: deletions), and the weight/bonus that help depend on the model and the LM. So they are
chosen on dev: one forward pass over dev through the module's own test loop (same device,
precision and masking as evaluation) caches the log-probs, every grid point decodes the cache
(no repeated forwards) and is scored with corpus-level WER. The choice is written beside the
checkpoint as ``<ckpt stem>.decoding.json`` with the checkpoint's size and sha256, so ``eval.py``
and ``sign_ctc.cli.predict`` with ``decoding=beam`` use it, and a retrained or replaced checkpoint
ignores it (with a warning). This module is the one place both entry points apply it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from sign_ctc.atomic import write_text_atomic
from sign_ctc.decoding.decoders import GreedyDecoder, greedy_decode
from sign_ctc.scoring.wer import wer

if TYPE_CHECKING:
    from sign_ctc.data.batch import Batch

log = logging.getLogger(__name__)

FORMAT = "sign_ctc.decoding.tuning/1"
SUFFIX = ".decoding.json"
#: Command-line keys that win over a tuned file (the user asked for those values).
EXPLICIT_KEYS = ("decoding.lm_weight", "decoding.word_bonus")


@dataclass
class DevSample:
    """One dev sentence: its own frames' log-probs [T, C] and the reference glosses."""

    id: str
    log_probs: torch.Tensor
    reference: list[str]


# ---------------------------------------------------------------------------- helpers


def set_on_command_line(key: str) -> bool:
    """Whether a Hydra override of this run sets ``key`` (``key=``, ``+key=``, ``++key=``)."""
    if not HydraConfig.initialized():
        return False
    overrides = HydraConfig.get().overrides.task
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides)


def is_beam(decoding: DictConfig | None) -> bool:
    """Whether the ``decoding`` group builds :class:`~sign_ctc.decoding.decoders.BeamSearchDecoder`."""
    return decoding is not None and str(decoding.get("_target_", "")).endswith("BeamSearchDecoder")


def tuned_path(ckpt_path: str | Path) -> Path:
    """``<dir>/<ckpt stem>.decoding.json``: beside the checkpoint, so it travels with it."""
    ckpt = Path(ckpt_path)
    return ckpt.with_name(ckpt.stem + SUFFIX)


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_fingerprint(ckpt_path: str | Path) -> dict[str, Any]:
    """Size and sha256 decide whether a tuned file belongs to a checkpoint (path and mtime are
    recorded for a reader; a copied checkpoint keeps its tuning)."""
    path = Path(ckpt_path).resolve()
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime, "sha256": sha256_of(path)}


def grid_points(lm_weights: Sequence[float], word_bonuses: Sequence[float], with_lm: bool) -> list[tuple[float, float]]:
    """The (lm_weight, word_bonus) pairs to try, sorted; always with (0, 0), plain beam search, so
    the choice is never worse than it on dev.

    Without an LM every weight decodes the same, so only the bonuses are tried (at weight 0).
    """
    weights = {float(w) for w in lm_weights} if with_lm else {0.0}
    if any(w < 0 for w in weights):
        raise ValueError(f"decoding.tune_lm_weights must be >= 0, got {sorted(weights)}")
    points = {(w, float(b)) for w in weights for b in word_bonuses} | {(0.0, 0.0)}
    return sorted(points)


def _tie_key(point: dict[str, Any]) -> tuple[int, float, float, float]:
    """Fewest errors (same N at every point), then the smaller lm_weight, then the bonus nearest 0."""
    return point["errors"], point["lm_weight"], abs(point["word_bonus"]), point["word_bonus"]


# ------------------------------------------------------------------------------ tuning


def decode_samples(decoder: Any, samples: Sequence[DevSample], vocab_tokens: Sequence[str],
                   blank: int = 0) -> list[list[str]]:
    """Gloss sequences of cached log-probs (one sentence at a time: no padding to carry)."""
    out = []
    for s in samples:
        ids = decoder.decode(s.log_probs[None], torch.tensor([s.log_probs.shape[0]]))[0]
        out.append([vocab_tokens[i] for i in ids if i != blank])
    return out


def tune_grid(factory: Callable[..., Any], vocab_tokens: Sequence[str], samples: Sequence[DevSample],
              lm_weights: Sequence[float], word_bonuses: Sequence[float], with_lm: bool,
              blank: int = 0) -> dict[str, Any]:
    """Decode the cached dev log-probs at every grid point and pick the lowest corpus WER.

    ``factory``: the beam decoder partial (``vocab_tokens``, ``lm_weight``, ``word_bonus`` are
    set here). Returns the chosen values, every point's WER with S/D/I, plain beam's (0, 0) and
    greedy's WER, and whether plain beam gave greedy's hypotheses (it should: best-path merging).
    """
    if not samples:
        raise ValueError("no dev sentences to tune the decoder on")
    references = [s.reference for s in samples]
    greedy_hyps = decode_samples(GreedyDecoder(list(vocab_tokens), blank), samples, vocab_tokens, blank)
    greedy = wer(references, greedy_hyps)
    points: list[dict[str, Any]] = []
    plain_hyps: list[list[str]] = []
    for w, b in grid_points(lm_weights, word_bonuses, with_lm):
        hyps = decode_samples(factory(vocab_tokens=list(vocab_tokens), lm_weight=w, word_bonus=b), samples,
                              vocab_tokens, blank)
        result = wer(references, hyps)
        points.append({"lm_weight": w, "word_bonus": b, **result.rates(), "errors": result.errors})
        if (w, b) == (0.0, 0.0):
            plain_hyps = hyps
        log.debug("dev lm_weight=%g word_bonus=%g: WER %.2f%%", w, b, result.wer)
    best = min(points, key=_tie_key)
    plain = next(p for p in points if (p["lm_weight"], p["word_bonus"]) == (0.0, 0.0))
    return {"lm_weight": best["lm_weight"], "word_bonus": best["word_bonus"], "dev_wer": best["wer"],
            "plain_beam_dev_wer": plain["wer"], "greedy_dev_wer": greedy.wer,
            "plain_beam_equals_greedy": plain_hyps == greedy_hyps,
            "sentences": len(samples), "num_ref": greedy.num_ref, "grid": points}


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


def write_tuned(ckpt_path: str | Path, tuning: dict[str, Any], lm_path: str | None, beam_width: int) -> dict[str, Any]:
    """Write ``<ckpt stem>.decoding.json`` (atomically) with what identifies the checkpoint and the
    LM it was tuned for; returns the record with ``file`` added."""
    record = {"format": FORMAT, "checkpoint": checkpoint_fingerprint(ckpt_path), "lm_path": lm_path,
              "lm_sha256": sha256_of(lm_path) if lm_path else None, "beam_width": int(beam_width),
              "split": "dev", **tuning}
    path = tuned_path(ckpt_path)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    log.info("tuned decoding written to %s", path)
    return {"file": str(path.resolve()), **record}


def _absolute(path: str | None) -> str | None:
    """An absolute, resolved path (relative to where the command was run, as Hydra's runs see it),
    so ``gloss.arpa`` and ``./gloss.arpa`` name the same tuned LM."""
    return str(Path(to_absolute_path(str(path))).resolve()) if path else None


# --------------------------------------------------------------------------- reusing


def read_tuned(ckpt_path: str | Path) -> dict[str, Any] | None:
    """The tuned record beside the checkpoint, or None: absent, unreadable, or written for another
    checkpoint (different size or sha256: a warning says so)."""
    path = tuned_path(ckpt_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        log.warning("ignoring %s: unreadable (%s)", path, e)
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        log.warning("ignoring %s: not a %s file", path, FORMAT)
        return None
    saved = record.get("checkpoint") or {}
    ckpt = Path(ckpt_path)
    size = ckpt.stat().st_size
    digest = sha256_of(ckpt) if saved.get("size") == size else None  # another size: no need to hash
    if digest is None or saved.get("sha256") != digest:
        log.warning("ignoring %s: it was tuned for another checkpoint (%s, %s bytes), not %s (%s bytes): "
                    "rerun eval.py ... decoding.tune=true", path, saved.get("path"), saved.get("size"), ckpt, size)
        return None
    return record


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


def decoder_settings(decoder: Any, source: str) -> dict[str, Any]:
    """What a results file records of the test decoder, and where its values came from."""
    settings: dict[str, Any] = {"name": type(decoder).__name__ if decoder is not None else "GreedyDecoder",
                                "source": source}
    for key in ("beam_width", "lm_path", "lm_weight", "word_bonus"):
        if hasattr(decoder, key):
            settings[key] = getattr(decoder, key)
    return settings


def format_tuning(record: dict[str, Any]) -> str:
    """A dev WER table (rows lm_weight, columns word_bonus) and the chosen point, for the console."""
    bonuses = sorted({p["word_bonus"] for p in record["grid"]})
    weights = sorted({p["lm_weight"] for p in record["grid"]})
    cell = {(p["lm_weight"], p["word_bonus"]): p["wer"] for p in record["grid"]}
    lines = [f"dev WER by lm_weight (rows) x word_bonus (columns), beam width {record['beam_width']}:",
             "lm_w \\ bonus " + " ".join(f"{b:>7g}" for b in bonuses)]
    for w in weights:
        row = (f"{cell[(w, b)]:>7.2f}" if (w, b) in cell else " " * 7 for b in bonuses)
        lines.append(f"{w:>12g} " + " ".join(row))
    lines.append(f"chosen: lm_weight={record['lm_weight']:g} word_bonus={record['word_bonus']:g} "
                 f"dev WER {record['dev_wer']:.2f}% (plain beam {record['plain_beam_dev_wer']:.2f}%, "
                 f"greedy {record['greedy_dev_wer']:.2f}%) -> {record['file']}")
    return "\n".join(lines)
