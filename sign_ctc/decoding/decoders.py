"""CTC decoding: from per-frame log-probabilities to gloss id sequences.

Greedy (best path) for validation; :class:`BeamSearchDecoder` for test-time decoding with an
optional gloss n-gram language model.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from sign_ctc.errors import SignCtcError

FLASHLIGHT_PIN = "flashlight-text==0.0.7"


class BeamSearchUnavailableError(SignCtcError, ImportError):
    """flashlight-text (the beam search's C++ decoder) cannot be imported; the message says why and what to use."""


def check_beam_search_available() -> None:
    """Fail with one message, not an import traceback, where ``decoding=beam`` cannot run.

    flashlight-text publishes no wheel for Python 3.13, so pyproject installs it on 3.11 and 3.12 only
    (an environment marker); there the beam search needs another Python, greedy decoding works everywhere.
    """
    try:
        import flashlight.lib.text.decoder  # noqa: F401  (heavy C++ extension: only when a beam decoder is built)
    except ImportError as exc:
        if sys.version_info >= (3, 13):
            why = (f"flashlight-text has no wheel for Python {sys.version_info.major}.{sys.version_info.minor}, so "
                   f"the package installs it on Python 3.11 and 3.12 only; decode with a Python 3.11/3.12 install")
        else:
            why = f"it is not installed here (pip install {FLASHLIGHT_PIN})"
        raise BeamSearchUnavailableError(
            f"decoding=beam needs flashlight-text (CTC beam search + KenLM), which cannot be imported: {why}, "
            f"or use decoding=greedy ({exc})") from exc


def decoder_class(decoding: Any) -> Any:
    """The class (or callable) a decoding config (group node, mapping or None) names as ``_target_``;
    None for no config. Imported by its path with the standard library, so asking a decoder class
    (``is_beam``) needs neither Hydra nor an instance (building one may load an LM)."""
    target = decoding.get("_target_") if decoding is not None else None
    if not target:
        return None
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):  # a wrong path: Hydra names it when the config is built
        return None


def require_decoding(decoding: Any) -> None:
    """:func:`check_beam_search_available` when the ``decoding`` config (group node or None) builds a beam decoder."""
    if getattr(decoder_class(decoding), "is_beam", False):
        check_beam_search_available()


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path: argmax per frame, collapse repeats, drop blanks. ``log_probs`` is [B, T, C]."""
    best = log_probs.argmax(-1).cpu()
    lengths = lengths.cpu()
    out = []
    for b in range(best.shape[0]):
        path = best[b, : int(lengths[b])]
        if path.numel() == 0:
            out.append([])
            continue
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        out.append([int(i) for i in path[keep] if int(i) != blank])
    return out


class GreedyDecoder:
    """Best-path decoding behind the same interface as :class:`BeamSearchDecoder`."""

    #: Not a beam search: no flashlight-text, no LM weight or word bonus to tune.
    is_beam: ClassVar[bool] = False

    def __init__(self, vocab_tokens: list[str], blank: int = 0):
        self.vocab_tokens = list(vocab_tokens)
        self.blank = blank

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        return greedy_decode(log_probs, lengths, self.blank)


class BeamSearchDecoder:
    """CTC beam search over gloss tokens, optionally with a gloss n-gram LM (KenLM ARPA/binary).

    Built on flashlight-text's lexicon-free decoder (C++; imported lazily). Each emitted gloss
    is one LM "word", so the LM vocabulary is the gloss vocabulary (train it with
    :mod:`sign_ctc.decoding.lm`). Hypotheses are merged by best path (max, not log-sum), which makes
    ``beam_width=1`` the greedy decoder exactly. Scores are natural-log: per emitted gloss,
    ``lm_weight * ln p_LM(gloss | history) + word_bonus``, plus ``lm_weight * ln p_LM(</s> | ...)``
    at the end; a positive ``word_bonus`` offsets the LM's bias towards short outputs.

    ``vocab_tokens[blank]`` is the CTC blank (``<blank>``, index 0) and index 1 is ``<unk>``;
    tokens the LM does not know score as its ``<unk>``. With ``lm_weight=0`` the LM adds nothing,
    so it is not loaded (the file must still exist): same hypotheses, no Python LM calls.

    ``tune``, ``tune_lm_weights``, ``tune_word_bonuses``: the dev-set grid of ``eval.py
    decoding.tune=true`` (:mod:`sign_ctc.decoding.tuning`, :mod:`sign_ctc.run.decoding_setup`). They live in the decoder's config group
    so that one ``decoding=beam`` carries them; the decoder only stores them. So are ``commit_every`` and
    ``lookback``, the streaming decoder's pruning (:class:`sign_ctc.streaming.beam.BeamStream`).
    """

    #: A beam search: needs flashlight-text, takes the LM weight and word bonus tuned on dev
    #: (:mod:`sign_ctc.run.decoding_setup` asks the class a config names, not its name).
    is_beam: ClassVar[bool] = True

    def __init__(
        self,
        vocab_tokens: list[str],
        beam_width: int = 10,
        lm_path: str | None = None,
        lm_weight: float = 0.5,
        word_bonus: float = 0.0,
        beam_size_token: int | None = None,
        beam_threshold: float = 50.0,
        blank: int = 0,
        tune: bool = False,
        tune_lm_weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8),
        tune_word_bonuses: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0),
        commit_every: int | None = 8,
        lookback: int = 24,
    ):
        if beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {beam_width}")
        if not 0 <= blank < len(vocab_tokens):
            raise ValueError(f"blank index {blank} outside a vocabulary of {len(vocab_tokens)}")
        check_beam_search_available()
        from flashlight.lib.text.decoder import (  # heavy C++ extension: only when a beam decoder is built
            CriterionType,
            LexiconFreeDecoderOptions,
            ZeroLM,
        )

        self.vocab_tokens = list(vocab_tokens)
        self.beam_width = beam_width
        self.blank = blank
        self.lm_path = lm_path
        self.lm_weight = lm_weight
        self.word_bonus = word_bonus
        self.tune = bool(tune)
        self.tune_lm_weights = [float(w) for w in tune_lm_weights]
        self.tune_word_bonuses = [float(b) for b in tune_word_bonuses]
        if commit_every is not None and commit_every < 1:
            raise ValueError(f"commit_every must be >= 1 output frames (or null: never prune), got {commit_every}")
        if lookback < 1:
            raise ValueError(f"lookback must be >= 1 output frames, got {lookback}")
        self.commit_every = commit_every
        self.lookback = int(lookback)
        if lm_path is not None and not os.path.isfile(lm_path):
            raise FileNotFoundError(f"language model not found: {lm_path}")
        if lm_path is not None and lm_weight != 0.0:
            st = os.stat(lm_path)
            base = _load_kenlm(os.path.abspath(lm_path), st.st_mtime_ns, st.st_size, tuple(self.vocab_tokens))
            lm = _ScaledLM(base, lm_weight * math.log(10.0), word_bonus)  # KenLM scores are log10
        elif word_bonus != 0.0:
            lm = _ScaledLM(ZeroLM(), 0.0, word_bonus)
        else:
            lm = ZeroLM()
        self._lm = lm  # keep the Python object alive as long as the C++ decoders use it
        self._options = LexiconFreeDecoderOptions(
            beam_size=beam_width,
            beam_size_token=min(len(self.vocab_tokens), beam_size_token or max(16, beam_width)),
            beam_threshold=beam_threshold,
            lm_weight=1.0,  # the weight is applied inside _ScaledLM, together with the bonus
            sil_score=0.0,
            log_add=False,
            criterion_type=CriterionType.CTC,
        )
        self._decoder = self.new_search()

    def new_search(self) -> Any:
        """A fresh flashlight ``LexiconFreeDecoder`` with this decoder's options and LM: one per sentence
        decoded incrementally (``decode_begin`` / ``decode_step`` / ``decode_end``,
        :mod:`sign_ctc.streaming.beam`), so a stream searches exactly as :meth:`decode` does."""
        from flashlight.lib.text.decoder import LexiconFreeDecoder

        # sil = blank: the decoder starts every hypothesis from "sil", and blank is the CTC start state.
        return LexiconFreeDecoder(self._options, self._lm, self.blank, self.blank, [])

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best gloss id sequence per batch item. ``log_probs`` is [B, T, C] log-softmax output."""
        if log_probs.dim() != 3:
            raise ValueError(f"log_probs must be [B, T, C], got shape {tuple(log_probs.shape)}")
        if log_probs.shape[-1] != len(self.vocab_tokens):
            raise ValueError(f"log_probs has {log_probs.shape[-1]} classes, vocabulary {len(self.vocab_tokens)}")
        emissions = log_probs.detach().to("cpu", torch.float32)
        out = []
        for b in range(emissions.shape[0]):
            t = int(lengths[b])
            if t <= 0:
                out.append([])
                continue
            em = emissions[b, :t].contiguous()
            results = self._decoder.decode(em.data_ptr(), t, em.shape[1])
            path = [int(i) for i in results[0].tokens]
            seq = [i for k, i in enumerate(path) if i != self.blank and (k == 0 or i != path[k - 1])]
            out.append(seq)
        return out


@functools.lru_cache(maxsize=2)
def _load_kenlm(path: str, mtime_ns: int, size: int, vocab_tokens: tuple[str, ...]):  # noqa: ANN202
    """One loaded KenLM per file version and vocabulary: decoders built in a row (a tuning grid)
    share it instead of re-reading the ARPA each time. Its queries keep no state between decodes."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    return KenLM(path, Dictionary(list(vocab_tokens)))


@functools.lru_cache(maxsize=1)
def _scaled_lm_class() -> type:
    from flashlight.lib.text.decoder import LM

    class ScaledLM(LM):
        """An LM that returns ``scale * base_score + bonus`` per token (flashlight has no token bonus)."""

        def __init__(self, base, scale: float, bonus: float):
            LM.__init__(self)
            self.base, self.scale, self.bonus = base, scale, bonus

        def start(self, start_with_nothing: bool):
            return self.base.start(start_with_nothing)

        def score(self, state, token_index: int):
            next_state, s = self.base.score(state, token_index)
            return next_state, self.scale * s + self.bonus

        def finish(self, state):
            next_state, s = self.base.finish(state)
            return next_state, self.scale * s

    return ScaledLM


def _ScaledLM(base, scale: float, bonus: float):  # noqa: N802 - builds the lazily defined class
    return _scaled_lm_class()(base, scale, bonus)
