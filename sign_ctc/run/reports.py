"""Run outputs a researcher reads: per-sentence predictions (CSV) and WER results (JSON)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sign_ctc.atomic import write_text_atomic
from sign_ctc.scoring.wer import WERResult


def write_predictions(path: str | Path, predictions: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "reference", "hypothesis", "errors"])
    writer.writeheader()
    writer.writerows(predictions)
    write_text_atomic(path, buf.getvalue())


def result_summary(result: WERResult) -> dict[str, Any]:
    return {**result.rates(), "substitutions": result.substitutions, "deletions": result.deletions,
            "insertions": result.insertions, "num_ref": result.num_ref, "sentences": len(result.sentences)}


def write_results(path: str | Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def format_result(split: str, result: WERResult) -> str:
    r = result.rates()
    return (f"{split} WER {r['wer']:.2f}% (sub {r['sub']:.2f}, del {r['del']:.2f}, ins {r['ins']:.2f}; "
            f"S={result.substitutions} D={result.deletions} I={result.insertions} N={result.num_ref}, "
            f"{len(result.sentences)} sentences)")
