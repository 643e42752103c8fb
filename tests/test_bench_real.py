"""bench/bench_real.py: the constant-answer floor, WER per signer, the docs table, and a --quick smoke run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_real  # noqa: E402
import common  # noqa: E402

from sign_ctc.data.corpus import Sentence  # noqa: E402


def _s(sid: str, signer: str, glosses: str) -> Sentence:
    return Sentence(id=sid, glosses=tuple(glosses.split()), signer=signer)


def test_constant_answers_and_per_signer_wer(tmp_path):
    train = [_s("a", "A", "X Y"), _s("b", "A", "X Y"), _s("c", "B", "Z")]
    test = [_s("t1", "C", "X Y Z"), _s("t2", "D", "X Y Z"), _s("t3", "D", "Z W")]
    const = bench_real.constant_answers(train, test)
    # "X Y Z" for all: 0 + 0 + (Z W vs X Y Z: 2 sub + 1 ins = 3) errors of 8 reference glosses
    assert const["best"] == {"answer": "X Y Z", "test_wer": 37.5}
    # "X Y" for all: 1 + 1 + 2 = 4 errors; "Z": 2 + 2 + 1 = 5
    assert const["best_from_train"] == {"answer": "X Y", "test_wer": 50.0}
    assert const["most_common_train"]["count"] == 2
    preds = tmp_path / "test_predictions.csv"
    preds.write_text("id,reference,hypothesis,errors\nt1,X Y Z,X Y Z,0\nt2,X Y Z,X,2\nt3,Z W,Z W,0\n")
    assert bench_real.per_signer_wer(preds, test) == {"C": 0.0, "D": 40.0}


def test_doc_table_is_replaced_between_its_markers(tmp_path):
    doc = tmp_path / "REAL.md"
    doc.write_text("# Real signers\n\nprose before\n\n<!-- bench_real:begin -->\nold\n<!-- bench_real:end -->\n\nprose after\n")
    summary = {"corpus": "boston104", "model": "reference", "seeds": [1, 2], "parameters": 480000,
               **{f"{sp}_{k}_mean": 10.0 for sp in ("dev", "test") for k in ("wer", "sub", "del", "ins")},
               "test_wer_std": 1.5, "dev_wer_std": 1.0, "test_wer_per_signer_mean": {"woman-2": 10.0},
               "train_seconds_mean": 12.0, "epochs_mean": 80}
    const = {"boston104": {"best": {"answer": "JOHN", "test_wer": 76.55}, "best_from_train": {"answer": "J", "test_wer": 79.0},
                           "most_common_train": {"answer": "J", "count": 3, "test_wer": 91.0}}}
    results = {"summary": {"boston104/reference": summary}, "constant": const, "commands": ["python bench/bench_real.py"],
               "date": "2026-12-06"}
    for _ in range(2):  # idempotent
        bench_real.write_doc(doc, results)
    text = doc.read_text()
    assert text.count("<!-- bench_real:begin -->") == 1 and "old" not in text
    assert text.startswith("# Real signers\n\nprose before") and text.rstrip().endswith("prose after")
    assert "| boston104 | reference | 0.48M | 2 | 10.00 (10.0/10.0/10.0) | 10.00 ± 1.50 (10.0/10.0/10.0) | woman-2 10.0 | 76.55 | 80 | 12 |" in text


@pytest.mark.slow
def test_quick_run_writes_results_and_the_table(tmp_path, monkeypatch):
    """--quick: a tiny reference-model training on the signer-shift corpus, through train.py and eval.py."""
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_real, "OUT", tmp_path / "runs" / "bench_real")
    doc = tmp_path / "REAL.md"
    monkeypatch.setattr(sys, "argv", ["bench_real.py", "--quick", "--threads", "1", "--seeds", "3", "--corpora",
                                      "synthetic_shift", "--models", "reference", "--doc", str(doc)])
    bench_real.main()
    result = json.loads((tmp_path / "real_quick.json").read_text())
    (run,) = result["runs"]
    assert (run["corpus"], run["model"], run["seed"], run["epochs"]) == ("synthetic_shift", "reference", 3, 1)
    assert run["test"]["N"] == sum(len(s.glosses) for s in bench_real.read_sentences(
        tmp_path / "runs" / "bench_real_quick" / "synthetic_shift" / "reference_s3", "test"))
    assert run["test"]["S"] + run["test"]["D"] + run["test"]["I"] == round(run["test"]["wer"] * run["test"]["N"] / 100)
    assert set(run["test_wer_per_signer"]) <= {"S10", "S11"} and 0.4e6 < run["parameters"] < 0.55e6
    assert 0 < result["constant"]["synthetic_shift"]["best"]["test_wer"] <= 100
    assert "/work" not in json.dumps(result) and str(tmp_path) not in json.dumps(result)
    assert "| synthetic_shift | reference | 0.47M | 1 |" in doc.read_text()
