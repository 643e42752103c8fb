"""Extraction spread over shards: one command through a Hydra launcher, and the shards' summaries merged into one.

Inputs are frame folders cut from the real signer_58f.mp4 (lossless PNG), so the landmarks are real.
A sharded run must give what one unsharded run gives: the same files, counts, frames and rates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sign_ctc.extraction.discover import discover
from sign_ctc.extraction.merge import MergeError, merge_summaries
from sign_ctc.extraction.run import extract

REPO = Path(__file__).resolve().parents[1]
VIDEO = Path(__file__).resolve().parent / "data" / "signer_58f.mp4"
CLIPS, FRAMES = 4, 5


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Four frame folders of 5 consecutive real frames each (folders 2-3 cover the signing hand)."""
    import cv2

    if not VIDEO.is_file():
        pytest.skip("fixture signer_58f.mp4 not present")
    root = tmp_path_factory.mktemp("clips")
    cap = cv2.VideoCapture(str(VIDEO))
    for k in range(CLIPS):
        folder = root / f"clip{k}"
        folder.mkdir()
        for i in range(FRAMES):
            ok, frame = cap.read()
            assert ok
            cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    cap.release()
    return root


@pytest.fixture(scope="module")
def unsharded(clips, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("unsharded")
    return out, extract(discover(clips), out, progress=False)


def _same_as_unsharded(out: Path, merged: dict, unsharded: tuple[Path, dict]) -> None:
    ref_dir, ref = unsharded
    assert merged["missing_shards"] == [] and merged["counts"] == ref["counts"]
    assert merged["frames"] == ref["frames"] == CLIPS * FRAMES
    assert merged["detection_rate"] == pytest.approx(ref["detection_rate"], abs=1e-6)
    frames = {k: v["frames"] for k, v in merged["sentences"].items()}
    assert frames == {k: v["frames"] for k, v in ref["sentences"].items()}
    assert merged["extractor"] == ref["extractor"]
    for name in (f"clip{k}.pose" for k in range(CLIPS)):
        assert (out / name).read_bytes() == (ref_dir / name).read_bytes()
    assert json.loads((out / "extract_summary.json").read_text())["counts"] == ref["counts"]


def test_shard_summaries_merge_into_the_unsharded_summary(clips, unsharded, tmp_path) -> None:
    out = tmp_path / "out"
    items = discover(clips)
    for k in range(3):
        extract(items, out, shard=f"{k}/3", progress=False)
    shard_files = sorted(p.name for p in out.glob("extract_summary.shard-*"))
    assert shard_files == [f"extract_summary.shard-{k}-of-3.json" for k in range(3)]
    merged = merge_summaries(out)
    assert merged["shards"] == "3 of 3"
    _same_as_unsharded(out, merged, unsharded)
    # a detection rate no shard has on its own: it is frame-weighted over all sentences
    rates = [json.loads((out / f).read_text())["detection_rate"]["right_hand"] for f in shard_files]
    assert len(set(rates)) > 1 and merged["detection_rate"]["right_hand"] not in rates


def test_merge_names_missing_shards_and_refuses_mixed_shardings(clips, tmp_path) -> None:
    from omegaconf import OmegaConf

    from sign_ctc.cli.extract import run

    out = tmp_path / "out"
    extract(discover(clips), out, shard="1/2", progress=False)
    cfg = OmegaConf.create({"output": str(out), "summary": "extract_summary.json", "merge": True})
    assert run(cfg) == 1  # shard 0/2 has not run yet
    merged = json.loads((out / "extract_summary.json").read_text())
    assert merged["missing_shards"] == ["0/2"] and merged["counts"]["total"] == CLIPS // 2
    (out / "extract_summary.shard-0-of-3.json").write_text("{}")
    with pytest.raises(MergeError, match="differently sharded runs"):
        merge_summaries(out)
    assert run(OmegaConf.create({"output": str(tmp_path / "empty"), "summary": "extract_summary.json",
                                 "merge": True})) == 2


def test_one_command_spreads_shards_over_submitit_local(clips, unsharded, tmp_path) -> None:
    """``-m shard=0/2,1/2 hydra/launcher=submitit_local``: two jobs; the last to finish merges."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sign_ctc.cli.extract", "-m", f"input={clips}", f"output={out}", "shard=0/2,1/2",
         "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "progress=false",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert "extract: shard 0/2:" in logs and "extract: shard 1/2:" in logs
    assert logs.count("extract: merged 2 of 2 shards") >= 1
    merged = json.loads((out / "extract_summary.json").read_text())
    assert merged["shards"] == "2 of 2"
    _same_as_unsharded(out, merged, unsharded)
    assert np.isclose(merged["wall_seconds"],
                      max(json.loads((out / f"extract_summary.shard-{k}-of-2.json").read_text())["wall_seconds"]
                          for k in range(2)))
