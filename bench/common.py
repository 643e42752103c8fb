"""Shared by the benchmarks: the PHOENIX-scale synthetic corpus, machine description, results files.

The benchmark corpus takes the real PHOENIX-2014 sentences (ids, gloss sequences, vocabulary) and
their real frame counts (``num_frames.csv``) from an annotation folder, and gives every sentence
synthetic random-walk Holistic landmarks of exactly that length (hands undetected in bursts, as in
PHOENIX), written as `.pose` files like a real extracted corpus. ``--fraction`` takes a random
subset of every split (same seed, same subset) so a benchmark runs in minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sign_ctc.atomic import write_text_atomic  # noqa: E402
from sign_ctc.data.corpus import SPLITS, Corpus, Sentence, read_phoenix2014, write_phoenix2014  # noqa: E402
from sign_ctc.features.landmarks import Landmarks  # noqa: E402
from sign_ctc.features.layout import NUM_POINTS, PARTS, RAW_PARTS  # noqa: E402

RESULTS = REPO / "bench" / "results"
CACHE = REPO / ".cache" / "bench"
ANNOTATION_CANDIDATES = (Path("/work/shared/data/phoenix2014"), REPO / "tests" / "data" / "phoenix2014")
# PHOENIX-2014 train: frames per gloss (141 frames / 11.5 glosses), used only when num_frames.csv is absent.
FRAMES_PER_GLOSS = 12.3
SEED_FEATURE_BYTES = 6516 * 4  # the seed's float32 [T, 6516] features per frame
WIDTH, HEIGHT = 210, 260  # PHOENIX full-frame size
# The share of PHOENIX-2014 the benchmarks use by default (minutes on 2 cores); results of runs on
# another share are written next to them as <name>_f<fraction>.json.
DEFAULT_FRACTION = 0.05


def default_annotations() -> Path:
    """The first candidate with num_frames.csv (real lengths), else the first with annotations."""
    with_frames = [d for d in ANNOTATION_CANDIDATES if (d / "train.corpus.csv").is_file() and (d / "num_frames.csv").is_file()]
    plain = [d for d in ANNOTATION_CANDIDATES if (d / "train.corpus.csv").is_file()]
    return (with_frames or plain or [ANNOTATION_CANDIDATES[-1]])[0]


def add_corpus_args(parser: argparse.ArgumentParser, fraction: float = DEFAULT_FRACTION) -> None:
    parser.add_argument("--annotations", type=Path, default=None,
                        help="PHOENIX-2014 annotation dir ({train,dev,test}.corpus.csv [+ num_frames.csv]); "
                             f"default: first of {', '.join(str(c) for c in ANNOTATION_CANDIDATES)} present")
    parser.add_argument("--fraction", type=float, default=fraction,
                        help=f"fraction of every split to use (default {fraction}; 1.0 = all of PHOENIX-2014)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the benchmark corpus is generated")


def machine(command: list[str] | None = None) -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "ram_gb": ram_gb, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "platform": platform.platform(), "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", *(command if command is not None else sys.argv)]).replace(
            f"python {sys.executable} ", "python "),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def apply_default_backend() -> dict[str, Any]:
    """The torch backend train.py uses by default (``sign_ctc/conf/backend/default.yaml``); returns its settings."""
    import hydra
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "sign_ctc" / "conf" / "backend" / "default.yaml")
    hydra.utils.instantiate(cfg).apply()
    return {k: v for k, v in OmegaConf.to_container(cfg).items() if k != "_target_"}


def without_machine_paths(value: Any) -> Any:
    """``value`` with every path of this machine written as another machine would read it: the repository
    as relative paths, its parent as ``../`` (``../shared/data``), the interpreter as ``python`` and the
    temporary folder as ``<tmp>`` (results files are compared across machines and must not leak paths)."""
    import tempfile

    if isinstance(value, dict):
        return {k: without_machine_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_machine_paths(v) for v in value]
    if not isinstance(value, str):
        return value
    for prefix, replacement in ((f"python {sys.executable}", "python"), (sys.executable, "python"),
                                (str(REPO) + "/", ""), (str(REPO), "."),
                                (str(REPO.parent) + "/", "../"), (tempfile.gettempdir().rstrip("/") + "/", "<tmp>/")):
        value = value.replace(prefix, replacement)
    return value


def write_result(name: str, result: dict[str, Any], info: dict[str, Any]) -> Path:
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    fraction = (result.get("corpus") or {}).get("fraction")
    if fraction is not None and fraction != DEFAULT_FRACTION:
        name = f"{name}_f{fraction:g}"
    result = without_machine_paths({"benchmark": name, **result, "machine": info})
    path = RESULTS / f"{name}.json"
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"written {shown}  (load average {info['load_average_start'][0]} at start, "
          f"{info['load_average_end'][0]} at end, {info['cores']} cores)")
    return path


def figure(name: str, value: float, unit: str, baseline: float | None = None, baseline_name: str = "",
           ratio: float | None = None, goal: str = "", met: bool | None = None, note: str = "") -> dict[str, Any]:
    """One row of the report: our figure, its baseline, the ratio and whether the goal is met."""
    if ratio is None and baseline:
        ratio = value / baseline
    return {"name": name, "value": value, "unit": unit, "baseline": baseline, "baseline_name": baseline_name,
            "ratio": None if ratio is None else round(ratio, 3), "goal": goal, "met": met, "note": note}


# ---- the PHOENIX-scale corpus ----------------------------------------------------------------

def _lengths_for(annotations: Path, split: str, sentences: list[Sentence]) -> tuple[dict[str, int], bool]:
    path = annotations / "num_frames.csv"
    if path.is_file():
        rows = [line.split("|") for line in path.read_text().splitlines()[1:] if line.strip()]
        known = {r[1]: int(r[2]) for r in rows if r[0] == split}
        if all(s.id in known for s in sentences):
            return {s.id: known[s.id] for s in sentences}, True
    return {s.id: max(8, round(FRAMES_PER_GLOSS * len(s.glosses))) for s in sentences}, False


def _template(rng: np.random.Generator) -> np.ndarray:
    """A fixed upper-body layout in unit image coordinates [543, 3]."""
    pts = np.zeros((NUM_POINTS, 3))
    sl = {p: slice(*RAW_PARTS[p]) for p in RAW_PARTS}
    pts[sl["pose"], :2] = rng.uniform([0.3, 0.2], [0.7, 0.9], (33, 2))
    pts[sl["face"], :2] = np.array([0.5, 0.22]) + rng.normal(scale=0.04, size=(468, 2))
    pts[sl["left_hand"], :2] = np.array([0.62, 0.7]) + rng.normal(scale=0.03, size=(21, 2))
    pts[sl["right_hand"], :2] = np.array([0.38, 0.7]) + rng.normal(scale=0.03, size=(21, 2))
    pts[:, 2] = rng.normal(scale=0.05, size=NUM_POINTS)
    return pts


def synthetic_landmarks(frames: int, template: np.ndarray, rng: np.random.Generator) -> Landmarks:
    """Random-walk landmarks: body sway, hands wandering in signing space, bursty hand dropouts."""
    sway = np.cumsum(rng.normal(scale=0.002, size=(frames, 1, 3)), 0)
    pts = template[None] + sway + rng.normal(scale=0.002, size=(frames, NUM_POINTS, 3))
    for part in ("left_hand", "right_hand"):
        walk = np.cumsum(rng.normal(scale=0.012, size=(frames, 1, 2)), 0)
        pts[:, slice(*RAW_PARTS[part]), :2] += np.clip(walk, -0.3, 0.3)
    presence = np.ones((frames, len(PARTS)), dtype=bool)
    for col in (1, 2):  # hands: two-state bursts, ~40% missing
        state, p = False, rng.random(frames)
        for t in range(frames):
            state = p[t] < (0.85 if state else 0.12)
            presence[t, col] = not state
    presence[rng.random(frames) < 0.005] = False  # frames where nothing was detected
    points = np.clip(pts, 0.0, 1.0).astype(np.float32)
    for i, part in enumerate(PARTS):
        points[~presence[:, i], slice(*RAW_PARTS[part])] = 0.0
    return Landmarks(points=points, presence=presence, fps=25.0)


class PhoenixScaleCorpus(Corpus):
    """Real PHOENIX-2014 sentences and lengths with synthetic landmarks; built once under ``root``."""

    def __init__(self, annotations: Path | None = None, fraction: float = DEFAULT_FRACTION, seed: int = 0, cache: Path = CACHE):
        self.annotations = Path(annotations) if annotations else default_annotations()
        if not (self.annotations / "train.corpus.csv").is_file():
            raise SystemExit(f"no PHOENIX-2014 annotations in {self.annotations}: pass --annotations DIR")
        if not 0 < fraction <= 1:
            raise SystemExit(f"--fraction must be in (0, 1], got {fraction}")
        self.fraction, self.seed = fraction, seed
        super().__init__(Path(cache) / f"phoenix_scale_f{fraction:g}_s{seed}")
        self.settings = {"version": 1, "annotations": str(self.annotations.resolve()), "fraction": fraction,
                         "seed": seed}
        self.real_lengths = True

    def full_split(self, split: str) -> list[Sentence]:
        return read_phoenix2014(self.annotations / f"{split}.corpus.csv")

    def prepare(self) -> None:
        manifest = self.root / "corpus.json"
        try:
            if json.loads(manifest.read_text())["settings"] == self.settings:
                self.real_lengths = json.loads(manifest.read_text())["real_lengths"]
                return
        except (OSError, ValueError, KeyError):
            pass
        from sign_ctc.features.pose_io import pose_from_landmarks, write_pose_atomic

        manifest.unlink(missing_ok=True)
        rng = np.random.default_rng(self.seed)
        template = _template(rng)
        rows, real, start, total = ["split|id|num_frames"], True, time.perf_counter(), 0
        for split in SPLITS:
            full = self.full_split(split)
            keep = max(1, round(self.fraction * len(full)))
            chosen = sorted(rng.choice(len(full), size=keep, replace=False).tolist())
            sentences = [full[i] for i in chosen]
            lengths, exact = _lengths_for(self.annotations, split, sentences)
            real &= exact
            for s in sentences:
                lm = synthetic_landmarks(lengths[s.id], template, rng)
                write_pose_atomic(pose_from_landmarks(lm, WIDTH, HEIGHT), self.landmark_path(split, s))
                rows.append(f"{split}|{s.id}|{lengths[s.id]}")
                total += lengths[s.id]
            write_phoenix2014(self.annotation_path(split), sentences)
        write_text_atomic(self.root / "num_frames.csv", "\n".join(rows) + "\n")
        self.real_lengths = real
        write_text_atomic(manifest, json.dumps({"settings": self.settings, "real_lengths": real}))
        print(f"generated the benchmark corpus: {len(rows) - 1} sentences, {total} frames of synthetic landmarks "
              f"in {time.perf_counter() - start:.0f} s -> {self.root}")

    def describe(self) -> dict[str, Any]:
        full = {s: self.full_split(s) for s in SPLITS}
        used = {s: self.sentences(s) for s in SPLITS}
        nums = {s: self.num_frames(s) for s in SPLITS}
        full_train_frames = None
        path = self.annotations / "num_frames.csv"
        if path.is_file():
            full_train_frames = sum(int(r.split("|")[2]) for r in path.read_text().splitlines()[1:]
                                    if r.startswith("train|"))
        return {
            "annotations": str(self.annotations), "fraction": self.fraction, "seed": self.seed,
            "real_lengths": self.real_lengths,
            "sentences": {s: len(used[s]) for s in SPLITS},
            "sentences_full": {s: len(full[s]) for s in SPLITS},
            "frames": {s: sum(nums[s].values()) for s in SPLITS},
            "train_frames_full": full_train_frames,
            "mean_train_frames": round(float(np.mean(list(nums["train"].values()))), 1),
            "vocabulary_full_train": len({g for s in full["train"] for g in s.glosses}),
        }


def corpus_from_args(args: argparse.Namespace) -> tuple["PhoenixScaleCorpus", dict[str, Any]]:
    """Build (or reuse) the benchmark corpus the command line asks for, and print what it is."""
    corpus = PhoenixScaleCorpus(args.annotations, args.fraction, args.seed, args.cache)
    corpus.prepare()
    desc = corpus.describe()
    print_corpus(desc)
    return corpus, desc


def print_corpus(desc: dict[str, Any]) -> None:
    lengths = "real PHOENIX-2014 frame counts" if desc["real_lengths"] else "lengths estimated from gloss counts"
    print(f"corpus: PHOENIX-2014 sentences from {desc['annotations']}, fraction {desc['fraction']:g} "
          f"(train {desc['sentences']['train']}/{desc['sentences_full']['train']}, dev {desc['sentences']['dev']}, "
          f"test {desc['sentences']['test']} sentences; {desc['frames']['train']} train frames, "
          f"mean {desc['mean_train_frames']}), {lengths}, synthetic landmarks")


# ---- memory ----------------------------------------------------------------------------------

def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def _kb(pid: int, field: str, rollup: bool) -> int:
    try:
        text = Path(f"/proc/{pid}/{'smaps_rollup' if rollup else 'status'}").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class MemorySampler:
    """Peak memory of this process and its children (loader workers), sampled every ``interval`` s.

    ``rss_main``: resident set of this process. ``pss_tree``: proportional set size summed over the
    process tree (shared pages, e.g. torch's libraries in forked workers, counted once): the memory
    the training actually occupies. ``rss_tree``: plain RSS summed (counts shared pages per process).
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = {"rss_main_mb": 0.0, "pss_tree_mb": 0.0, "rss_tree_mb": 0.0, "processes": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        pids = _tree(os.getpid())
        now = {"rss_main_mb": _kb(os.getpid(), "VmRSS", False) / 1024,
               "pss_tree_mb": sum(_kb(p, "Pss", True) for p in pids) / 1024,
               "rss_tree_mb": sum(_kb(p, "VmRSS", False) for p in pids) / 1024, "processes": len(pids)}
        for k, v in now.items():
            self.peak[k] = max(self.peak[k], v)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.peak = {k: round(v, 1) for k, v in self.peak.items()}


def newest_student() -> Path | None:
    """The newest outputs/train/runs/*/checkpoints/best.ckpt of a streaming student."""
    from sign_ctc.models.checkpoint import read_checkpoint

    found = []
    for ckpt in (REPO / "outputs" / "train" / "runs").glob("*/checkpoints/best.ckpt"):
        recipe = read_checkpoint(ckpt)["sign_ctc"]["recipe"]
        net = recipe.get("model", {}).get("net", {})
        if net.get("_target_", "").endswith("CTCStudent") and not net.get("bidirectional"):
            found.append(ckpt)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def student_or_exit(ckpt: Path | None, script: str) -> Path | None:
    """``--ckpt``, else the newest streaming student (None, with a line saying how to get one, if there is none)."""
    ckpt = ckpt if ckpt is not None else newest_student()
    if ckpt is None:
        print(f"{script}: no student checkpoint under outputs/train/runs; train one first "
              "(python train.py model=student) or pass --ckpt")
    return ckpt
