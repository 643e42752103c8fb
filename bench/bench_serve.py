"""The live page's path, end to end in a real browser: how late a gloss appears on the page after its last
frame was shown, and how many frames a second the page sustains.

    python bench/bench_serve.py --ckpt outputs/train/runs/<student run>/checkpoints/best.ckpt [--seconds 60]

``sign-ctc-serve`` runs the checkpoint; headless Chromium (Debian's, through Selenium) opens the page
with a fake camera playing ``tests/data/signer_58f.mp4`` (the real video of ``../shared/data/real``) in a
loop at ``--fps`` (the video between short empty stretches, so segments end and glosses commit), and the page's own readouts are
collected for ``--seconds``:
- **frame latency**: a frame shown in the browser -> its skeleton drawn (the server tracked it);
- **gloss latency**: a gloss's last frame shown -> the gloss on the page (includes the model's look-ahead);
- **sustained fps**: frames tracked and answered per second, and the frames skipped (camera faster than
  the tracker: more than ``max_lag_frames`` unanswered), over the whole run;
- **per frame on the server**, beside it: decoding a PNG and a JPEG frame (what the page sends) and MediaPipe.
Browser, server and tracker share this machine's cores. Results: bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, student_or_exit, write_result  # noqa: E402

sys.path.insert(0, str(REPO))
from tests.browser import bgr_frames, chromium_missing, console_errors, start_chromium, write_y4m  # noqa: E402

VIDEO = REPO / "tests" / "data" / "signer_58f.mp4"  # the real video of ../shared/data/real, in the repository


def pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median_ms": None, "p95_ms": None, "n": 0}
    arr = np.asarray(values)
    return {"median_ms": round(float(np.median(arr)), 1), "p95_ms": round(float(np.percentile(arr, 95)), 1),
            "n": len(values)}


def server_costs(frames: list[np.ndarray], repeats: int = 2) -> dict[str, Any]:
    """Decoding the page's frames (PNG, JPEG 0.9) and tracking them, ms per frame on the server."""
    import cv2

    from sign_ctc.extraction.tracker import HolisticOptions, make_tracker

    out: dict[str, Any] = {}
    for name, params in (("png", (".png", [])), ("jpeg", (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]))):
        blobs = [cv2.imencode(params[0], f, params[1])[1].tobytes() for f in frames]
        t0 = time.perf_counter()
        for _ in range(repeats):
            for b in blobs:
                cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        out[f"decode_{name}_ms"] = round(1000 * (time.perf_counter() - t0) / (repeats * len(blobs)), 2)
        out[f"{name}_kb"] = round(statistics.median(len(b) for b in blobs) / 1024, 1)
    tracker = make_tracker(HolisticOptions())
    tracker.process(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), 0)
    tracker.reset()
    times = []
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        tracker.process(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), i * 33)
        times.append(time.perf_counter() - t0)
    tracker.close()
    out["tracker_ms"] = round(1000 * statistics.median(times), 1)
    return out


def page_run(ckpt: Path, fps: int, seconds: float, work: Path, screenshot: Path | None = None) -> dict[str, Any]:
    frames = bgr_frames(VIDEO)
    empty = np.zeros_like(frames[0])
    pause = fps + 5  # a pause (1 s, the default) ends each pass's segment
    camera = write_y4m([empty] * 5 + frames + [empty] * pause, work / "camera.y4m", fps)
    server = subprocess.Popen([sys.executable, "-m", "sign_ctc.cli.serve", f"ckpt_path={ckpt}", "port=0",
                               f"hydra.run.dir={work / 'serve'}"], cwd=work, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    driver = None
    try:
        line = server.stdout.readline()
        if not line.startswith("serve: open "):
            raise SystemExit(f"sign-ctc-serve did not start: {server.stderr.read()[-2000:]}")
        url = line.split()[2]
        driver = start_chromium(camera, work / "profile")
        driver.get(url + "?camera")
        while not driver.execute_script("return signCtc.processed > 0"):
            time.sleep(0.2)
        start = driver.execute_script("return {p: signCtc.processed, d: signCtc.dropped, t: performance.now(),"
                                      " n: signCtc.latencies.length, g: signCtc.glossLatencies.length}")
        time.sleep(seconds)
        end = driver.execute_script("return {p: signCtc.processed, d: signCtc.dropped, t: performance.now(),"
                                    " lat: signCtc.latencies, glat: signCtc.glossLatencies,"
                                    " glosses: signCtc.committed.length, sent: signCtc.sent}")
        errors = console_errors(driver)
        if screenshot is not None:
            driver.save_screenshot(str(screenshot))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.communicate(timeout=30)
    wall = (end["t"] - start["t"]) / 1000.0
    frames_done = end["p"] - start["p"]
    return {
        "camera_fps": fps, "seconds": round(wall, 1),
        "frame_latency": pct(end["lat"][start["n"]:]), "gloss_latency": pct(end["glat"][start["g"]:]),
        "sustained_fps": round((frames_done - (end["d"] - start["d"])) / wall, 2), "frames": frames_done,
        "dropped": end["d"] - start["d"], "dropped_fraction": round((end["d"] - start["d"]) / max(frames_done, 1), 3),
        "glosses_on_page": end["glosses"], "console_errors": len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="a streaming checkpoint (the student) (default: the newest under outputs/train/runs)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each camera rate is measured")
    parser.add_argument("--fps", type=int, nargs="+", default=[30, 15], help="fake camera frame rates")
    parser.add_argument("--name", default="serve", help="results file name (bench/results/<name>.json)")
    parser.add_argument("--screenshot", type=Path, default=None, help="save the page at the end of the first rate")
    args = parser.parse_args()
    args.ckpt = student_or_exit(args.ckpt, "bench_serve")
    if args.ckpt is None:
        return
    reason = chromium_missing()
    if reason:
        raise SystemExit(reason)
    result: dict[str, Any] = {"checkpoint": args.ckpt.name, "video": VIDEO.name, "browser": "headless Chromium",
                              "server_per_frame": server_costs(bgr_frames(VIDEO))}
    print("server per frame:", result["server_per_frame"], flush=True)
    result["page"] = []
    for fps in args.fps:
        with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
            shot = args.screenshot.resolve() if args.screenshot and fps == args.fps[0] else None
            run = page_run(args.ckpt.resolve(), fps, args.seconds, Path(tmp), shot)
        print(f"camera {fps} fps: frame latency {run['frame_latency']}, gloss latency {run['gloss_latency']}, "
              f"{run['sustained_fps']} fps sustained, {run['dropped']} of {run['frames']} dropped", flush=True)
        result["page"].append(run)
    info = machine([sys.executable, "bench/bench_serve.py", "--ckpt", "<student>", "--seconds", f"{args.seconds:g}"])
    write_result(args.name, result, info)


if __name__ == "__main__":
    main()
