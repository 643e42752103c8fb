"""Official-style scoring of a hypothesis CTM against a reference STM: the PHOENIX evaluation rules,
then jiwer's alignment or NIST sclite's (``sign-ctc-score`` is the command, ``eval.py scoring.stm=``
calls it too)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sign_ctc.scoring.ctm import (
    StmLine,
    align_ctm_to_stm,
    ctm_lines,
    group_ctm,
    read_ctm,
    read_stm,
    write_ctm,
    write_stm,
)
from sign_ctc.scoring.phoenix_rules import DEFAULT_RULES, check_rules, clean_hypothesis, clean_reference
from sign_ctc.scoring.sclite import SCLiteResult, find_sclite, run_sclite
from sign_ctc.scoring.wer import WERResult, wer


@dataclass
class ScoreReport:
    rules: str
    align: str
    ids: list[str]
    result: WERResult
    sclite: SCLiteResult | None = None

    def to_dict(self) -> dict:
        r = self.result
        out: dict = {"rules": self.rules, "align": self.align, "wer": round(r.wer, 4),
                     "substitutions": r.substitutions, "deletions": r.deletions, "insertions": r.insertions,
                     "num_ref": r.num_ref, "num_utterances": len(self.ids)}
        if self.sclite is not None:
            s = self.sclite
            out["sclite"] = {"wer": round(s.wer, 4), "substitutions": s.substitutions, "deletions": s.deletions,
                             "insertions": s.insertions, "num_ref": s.num_ref, "num_utterances": s.num_sentences,
                             "reported_wer": s.reported_wer}
        return out


def prepare(
    hypotheses: dict[str, list[str]], references: Sequence[StmLine], rules: str = DEFAULT_RULES,
    allow_extra: bool = False,
) -> tuple[list[StmLine], list[tuple[str, list[str]]]]:
    """Cleaned references (STM lines, sorted by id) and cleaned hypotheses, ``[EMPTY]`` filled."""
    check_rules(rules)
    cleaned = {uid: clean_hypothesis(g, rules) for uid, g in hypotheses.items()}
    refs = [StmLine(r.id, r.channel, r.speaker, r.start, r.end, tuple(clean_reference(r.tokens, rules)))
            for r in references]
    return align_ctm_to_stm(cleaned, refs, allow_extra=allow_extra)


def score(
    hypotheses: dict[str, list[str]],
    references: Sequence[StmLine],
    rules: str = DEFAULT_RULES,
    align: str = "sclite",
    use_sclite: bool | None = False,
    workdir: str | Path | None = None,
    allow_extra: bool = False,
) -> ScoreReport:
    """Score raw hypothesis glosses per utterance id against STM references.

    ``use_sclite``: True runs sclite too (an error if it is missing or fails), None runs it
    when it is installed, False never. ``workdir`` keeps the cleaned, sorted
    ``hyp.ctm``/``ref.stm`` (what sclite scored); by default they go to a temporary folder.
    """
    refs, hyps = prepare(hypotheses, references, rules, allow_extra)
    result = wer([r.tokens for r in refs], [h for _, h in hyps], align=align, allow_empty_references=True)
    report = ScoreReport(rules, align, [r.id for r in refs], result)
    if use_sclite is None:
        use_sclite = find_sclite() is not None
    if not use_sclite and workdir is None:
        return report
    with tempfile.TemporaryDirectory(prefix="score.") as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        # CTM lines carry each reference's channel, so sclite pairs them whatever the STM uses
        lines = [x for r, (_, h) in zip(refs, hyps, strict=True) for x in ctm_lines([(r.id, h)], r.channel)]
        write_ctm(folder / "hyp.ctm", lines)
        write_stm(folder / "ref.stm", refs)
        if use_sclite:
            report.sclite = run_sclite(folder / "hyp.ctm", folder / "ref.stm", expected_utterances=len(refs))
    return report


def score_files(hyp_ctm: str | Path, ref_stm: str | Path, **kwargs) -> ScoreReport:
    """:func:`score` on a CTM file and an STM file."""
    return score(group_ctm(read_ctm(hyp_ctm)), read_stm(ref_stm), **kwargs)


def format_report(report: ScoreReport) -> str:
    r = report.result
    rates = r.rates()
    lines = [f"WER {r.wer:.2f}% (sub {rates['sub']:.2f}%, del {rates['del']:.2f}%, ins {rates['ins']:.2f}%)  "
             f"S={r.substitutions} D={r.deletions} I={r.insertions} N={r.num_ref} "
             f"utterances={len(report.ids)} rules={report.rules} align={report.align}"]
    if report.sclite is not None:
        s = report.sclite
        lines.append(f"sclite WER {s.wer:.2f}% (reported {s.reported_wer:.1f})  S={s.substitutions} "
                     f"D={s.deletions} I={s.insertions} N={s.num_ref} utterances={s.num_sentences}")
    return "\n".join(lines)
