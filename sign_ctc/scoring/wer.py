"""Word error rate as the CSLR field reports it: corpus-level (total errors / total reference
glosses, never a mean of sentence WERs), with substitutions, deletions and insertions.

Two aligners, because they can disagree on the same pair:

* ``"jiwer"`` (default): minimum edit distance with unit costs, what Python code usually reports.
* ``"sclite"``: NIST sclite's alignment (deletion and insertion cost 3, substitution 4, correct 0,
  case-insensitive), which is what published PHOENIX numbers come from. Its weights prefer an
  insertion+deletion pair over two substitutions in a shifted run, so it can count *more*
  errors than the minimum (e.g. ``A B C D E`` vs ``D E P Q R``: sclite 6, edit distance 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import jiwer

ALIGNERS: tuple[str, ...] = ("jiwer", "sclite")
# sclite's default DP weights (sctk ``align.c``: ins/del 3, sub 4, correct 0).
_SCLITE_INS, _SCLITE_DEL, _SCLITE_SUB = 3, 3, 4


@dataclass
class SentenceScore:
    reference: list[str]
    hypothesis: list[str]
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


@dataclass
class WERResult:
    """Corpus-level counts; ``wer`` = (S + D + I) / N in percent."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    num_ref: int = 0
    sentences: list[SentenceScore] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / max(self.num_ref, 1)

    def rates(self) -> dict[str, float]:
        n = max(self.num_ref, 1)
        return {"wer": self.wer, "sub": 100.0 * self.substitutions / n, "del": 100.0 * self.deletions / n,
                "ins": 100.0 * self.insertions / n}


def align_sclite(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, int, int]:
    """(S, D, I) of sclite's weighted alignment; ties broken as sclite does (checked against it)."""
    r = [t.lower() for t in ref]
    h = [t.lower() for t in hyp]
    n, m = len(r), len(h)
    # cost[i][j]: aligning r[:i] with h[:j]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = i * _SCLITE_DEL
    for j in range(1, m + 1):
        cost[0][j] = j * _SCLITE_INS
    for i in range(1, n + 1):
        ri, row, prev = r[i - 1], cost[i], cost[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (0 if ri == h[j - 1] else _SCLITE_SUB)
            row[j] = min(diag, prev[j] + _SCLITE_DEL, row[j - 1] + _SCLITE_INS)
    s = d = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        c = cost[i][j]
        if i > 0 and j > 0:
            same = r[i - 1] == h[j - 1]
            if c == cost[i - 1][j - 1] + (0 if same else _SCLITE_SUB):
                s += 0 if same else 1
                i, j = i - 1, j - 1
                continue
        if i > 0 and c == cost[i - 1][j] + _SCLITE_DEL:
            d += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return s, d, ins


def _align_jiwer(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions, out.deletions, out.insertions


def wer(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[Sequence[str]],
    align: str = "jiwer",
    allow_empty_references: bool = False,
) -> WERResult:
    """Align each hypothesis with its reference and sum the errors over the corpus.

    An empty reference is an error unless ``allow_empty_references`` (reference clean-up such
    as ``phoenix2014t`` can empty one); its hypothesis glosses then count as insertions.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if align not in ALIGNERS:
        raise ValueError(f"align must be one of {ALIGNERS}, got {align!r}")
    result = WERResult()
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref, hyp = list(ref), list(hyp)
        if not ref and not allow_empty_references:
            raise ValueError("empty reference: every reference sentence needs at least one gloss")
        if not hyp or not ref:
            s, d, i = 0, len(ref), len(hyp)
        elif align == "sclite":
            s, d, i = align_sclite(ref, hyp)
        else:
            s, d, i = _align_jiwer(ref, hyp)
        result.substitutions += s
        result.deletions += d
        result.insertions += i
        result.num_ref += len(ref)
        result.sentences.append(SentenceScore(ref, hyp, s, d, i))
    return result
