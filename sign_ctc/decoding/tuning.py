"""The beam decoder's LM weight and word bonus, tuned on dev and reused beside the checkpoint.

Why: a gloss LM at a guessed weight can make beam search worse than greedy (it favours short
outputs: deletions), and the weight/bonus that help depend on the model and the LM. So they are
chosen on dev: one forward pass over dev caches the log-probs, every grid point decodes the cache
(no repeated forwards) and is scored with corpus-level WER. The choice is written beside the
checkpoint as ``<ckpt stem>.decoding.json`` with the checkpoint's size and sha256, so a retrained or
replaced checkpoint ignores it (with a warning).

This module is the algorithm and the file: the grid, its scoring, writing and reading the record.
Running the dev pass through Lightning and applying the record to a Hydra decoding config is the
run's business (:mod:`sign_ctc.run.decoding_setup`), so decoding imports neither Hydra nor Lightning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sign_ctc.atomic import write_text_atomic
from sign_ctc.checksum import sha256_of
from sign_ctc.decoding.decoders import GreedyDecoder
from sign_ctc.scoring.wer import wer

log = logging.getLogger(__name__)

FORMAT = "sign_ctc.decoding.tuning/1"
SUFFIX = ".decoding.json"


@dataclass
class DevSample:
    """One dev sentence: its own frames' log-probs [T, C] and the reference glosses."""

    id: str
    log_probs: torch.Tensor
    reference: list[str]


# ---------------------------------------------------------------------------- helpers


def tuned_path(ckpt_path: str | Path) -> Path:
    """``<dir>/<ckpt stem>.decoding.json``: beside the checkpoint, so it travels with it."""
    ckpt = Path(ckpt_path)
    return ckpt.with_name(ckpt.stem + SUFFIX)


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
