"""Benchmark landmark extraction: frames/s with 1 and 2 worker processes, and detection rates.

One video cannot be split over processes (the graph tracks across frames), so the input is a
folder holding ``--copies`` copies (symlinks) of the video, the unit a process pool shares out.
``workers=1`` runs in this process; ``workers=2`` is a spawn-started pool, and its time includes
starting the pool (imports + graph creation, ~2 s here), as a real run pays it once.

    python bench/bench_extract.py [--video tests/data/signer_58f.mp4] [--copies 4] [--out bench/results/extract.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sign_ctc.atomic import write_text_atomic  # noqa: E402
from sign_ctc.extraction.discover import discover  # noqa: E402
from sign_ctc.extraction.run import extract  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the pool's workers, once shut down)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(video: Path, copies: int, workers: int, root: Path) -> dict:
    """Extract ``copies`` copies of ``video`` with ``workers`` processes; frames/s over the wall time."""
    src = root / f"in_w{workers}"
    src.mkdir()
    for k in range(copies):
        os.symlink(video.resolve(), src / f"copy{k}{video.suffix}")
    load = os.getloadavg()[0]
    cpu0, start = cpu_seconds(), time.perf_counter()
    report = extract(discover(src), root / f"out_w{workers}", workers=workers, progress=False, summary=None)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    if report["counts"]["failed"]:
        raise RuntimeError(f"extraction failed: {report['failures']}")
    return {"workers": workers, "frames": report["frames"], "seconds": round(wall, 3),
            "fps": round(report["frames"] / wall, 2), "cpu_seconds": round(cpu, 3),
            "cpu_ms_per_frame": round(1000 * cpu / report["frames"], 1), "load_before": round(load, 2),
            "detection_rate": report["detection_rate"],
            "outputs": {n: (root / f"out_w{workers}" / n).read_bytes() for n in
                        sorted(p.name for p in (root / f"out_w{workers}").glob("*.pose"))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=REPO / "tests" / "data" / "signer_58f.mp4")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "extract.json")
    args = parser.parse_args()
    if not args.video.is_file():
        sys.exit(f"bench_extract: video not found: {args.video}")

    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        runs = [measure(args.video, args.copies, w, Path(tmp)) for w in (1, 2)]
    one, two = runs
    identical = one["outputs"] == two["outputs"]
    for run in runs:
        run.pop("outputs")
    result = {
        "video": args.video.name,
        "copies": args.copies,
        "model_complexity": 1,
        "fps_1_worker": one["fps"],
        "fps_2_workers": two["fps"],
        "speedup": round(two["fps"] / one["fps"], 3),
        "outputs_identical_1_vs_2": identical,
        "detection_rate": one["detection_rate"],
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(f"video {args.video.name} x{args.copies} ({one['frames']} frames), {os.cpu_count()} CPUs")
    for run in runs:
        print(f"{run['workers']} worker(s): {run['fps']:7.2f} frames/s ({run['seconds']:.1f} s wall, "
              f"{run['cpu_ms_per_frame']:.0f} ms CPU/frame, load average before {run['load_before']})")
    print(f"speed-up 2 vs 1 workers: x{result['speedup']:.2f} (wall clock; other load on the machine counts)")
    print(f"outputs identical 1 vs 2 workers: {identical}")
    print("detection rate: " + ", ".join(f"{p} {v:.1%}" for p, v in one["detection_rate"].items()))
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
