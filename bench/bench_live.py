"""Live recognition: what a frame costs, how late a gloss comes, and whether an endless stream holds up.

    python bench/bench_live.py --ckpt outputs/train/runs/<student run>/checkpoints/best.ckpt [--minutes 30]
    python bench/bench_live.py --ckpt ... --per-frame-only   # the per-frame rows only (live_per_frame.json)

Measured in one run, on this machine (results: bench/results/live.json):
- **per frame** on ``tests/data/signer_58f.mp4`` (the real video of ``../shared/data/real``): MediaPipe Holistic (legacy tracker, video
  mode), the streaming recognizer (features + normalizer + net step, one frame at a time) with the
  checkpoint in PyTorch and with its streaming ONNX export on onnxruntime (``sign-ctc-export ...
  streaming=true``, chunks of the total stride), and the incremental greedy decoder;
- **the sliding-window way** of published online CSLR code, beside it: the same model re-run over the
  last 16 frames at every new frame (its compute per frame, and the ratio to ours);
- **end to end**: ``sign-ctc-live`` on the video paced at 25 fps and at its own ~30 fps
  (``realtime=true``): frames dropped, latency from a gloss's last frame to its emission (median,
  p95), split into the look-ahead and compute, and the real-time factor;
- **an endless stream**: the checkpoint's test sentences joined with resting frames (the signer's pose
  and face held, hands down, 1.5 s) to ``--minutes`` of signing, recognized in one stream: its WER
  against the sentence-by-sentence WER, RSS growth and the real-time factor;
- **the page's path** (``--page-seconds``, needs Debian's chromium): ``sign-ctc-serve`` with headless
  Chromium's fake camera at 30 fps, through :mod:`bench_serve`: a frame shown in the browser -> its
  skeleton, a gloss's last frame shown -> the gloss on the page (median, p95), and the fps the page
  sustains (``python bench/bench_serve.py`` measures it alone, at 30 and 15 fps, into serve.json).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, apply_default_backend, machine, student_or_exit, write_result  # noqa: E402

# The workplace's ../shared/data/real/signer_58f.mp4, kept in the repository (tests/data/README.md).
VIDEO = REPO / "tests" / "data" / "signer_58f.mp4"
REST_SECONDS = 1.5
WINDOW = 16  # the sliding window of published online CSLR code


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def stats_ms(values: list[float]) -> dict[str, float]:
    """Median, p95 and mean: the mean is the cost per frame over a stream (the ONNX net runs once per chunk,
    so its median frame is one without a model call)."""
    arr = np.asarray(values) * 1000.0
    return {"median_ms": round(float(np.median(arr)), 3), "p95_ms": round(float(np.percentile(arr, 95)), 3),
            "mean_ms": round(float(arr.mean()), 3)}


def video_landmarks(path: Path) -> tuple[np.ndarray, np.ndarray, float, list[float]]:
    """The video through the legacy tracker frame by frame: landmarks, presence, fps, seconds per frame."""
    from sign_ctc.extraction.frames import rgb_video_frames
    from sign_ctc.extraction.tracker import HolisticOptions, make_tracker

    frames, fps, _ = rgb_video_frames(str(path))
    frames = list(frames)
    tracker = make_tracker(HolisticOptions())
    tracker.process(frames[0], 0)  # models load on the first frame
    tracker.reset()
    points, presence, seconds = [], [], []
    for i, rgb in enumerate(frames):
        t0 = time.perf_counter()
        p, pr = tracker.process(rgb, int(i * 1000 / fps)).landmarks()
        seconds.append(time.perf_counter() - t0)
        points.append(p)
        presence.append(pr)
    tracker.close()
    return np.stack(points), np.stack(presence), fps, seconds


def per_frame_costs(module: Any, points: np.ndarray, presence: np.ndarray, fps: float, repeats: int,
                    onnx_path: Path | None = None) -> dict[str, Any]:
    """Ours (recognizer, one frame a call; the decoder's share apart) against the sliding window; with
    ``onnx_path`` (the checkpoint's streaming ONNX export) the same recognizer on onnxruntime beside it,
    the two passes alternating so that both see the same machine load."""
    import torch

    from sign_ctc.features.landmarks import Landmarks
    from sign_ctc.models.inference import forward_landmarks
    from sign_ctc.streaming.recognizer import StreamingRecognizer

    model_s, onnx_s, window_s = [], [], []
    onnx_net = None
    if onnx_path is not None:
        from sign_ctc.streaming.onnx_net import OnnxStreamingNet

        onnx_net = OnnxStreamingNet.load(onnx_path)
    for _ in range(repeats):
        for net, times in ((module, model_s), (onnx_net, onnx_s)):
            if net is None:
                continue
            rec = StreamingRecognizer(net, fps=fps, pause_frames=None, tentative=False)
            for i in range(len(points)):
                t0 = time.perf_counter()
                rec.push(points[i : i + 1], presence[i : i + 1])  # features, normalizer, net step and greedy
                times.append(time.perf_counter() - t0)
            rec.end()
    # The greedy decoder alone, on the log-probs of the whole video.
    log_probs, n = forward_landmarks(module, Landmarks(points=points, presence=presence, fps=fps))
    from sign_ctc.streaming.greedy import GreedyStream

    decoder = GreedyStream(module.vocab.tokens, module.net.total_stride / fps)
    decode_s = []
    for t in range(int(n[0])):
        t0 = time.perf_counter()
        decoder.push(log_probs[0, t : t + 1])
        decoder.take()
        decode_s.append((time.perf_counter() - t0) / module.net.total_stride)  # per input frame
    with torch.no_grad():
        for _ in range(repeats):
            for i in range(len(points)):
                lo = max(0, i + 1 - WINDOW)
                t0 = time.perf_counter()
                forward_landmarks(module, Landmarks(points=points[lo : i + 1], presence=presence[lo : i + 1], fps=fps))
                window_s.append(time.perf_counter() - t0)
    ours, theirs = statistics.median(model_s), statistics.median(window_s)
    result = {"recognizer_per_frame": stats_ms(model_s), "greedy_decoder_per_frame": stats_ms(decode_s),
              "sliding_window_16_per_frame": stats_ms(window_s), "sliding_window_over_ours": round(theirs / ours, 2)}
    if onnx_net is not None:
        result["onnx_recognizer_per_frame"] = stats_ms(onnx_s)
        result["onnx_over_pytorch"] = round(statistics.mean(onnx_s) / statistics.mean(model_s), 2)  # per frame, mean
        result["onnx_chunk_frames"] = onnx_net.chunk_frames
        result["onnx_lookahead_frames"] = onnx_net.lookahead_frames
    return result


def export_stream(ckpt: Path, folder: Path) -> Path:
    """The checkpoint's streaming ONNX export (sign-ctc-export ... streaming=true), in ``folder``."""
    from sign_ctc.streaming.onnx_export import export_streaming

    out = folder / "student.stream.onnx"
    export_streaming(ckpt, out)
    return out


def end_to_end(ckpt: Path, fps: float | None, out: Path) -> dict[str, Any]:
    """sign-ctc-live (in process) on the video, paced: its live.json."""
    import json

    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from sign_ctc.cli.live import run

    GlobalHydra.instance().clear()
    overrides = [f"source={VIDEO}", f"ckpt_path={ckpt}", "realtime=true", f"paths.output_dir={out}",
                 f"paths.log_dir={out}", "tentative=true"] + ([f"fps={fps}"] if fps else [])
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        cfg = compose(config_name="live", return_hydra_config=True, overrides=overrides)
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    assert run(cfg) == 0
    result = json.loads((out / "live.json").read_text())
    return {k: result[k] for k in ("fps", "frames", "processed", "dropped", "latency", "tracker_ms_per_frame",
                                   "recognizer_ms_per_call", "realtime_factor", "glosses")}


def long_stream(module: Any, minutes: float, fps: float = 25.0) -> dict[str, Any]:
    """The checkpoint's test sentences, joined with rests, repeated to ``minutes``, as one stream."""
    from omegaconf import OmegaConf

    from sign_ctc.features.landmarks import Landmarks
    from sign_ctc.api import Recognizer
    from sign_ctc.scoring.wer import wer
    from sign_ctc.streaming.recognizer import StreamingRecognizer

    import hydra

    data_cfg = OmegaConf.create(module.recipe["data"])
    datamodule = hydra.utils.instantiate(data_cfg)
    datamodule.vocab = module.vocab
    datamodule.setup("test")
    dataset = datamodule.dataset("test")
    sentences = []
    for i in range(len(dataset)):
        sample = dataset.raw(i)
        points = np.asarray(sample.points, dtype=np.float32)
        presence = np.asarray(sample.presence, dtype=bool)
        sentences.append((Landmarks(points=points, presence=presence, fps=fps), dataset.sentences[i].glosses))
    # Sentence by sentence (offline, the same decoding rules).
    refs = [g for _, g in sentences]
    offline = Recognizer.from_module(module, pause_seconds=None)
    hyps = [offline.predict_landmarks(lm).glosses for lm, _ in sentences]
    sentence_wer = wer(refs, hyps)
    rest = round(REST_SECONDS * fps)
    rec = StreamingRecognizer(module, fps=fps, pause_frames=round(1.0 * fps), tentative=False)
    target = minutes * 60 * fps
    frames, reference, hypothesis, rss = 0, [], [], []
    start_rss, t0 = rss_mb(), time.perf_counter()
    passes = 0
    while frames < target:
        passes += 1
        for lm, glosses in sentences:
            last_pose = lm.points[-1].copy()
            resting = np.repeat(last_pose[None], rest, 0)
            resting[:, 501:] = 0.0  # hands down: not detected
            rest_presence = np.repeat(lm.presence[-1:], rest, 0)
            rest_presence[:, 1:3] = False
            for chunk_points, chunk_presence in ((lm.points, lm.presence), (resting, rest_presence)):
                for a in range(0, len(chunk_points), 4):  # 4 frames a call (160 ms at 25 fps)
                    hypothesis += [g.gloss for g in rec.push(chunk_points[a : a + 4], chunk_presence[a : a + 4]).committed]
            reference += list(glosses)
            frames += len(lm) + rest
            rss.append(rss_mb())
            if frames >= target:
                break
    hypothesis += [g.gloss for g in rec.end().committed]
    wall = time.perf_counter() - t0
    stream_wer = wer([reference], [hypothesis])
    seconds = frames / fps
    return {"minutes": round(seconds / 60, 2), "frames": frames, "passes_over_test": passes,
            "sentences": len(sentences), "segments": rec.segments,
            "stream_wer": round(stream_wer.wer, 2), "sentence_wer": round(sentence_wer.wer, 2),  # percent
            "stream_sdi": [stream_wer.substitutions, stream_wer.deletions, stream_wer.insertions],
            "rss_start_mb": round(start_rss, 1), "rss_growth_mb": round(max(rss) - rss[min(len(rss) - 1, 10)], 1),
            "rss_growth_from_start_mb": round(max(rss) - start_rss, 1),
            "rss_end_mb": round(rss[-1], 1), "wall_s": round(wall, 1), "realtime_factor": round(wall / seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=None,
                        help="a streaming (student) checkpoint; default: the newest student run under outputs/train/runs")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the endless-stream test")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the video for per-frame figures")
    parser.add_argument("--smoke", action="store_true", help="a short run (1 minute stream, 1 repeat)")
    parser.add_argument("--page-seconds", type=float, default=0.0,
                        help="also measure the live page in headless Chromium for this long (bench_serve.py); 0: not")
    parser.add_argument("--per-frame-only", action="store_true",
                        help="only the per-frame figures (PyTorch and ONNX recognizer, sliding window): live_per_frame.json")
    args = parser.parse_args()
    if args.smoke:
        args.minutes, args.repeats = min(args.minutes, 1.0), 1
    import torch

    from sign_ctc.models.checkpoint import load_module

    args.ckpt = student_or_exit(args.ckpt, "bench_live")
    if args.ckpt is None:
        return
    info = machine(sys.argv)
    apply_default_backend()
    torch.set_num_threads(1)  # tracking takes the other core
    module = load_module(args.ckpt)
    points, presence, fps, tracker_s = video_landmarks(VIDEO)
    result: dict[str, Any] = {"checkpoint": str(args.ckpt.relative_to(REPO) if args.ckpt.is_relative_to(REPO) else args.ckpt.name),
                              "video": VIDEO.name, "video_fps": round(fps, 3), "video_frames": len(points),
                              "lookahead_frames": module.net.lookahead_frames,
                              "lookahead_ms_at_25fps": round(1000 * module.net.lookahead_frames / 25, 1),
                              "mediapipe_per_frame": stats_ms(tracker_s)}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result.update(per_frame_costs(module, points, presence, fps, args.repeats, export_stream(args.ckpt, Path(tmp))))
    rows = ("mediapipe_per_frame", "recognizer_per_frame", "onnx_recognizer_per_frame", "greedy_decoder_per_frame",
            "sliding_window_16_per_frame")
    if args.per_frame_only:
        for key in rows:
            print(f"{key:32s} median {result[key]['median_ms']:8.3f} ms  p95 {result[key]['p95_ms']:8.3f} ms  "
                  f"mean {result[key]['mean_ms']:8.3f} ms")
        print(f"onnx / pytorch: {result['onnx_over_pytorch']}x mean per frame (chunks of {result['onnx_chunk_frames']})")
        write_result("live_per_frame", result, info)
        return
    with tempfile.TemporaryDirectory() as tmp:
        result["live_at_25fps"] = end_to_end(args.ckpt, 25.0, Path(tmp) / "a")
        result["live_at_video_fps"] = end_to_end(args.ckpt, None, Path(tmp) / "b")
    result["endless_stream"] = long_stream(module, args.minutes)
    if args.page_seconds > 0:
        import bench_serve

        with tempfile.TemporaryDirectory() as tmp:
            result["page_at_30fps"] = bench_serve.page_run(args.ckpt.resolve(), 30, args.page_seconds, Path(tmp))
        p = result["page_at_30fps"]
        print(f"page at 30 fps: frame latency {p['frame_latency']}, gloss latency {p['gloss_latency']}, "
              f"{p['sustained_fps']} fps sustained")
    for key in rows:
        print(f"{key:32s} median {result[key]['median_ms']:8.3f} ms  p95 {result[key]['p95_ms']:8.3f} ms  "
              f"mean {result[key]['mean_ms']:8.3f} ms")
    print(f"sliding window / ours: {result['sliding_window_over_ours']}x compute per frame; "
          f"onnx / pytorch: {result['onnx_over_pytorch']}x")
    for key in ("live_at_25fps", "live_at_video_fps"):
        r = result[key]
        print(f"{key}: {r['frames']} frames, {r['dropped']} dropped, latency {r['latency']}, RTF {r['realtime_factor']}")
    s = result["endless_stream"]
    print(f"endless stream {s['minutes']} min: WER {s['stream_wer']}% (sentence by sentence {s['sentence_wer']}%), "
          f"RSS +{s['rss_growth_mb']} MB, RTF {s['realtime_factor']}")
    if math.isfinite(s["rss_growth_mb"]):
        write_result("live" if not args.smoke else "live_smoke", result, info)  # smoke: beside, never over live.json


if __name__ == "__main__":
    main()
