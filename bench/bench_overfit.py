"""Benchmark the overfit test: wall time of ``python train.py debug=overfit logger=none test=false``.

8 training sentences of the embedded synthetic corpus, validated on themselves every 5 epochs,
stopped when they are recognized without error (0% WER). The corpus and its packed store are
prepared first (not timed), so the figure is the time of the training command itself, Python
start-up and imports included. Epochs and the final WER are read from the run's checkpoint.

    python bench/bench_overfit.py [--timeout 900]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, figure, machine, write_result  # noqa: E402

COMMAND = ["train.py", "debug=overfit", "logger=none", "test=false"]


def prepare() -> None:
    """Build the default synthetic corpus and its train store as train.py would (same config)."""
    import hydra
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from sign_ctc.data.store import open_store

    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["debug=overfit", f"paths.root_dir={REPO}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(REPO / ".cache")
    corpus = hydra.utils.instantiate(cfg.data).corpus
    corpus.prepare()
    open_store(corpus, "train", cfg.data.store_dir, cfg.data.store_cache_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    info = machine()
    prepare()
    import torch

    with tempfile.TemporaryDirectory(prefix="bench_overfit_") as tmp:
        cmd = [sys.executable, *COMMAND, f"hydra.run.dir={tmp}", "callbacks.rich_progress_bar=null"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
        wall = time.perf_counter() - start
        if proc.returncode:
            sys.exit(f"bench_overfit: the training command failed:\n{proc.stderr[-3000:]}")
        ckpt = torch.load(Path(tmp) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    epochs = int(ckpt["epoch"]) + 1
    wer = float(ckpt["sign_ctc"]["best_wer"])
    print(f"overfit test ({' '.join(['python', *COMMAND])}): {wall:.1f} s wall, {epochs} epochs, "
          f"best WER {wer:.1f}% on the 8 training sentences")
    figures = [figure("overfit test (8 sentences to 0% WER)", round(wall, 1), "s", goal="0% WER", met=wer == 0.0,
                      note=f"{epochs} epochs, WER {wer:.1f}%")]
    result = {"figures": figures, "seconds": round(wall, 2), "epochs": epochs, "best_wer": wer,
              "command": " ".join(["python", *COMMAND])}
    write_result("overfit", result, info)


if __name__ == "__main__":
    main()
