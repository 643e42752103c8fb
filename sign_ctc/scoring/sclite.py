"""Run NIST sclite on a CTM/STM pair and read back exact S/D/I/N counts.

Why a runner at all: published PHOENIX numbers come from sclite, so we report it next to our
own count when it is installed. Why so strict: public CSLR code reads sclite's summary with
``os.system`` and a regex, and a sclite that failed (bad file, unsorted input, missing output)
then reads as a silent 100% or 0% WER. Here every failure raises :class:`SCLiteError`.

Counts come from the ``pra`` report (integer ``#C #S #D #I`` per utterance, summed), not the
``sum`` table, whose percentages are rounded to 0.1; the ``Sum/Avg`` row is parsed too and
must agree with the summed counts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sign_ctc.errors import SignCtcError

#: Where Debian/Ubuntu's ``sctk`` package installs sclite (not on PATH there).
DEBIAN_SCLITE = "/usr/lib/sctk/bin/sclite"

_SCORES = re.compile(r"^Scores: \(#C #S #D #I\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", re.M)
_FILE = re.compile(r"^File: (\S+)\s*$", re.M)
_SUM = re.compile(
    r"\|\s*Sum/Avg\s*\|\s*(\d+)\s+(\d+)\s*\|\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\|"
)


class SCLiteError(SignCtcError, RuntimeError):
    """sclite failed or wrote something we cannot read: never a score."""


@dataclass
class SCLiteResult:
    correct: int
    substitutions: int
    deletions: int
    insertions: int
    num_ref: int
    num_sentences: int
    reported_wer: float  # sclite's own rounded "Err" column, percent
    per_utterance: dict[str, tuple[int, int, int, int]]  # id (sclite lower-cases it) -> (C, S, D, I)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / max(self.num_ref, 1)


def find_sclite() -> str | None:
    """sclite's path: ``$SCLITE``, then PATH, then the Debian package location."""
    for cand in (os.environ.get("SCLITE"), shutil.which("sclite"), DEBIAN_SCLITE):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def parse_pra(text: str) -> dict[str, tuple[int, int, int, int]]:
    """Per-utterance (C, S, D, I) from a ``pra`` report, keyed by the CTM/STM file id."""
    files = _FILE.findall(text)
    scores = _SCORES.findall(text)
    if not scores or len(files) != len(scores):
        raise SCLiteError(f"pra report unreadable: {len(files)} 'File:' lines, {len(scores)} 'Scores:' lines")
    out: dict[str, tuple[int, int, int, int]] = {}
    for f, sc in zip(files, scores, strict=True):
        if f in out:
            raise SCLiteError(f"pra report lists utterance {f!r} twice")
        out[f] = tuple(int(x) for x in sc)  # type: ignore[assignment]
    return out


def parse_sum(text: str) -> tuple[int, int, float]:
    """(#sentences, #reference words, Err %) from the ``Sum/Avg`` row of a ``sum``/``sys`` report."""
    m = _SUM.search(text)
    if not m:
        raise SCLiteError("sum report has no readable 'Sum/Avg' row")
    return int(m.group(1)), int(m.group(2)), float(m.group(7))


def run_sclite(
    hyp_ctm: str | os.PathLike,
    ref_stm: str | os.PathLike,
    sclite: str | None = None,
    expected_utterances: int | None = None,
    timeout_s: float = 300.0,
) -> SCLiteResult:
    """Score ``hyp_ctm`` against ``ref_stm`` with sclite (``-f 0 -o sum pra``), as the PHOENIX script.

    Both files must already be sorted by id with every reference id present in the CTM (see
    :func:`sign_ctc.scoring.ctm.align_ctm_to_stm`). ``expected_utterances``, when given, must equal the
    number of utterances sclite scored.
    """
    exe = sclite or find_sclite()
    if exe is None:
        raise SCLiteError("sclite not found: install sctk (apt-get install sctk) or set $SCLITE")
    with tempfile.TemporaryDirectory(prefix="sclite.") as out:
        cmd = [exe, "-h", os.fspath(hyp_ctm), "ctm", "-r", os.fspath(ref_stm), "stm",
               "-f", "0", "-o", "sum", "pra", "-O", out, "-n", "run"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SCLiteError(f"sclite could not run: {e}") from e
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise SCLiteError(f"sclite exited with {proc.returncode}: {' | '.join(tail)}")
        sys_path, pra_path = Path(out, "run.sys"), Path(out, "run.pra")
        for p in (sys_path, pra_path):
            if not p.is_file() or p.stat().st_size == 0:
                raise SCLiteError(f"sclite exited 0 but wrote no {p.suffix} report")
        per_utt = parse_pra(pra_path.read_text(encoding="utf-8", errors="replace"))
        n_snt, n_wrd, err = parse_sum(sys_path.read_text(encoding="utf-8", errors="replace"))
    c = sum(v[0] for v in per_utt.values())
    s = sum(v[1] for v in per_utt.values())
    d = sum(v[2] for v in per_utt.values())
    i = sum(v[3] for v in per_utt.values())
    result = SCLiteResult(c, s, d, i, c + s + d, len(per_utt), err, per_utt)
    if n_snt != len(per_utt) or n_wrd != result.num_ref:
        raise SCLiteError(f"sclite's summary ({n_snt} utterances, {n_wrd} words) disagrees with its "
                          f"alignments ({len(per_utt)} utterances, {result.num_ref} words)")
    if abs(err - round(result.wer, 1)) > 0.051:
        raise SCLiteError(f"sclite's summary WER {err} disagrees with its alignments ({result.wer:.2f})")
    if expected_utterances is not None and len(per_utt) != expected_utterances:
        raise SCLiteError(f"sclite scored {len(per_utt)} utterances, expected {expected_utterances}")
    return result
