"""Gloss n-gram language model: train with interpolated modified Kneser-Ney, write/read ARPA.

Why our own trainer: KenLM's ``lmplz`` is a C++ build that pip's ``kenlm`` does not ship, and a
gloss LM is tiny (PHOENIX-2014 train: 5.7k sentences, 1.2k gloss types), so training in Python
takes a second. The ARPA we write is what ``lmplz`` would write in form (interpolated
probabilities plus back-off weights, ``<s>``/``</s>``/``<unk>``, tab-separated) and loads in
KenLM, which is what the beam search decoder (:mod:`sign_ctc.decoding.decoders`) queries.

Smoothing (Chen & Goodman 1998, as lmplz): the highest order uses raw counts, lower orders use
continuation counts (number of distinct left neighbours), except n-grams starting with ``<s>``,
which cannot be extended to the left and keep raw counts. Each order has three discounts
D1, D2, D3+ estimated from counts-of-counts; unigrams interpolate with the uniform distribution
over the vocabulary (so ``<unk>`` gets the leftover mass). Every context's distribution sums to 1.

The command that trains one from a corpus CSV is :mod:`sign_ctc.cli.lm` (``sign-ctc-lm``).
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sign_ctc.atomic import write_text_atomic

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
#: log10 probability KenLM and SRILM write for ``<s>`` (never predicted).
BOS_LOG10 = -99.0
#: Discounts used when an order's counts-of-counts are too sparse to estimate them (tiny corpora).
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)

Ngram = tuple[str, ...]


@dataclass
class NgramLM:
    """An ARPA back-off model: per order, n-gram -> log10 probability and log10 back-off weight."""

    order: int
    log10_probs: list[dict[Ngram, float]] = field(default_factory=list)
    log10_backoffs: list[dict[Ngram, float]] = field(default_factory=list)

    @property
    def vocabulary(self) -> set[str]:
        return {g[0] for g in self.log10_probs[0]}

    def log10_prob(self, context: Sequence[str], word: str) -> float:
        """log10 p(word | context) with ARPA back-off; unknown words are ``<unk>``."""
        vocab = self.log10_probs[0]
        w = word if (word,) in vocab else UNK
        ctx = tuple(c if (c,) in vocab else UNK for c in context)[-(self.order - 1):] if self.order > 1 else ()
        backoff = 0.0
        while True:
            gram = ctx + (w,)
            p = self.log10_probs[len(gram) - 1].get(gram)
            if p is not None:
                return p + backoff
            backoff += self.log10_backoffs[len(ctx) - 1].get(ctx, 0.0)
            ctx = ctx[1:]

    def sentence_log10(self, tokens: Sequence[str]) -> float:
        """log10 p(tokens </s> | <s>)."""
        hist: list[str] = [BOS]
        total = 0.0
        for t in [*tokens, EOS]:
            total += self.log10_prob(hist, t)
            hist.append(t)
        return total


def _discounts(counts: Iterable[int]) -> tuple[float, float, float]:
    """Modified-KN discounts D1, D2, D3+ from counts-of-counts (Chen & Goodman)."""
    t = Counter(c for c in counts if c <= 4)
    t1, t2, t3, t4 = (t.get(k, 0) for k in (1, 2, 3, 4))
    if min(t1, t2, t3, t4) == 0:
        return FALLBACK_DISCOUNTS
    y = t1 / (t1 + 2 * t2)
    ds = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    if not all(0 < d < k for k, d in zip((1, 2, 3), ds, strict=True)):
        return FALLBACK_DISCOUNTS
    return ds  # type: ignore[return-value]


def train_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> NgramLM:
    """Interpolated modified Kneser-Ney n-gram model of gloss sequences."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    raw: list[Counter[Ngram]] = [Counter() for _ in range(order)]
    n_sent = 0
    for sent in sentences:
        toks = [BOS, *sent, EOS]
        n_sent += 1
        for n in range(1, order + 1):
            for i in range(len(toks) - n + 1):
                g = tuple(toks[i:i + n])
                if g != (BOS,):
                    raw[n - 1][g] += 1
    if n_sent == 0:
        raise ValueError("no sentences to train the language model on")

    # Adjusted counts: raw at the top order and for n-grams starting with <s>, else continuation counts.
    adj: list[dict[Ngram, int]] = [dict() for _ in range(order)]
    adj[order - 1] = dict(raw[order - 1])
    for n in range(order - 1, 0, -1):
        left: Counter[Ngram] = Counter(g[1:] for g in raw[n])
        adj[n - 1] = {g: (c if g[0] == BOS else left[g]) for g, c in raw[n - 1].items()}

    vocab = sorted({g[0] for g in adj[0]} | {UNK, EOS})
    probs: list[dict[Ngram, float]] = [dict() for _ in range(order)]  # linear probabilities
    gammas: list[dict[Ngram, float]] = [dict() for _ in range(order)]  # back-off mass per context
    for n in range(1, order + 1):
        d1, d2, d3 = _discounts(adj[n - 1].values())
        by_ctx: dict[Ngram, list[tuple[str, int]]] = defaultdict(list)
        for g, c in adj[n - 1].items():
            by_ctx[g[:-1]].append((g[-1], c))
        for ctx, items in by_ctx.items():
            total = sum(c for _, c in items)
            n1 = sum(1 for _, c in items if c == 1)
            n2 = sum(1 for _, c in items if c == 2)
            n3 = len(items) - n1 - n2
            gamma = (d1 * n1 + d2 * n2 + d3 * n3) / total
            gammas[n - 1][ctx] = gamma
            for w, c in items:
                disc = d1 if c == 1 else d2 if c == 2 else d3
                lower = 1.0 / len(vocab) if n == 1 else probs[n - 2][ctx[1:] + (w,)]
                probs[n - 1][ctx + (w,)] = (c - disc) / total + gamma * lower
    probs[0][(UNK,)] = gammas[0][()] / len(vocab)

    lm = NgramLM(order)
    for n in range(1, order + 1):
        lm.log10_probs.append({g: math.log10(p) for g, p in probs[n - 1].items()})
        if n < order:
            # an n-gram's back-off weight is the interpolation mass of the (n+1)-gram distribution it conditions
            lm.log10_backoffs.append({g: math.log10(gammas[n].get(g, 1.0)) for g in probs[n - 1]}
                                     | ({(BOS,): math.log10(gammas[n][(BOS,)])} if n == 1 else {}))
    lm.log10_probs[0][(BOS,)] = BOS_LOG10
    if order == 1:
        lm.log10_backoffs = []
    return lm


def format_arpa(lm: NgramLM) -> str:
    """ARPA text (tab-separated, as KenLM's loader requires)."""
    lines = ["", "\\data\\"]
    lines += [f"ngram {n}={len(lm.log10_probs[n - 1])}" for n in range(1, lm.order + 1)]
    for n in range(1, lm.order + 1):
        lines += ["", f"\\{n}-grams:"]
        bo = lm.log10_backoffs[n - 1] if n < lm.order else {}
        for g in sorted(lm.log10_probs[n - 1]):
            p = lm.log10_probs[n - 1][g]
            row = f"{p:.7g}\t{' '.join(g)}"
            if n < lm.order:
                row += f"\t{bo.get(g, 0.0):.7g}"
            lines.append(row)
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def write_arpa(lm: NgramLM, path: str | os.PathLike) -> None:
    write_text_atomic(path, format_arpa(lm))


def read_arpa(path: str | os.PathLike) -> NgramLM:
    """Read an ARPA file (ours or lmplz's) for querying in Python."""
    lm: NgramLM | None = None
    section = 0
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line == "\\data\\" or line.startswith("ngram "):
            if line.startswith("ngram "):
                order = int(line.split()[1].split("=")[0])
                lm = lm or NgramLM(0)
                lm.order = max(lm.order, order)
            continue
        if line == "\\end\\":
            break
        if line.startswith("\\") and line.endswith("-grams:"):
            section = int(line[1:].split("-")[0])
            assert lm is not None
            while len(lm.log10_probs) < section:
                lm.log10_probs.append({})
                lm.log10_backoffs.append({})
            continue
        if lm is None or section == 0:
            raise ValueError(f"{path}: not an ARPA file (no \\data\\ header before {line!r})")
        fields = line.split()
        gram = tuple(fields[1:1 + section])
        if len(gram) != section:
            raise ValueError(f"{path}: malformed {section}-gram line {line!r}")
        lm.log10_probs[section - 1][gram] = float(fields[0])
        if len(fields) > 1 + section:
            lm.log10_backoffs[section - 1][gram] = float(fields[1 + section])
    if lm is None or not lm.log10_probs:
        raise ValueError(f"{path}: no n-grams found")
    lm.log10_backoffs = lm.log10_backoffs[: lm.order - 1]
    return lm
