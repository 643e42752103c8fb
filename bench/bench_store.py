"""Benchmark the packed landmark store: bytes per frame on disk vs the seed's float32 features, pack speed.

    python bench/bench_store.py [--annotations DIR] [--fraction 0.05]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SEED_FEATURE_BYTES, add_corpus_args, corpus_from_args, figure, machine, write_result  # noqa: E402

from sign_ctc.data.store import pack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_corpus_args(parser)
    args = parser.parse_args()
    info = machine()
    corpus, desc = corpus_from_args(args)

    root = corpus.root / "store"
    start = time.perf_counter()
    store = pack(corpus, "train", root, force=True)
    pack_s = time.perf_counter() - start
    on_disk = sum(f.stat().st_size for f in store.path.iterdir())
    per_frame = on_disk / store.total_frames
    pose_bytes = sum(corpus.landmark_path("train", s).stat().st_size for s in corpus.sentences("train"))
    start = time.perf_counter()
    pack(corpus, "train", root)  # unchanged sources: the fingerprint check only
    reuse_s = time.perf_counter() - start
    full = desc["train_frames_full"]

    ratio = SEED_FEATURE_BYTES / per_frame
    print(f"store: {per_frame:.1f} B/frame on disk (index + manifest included) vs the seed's 6516 x float32 = "
          f"{SEED_FEATURE_BYTES} B/frame: {ratio:.2f}x smaller (goal <= 3300 B/frame)")
    print(f"       .pose sources: {pose_bytes / store.total_frames:.0f} B/frame")
    if full:
        print(f"       full PHOENIX-2014 train ({full} frames): store {full * per_frame / 1e9:.2f} GB vs seed features "
              f"{full * SEED_FEATURE_BYTES / 1e9:.1f} GB read per epoch")
    print(f"pack: {store.total_frames} frames in {pack_s:.1f} s ({store.total_frames / pack_s:.0f} frames/s, "
          f"1 process, .pose parsing included); reuse check of an unchanged store: {1000 * reuse_s:.0f} ms")
    figures = [
        figure("storage per frame", round(per_frame, 1), "B/frame", SEED_FEATURE_BYTES, "seed float32 [T, 6516]",
               ratio=ratio, goal="<= 3300 B/frame (~8x smaller)", met=per_frame <= 3300),
        figure("pack speed", round(store.total_frames / pack_s), "frames/s",
               note=f"{store.total_frames} frames, 1 process; reuse check {1000 * reuse_s:.0f} ms"),
    ]
    result = {"corpus": desc, "figures": figures, "store_bytes_per_frame": round(per_frame, 1),
              "seed_bytes_per_frame": SEED_FEATURE_BYTES, "pose_bytes_per_frame": round(pose_bytes / store.total_frames, 1),
              "full_train_store_gb": round(full * per_frame / 1e9, 3) if full else None,
              "full_train_seed_gb": round(full * SEED_FEATURE_BYTES / 1e9, 3) if full else None,
              "pack_seconds": round(pack_s, 2), "pack_frames_per_s": round(store.total_frames / pack_s, 1),
              "reuse_check_ms": round(1000 * reuse_s, 1)}
    write_result("store", result, info)


if __name__ == "__main__":
    main()
