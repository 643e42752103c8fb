"""The two extraction backends: the Tasks tracker against a recorded fake landmarker, version and model checks,
the shared header, and the provenance sidecar that the pack step reads.

The ``holistic_landmarker.task`` model is not available here, so the Tasks backend runs with the
landmarker replaced at its boundary (``tracker._create_landmarker``) by a fake that replays results
in the documented ``HolisticLandmarkerResult`` structure, recorded from the legacy graph on real
frames of signer_58f.mp4 (with a 478-point face, as the Tasks model gives). Given the same
landmarks, both backends must give the same output exactly: per frame and as `.pose` bytes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sign_ctc.extraction import tracker as tracker_mod
from sign_ctc.extraction.discover import discover
from sign_ctc.extraction.run import extract
from sign_ctc.extraction.tracker import (
    HolisticOptions,
    LegacyHolisticTracker,
    TasksHolisticTracker,
    TrackerSetupError,
    check_backend,
)
from sign_ctc.features.pose_io import read_pose
from sign_ctc.features.provenance import backend_mix, read_provenance, write_provenance

REPO = Path(__file__).resolve().parents[1]
VIDEO = Path(__file__).resolve().parent / "data" / "signer_58f.mp4"
FRAMES = 24


@pytest.fixture(scope="module")
def rgb_frames() -> list[np.ndarray]:
    import cv2

    if not VIDEO.is_file():
        pytest.skip("fixture signer_58f.mp4 not present")
    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    while len(frames) < FRAMES:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def _tasks_result(legacy, iris_from=None):
    """A legacy Holistic result as the Tasks API documents its result: flat landmark lists, empty
    where a part is not detected, a 478-point face (the 10 iris points from ``iris_from``)."""
    from mediapipe.tasks.python.components.containers.landmark import Landmark, NormalizedLandmark
    from mediapipe.tasks.python.vision import HolisticLandmarkerResult

    def norm(component, extra=()):
        if component is None:
            return []
        return [NormalizedLandmark(x=p.x, y=p.y, z=p.z, visibility=p.visibility, presence=p.presence)
                for p in list(component.landmark) + list(extra)]

    def world(component):
        if component is None:
            return []
        return [Landmark(x=p.x, y=p.y, z=p.z, visibility=p.visibility, presence=p.presence) for p in component.landmark]

    face_extra = () if legacy.face_landmarks is None or iris_from is None else list(iris_from.landmark)[468:478]
    return HolisticLandmarkerResult(
        face_landmarks=norm(legacy.face_landmarks, face_extra), pose_landmarks=norm(legacy.pose_landmarks),
        pose_world_landmarks=world(legacy.pose_world_landmarks),
        left_hand_landmarks=norm(legacy.left_hand_landmarks), left_hand_world_landmarks=[],
        right_hand_landmarks=norm(legacy.right_hand_landmarks), right_hand_world_landmarks=[])


@pytest.fixture(scope="module")
def recorded(rgb_frames):
    """Per frame: the Tasks-shaped result of the legacy graph (468-point face + 10 iris points from a
    refined run, i.e. 478 like the Tasks model) and of the refined legacy graph (478)."""
    import mediapipe as mp

    plain, refined = [], []
    with mp.solutions.holistic.Holistic(model_complexity=1) as h1, \
            mp.solutions.holistic.Holistic(model_complexity=1, refine_face_landmarks=True) as h2:
        for frame in rgb_frames:
            r1, r2 = h1.process(frame), h2.process(frame)
            plain.append(_tasks_result(r1, iris_from=r2.face_landmarks))
            refined.append(_tasks_result(r2))
    return {"plain": plain, "refined": refined}


class FakeLandmarker:
    """Replays recorded results; checks what the tracker hands to a real landmarker (VIDEO mode)."""

    def __init__(self, results, frames):
        self.results, self.frames, self.calls, self.closed = results, frames, [], False

    def detect_for_video(self, image, timestamp_ms):
        i = len(self.calls)
        assert isinstance(timestamp_ms, int) and (not self.calls or timestamp_ms > self.calls[-1])
        assert np.array_equal(image.numpy_view(), self.frames[i])
        self.calls.append(timestamp_ms)
        return self.results[i]

    def close(self):
        self.closed = True


@pytest.fixture
def tiny_corpus(small_corpus, tmp_path):
    """A private 5-sentence copy of the synthetic corpus' train split (sidecars are written beside it)."""
    import shutil

    from sign_ctc.data.corpus import Corpus, write_phoenix2014

    root = tmp_path / "tiny"
    (root / "train").mkdir(parents=True)
    sentences = small_corpus.sentences("train")[:5]
    for s in sentences:
        shutil.copy2(small_corpus.landmark_path("train", s), root / "train" / f"{s.id}.pose")
    write_phoenix2014(root / "train.corpus.csv", sentences)
    return Corpus(root)


def _fake_task(path: Path) -> Path:
    """A stand-in ``.task`` file: a zip archive (what a MediaPipe task bundle is) with no real model."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("not_a_model.tflite", b"the landmarker is faked in these tests")
    return path


def _frames_of(tracker, frames, fps=25.0):
    return [tracker.process(f, round(i * 1000 / fps)) for i, f in enumerate(frames)]


@pytest.mark.parametrize("refine", [False, True], ids=["face468", "face478"])
def test_tasks_tracker_equals_legacy_on_the_same_landmarks(rgb_frames, recorded, refine):
    results = recorded["refined" if refine else "plain"]
    # the recording covers what matters: frames with and without a hand, a 478-point face
    assert any(r.right_hand_landmarks for r in results) and any(not r.right_hand_landmarks for r in results)
    assert all(len(r.face_landmarks) == 478 for r in results if r.face_landmarks)
    options = HolisticOptions(refine_face=refine, backend="tasks", model_asset="holistic_landmarker.task")
    fakes = []

    def create(path):
        assert path == "holistic_landmarker.task"
        fakes.append(FakeLandmarker(results, rgb_frames))
        return fakes[-1]

    tasks = TasksHolisticTracker(options, create=create)
    got = _frames_of(tasks, rgb_frames)
    legacy = LegacyHolisticTracker(HolisticOptions(refine_face=refine))
    try:
        want = _frames_of(legacy, rgb_frames)
    finally:
        legacy.close()
    face = 478 if refine else 468
    for g, w in zip(got, want, strict=True):
        assert g.points.shape == (33 + face + 21 + 21 + 33, 3) and g.face_points == face
        assert np.array_equal(g.points, w.points) and np.array_equal(g.confidence, w.confidence)
        gp, gpres = g.landmarks()
        wp, wpres = w.landmarks()
        assert gp.shape == (543, 3) and gp.dtype == np.float32 and np.array_equal(gp, wp)
        assert np.array_equal(gpres, wpres)
    presence = np.array([f.landmarks()[1] for f in got])  # PARTS order: pose, left_hand, right_hand, face
    assert presence[:, 0].all() and presence[:, 3].all() and not presence[:, 1].any()
    assert 0 < presence[:, 2].sum() < len(got)
    # reset() drops the landmarker; the next frame opens a fresh one with timestamps from 0 again
    tasks.reset()
    assert fakes[0].closed
    tasks.process(rgb_frames[0], 0)
    assert len(fakes) == 2 and fakes[1].calls == [0]
    tasks.close()


def test_timestamps_are_made_strictly_increasing(rgb_frames, recorded):
    fake = FakeLandmarker(recorded["plain"], rgb_frames)
    tasks = TasksHolisticTracker(HolisticOptions(backend="tasks", model_asset="m.task"), create=lambda _: fake)
    for i in range(4):
        tasks.process(rgb_frames[i], 7)  # a repeated time (e.g. 2000 fps rounded to ms)
    assert fake.calls == [7, 8, 9, 10]


def _patch_tasks(monkeypatch, rgb_frames, results, version="1.2.3"):
    monkeypatch.setattr(tracker_mod, "mediapipe_version", lambda: version)
    monkeypatch.setattr(tracker_mod, "_create_landmarker", lambda path: FakeLandmarker(results, rgb_frames))


def test_tasks_extraction_writes_the_same_pose_file_and_records_the_backend(tmp_path, monkeypatch, rgb_frames,
                                                                            recorded):
    import cv2

    src = tmp_path / "clip"
    src.mkdir()
    for i, frame in enumerate(rgb_frames, start=1):  # lossless: the frames read back exactly
        cv2.imwrite(str(src / f"images{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    extract(discover(src), tmp_path / "legacy", progress=False)
    model = _fake_task(tmp_path / "holistic_landmarker.task")
    _patch_tasks(monkeypatch, rgb_frames, recorded["plain"])
    options = HolisticOptions(backend="tasks", model_asset=str(model))
    report = extract(discover(src), tmp_path / "tasks", options=options, progress=False)
    assert report["counts"]["extracted"] == 1 and report["extractor"]["backend"] == "tasks"
    legacy_file, tasks_file = tmp_path / "legacy" / "clip.pose", tmp_path / "tasks" / "clip.pose"
    assert tasks_file.read_bytes() == legacy_file.read_bytes()
    # frame by frame (a live recognizer) the tracker gives what reading the file gives
    live = TasksHolisticTracker(HolisticOptions(backend="tasks", model_asset=str(model)))
    frames = [f.landmarks() for f in _frames_of(live, rgb_frames)]
    lm = read_pose(tasks_file)
    assert np.array_equal(np.stack([p for _, p in frames]), lm.presence)
    np.testing.assert_allclose(np.stack([x for x, _ in frames]), lm.points, rtol=0, atol=2e-6)  # float32 px round trip
    import hashlib

    assert read_provenance(tasks_file) == {
        "backend": "tasks", "mediapipe": "1.2.3", "refine_face": False, "model": "holistic_landmarker.task",
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    from importlib.metadata import version

    assert read_provenance(legacy_file) == {"backend": "legacy", "mediapipe": version("mediapipe"),
                                            "refine_face": False, "model": "pose_landmark_full.tflite",
                                            "model_complexity": 1}
    # the legacy folder rerun with tracker=tasks: its file is redone (not kept as "finished"), then kept
    assert extract(discover(src), tmp_path / "legacy", options=options, progress=False)["counts"]["extracted"] == 1
    assert read_provenance(legacy_file)["backend"] == "tasks" and legacy_file.read_bytes() == tasks_file.read_bytes()
    assert extract(discover(src), tmp_path / "legacy", options=options, progress=False)["counts"]["skipped"] == 1


def test_tasks_refused_on_the_aborting_mediapipe(monkeypatch, tmp_path):
    model = _fake_task(tmp_path / "m.task")
    monkeypatch.setattr(tracker_mod, "mediapipe_version", lambda: "0.10.21")
    with pytest.raises(TrackerSetupError, match=r"mediapipe>=0\.10\.33 \(installed: 0\.10\.21\).*#5181"):
        check_backend(HolisticOptions(backend="tasks", model_asset=str(model)))
    monkeypatch.setattr(tracker_mod, "mediapipe_version", lambda: "0.10.33")
    check_backend(HolisticOptions(backend="tasks", model_asset=str(model)))  # passes


def test_missing_model_file_names_the_path_and_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(tracker_mod, "mediapipe_version", lambda: "1.2.3")
    missing = tmp_path / "nope" / "holistic_landmarker.task"
    with pytest.raises(TrackerSetupError) as err:
        check_backend(HolisticOptions(backend="tasks", model_asset=str(missing)))
    assert str(missing) in str(err.value) and tracker_mod.TASKS_MODEL_PAGE in str(err.value)
    with pytest.raises(TrackerSetupError, match="no model file given"):
        check_backend(HolisticOptions(backend="tasks"))
    html = tmp_path / "holistic_landmarker.task"
    html.write_text("<html>a download page saved instead of the model</html>")
    with pytest.raises(TrackerSetupError, match=r"is not a MediaPipe \.task bundle \(not a zip archive\)"):
        check_backend(HolisticOptions(backend="tasks", model_asset=str(html)))


def test_legacy_refused_where_solutions_are_gone(monkeypatch):
    monkeypatch.setattr(tracker_mod, "mediapipe_version", lambda: "0.10.31")
    with pytest.raises(TrackerSetupError, match=r"removed in 0\.10\.30 \(installed: 0\.10\.31\)"):
        check_backend(HolisticOptions(backend="legacy"))
    with pytest.raises(TrackerSetupError, match="tracker must be one of auto, legacy, tasks"):
        check_backend(HolisticOptions(backend="openpose"))


def test_auto_is_the_backend_the_installed_mediapipe_has(monkeypatch):
    """tracker=auto (every config's default): legacy with the 3.11/3.12 pin, tasks with Python 3.13's mediapipe.

    The options hold the resolved name, so the worker cache and the provenance record name what runs."""
    assert [tracker_mod.default_backend(v) for v in ("0.10.21", "0.10.29", "0.10.30", "0.10.33", "1.2.3")] == [
        "legacy", "legacy", "tasks", "tasks", "tasks"]
    assert HolisticOptions().backend == "legacy"  # this environment: mediapipe 0.10.21
    monkeypatch.setattr(tracker_mod, "mediapipe_version", lambda: "1.2.3")
    options = HolisticOptions()
    assert options.backend == "tasks" and HolisticOptions(backend="legacy").backend == "legacy"
    with pytest.raises(TrackerSetupError,
                       match=r"no model file given.*mediapipe 1\.2\.3 has no legacy graph.*tasks is the only backend"):
        check_backend(options)
    monkeypatch.setattr(tracker_mod, "mediapipe_version", lambda: None)
    assert HolisticOptions().backend == "legacy"  # check_backend then names what to install
    with pytest.raises(TrackerSetupError, match="mediapipe is not installed"):
        check_backend(HolisticOptions())


@pytest.mark.parametrize("name", ["extract", "predict", "render", "live"])
def test_configs_default_to_auto(name):
    from omegaconf import OmegaConf

    assert OmegaConf.load(REPO / "sign_ctc" / "conf" / f"{name}.yaml").tracker == "auto"


def test_cli_tasks_error_is_one_line_without_traceback(tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    import cv2

    cv2.imwrite(str(clip / "0001.png"), np.zeros((8, 8, 3), np.uint8))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "sign_ctc.cli.extract", f"input={clip}", f"output={tmp_path / 'o'}", "tracker=tasks",
         f"model_asset={tmp_path / 'missing.task'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("extract: error:")]
    assert len(errors) == 1 and "tracker=tasks" in errors[0] and "Traceback" not in proc.stderr


def test_predict_takes_the_backend_options(tmp_path):
    """predict / render extract through the same options: tracker=tasks is checked before any frame is read."""
    from omegaconf import OmegaConf

    from sign_ctc.cli.predict import landmarks_of

    cfg = OmegaConf.create({"video": str(VIDEO), "pose": None, "tracker": "tasks",
                            "model_asset": str(tmp_path / "missing.task"), "model_complexity": 1, "refine_face": False})
    with pytest.raises(TrackerSetupError, match="tracker=tasks"):
        landmarks_of(cfg)


@pytest.mark.parametrize("world", [True, False])
@pytest.mark.parametrize("refined", [False, True])
def test_header_copy_equals_pose_formats_header(refined, world):
    """Extraction (world landmarks) and the synthetic corpus (none) write the copy where pose-format cannot
    build its header (mediapipe >= 0.10.30, Python 3.13): the same bytes as pose-format's."""
    from sign_ctc.features.header import _from_pose_format, _from_template, header_bytes

    assert header_bytes(_from_template(210, 260, refined, world)) == header_bytes(
        _from_pose_format(210, 260, refined, world))


def test_pack_warns_when_a_split_mixes_backends(tiny_corpus, tmp_path, caplog):
    from sign_ctc.data.store import MANIFEST_FILE, pack

    paths = [tiny_corpus.landmark_path("train", s) for s in tiny_corpus.sentences("train")]
    assert backend_mix(paths) is None  # no sidecars at all: other tools' files, nothing to say
    for p in paths:
        write_provenance(p, {"backend": "legacy", "mediapipe": "0.10.21"})
    with caplog.at_level(logging.WARNING, logger="sign_ctc.data.sources"):
        store = pack(tiny_corpus, "train", tmp_path / "stores")
    assert store.backend_mix is None and "extraction backends" not in caplog.text
    write_provenance(paths[0], {"backend": "tasks", "mediapipe": "1.2.3"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sign_ctc.data.sources"):
        store = pack(tiny_corpus, "train", tmp_path / "stores", force=True)
    legacy_shown = ", ".join(p.name for p in paths[1:4])
    assert store.backend_mix == f"legacy: 4 file(s) ({legacy_shown}, ...); tasks: 1 file(s) ({paths[0].name})"
    assert "train: landmark files come from different extraction backends (legacy: 4" in caplog.text
    manifest = json.loads((tmp_path / "stores" / "train" / MANIFEST_FILE).read_text())
    assert manifest["backend_mix"] == store.backend_mix
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sign_ctc.data.sources"):
        pack(tiny_corpus, "train", tmp_path / "stores")  # reused: the warning is repeated from the manifest
    assert "different extraction backends" in caplog.text
    paths[1].with_name(paths[1].name + ".json").unlink()  # one file without a record among recorded ones
    assert "unrecorded: 1 file(s)" in backend_mix(paths)
