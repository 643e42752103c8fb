"""The benchmark helpers: the PHOENIX-scale corpus, the results files and the Markdown report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import report  # noqa: E402

from sign_ctc.features.pose_io import read_pose  # noqa: E402


@pytest.fixture(scope="module")
def tiny_phoenix(tmp_path_factory):
    corpus = common.PhoenixScaleCorpus(fraction=0.002, seed=3, cache=tmp_path_factory.mktemp("bench"))
    corpus.prepare()
    return corpus


def test_phoenix_scale_corpus_has_real_sentences_and_lengths(tiny_phoenix):
    full = {s.id: s for s in tiny_phoenix.full_split("train")}
    used = tiny_phoenix.sentences("train")
    assert len(used) == round(0.002 * len(full)) and all(full[s.id].glosses == s.glosses for s in used)
    nums = tiny_phoenix.num_frames("train")
    real = (tiny_phoenix.annotations / "num_frames.csv").is_file()
    assert tiny_phoenix.real_lengths == real
    if real:
        rows = (tiny_phoenix.annotations / "num_frames.csv").read_text().splitlines()[1:]
        truth = {r.split("|")[1]: int(r.split("|")[2]) for r in rows if r.startswith("train|")}
        assert all(nums[s.id] == truth[s.id] for s in used)
    lms = [read_pose(tiny_phoenix.landmark_path("train", s)) for s in used]
    assert [len(lm) for lm in lms] == [nums[s.id] for s in used]
    presence = np.concatenate([lm.presence for lm in lms])
    assert 0.2 < 1 - presence[:, 1:3].mean() < 0.6  # hands missing in bursts, as in PHOENIX
    before = (tiny_phoenix.root / "corpus.json").stat().st_mtime_ns
    tiny_phoenix.prepare()  # built once, reused
    assert (tiny_phoenix.root / "corpus.json").stat().st_mtime_ns == before
    desc = tiny_phoenix.describe()
    assert desc["sentences"]["train"] == len(used) and desc["frames"]["train"] == sum(nums.values())


def test_bench_store_writes_its_figures(tiny_phoenix, tmp_path, monkeypatch, capsys):
    import bench_store

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench_store.py", "--fraction", "0.002", "--seed", "3",
                                      "--cache", str(tiny_phoenix.root.parent)])
    bench_store.main()
    assert not (tmp_path / "store.json").exists()  # the default fraction's results are not overwritten
    result = json.loads((tmp_path / "store_f0.002.json").read_text())
    assert result["store_bytes_per_frame"] <= 3300 and result["figures"][0]["met"] is True
    assert {"cpu", "cores", "ram_gb", "torch", "date", "command", "load_average_start"} <= set(result["machine"])
    assert "fraction 0.002" in capsys.readouterr().out


def test_bench_train_pairs_lightning_and_bare_steps_on_the_same_batches(tiny_phoenix, tmp_path, monkeypatch):
    import bench_train
    import torch

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_train, "CACHE", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench_train.py", "--fraction", "0.002", "--seed", "3", "--cache",
                                      str(tiny_phoenix.root.parent), "--batch-size", "2", "--warmup", "1",
                                      "--steps", "3", "--memory-steps", "2", "--onednn-steps", "2"])
    onednn = torch.backends.mkldnn.enabled
    try:
        bench_train.main()
    finally:
        torch.backends.mkldnn.enabled = onednn
    result = json.loads((tmp_path / "train_f0.002.json").read_text())
    paired = result["paired"]
    assert paired["steps"] == 3 and len(paired["lightning_s"]) == len(paired["bare_s"]) == 3
    assert paired["frames"] > 0 and all(t > 0 for t in paired["lightning_s"] + paired["bare_s"])
    assert {"NaNGuard", "FeatureDiagnostics", "Throughput"} <= set(paired["callbacks"])
    assert result["onednn"]["steps"] == 2 and len(result["onednn"]["padded_lengths"]) == 2
    assert [f["name"] for f in result["figures"]][0] == "training throughput (Lightning)"
    assert result["machine"]["backend"] == {"onednn": False, "float32_matmul_precision": "highest", "num_threads": "auto"}


def test_report_prints_every_results_file(tmp_path):
    ours = {"benchmark": "x", "figures": [common.figure("speed", 30.0, "samples/s", 10.0, "naive", goal=">= 3x",
                                                         met=True)],
            "machine": {"cpu": "CPU", "cores": 2, "ram_gb": 8, "torch": "2", "date": "2026-01-01T10:00:00",
                        "load_average_start": [1.5, 1, 1]}}
    (tmp_path / "x.json").write_text(json.dumps(ours))
    (tmp_path / "extract.json").write_text(json.dumps({"fps_1_worker": 10.0, "fps_2_workers": 15.0, "speedup": 1.5,
                                                       "runs": [{"load_before": 2.0}], "machine": {"cpus": 2}}))
    out = report.table(tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("| benchmark |") and len([ln for ln in lines if ln.startswith("| x |")]) == 1
    assert "| 30.0 samples/s | 10.0 (naive) | x3.00 | >= 3x | yes |" in out
    assert "landmark extraction" in out and "load 2.0" in out


def test_memory_sampler_sees_this_process():
    with common.MemorySampler(interval=0.05) as mem:
        _ = np.ones(10_000_000)  # 80 MB
    assert mem.peak["rss_main_mb"] > 80 and mem.peak["pss_tree_mb"] > 0


def test_bench_gpu_smoke_runs_every_path_on_the_cpu(tiny_phoenix, tmp_path, monkeypatch):
    """bench_gpu.py --smoke: fp32, bf16-mixed and the compiled run (dynamo, backend eager, one padded
    shape) through the real Lightning loop and loaders, so the GPU run is known to work beforehand."""
    import math

    import bench_gpu

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--smoke", "--seed", "3", "--cache", str(tiny_phoenix.root.parent)])
    bench_gpu.main()
    result = json.loads((tmp_path / "gpu_smoke_f0.002.json").read_text())
    runs = result["runs"]
    assert set(runs) == {"fp32", "bf16", "bf16_compiled"}
    for r in runs.values():
        assert r["steps"] == 3 and len(r["losses"]) == 4 and all(math.isfinite(x) for x in r["losses"])
        assert r["frames_per_s"] > 0 and 0 <= r["input_wait_pct"] < 100 and r["epoch_s_full_phoenix"] > 0
    assert runs["bf16_compiled"]["compiled"] and runs["bf16_compiled"]["pad_to_multiple"] == 512
    assert runs["bf16_compiled"]["padding_pct"] > runs["bf16"]["padding_pct"]
    # same seed, same batches, same initial weights: the first losses differ only by bf16 rounding
    first = runs["fp32"]["losses"][0]
    assert abs(runs["bf16"]["losses"][0] - first) / first < 0.02
    assert runs["fp32"]["losses"] != runs["bf16"]["losses"]  # the precision really changed
    assert result["bf16_vs_fp32"]["relative_diff_pct"] >= 0 and result["compiled_vs_eager"]["backend"] == "eager"
    assert [f["name"] for f in result["figures"]][:2] == ["teacher epoch at PHOENIX-2014 scale",
                                                         "input waiting, share of step time"]


@pytest.mark.slow
def test_bench_live_smoke_measures_every_part(tmp_path, monkeypatch, cache_dir, small_corpus):
    """bench_live.py --smoke with a small untrained student: per-frame costs (PyTorch and the streaming ONNX
    export), the sliding-window ratio, both paced live runs and a one-minute stream, written as live_smoke.json."""
    import bench_live

    from tests.helpers import SMALL_CORPUS, compose_cfg
    from tests.test_export import write_tiny_checkpoint

    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model=student", "model.net.blank_bias=-1"],
                      tmp_path / "run", cache_dir)
    ckpt = write_tiny_checkpoint(cfg, tmp_path / "run" / "best.ckpt")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench_live.py", "--smoke", "--ckpt", str(ckpt)])
    bench_live.main()
    result = json.loads((tmp_path / "live_smoke.json").read_text())
    assert result["video_frames"] == 58 and result["lookahead_frames"] == 14
    # figures, not goals: a ratio measured on a shared machine is reported, never asserted
    assert result["sliding_window_over_ours"] > 0 and result["recognizer_per_frame"]["median_ms"] > 0
    assert result["onnx_recognizer_per_frame"]["median_ms"] > 0 and result["onnx_over_pytorch"] > 0
    assert result["onnx_chunk_frames"] == 4 and result["onnx_lookahead_frames"] >= result["lookahead_frames"]
    for key in ("live_at_25fps", "live_at_video_fps"):
        r = result[key]
        assert r["frames"] == 58 and r["processed"] + r["dropped"] == 58 and r["realtime_factor"] > 0.8
    stream = result["endless_stream"]
    assert stream["minutes"] >= 1.0 and stream["frames"] >= 1500 and stream["realtime_factor"] > 0


def test_results_hold_no_machine_paths(tmp_path, monkeypatch):
    """What a benchmark writes names files as another machine would read them: the repository relative,
    its parent as ../, the interpreter as python, the temporary folder as <tmp>; figures untouched."""
    import tempfile

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    result = {"checkpoint": str(common.REPO / "outputs" / "run" / "best.ckpt"), "wer": 6.94,
              "data": [str(common.REPO.parent / "shared" / "data" / "boston104"), 3],
              "work": str(Path(tempfile.gettempdir()) / "bench_x" / "a.onnx")}
    info = {"command": f"python {sys.executable} bench/bench_live.py --ckpt {common.REPO}/outputs/run/best.ckpt",
            "load_average_start": [0.1], "cores": 2}
    written = json.loads(common.write_result("paths", result, info).read_text())
    assert written["checkpoint"] == "outputs/run/best.ckpt" and written["wer"] == 6.94
    assert written["data"] == ["../shared/data/boston104", 3] and written["work"] == "<tmp>/bench_x/a.onnx"
    assert written["machine"]["command"] == "python bench/bench_live.py --ckpt outputs/run/best.ckpt"
    assert str(common.REPO) not in json.dumps(written)
