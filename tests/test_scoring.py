"""WER, the PHOENIX clean-up rules, CTM/STM handling, the sclite runner and the scoring CLI."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sign_ctc.scoring.ctm import (
    EMPTY,
    CtmLine,
    FormatError,
    StmLine,
    align_ctm_to_stm,
    ctm_lines,
    group_ctm,
    read_ctm,
    read_stm,
    write_ctm,
    write_stm,
)
from sign_ctc.scoring.official import score, score_files
from sign_ctc.scoring.phoenix_rules import RULES, clean_hypothesis, clean_phoenix2014_gloss, clean_reference
from sign_ctc.scoring.sclite import SCLiteError, find_sclite, parse_sum, run_sclite
from sign_ctc.scoring.wer import align_sclite, wer

DATA = Path(__file__).parent / "data" / "phoenix2014"
REPO = Path(__file__).resolve().parent.parent
SCLITE = find_sclite()


def require_sclite(sclite: str | None, ci: bool) -> str:
    """sclite's path. Missing: a failure in CI (`.ci/run` installs it, so a skip there would hide a
    broken install and drop the only check against the official scorer), a skip anywhere else."""
    if sclite is not None:
        return sclite
    reason = "NIST sclite not installed (apt-get install sctk, or SCLITE=<path to sclite>)"
    if ci:
        pytest.fail(f"{reason}: with CI=true the sclite agreement tests must run", pytrace=False)
    pytest.skip(f"{reason}; skipped outside CI (with CI=true this is a failure)")


def in_ci() -> bool:
    """CI sets CI=true (GitHub Actions, GitLab and `.ci/run`'s callers)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def test_missing_sclite_fails_in_ci_and_skips_elsewhere(monkeypatch):
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_sclite(None, ci=True)
    with pytest.raises(pytest.skip.Exception, match="skipped outside CI"):
        require_sclite(None, ci=False)
    assert require_sclite("/usr/bin/sclite", ci=True) == "/usr/bin/sclite"
    monkeypatch.setenv("CI", "true")
    assert in_ci()
    monkeypatch.setenv("CI", "false")
    assert not in_ci()
    monkeypatch.delenv("CI")
    assert not in_ci()


# ------------------------------------------------------------------ corpus-level WER


def test_wer_is_corpus_level_with_sdi():
    refs = [["A", "B", "C", "D"], ["E", "F"]]
    hyps = [["A", "X", "C"], ["E", "F", "G", "H"]]
    r = wer(refs, hyps)
    assert (r.substitutions, r.deletions, r.insertions, r.num_ref) == (1, 1, 2, 6)
    assert r.errors == 4
    assert r.wer == pytest.approx(100 * 4 / 6)  # not the mean of sentence WERs (50% and 100%)
    assert r.rates() == pytest.approx({"wer": 66.6667, "sub": 16.6667, "del": 16.6667, "ins": 33.3333}, abs=1e-3)
    assert [s.errors for s in r.sentences] == [2, 2]


def test_wer_empty_hypothesis_and_reference():
    assert wer([["A", "B"]], [[]]).deletions == 2
    with pytest.raises(ValueError, match="empty reference"):
        wer([[]], [["A"]])
    r = wer([[]], [["A"]], allow_empty_references=True)
    assert (r.insertions, r.num_ref) == (1, 0)
    with pytest.raises(ValueError, match="2 references but 1"):
        wer([["A"], ["B"]], [["A"]])


def test_sclite_alignment_counts_more_errors_than_edit_distance():
    # sclite's weights (ins/del 3, sub 4) prefer 3 deletions + 3 insertions (cost 18) over 5 subs (20)
    assert align_sclite("A B C D E".split(), "D E P Q R".split()) == (0, 3, 3)
    r_jiwer = wer([["A", "B", "C", "D", "E"]], [["D", "E", "P", "Q", "R"]], align="jiwer")
    assert (r_jiwer.substitutions, r_jiwer.deletions, r_jiwer.insertions) == (5, 0, 0)
    assert align_sclite(["abc", "DEF"], ["ABC", "def"]) == (0, 0, 0)  # sclite is case-insensitive
    assert align_sclite(["X", "Y", "Z"], [EMPTY]) == (1, 2, 0)


# ------------------------------------------------------------------ PHOENIX rules


@pytest.mark.parametrize(
    "gloss, cleaned",
    [("loc-NORD", "NORD"), ("cl-KOMMEN", "KOMMEN"), ("qu-WAS", "WAS"), ("poss-SEIN", "SEIN"), ("lh-HAND", "HAND"),
     ("S0NNE", "SONNE"), ("HABEN2", "HABEN"), ("__EMOTION__", None), ("__PU__", None), ("__EPENTHESIS__", None),
     ("lh-__LEFTHAND__", None), ("AUFZEIGEN", "AUFZEIGEN-BILDSCHIRM"), ("NORDRAUM", "NORD"), ("RAUM", "RAUM"),
     ("REGEN-PLUSPLUS", "REGEN"), ("__ON__", "__ON__"), ("WIE-AUSSEHEN", "WIE-AUSSEHEN")],
)
def test_phoenix2014_ctm_line_rules(gloss, cleaned):
    assert clean_phoenix2014_gloss(gloss) == cleaned


def test_rule_sets_differ_where_documented():
    hyp = ["WIE", "AUSSEHEN", "A", "B", "REGEN", "REGEN", "__EMOTION__", "loc-X", "qu-YY", "__PU__"]
    assert clean_hypothesis(hyp, "phoenix2014") == ["WIE", "AUSSEHEN", "A", "B", "REGEN", "REGEN", "X", "YY"]
    assert clean_hypothesis(hyp, "phoenix2014_string") == ["WIE-AUSSEHEN", "A+B", "REGEN", "X", "YY"]
    assert clean_hypothesis(hyp, "phoenix2014t") == ["WIE", "AUSSEHEN", "A", "B", "REGEN", "X", "qu-YY"]
    assert clean_hypothesis(hyp, "none") == hyp
    assert clean_hypothesis(["__ON__", "__LEFT_HAND__", "A"], "phoenix2014t") == ["__LEFT_HAND__", "A"]
    assert clean_hypothesis(["__ON__", "__LEFT_HAND__", "A"], "phoenix2014t_strip") == ["A"]
    ref = ["__ON__", "loc-NORD", "WIE", "AUSSEHEN", "A", "B", "C", "NORDRAUM", "REGEN", "REGEN", "__OFF__"]
    for rules in ("phoenix2014", "phoenix2014_string", "none"):
        assert clean_reference(ref, rules) == ref  # PHOENIX-2014 scores the official STM unchanged
    assert clean_reference(ref, "phoenix2014t") == ["NORD", "WIE-AUSSEHEN", "A+B+C", "NORD", "REGEN"]
    with pytest.raises(ValueError, match="unknown scoring rules"):
        clean_hypothesis(["A"], "phoenix2015")
    assert set(RULES) == {"phoenix2014", "phoenix2014_string", "phoenix2014t", "phoenix2014t_strip", "none"}


def test_score_fills_empty_utterances_and_keeps_on_off_in_references():
    refs = [StmLine("b", "1", "s1", "0.0", "1.79769e+308", ("__ON__", "NORD", "REGEN", "__OFF__")),
            StmLine("a", "1", "s1", "0.0", "1.79769e+308", ("X", "Y", "Z"))]
    rep = score({"b": ["loc-NORD", "REGEN", "__EPENTHESIS__"], "a": ["__EMOTION__"]}, refs)
    assert rep.ids == ["a", "b"]  # sorted like the official script
    # a: [EMPTY] vs X Y Z -> 1 S + 2 D; b: NORD REGEN vs __ON__ NORD REGEN __OFF__ -> 2 D
    r = rep.result
    assert (r.substitutions, r.deletions, r.insertions, r.num_ref) == (1, 4, 0, 7)
    assert r.wer == pytest.approx(500 / 7)
    missing = score({}, refs)  # an utterance with no CTM line at all is [EMPTY] too
    assert [s.hypothesis for s in missing.result.sentences] == [[EMPTY], [EMPTY]]
    with pytest.raises(FormatError, match="not in the references"):
        score({"zz": ["A"]}, refs)


# ------------------------------------------------------------------ CTM / STM


def test_ctm_stm_roundtrip_and_ordering(tmp_path):
    lines = ctm_lines([("u2", ["B", "C"]), ("u1", ["A"])])
    assert lines[1] == CtmLine("u2", "1", 0.03, 0.03, "C")
    write_ctm(tmp_path / "h.ctm", list(reversed(lines)))
    assert group_ctm(read_ctm(tmp_path / "h.ctm")) == {"u1": ["A"], "u2": ["B", "C"]}  # time order restored
    refs = read_stm(DATA / "phoenix2014-groundtruth-dev.stm")
    assert len(refs) == 540 and sum(len(r.tokens) for r in refs) == 5540
    write_stm(tmp_path / "r.stm", refs)
    assert read_stm(tmp_path / "r.stm") == refs
    sorted_refs, hyps = align_ctm_to_stm({}, refs)
    assert [r.id for r in sorted_refs] == sorted(r.id for r in refs)
    assert all(h == [EMPTY] for _, h in hyps)
    (tmp_path / "bad.ctm").write_text("u1 1 0.0 A\n")
    with pytest.raises(FormatError, match="bad.ctm:1"):
        read_ctm(tmp_path / "bad.ctm")


# ------------------------------------------------------------------ sclite runner


def _fake_sclite(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "fake-sclite"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_sclite_failures_are_errors_not_scores(tmp_path):
    ctm, stm = tmp_path / "h.ctm", tmp_path / "r.stm"
    ctm.write_text("a 1 0.000 0.030 A\n")
    stm.write_text("a 1 s 0.0 1.79769e+308 A\n")
    with pytest.raises(SCLiteError, match="exited with 3"):
        run_sclite(ctm, stm, sclite=_fake_sclite(tmp_path, "echo boom >&2; exit 3"))
    with pytest.raises(SCLiteError, match="wrote no"):
        run_sclite(ctm, stm, sclite=_fake_sclite(tmp_path, "exit 0"))
    garbage = 'for a in "$@"; do case "$prev" in -O) d="$a";; esac; prev="$a"; done; ' \
              'echo nonsense > "$d/run.sys"; echo nonsense > "$d/run.pra"'
    with pytest.raises(SCLiteError, match="unreadable"):
        run_sclite(ctm, stm, sclite=_fake_sclite(tmp_path, garbage))
    with pytest.raises(SCLiteError, match="Sum/Avg"):
        parse_sum("| SPKR | # Snt # Wrd |")


def _perturb(tokens, vocab, rng):
    """Substitutions, deletions, insertions, prefixed and marker glosses, shifted runs, empty outputs."""
    out = []
    for t in tokens:
        x = rng.random()
        if x < 0.10:
            pass
        elif x < 0.22:
            out.append(rng.choice(vocab))
        elif x < 0.28:
            out.append(rng.choice(["loc-", "cl-", "qu-", "poss-", "lh-"]) + t)
        else:
            out.append(t)
        y = rng.random()
        if y < 0.06:
            out.append(rng.choice(vocab))
        elif y < 0.09:
            out.append(rng.choice(["__EMOTION__", "__PU__", "__LEFTHAND__", "__EPENTHESIS__", "loc-", t + "-PLUSPLUS",
                                   "NORDRAUM", "HABEN2", "S0NNE", "AUFZEIGEN", t, "__ON__"]))
    if rng.random() < 0.04:
        out = []
    elif rng.random() < 0.05:
        out = out[3:] + [rng.choice(vocab) for _ in range(3)]
    return out


@pytest.mark.parametrize("split", ["dev", "test"])
@pytest.mark.parametrize("rules, seed", [("phoenix2014", 0), ("phoenix2014", 1), ("phoenix2014_string", 2),
                                         ("phoenix2014t", 3)])
def test_our_wer_equals_sclite_on_perturbed_phoenix_references(split, rules, seed):
    require_sclite(SCLITE, in_ci())
    refs = read_stm(DATA / f"phoenix2014-groundtruth-{split}.stm")
    vocab = sorted({t for r in refs for t in r.tokens})
    rng = random.Random(seed)
    hyps = {r.id: _perturb(r.tokens, vocab, rng) for r in refs}
    rep = score(hyps, refs, rules=rules, use_sclite=True)
    ours, sc = rep.result, rep.sclite
    assert sc is not None and sc.num_sentences == len(refs)
    assert 20.0 < ours.wer < 50.0  # a real error mix, not a degenerate 0% / 100%
    assert abs(ours.wer - sc.wer) < 0.01
    assert (ours.substitutions, ours.deletions, ours.insertions, ours.num_ref) == \
        (sc.substitutions, sc.deletions, sc.insertions, sc.num_ref)
    # sclite lower-cases utterance ids in its reports
    ours_per_utt = {uid.lower(): (s.substitutions, s.deletions, s.insertions)
                    for uid, s in zip(rep.ids, ours.sentences, strict=True)}
    assert ours_per_utt == {uid: v[1:] for uid, v in sc.per_utterance.items()}
    assert abs(sc.reported_wer - sc.wer) <= 0.051


# ------------------------------------------------------------------ CLI


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "sign_ctc.cli.score", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def _write_perturbed_ctm(path: Path, split: str = "dev", seed: int = 7) -> None:
    refs = read_stm(DATA / f"phoenix2014-groundtruth-{split}.stm")
    vocab = sorted({t for r in refs for t in r.tokens})
    rng = random.Random(seed)
    write_ctm(path, ctm_lines((r.id, _perturb(r.tokens, vocab, rng)) for r in refs))


def test_cli_prints_wer_and_json(tmp_path):
    ctm, stm = tmp_path / "hyp.ctm", DATA / "phoenix2014-groundtruth-dev.stm"
    _write_perturbed_ctm(ctm)
    expected = score_files(ctm, stm, rules="phoenix2014").result
    js = _run_cli("--hyp", str(ctm), "--ref", str(stm), "--rules", "phoenix2014", "--json")
    assert js.returncode == 0, js.stderr
    out = json.loads(js.stdout)
    assert out["wer"] == pytest.approx(expected.wer, abs=1e-4)
    assert (out["substitutions"], out["deletions"], out["insertions"], out["num_ref"], out["num_utterances"]) == \
        (expected.substitutions, expected.deletions, expected.insertions, 5540, 540)
    txt = _run_cli("--hyp", str(ctm), "--ref", str(stm))
    assert txt.returncode == 0 and f"WER {expected.wer:.2f}%" in txt.stdout and "N=5540" in txt.stdout
    bad = _run_cli("--hyp", str(ctm), "--ref", str(stm), "--rules", "nope")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    missing = _run_cli("--hyp", str(tmp_path / "none.ctm"), "--ref", str(stm))
    assert missing.returncode == 1 and "error:" in missing.stderr


def test_cli_runs_sclite_and_prints_both(tmp_path):
    require_sclite(SCLITE, in_ci())
    ctm, stm = tmp_path / "hyp.ctm", DATA / "phoenix2014-groundtruth-test.stm"
    _write_perturbed_ctm(ctm, "test", seed=11)
    res = _run_cli("--hyp", str(ctm), "--ref", str(stm), "--sclite", "--json", "--keep", str(tmp_path / "kept"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert abs(out["wer"] - out["sclite"]["wer"]) < 0.01
    assert out["sclite"]["num_ref"] == out["num_ref"] == 6504
    assert (tmp_path / "kept" / "hyp.ctm").is_file() and (tmp_path / "kept" / "ref.stm").is_file()
    txt = _run_cli("--hyp", str(ctm), "--ref", str(stm), "--sclite")
    assert txt.returncode == 0 and "sclite WER" in txt.stdout and txt.stdout.startswith("WER ")
