"""Bad data: nothing lost, everything named, one pass (non-finite points, bad files, bad sentences, unseen glosses)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sign_ctc.data.corpus import Corpus, Sentence, write_phoenix2014
from sign_ctc.data.datamodule import SignDataModule
from sign_ctc.data.dataset import MediaPipeFeatureDataset
from sign_ctc.data.sources import BadFilesError, StoreError, bad_files_path, scan_sources
from sign_ctc.data.store import FLOAT16_ATOL, MANIFEST_FILE, pack
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import PARTS, RAW_PARTS
from sign_ctc.features.pose_io import pose_from_landmarks, read_pose, read_pose_counted, write_pose_atomic

SIZES = {"train": 12, "dev": 4, "test": 4}
LEFT = PARTS.index("left_hand")
POSE = PARTS.index("pose")


@pytest.fixture
def corpus(small_corpus, tmp_path) -> Corpus:
    """A private PHOENIX-layout copy of part of the small corpus (root/{split}.corpus.csv, root/{split}/{id}.pose)."""
    root = tmp_path / "corpus"
    for split, n in SIZES.items():
        (root / split).mkdir(parents=True)
        sentences = small_corpus.sentences(split)[:n]
        for s in sentences:
            shutil.copy2(small_corpus.landmark_path(split, s), root / split / f"{s.id}.pose")
        write_phoenix2014(root / f"{split}.corpus.csv", sentences)
    return Corpus(root)


def _path(corpus: Corpus, split: str, i: int) -> Path:
    return corpus.landmark_path(split, corpus.sentences(split)[i])


def _id(corpus: Corpus, split: str, i: int) -> str:
    return corpus.sentences(split)[i].id


def _put_nan(path: Path, cells: list[tuple[int, int]]) -> None:
    """Write NaN (unmasked, confidence kept) into x of the given (frame, raw point) cells of a .pose file."""
    from pose_format import Pose

    pose = Pose.read(path.read_bytes())
    data = np.ma.getdata(pose.body.data).copy()
    mask = np.ma.getmaskarray(pose.body.data).copy()
    for frame, point in cells:
        data[frame, 0, point, 0] = np.nan
        mask[frame, 0, point, :] = False
    pose.body.data = np.ma.masked_array(data, mask)
    write_pose_atomic(pose, path)


def _truncate(path: Path) -> None:
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])


def _zero_frames(path: Path) -> None:
    empty = Landmarks(np.zeros((0, 543, 3), np.float32), np.zeros((0, 4), bool))
    write_pose_atomic(pose_from_landmarks(empty, 210, 260), path)


def _relabel(corpus: Corpus, split: str, glosses: dict[int, tuple[str, ...]]) -> None:
    sentences = corpus.sentences(split)
    for i, g in glosses.items():
        s = sentences[i]
        sentences[i] = Sentence(s.id, g, s.signer, s.folder)
    write_phoenix2014(corpus.annotation_path(split), sentences)


def _nan_file(corpus: Corpus) -> tuple[Path, int, int]:
    """NaN in pose point 0 at frame 3 and in all 21 left-hand points of a frame where the hand is seen."""
    path = _path(corpus, "train", 2)
    lm = read_pose(path)
    frame = int(np.flatnonzero(lm.presence[:, LEFT])[0])
    lo, hi = RAW_PARTS["left_hand"]
    _put_nan(path, [(3, RAW_PARTS["pose"][0])] + [(frame, p) for p in range(lo, hi)])
    return path, frame, 1 + (hi - lo)


def test_nan_coordinate_is_a_missing_point_counted_logged_and_manifested(corpus, tmp_path, caplog):
    before = read_pose(_path(corpus, "train", 2))
    path, frame, count = _nan_file(corpus)
    lm, nonfinite = read_pose_counted(path)
    assert nonfinite == count == 22
    assert np.isfinite(lm.points).all()
    lo, hi = RAW_PARTS["left_hand"]
    p0 = RAW_PARTS["pose"][0]
    # the NaN point reads as undetected: 0, and its part follows the masked-point rule (any point seen)
    assert (lm.points[3, p0] == 0).all() and lm.presence[3, POSE] and before.presence[3, POSE]
    assert (lm.points[frame, lo:hi] == 0).all() and not lm.presence[frame, LEFT] and before.presence[frame, LEFT]
    keep = np.ones(len(lm), bool)
    keep[[3, frame]] = False
    np.testing.assert_array_equal(lm.points[keep], before.points[keep])
    np.testing.assert_array_equal(lm.presence[keep], before.presence[keep])
    np.testing.assert_array_equal(np.delete(lm.points[3], p0, axis=0), np.delete(before.points[3], p0, axis=0))

    with caplog.at_level(logging.WARNING, logger="sign_ctc.data.sources"):
        store = pack(corpus, "train", tmp_path / "store")
    assert len(store) == SIZES["train"] and store.skipped == []
    sid = _id(corpus, "train", 2)
    assert store.manifest["nonfinite_points"] == [{"id": sid, "file": str(path), "points": 22}]
    assert store.nonfinite == store.manifest["nonfinite_points"]
    warnings = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert warnings == [f"train: 1 landmark file(s) had non-finite coordinates, read as missing points: "
                        f"{path} (22 points)"]
    points, presence = store.read(store.row[sid])
    np.testing.assert_allclose(points.astype(np.float32), lm.points, atol=FLOAT16_ATOL, rtol=0)
    np.testing.assert_array_equal(presence, lm.presence)
    assert not bad_files_path(tmp_path / "store", "train").exists()

    # without a store: the same landmarks, finite features
    vocab = Vocabulary.from_glosses(s.glosses for s in corpus.sentences("train"))
    sample = MediaPipeFeatureDataset(corpus, "train", vocab)[2]
    assert sample.id == sid and torch.isfinite(sample.features).all()
    np.testing.assert_array_equal(sample.presence.numpy(), lm.presence)


def test_truncated_missing_and_empty_files_are_all_named_in_one_error(corpus, tmp_path):
    truncated, missing, no_frames, zero_bytes = (_path(corpus, "train", i) for i in (1, 4, 6, 9))
    _truncate(truncated)
    missing.unlink()
    _zero_frames(no_frames)
    zero_bytes.write_bytes(b"")
    root = tmp_path / "store"

    with pytest.raises(BadFilesError) as info:
        pack(corpus, "train", root)
    assert isinstance(info.value, StoreError)
    msg = str(info.value)
    report = bad_files_path(root, "train")
    assert report == root / "train.bad_files.json"
    assert msg.startswith(f"split 'train': 4 of 12 samples are bad (fix them, or set data.skip_bad_files=true "
                          f"to leave them out); the list is in {report}:")
    assert f"{truncated}: not a readable .pose file (" in msg
    assert f"{missing}: file not found (sample {_id(corpus, 'train', 4)})" in msg
    assert f"{no_frames}: no frames (sample {_id(corpus, 'train', 6)})" in msg
    assert f"{zero_bytes}: empty file (0 bytes) (sample {_id(corpus, 'train', 9)})" in msg
    assert len(msg.splitlines()) == 1 + 4

    listed = json.loads(report.read_text())
    assert listed["split"] == "train" and listed["sentences"] == 12 and listed["skip_bad_files"] is False
    assert listed["store"] == str(root / "train") and listed["sources"] == str(corpus.root / "train")
    bad = listed["bad"]
    assert [b["id"] for b in bad] == [_id(corpus, "train", i) for i in (1, 4, 6, 9)]
    assert [b["file"] for b in bad] == [str(p) for p in (truncated, missing, no_frames, zero_bytes)]
    assert bad[0]["reason"].startswith("not a readable .pose file (")
    assert [b["reason"] for b in bad[1:]] == ["file not found", "no frames", "empty file (0 bytes)"]
    assert [p.name for p in root.iterdir()] == ["train.bad_files.json"]  # no store, no temp folder


def test_skip_bad_files_packs_the_rest_and_the_store_keeps_the_list(corpus, tmp_path, caplog):
    good = {i: _path(corpus, "train", i).read_bytes() for i in (1, 4)}
    _truncate(_path(corpus, "train", 1))
    _path(corpus, "train", 4).unlink()
    bad_ids = [_id(corpus, "train", i) for i in (1, 4)]
    store_dir = tmp_path / "store"

    def datamodule(skip: bool) -> SignDataModule:
        return SignDataModule(corpus, batch_size=4, num_workers=0, store=True, store_dir=str(store_dir),
                              skip_bad_files=skip)

    dm = datamodule(True)
    with caplog.at_level(logging.WARNING, logger="sign_ctc.data.datamodule"):
        ds = dm.dataset("train")
        dm.dataset("train")
    assert len(ds) == 10 and not set(bad_ids) & set(ds.ids) and ds.store.ids == ds.ids
    skipped = dm.skipped_samples["train"]
    assert [s["id"] for s in skipped] == bad_ids
    assert skipped[1] == {"id": bad_ids[1], "file": str(_path(corpus, "train", 4)), "reason": "file not found"}
    assert skipped[0]["reason"].startswith("not a readable .pose file")
    (warning,) = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert warning.startswith(f"train: 2 bad sample(s) left out (skip_bad_files=true): {bad_ids[0]} (")
    assert f"{bad_ids[1]} ({_path(corpus, 'train', 4)}): file not found" in warning
    assert [s["id"] for s in ds.store.manifest["skipped"]] == bad_ids
    assert json.loads(bad_files_path(store_dir, "train").read_text())["skip_bad_files"] is True
    batch = next(iter(dm.train_dataloader())).with_features()
    assert batch.features.shape[0] == 4 and torch.isfinite(batch.features).all()

    # reused (not repacked): the list still comes from the manifest; without skipping it is refused
    manifest = store_dir / "train" / MANIFEST_FILE
    built = manifest.stat().st_mtime_ns
    again = datamodule(True)
    assert len(again.dataset("train")) == 10 and again.skipped_samples == dm.skipped_samples
    with pytest.raises(BadFilesError, match=rf"2 of 12 samples are bad[\s\S]*file not found \(sample {bad_ids[1]}\)"):
        datamodule(False).dataset("train")
    assert manifest.stat().st_mtime_ns == built

    # a restored file triggers a repack that takes it in; fixing the last one clears the list
    _path(corpus, "train", 4).write_bytes(good[4])
    fixed = datamodule(True)
    assert len(fixed.dataset("train")) == 11 and [s["id"] for s in fixed.skipped_samples["train"]] == bad_ids[:1]
    _path(corpus, "train", 1).write_bytes(good[1])
    whole = datamodule(False)
    assert len(whole.dataset("train")) == 12 and whole.skipped_samples == {}
    assert not bad_files_path(store_dir, "train").exists()


@pytest.mark.parametrize("store", [True, False])
def test_empty_annotation_and_too_few_frames_are_named_by_id(corpus, tmp_path, store):
    frames = len(read_pose(_path(corpus, "train", 5)))
    _relabel(corpus, "train", {3: (), 5: ("A",) * (frames + 1)})
    _truncate(_path(corpus, "train", 7))
    ids = [_id(corpus, "train", i) for i in (3, 5, 7)]

    def datamodule(skip: bool) -> SignDataModule:
        return SignDataModule(corpus, num_workers=0, store=store, store_dir=str(tmp_path / "store"),
                              skip_bad_files=skip)

    with pytest.raises(BadFilesError) as info:
        datamodule(False).dataset("train")
    msg = str(info.value)
    assert f"{_path(corpus, 'train', 3)}: no glosses in the annotation (sample {ids[0]})" in msg
    assert (f"{_path(corpus, 'train', 5)}: {frames} frame(s) for {frames + 1} glosses "
            f"(fewer than one frame per gloss) (sample {ids[1]})") in msg
    assert f"(sample {ids[2]})" in msg and "3 of 12 samples are bad" in msg
    assert [b.id for b in info.value.bad] == ids

    dm = datamodule(True)
    ds = dm.dataset("train")
    assert len(ds) == 9 and not set(ids) & set(ds.ids)
    assert [s["id"] for s in dm.skipped_samples["train"]] == ids
    assert dm.skipped_samples["train"][0]["reason"] == "no glosses in the annotation"
    assert min(a / len(s.glosses) for a, s in zip(ds.lengths(), ds.sentences)) >= 1


def test_unseen_dev_glosses_are_logged_once_and_scored_as_errors(corpus, caplog):
    train = corpus.sentences("train")
    _relabel(corpus, "dev", {0: train[0].glosses + ("NEU-A", "NEU-B"), 1: train[1].glosses,
                             2: ("NEU-A",) + train[2].glosses, 3: train[3].glosses})
    dm = SignDataModule(corpus, num_workers=0, batch_size=4)
    with caplog.at_level(logging.WARNING, logger="sign_ctc.data.datamodule"):
        dm.setup("fit")
        dm.dataset("dev")
        next(iter(dm.val_dataloader()))
    messages = [r.getMessage() for r in caplog.records if "train vocabulary" in r.getMessage()]
    assert messages == ["dev: 3 gloss tokens (2 types) not in the train vocabulary, scored as errors: NEU-A, NEU-B"]
    sample = dm.dataset("dev")[0]
    assert sample.targets.tolist()[-2:] == [dm.vocab.unk_id, dm.vocab.unk_id]


def test_without_a_store_bad_files_are_checked_in_one_pass_too(corpus):
    _truncate(_path(corpus, "dev", 0))
    _path(corpus, "dev", 2).unlink()
    with pytest.raises(BadFilesError) as info:
        scan_sources(corpus, "dev")
    assert [b.id for b in info.value.bad] == [_id(corpus, "dev", 0), _id(corpus, "dev", 2)]
    assert info.value.report is None and not any(corpus.root.glob("**/*.bad_files.json"))
    frames, bad = scan_sources(corpus, "dev", skip_bad_files=True)
    assert sorted(frames) == sorted(_id(corpus, "dev", i) for i in (1, 3)) and len(bad) == 2
    assert frames[_id(corpus, "dev", 1)] == len(read_pose(_path(corpus, "dev", 1)))
    dm = SignDataModule(corpus, num_workers=0, skip_bad_files=True)
    ds = dm.dataset("dev")
    assert ds.ids == [_id(corpus, "dev", i) for i in (1, 3)] and ds.lengths() == [frames[i] for i in ds.ids]
    _path(corpus, "dev", 1).unlink()
    _path(corpus, "dev", 3).unlink()
    with pytest.raises(BadFilesError, match="all 4 samples are bad, nothing left to use even with skip_bad_files"):
        SignDataModule(corpus, num_workers=0, skip_bad_files=True).dataset("dev")


def test_pack_command_reports_every_bad_file_of_every_split_and_exits_2(make_cfg, corpus, tmp_path, capsys):
    from sign_ctc.cli.pack import run

    _truncate(_path(corpus, "train", 0))
    _path(corpus, "dev", 1).unlink()
    _nan_file(corpus)
    store_dir = tmp_path / "cmd"
    args = ["data=mediapipe_full", f"data.root={corpus.root}", f"data.store_dir={store_dir}", "splits=[train,dev]"]
    assert run(make_cfg(*args, config_name="pack")) == 2
    err = capsys.readouterr().err
    assert f"{_path(corpus, 'train', 0)}: not a readable .pose file" in err
    assert f"{_path(corpus, 'dev', 1)}: file not found (sample {_id(corpus, 'dev', 1)})" in err
    assert bad_files_path(store_dir, "train").is_file() and bad_files_path(store_dir, "dev").is_file()

    assert run(make_cfg(*args, "data.skip_bad_files=true", config_name="pack")) == 0
    out = capsys.readouterr().out
    assert "train: 11 sentences" in out and "dev: 3 sentences" in out
    assert f"pack: train: 1 bad sample(s) left out (skip_bad_files=true):\n  {_path(corpus, 'train', 0)}: " in out
    assert (f"pack: train: 1 file(s) with non-finite coordinates, read as missing points:\n"
            f"  {_path(corpus, 'train', 2)}: 22 point(s)") in out


@pytest.mark.parametrize("case", ["nan", "skip"])
def test_training_runs_to_the_end_and_metrics_json_names_the_skipped(case, make_cfg, corpus, tmp_path):
    from sign_ctc.run.train import train

    overrides = ["data=mediapipe_full", f"data.root={corpus.root}", "data.num_workers=0", "data.batch_size=4",
                 "data.eval_batch_size=4", "debug=fast_dev_run", "logger=none", "callbacks.rich_progress_bar=null"]
    expected: dict[str, list[str]] = {}
    if case == "nan":
        _nan_file(corpus)
    else:
        _truncate(_path(corpus, "train", 5))
        _path(corpus, "dev", 0).unlink()
        _relabel(corpus, "test", {2: ()})
        expected = {"train": [_id(corpus, "train", 5)], "dev": [_id(corpus, "dev", 0)],
                    "test": [_id(corpus, "test", 2)]}
        overrides.append("data.skip_bad_files=true")
    run_dir = tmp_path / "run"
    metrics = train(make_cfg(*overrides, output_dir=run_dir))
    assert torch.isfinite(torch.tensor(metrics["train/loss"])) and 0.0 <= metrics["test/wer"] <= 100.0
    info = json.loads((run_dir / "metrics.json").read_text())
    assert info["status"] == "completed"
    assert {split: [s["id"] for s in rows] for split, rows in info["skipped_samples"].items()} == expected
    if case == "skip":
        assert info["skipped_samples"]["dev"][0]["reason"] == "file not found"
        assert info["skipped_samples"]["test"][0]["reason"] == "no glosses in the annotation"
        predictions = (run_dir / "test_predictions.csv").read_text().splitlines()
        assert len(predictions) == 1 + SIZES["test"] - 1 and expected["test"][0] not in "".join(predictions)
