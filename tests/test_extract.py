"""Landmark extraction on real fixtures (tests/data, see its README for origin and licences).

Observed with mediapipe 0.10.21, model_complexity=1, on signer_58f.mp4: 58 frames, pose and face
on 58/58, right hand 20/58, left hand 0/58; the file is byte-identical to pose-format's
``video_to_pose``. 1 and 2 worker processes give byte-identical files (the graph is reset per
sentence), so the parallel test asserts equality, not closeness.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sign_ctc.extraction.discover import FRAMES_SUBDIR, ExtractInputError, WorkItem, discover, parse_shard, select_shard
from sign_ctc.extraction.run import extract, summary_name_for_shard
from sign_ctc.extraction.worker import HolisticOptions, ModelUnavailableError, check_model_available, pose_model_path
from sign_ctc.features.pose_io import read_pose

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
VIDEO = DATA / "signer_58f.mp4"
PHOENIX_FRAMES = DATA / "phoenix2014t_frames"
PHOENIX_T_CSV = DATA / "PHOENIX-2014-T.test.corpus.csv"
PHOENIX_ID = "25October_2010_Monday_tagesschau-17"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"fixture {path.name} not present (see tests/data/README.md)")
    return path


def pose_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.pose"))}


@pytest.fixture(scope="module")
def video_frames() -> list[np.ndarray]:
    """The first 24 BGR frames of the real video, to build cheap lossless frame folders."""
    import cv2

    cap = cv2.VideoCapture(str(need(VIDEO)))
    frames = []
    while len(frames) < 24:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def frame_folder(root: Path, name: str, frames: list[np.ndarray]) -> Path:
    import cv2

    folder = root / name
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"images{i:04d}.png"), frame)
    return folder


@pytest.fixture(scope="module")
def video_run(tmp_path_factory) -> tuple[Path, dict]:
    """signer_58f.mp4 extracted once (single process); shared by the checks below."""
    out = tmp_path_factory.mktemp("video_out")
    report = extract(discover(need(VIDEO)), out, progress=False)
    return out, report


def test_video_extraction_counts(video_run) -> None:
    out, report = video_run
    assert report["counts"] == {"total": 1, "extracted": 1, "skipped": 0, "failed": 0, "not_run": 0}
    lm = read_pose(out / "signer_58f.pose")
    assert len(lm) == 58
    assert np.isfinite(lm.points).all()
    assert lm.fps == pytest.approx(29.9167, abs=1e-3)
    rates = lm.detection_rates()
    # observed: pose 58/58, face 58/58, right (signing) hand 20/58, left hand 0/58
    assert rates["pose"] >= 0.95 and rates["face"] >= 0.95
    assert 0.2 <= rates["right_hand"] <= 0.55
    assert rates["left_hand"] <= 0.1
    assert report["sentences"]["signer_58f"]["detection_rate"] == pytest.approx(rates, abs=1e-6)
    assert report["detection_rate"] == pytest.approx(rates, abs=1e-6)
    # unit coordinates after read_pose: head and shoulders (pose 0-12) lie inside the picture
    # (hips and legs of this upper-body video are extrapolated below it, y up to ~2.3)
    head = lm.points[:, :13, :2]
    assert ((head > 0) & (head < 1)).all()


def test_video_file_matches_pose_format_video_to_pose(video_run, tmp_path) -> None:
    """Same components, pixel coords, confidences: the files are interchangeable (here identical)."""
    pytest.importorskip("simple_video_utils")
    from pose_format.bin.pose_estimation import pose_video

    out, _ = video_run
    theirs = tmp_path / "theirs.pose"
    pose_video(str(VIDEO), str(theirs), "mediapipe", {"model_complexity": 1}, progress=False)
    assert (out / "signer_58f.pose").read_bytes() == theirs.read_bytes()


def test_summary_json_written_atomically(video_run) -> None:
    out, report = video_run
    on_disk = json.loads((out / "extract_summary.json").read_text())
    assert on_disk["counts"] == report["counts"]
    assert on_disk["frames"] == 58 and on_disk["failures"] == []
    assert set(on_disk["detection_rate"]) == {"pose", "left_hand", "right_hand", "face"}
    assert not list(out.glob(".*.tmp"))


def test_phoenix_frame_folder(tmp_path) -> None:
    frames = tmp_path / "frames" / PHOENIX_ID
    shutil.copytree(need(PHOENIX_FRAMES), frames)
    items = discover(frames)
    assert [(i.id, i.kind, i.output) for i in items] == [(PHOENIX_ID, "frames", f"{PHOENIX_ID}.pose")]
    report = extract(items, tmp_path / "out", progress=False)
    assert report["counts"]["extracted"] == 1
    path = tmp_path / "out" / f"{PHOENIX_ID}.pose"
    lm = read_pose(path)
    assert len(lm) == 2 and lm.fps == 25.0
    assert np.isfinite(lm.points).all()
    assert lm.presence[:, 0].all() and lm.presence[:, 3].all()  # pose and face in both frames
    from pose_format import Pose

    header = Pose.read(path.read_bytes()).header
    assert (header.dimensions.width, header.dimensions.height) == (210, 260)
    assert [c.name for c in header.components] == [
        "POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS", "POSE_WORLD_LANDMARKS"]


def test_phoenix_corpus_mode_with_refined_face(tmp_path) -> None:
    """The 2014-T csv says ``<id>/1/*.png``; the frames sit in ``<id>/``: the fallback finds them."""
    root = tmp_path / "PHOENIX-2014-T"
    ann = root / "annotations" / "manual" / "PHOENIX-2014-T.test.corpus.csv"
    ann.parent.mkdir(parents=True)
    shutil.copy(need(PHOENIX_T_CSV), ann)
    shutil.copytree(need(PHOENIX_FRAMES), root / FRAMES_SUBDIR / "test" / PHOENIX_ID)
    items = discover(root, split="test")
    assert [i.output for i in items] == [f"test/{PHOENIX_ID}.pose"]
    report = extract(items, tmp_path / "out", options=HolisticOptions(refine_face=True), progress=False)
    assert report["counts"]["extracted"] == 1, report["failures"]
    from pose_format import Pose

    path = tmp_path / "out" / "test" / f"{PHOENIX_ID}.pose"
    pose = Pose.read(path.read_bytes())
    assert pose.body.data.shape == (2, 1, 586, 3)  # 33 + 478 + 21 + 21 + 33
    lm = read_pose(path)
    assert lm.points.shape == (2, 543, 3) and np.isfinite(lm.points).all()


def test_two_workers_match_one(tmp_path, video_frames) -> None:
    """4 frame folders (different stretches of the video) with 1 vs 2 processes: same bytes."""
    src = tmp_path / "src"
    for k in range(4):
        frame_folder(src, f"clip{k}", video_frames[k * 4 : k * 4 + 8])
    items = discover(src)
    assert len(items) == 4
    one = extract(items, tmp_path / "one", workers=1, progress=False)
    two = extract(items, tmp_path / "two", workers=2, progress=False)
    assert one["counts"]["extracted"] == two["counts"]["extracted"] == 4
    assert two["workers"] == 2
    a, b = pose_bytes(tmp_path / "one"), pose_bytes(tmp_path / "two")
    assert list(a) == list(b) and all(a[k] == b[k] for k in a)


def test_sentences_do_not_leak_tracking_state(tmp_path, video_frames) -> None:
    """A clip extracted after another one equals the same clip extracted alone."""
    src = tmp_path / "src"
    frame_folder(src, "a_first", video_frames[12:20])
    frame_folder(src, "b_second", video_frames[:8])
    extract(discover(src), tmp_path / "both", progress=False)
    alone = extract(discover(src / "b_second"), tmp_path / "alone", progress=False)
    assert alone["counts"]["extracted"] == 1
    assert (tmp_path / "both" / "b_second.pose").read_bytes() == (tmp_path / "alone" / "b_second.pose").read_bytes()


def test_resume_skips_finished_and_cleans_partials(tmp_path, video_frames) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for name in ("a", "b", "c"):
        frame_folder(src, name, video_frames[:3])
    items = discover(src)
    extract(items[:1], out, progress=False)  # "a" finished by an earlier run
    finished = out / "a.pose"
    old = os.stat(finished).st_mtime_ns
    stale = out / ".b.pose.x1y2z3.tmp"  # an interrupted atomic write of "b"
    stale.write_bytes(b"half a file")
    (out / "c.pose").write_bytes(b"truncated by something non-atomic")  # unreadable output: redo
    time.sleep(0.01)

    report = extract(items, out, progress=False)
    assert report["counts"] == {"total": 3, "extracted": 2, "skipped": 1, "failed": 0, "not_run": 0}
    assert report["sentences"]["a"]["status"] == "skipped"
    assert report["sentences"]["a"]["frames"] == 3
    assert os.stat(finished).st_mtime_ns == old
    assert not stale.exists() and not list(out.glob(".*.tmp"))
    assert len(read_pose(out / "c.pose")) == 3

    again = extract(items, out, progress=False)  # a third run does nothing
    assert again["counts"]["skipped"] == 3 and again["counts"]["extracted"] == 0


def test_corrupt_video_is_recorded_and_others_succeed(tmp_path) -> None:
    src = tmp_path / "videos"
    src.mkdir()
    os.symlink(need(VIDEO), src / "good.mp4")
    (src / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (src / "empty.mp4").write_bytes(b"")
    report = extract(discover(src), tmp_path / "out", workers=2, progress=False)
    assert report["counts"]["extracted"] == 1 and report["counts"]["failed"] == 2
    failures = {f["id"]: f["reason"] for f in report["failures"]}
    assert set(failures) == {"bad", "empty"}
    assert all("FrameSourceError" in r for r in failures.values()), failures
    assert len(read_pose(tmp_path / "out" / "good.pose")) == 58
    assert not (tmp_path / "out" / "bad.pose").exists()
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_shards_are_disjoint_and_cover_everything() -> None:
    items = [WorkItem(f"s{i:03d}", "frames", (f"/x/s{i}/*",), f"s{i:03d}.pose") for i in range(23)]
    shuffled = list(reversed(items))
    for n in (1, 2, 3, 5, 30):
        parts = [select_shard(shuffled, k, n) for k in range(n)]
        flat = [it.output for part in parts for it in part]
        assert sorted(flat) == [it.output for it in items]  # covers, no duplicates
        assert len(set(flat)) == len(flat)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
        assert parts == [select_shard(items, k, n) for k in range(n)]  # order-independent
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(ExtractInputError):
            parse_shard(bad)
    assert summary_name_for_shard("extract_summary.json", 1, 4) == "extract_summary.shard-1-of-4.json"


@pytest.mark.parametrize("complexity", [0, 2])
def test_missing_model_gives_clear_error_without_network(complexity, tmp_path) -> None:
    if pose_model_path(complexity).is_file():
        pytest.skip(f"the complexity-{complexity} model is installed here")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=f"model_complexity={complexity}.*model_complexity=1"):
        extract([], tmp_path, options=HolisticOptions(model_complexity=complexity), progress=False)
    assert time.perf_counter() - start < 1.0  # a file check, no download attempt
    with pytest.raises(ValueError):
        check_model_available(3)


def test_discover_modes_and_errors(tmp_path) -> None:
    with pytest.raises(ExtractInputError, match="input not found"):
        discover(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ExtractInputError, match="not a video"):
        discover(tmp_path / "notes.txt")
    with pytest.raises(ExtractInputError, match="no videos"):
        discover(tmp_path)
    vids = tmp_path / "vids"
    vids.mkdir()
    (vids / "b.mp4").write_bytes(b"")
    (vids / "a.avi").write_bytes(b"")
    assert [i.output for i in discover(vids)] == ["a.pose", "b.pose"]
    (vids / "a.mp4").write_bytes(b"")
    with pytest.raises(ExtractInputError, match="same output"):
        discover(vids)
    # PHOENIX-2014 form: folder column is the glob, frames_root/<split>/ its base
    ann = tmp_path / "dev.corpus.csv"
    ann.write_text("id|folder|signer|annotation\nS1|S1/1/*.png|Signer01|A B\n")
    (tmp_path / "fr" / "dev").mkdir(parents=True)
    (item,) = discover(None, annotation=ann, frames_root=tmp_path / "fr")
    assert item.output == "dev/S1.pose" and item.sources[0] == str(tmp_path / "fr" / "dev" / "S1/1/*.png")
    with pytest.raises(ExtractInputError, match="frame folder for split"):
        discover(None, annotation=ann, split="test", frames_root=tmp_path / "fr")


def test_cli_bad_input_exits_nonzero_with_message(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "sign_ctc.cli.extract", f"input={tmp_path / 'missing.mp4'}", f"output={tmp_path / 'o'}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "input not found" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_run_with_composed_config(tmp_path) -> None:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from sign_ctc.cli.extract import run

    GlobalHydra.instance().clear()  # other tests may leave Hydra initialized
    frames = tmp_path / PHOENIX_ID
    shutil.copytree(need(PHOENIX_FRAMES), frames)
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        cfg = compose("extract", overrides=[f"input={frames}", f"output={tmp_path / 'out'}", "progress=false",
                                            "shard=0/1"])
        assert run(cfg) == 0
        assert (tmp_path / "out" / f"{PHOENIX_ID}.pose").is_file()
        bad = compose("extract", overrides=[f"input={frames}", f"output={tmp_path / 'o2'}", "model_complexity=2"])
        if not pose_model_path(2).is_file():
            assert run(bad) == 2


@pytest.mark.slow
def test_killed_run_resumes(tmp_path, video_frames) -> None:
    """SIGKILL a real run after its first output, rerun: finished files untouched, no partials."""
    src, out = tmp_path / "src", tmp_path / "out"
    for k in range(4):
        frame_folder(src, f"clip{k}", video_frames[:12])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sign_ctc.cli.extract", f"input={src}", f"output={out}", "progress=false",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob("*.pose")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("*.pose")}
    assert done, "the run finished no file before the deadline"
    report = extract(discover(src), out, progress=False)
    assert report["counts"]["skipped"] == len(done)
    assert report["counts"]["skipped"] + report["counts"]["extracted"] == 4
    assert {n: (out / n).stat().st_mtime_ns for n in done} == done
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_two_workers_match_one_on_full_videos(tmp_path) -> None:
    """The benchmark's setting: 4 copies of the real video as a folder of videos."""
    src = tmp_path / "videos"
    src.mkdir()
    for k in range(4):
        os.symlink(need(VIDEO), src / f"copy{k}.mp4")
    items = discover(src)
    extract(items, tmp_path / "one", workers=1, progress=False)
    extract(items, tmp_path / "two", workers=2, progress=False)
    a, b = pose_bytes(tmp_path / "one"), pose_bytes(tmp_path / "two")
    assert len(a) == 4 and a == b
    assert len(set(a.values())) == 1  # every copy gives the same file
