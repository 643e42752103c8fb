"""NIST CTM (hypotheses) and STM (references) files, the formats sclite and the PHOENIX scripts score.

CTM: one token per line, ``<id> <channel> <start> <duration> <token> [<confidence>]``.
STM: one utterance per line, ``<id> <channel> <speaker> <start> <end> <tokens...>``
(PHOENIX: ``<id> 1 signerXX 0.0 1.79769e+308 GLOSS GLOSS ...``).

sclite pairs CTM tokens with STM utterances by id/channel and time, and it wants both files
sorted by id; the official PHOENIX script sorts both and then inserts an ``[EMPTY]`` token for
every STM id without a CTM line (``mergectmstm.py``). :func:`align_ctm_to_stm` does both in
one place, so what we score ourselves and what we hand to sclite are the same utterances.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sign_ctc.atomic import write_text_atomic
from sign_ctc.errors import SignCtcError


class TimedGloss(Protocol):
    """What a CTM line reads of a timed gloss (:class:`sign_ctc.decoding.alignment.GlossSpan` is
    one): scoring states it here rather than importing decoding (no torch, no upward import)."""

    @property
    def gloss(self) -> str:
        """The gloss the line names."""
        ...

    def seconds(self, fps: float) -> tuple[float, float]:
        """(start, duration) in seconds at the input's frame rate."""
        ...


#: The token the PHOENIX scripts put in an utterance that has no gloss left, so sclite aligns it.
EMPTY = "[EMPTY]"
#: Frame length used for CTM times we invent when a hypothesis has no alignment (the PHOENIX
#: scripts use 0.030 s for [EMPTY]).
TOKEN_DURATION = 0.03


class FormatError(SignCtcError, ValueError):
    """A CTM/STM line that cannot be parsed; the message names the file and line."""


@dataclass(frozen=True)
class CtmLine:
    id: str
    channel: str
    start: float
    duration: float
    token: str


@dataclass(frozen=True)
class StmLine:
    id: str
    channel: str
    speaker: str
    start: str
    end: str
    tokens: tuple[str, ...]


def read_ctm(path: str | os.PathLike) -> list[CtmLine]:
    """Read a CTM; ``;;`` comments and blank lines are skipped, a 6th (confidence) field is ignored."""
    out = []
    for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        if len(fields) not in (5, 6):
            raise FormatError(f"{path}:{no}: CTM line needs 5 or 6 fields, got {len(fields)}: {line!r}")
        try:
            start, dur = float(fields[2]), float(fields[3])
        except ValueError as e:
            raise FormatError(f"{path}:{no}: CTM start/duration are not numbers: {line!r}") from e
        out.append(CtmLine(fields[0], fields[1], start, dur, fields[4]))
    return out


def read_stm(path: str | os.PathLike) -> list[StmLine]:
    """Read an STM; ``;;`` comments are skipped. An utterance may have no tokens."""
    out = []
    for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        if len(fields) < 5:
            raise FormatError(f"{path}:{no}: STM line needs at least 5 fields, got {len(fields)}: {line!r}")
        out.append(StmLine(fields[0], fields[1], fields[2], fields[3], fields[4], tuple(fields[5:])))
    return out


def ctm_lines(utterances: Iterable[tuple[str, Sequence[str]]], channel: str = "1") -> list[CtmLine]:
    """One CTM line per token with made-up consecutive times, for hypotheses without log-probs to
    align (eval.py times the others with :func:`timed_ctm_lines`)."""
    out = []
    for uid, tokens in utterances:
        for k, tok in enumerate(tokens):
            out.append(CtmLine(uid, channel, round(k * TOKEN_DURATION, 3), TOKEN_DURATION, tok))
    return out


def timed_ctm_lines(uid: str, spans: Iterable[TimedGloss], fps: float, channel: str = "1") -> list[CtmLine]:
    """CTM lines with real timing: each gloss's input frames from the CTC forced alignment
    (:mod:`sign_ctc.decoding.alignment`) in seconds at the input's frame rate."""
    if fps <= 0:
        raise ValueError(f"{uid}: frame rate {fps!r} cannot time CTM lines")
    out = []
    for span in spans:
        start, duration = span.seconds(fps)
        out.append(CtmLine(uid, channel, round(start, 3), round(duration, 3), span.gloss))
    return out


def format_ctm(lines: Iterable[CtmLine]) -> str:
    return "".join(f"{x.id} {x.channel} {x.start:.3f} {x.duration:.3f} {x.token}\n" for x in lines)


def format_stm(lines: Iterable[StmLine]) -> str:
    return "".join(
        f"{x.id} {x.channel} {x.speaker} {x.start} {x.end}{''.join(' ' + t for t in x.tokens)}\n" for x in lines
    )


def write_ctm(path: str | os.PathLike, lines: Iterable[CtmLine]) -> None:
    write_text_atomic(path, format_ctm(lines))


def write_stm(path: str | os.PathLike, lines: Iterable[StmLine]) -> None:
    write_text_atomic(path, format_stm(lines))


def group_ctm(lines: Iterable[CtmLine]) -> dict[str, list[str]]:
    """Tokens per utterance id in time order (stable for equal start times, i.e. file order)."""
    by_id: dict[str, list[CtmLine]] = {}
    for x in lines:
        by_id.setdefault(x.id, []).append(x)
    return {uid: [x.token for x in sorted(xs, key=lambda x: x.start)] for uid, xs in by_id.items()}


def align_ctm_to_stm(
    hypotheses: dict[str, list[str]], references: Sequence[StmLine], allow_extra: bool = False
) -> tuple[list[StmLine], list[tuple[str, list[str]]]]:
    """Sort references by id and give each one its hypothesis, ``[EMPTY]`` where there is none.

    Why: sclite silently mis-scores unsorted or unmatched files; the official script fixes the
    same by sorting both and merging (mergectmstm.py). A hypothesis id that is not in the
    references is an error unless ``allow_extra`` (it would otherwise be dropped unseen).
    """
    ids = [r.id for r in references]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise FormatError(f"STM has repeated utterance ids, e.g. {dup}")
    extra = sorted(set(hypotheses) - set(ids))
    if extra and not allow_extra:
        raise FormatError(f"{len(extra)} hypothesis id(s) are not in the references, e.g. {extra[:5]}")
    refs = sorted(references, key=lambda r: r.id)
    hyps = [(r.id, list(hypotheses.get(r.id, [])) or [EMPTY]) for r in refs]
    return refs, hyps
