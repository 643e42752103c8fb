"""The packed landmark store: round trip, rebuild rules, atomicity, size, and the dataset through it."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sign_ctc.data.collate import collate, collate_landmarks
from sign_ctc.data.corpus import Corpus, write_phoenix2014
from sign_ctc.data.dataset import LandmarkView, MediaPipeFeatureDataset, SampleError
from sign_ctc.data.sources import StoreError
from sign_ctc.data.store import (
    BYTES_PER_FRAME,
    FLOAT16_ATOL,
    MANIFEST_FILE,
    LandmarkStore,
    open_store,
    pack,
    store_location,
)
from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.features.layout import PARTS, SLICES, STATIC_POINT_ORDER, features_from_landmarks
from sign_ctc.features.pose_io import read_pose

ROOT = Path(__file__).resolve().parents[1]
# Features are differences of up to 3 float16-rounded coordinates (acceleration: s - 2 s1 + s2).
FEATURE_ATOL = 4 * FLOAT16_ATOL


def _vocab(corpus):
    return Vocabulary.from_glosses(s.glosses for s in corpus.sentences("train"))


@pytest.fixture
def tiny_corpus(small_corpus, tmp_path) -> Corpus:
    """A private 5-sentence copy of the small corpus (tests here modify its files)."""
    root = tmp_path / "tiny"
    (root / "train").mkdir(parents=True)
    sentences = small_corpus.sentences("train")[:5]
    for s in sentences:
        shutil.copy2(small_corpus.landmark_path("train", s), root / "train" / f"{s.id}.pose")
    write_phoenix2014(root / "train.corpus.csv", sentences)
    return Corpus(root)


def test_round_trip_equals_reading_pose_files(small_corpus, tmp_path):
    store = pack(small_corpus, "train", tmp_path / "store")
    sentences = small_corpus.sentences("train")
    assert store.ids == [s.id for s in sentences]
    assert store.glosses == [s.glosses for s in sentences]
    assert int(store.lengths.sum()) == store.total_frames
    for i, s in enumerate(sentences):
        lm = read_pose(small_corpus.landmark_path("train", s))
        points, presence = store.read(i)
        assert points.dtype == np.float16 and points.shape == lm.points.shape
        np.testing.assert_allclose(points.astype(np.float32), lm.points, atol=FLOAT16_ATOL, rtol=0)
        np.testing.assert_array_equal(presence, lm.presence)
    # the memory-mapped view holds the same rows
    mm = store.points_memmap()
    np.testing.assert_array_equal(mm[store.offsets[3] : store.offsets[3] + store.lengths[3]], store.read(3)[0])
    # a store travels to spawned workers without its file descriptors
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read(1)[0], store.read(1)[0])


def test_bytes_per_frame_at_most_3_3_kb(small_corpus, tmp_path):
    store = pack(small_corpus, "train", tmp_path / "store")
    on_disk = sum(f.stat().st_size for f in store.path.iterdir())
    assert BYTES_PER_FRAME == 543 * 3 * 2 + 4
    assert on_disk / store.total_frames <= 3300  # index and manifest included
    assert 6516 * 4 / (on_disk / store.total_frames) > 7.9  # the seed's float32 features: 26 064 B/frame


def test_reused_when_unchanged_rebuilt_when_a_source_is_touched_or_changed(tiny_corpus, tmp_path):
    root = tmp_path / "store"
    first = pack(tiny_corpus, "train", root)
    manifest = root / "train" / MANIFEST_FILE
    built = manifest.stat().st_mtime_ns
    inode = (root / "train").stat().st_ino

    again = pack(tiny_corpus, "train", root)  # nothing changed: reused as is
    assert manifest.stat().st_mtime_ns == built and (root / "train").stat().st_ino == inode
    assert again.manifest["fingerprint"] == first.manifest["fingerprint"]

    s0 = tiny_corpus.sentences("train")[0]
    src = tiny_corpus.landmark_path("train", s0)
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: rebuilt
    touched = pack(tiny_corpus, "train", root)
    assert touched.manifest["fingerprint"] != first.manifest["fingerprint"]
    assert (root / "train").stat().st_ino != inode

    # content changed: another sample's landmarks written over the first one's file
    s1 = tiny_corpus.sentences("train")[1]
    shutil.copy(tiny_corpus.landmark_path("train", s1), src)
    changed = pack(tiny_corpus, "train", root)
    assert changed.manifest["fingerprint"] != touched.manifest["fingerprint"]
    np.testing.assert_array_equal(changed.read(0)[0], changed.read(1)[0])

    # an edited annotation (glosses) is a change too
    sentences = tiny_corpus.sentences("train")
    write_phoenix2014(tiny_corpus.annotation_path("train"),
                      [sentences[0].__class__(s.id, ("NEU",) + s.glosses) for s in sentences])
    relabeled = pack(tiny_corpus, "train", root)
    assert relabeled.glosses[0][0] == "NEU"
    assert [p.name for p in root.iterdir()] == ["train"]  # no temp or old folders left behind


def test_interrupted_pack_leaves_no_half_store(tiny_corpus, tmp_path):
    root = tmp_path / "store"

    def failing_reader(path, calls=[]):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of packing
        lm = read_pose(path)
        return lm.points, lm.presence

    with pytest.raises(KeyboardInterrupt):
        pack(tiny_corpus, "train", root, reader=failing_reader)
    assert list(root.iterdir()) == []  # no store, no temp folder

    good = pack(tiny_corpus, "train", root)
    src = tiny_corpus.landmark_path("train", tiny_corpus.sentences("train")[0])
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    with pytest.raises(KeyboardInterrupt):
        pack(tiny_corpus, "train", root, reader=lambda p, calls=[]: failing_reader(p, calls))
    kept = LandmarkStore(root / "train")  # the previous store is still whole
    assert kept.manifest["fingerprint"] == good.manifest["fingerprint"]
    np.testing.assert_array_equal(kept.read(4)[0], good.read(4)[0])


def test_killed_pack_leaves_no_store_and_the_next_pack_cleans_up(tiny_corpus, tmp_path):
    root = tmp_path / "store"
    script = textwrap.dedent(f"""
        import time, sys
        sys.path.insert(0, {str(ROOT)!r})
        from sign_ctc.data.corpus import Corpus
        from sign_ctc.data.store import pack
        from sign_ctc.features.pose_io import read_pose
        def slow(path):
            time.sleep(0.5)
            lm = read_pose(path)
            return lm.points, lm.presence
        pack(Corpus({str(tiny_corpus.root)!r}), "train", {str(root)!r}, reader=slow)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not (root.is_dir() and any(p.name.startswith(".train.tmp-") for p in root.iterdir())):
            assert proc.poll() is None and time.time() < deadline, "pack did not start"
            time.sleep(0.05)
        time.sleep(0.6)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (root / "train").exists()
    with pytest.raises(StoreError):
        LandmarkStore(root / "train")
    store = pack(tiny_corpus, "train", root)
    assert len(store) == 5 and [p.name for p in root.iterdir()] == ["train"]


def test_missing_source_file_is_named(tiny_corpus, tmp_path):
    s = tiny_corpus.sentences("train")[2]
    path = tiny_corpus.landmark_path("train", s)
    path.unlink()
    with pytest.raises(StoreError) as info:  # a BadFilesError: every bad file of the split, each with its reason
        pack(tiny_corpus, "train", tmp_path / "store")
    assert f"{path}: file not found (sample {s.id})" in str(info.value)
    assert [b.id for b in info.value.bad] == [s.id]


def test_read_only_corpus_stores_in_the_cache(tiny_corpus, tmp_path):
    assert store_location(tiny_corpus).root == tiny_corpus.root / "store"
    os.chmod(tiny_corpus.root, 0o555)
    try:
        loc = store_location(tiny_corpus, cache_dir=tmp_path / "cache")
        assert loc.root.parent == tmp_path / "cache" / "store"
        with pytest.raises(StoreError, match="read-only"):
            store_location(tiny_corpus)
        store = open_store(tiny_corpus, "train", cache_dir=tmp_path / "cache")
        assert store.path == loc.root / "train" and not (tiny_corpus.root / "store").exists()
        assert store_location(tiny_corpus, store_dir=tmp_path / "mine").root == tmp_path / "mine"
    finally:
        os.chmod(tiny_corpus.root, 0o755)


@pytest.mark.parametrize("missing", ["zero", "interpolate"])
def test_dataset_via_store_gives_the_features_of_the_pose_files(small_corpus, tmp_path, missing):
    vocab = _vocab(small_corpus)
    store = pack(small_corpus, "train", tmp_path / "store")
    direct = MediaPipeFeatureDataset(small_corpus, "train", vocab, missing)
    stored = MediaPipeFeatureDataset(small_corpus, "train", vocab, missing, store=store)
    assert stored.ids == direct.ids and stored.lengths() == direct.lengths()
    for i in range(0, len(direct), 7):
        a, b = direct[i], stored[i]
        assert a.id == b.id and torch.equal(a.targets, b.targets) and torch.equal(a.presence, b.presence)
        torch.testing.assert_close(b.features, a.features, atol=FEATURE_ATOL, rtol=0)
    # subsetting the sentences afterwards (train_subset) keeps lengths aligned by id
    stored.sentences = stored.sentences[5:9]
    assert stored.lengths() == direct.lengths()[5:9]


def test_batch_derivation_equals_per_sample_features_and_collate(small_corpus, tmp_path):
    vocab = _vocab(small_corpus)
    ds = MediaPipeFeatureDataset(small_corpus, "train", vocab, store=pack(small_corpus, "train", tmp_path / "s"))
    idx = [3, 0, 17, 9, 30]
    expected = collate([ds[i] for i in idx])
    raw = collate_landmarks([LandmarkView(ds)[i] for i in idx])
    assert raw.points.dtype == torch.float16 and raw.points.shape[2:] == (543, 3)  # the store's values
    got = raw.with_features()
    assert got.points is None and got.ids == expected.ids
    for key in ("features", "presence", "lengths", "targets", "target_lengths"):
        assert torch.equal(getattr(got, key), getattr(expected, key)), key


def _reference_features(points: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """The layout's definition spelt out frame by frame: static, then s - s1, s - 2 s1 + s2, s - s4
    (the first frame held), each (block, part) zero unless every frame it reads has the part."""
    T = points.shape[0]
    static = points[:, STATIC_POINT_ORDER].reshape(T, -1)
    out = torch.zeros(T, 6516)
    for t in range(T):
        at = lambda k: max(t - k, 0)  # noqa: E731
        blocks = [static[t], static[t] - static[at(1)], static[t] - 2 * static[at(1)] + static[at(2)],
                  static[t] - static[at(4)]]
        reads = [(0,), (0, 1), (0, 1, 2), (0, 4)]
        for k, (values, lags) in enumerate(zip(blocks, reads)):
            for p, part in enumerate(PARTS):
                if all(presence[at(lag), p] for lag in lags):
                    sl = SLICES[part]
                    out[t, 1629 * k + sl.start : 1629 * k + sl.stop] = values[sl]
    return out


@pytest.mark.parametrize("T", [1, 2, 4, 5, 40])
def test_batched_derivation_is_bit_identical_to_the_definition(T):
    g = torch.Generator().manual_seed(T)
    points = torch.rand(3, T, 543, 3, generator=g)
    presence = torch.rand(3, T, 4, generator=g) > 0.3
    batch = features_from_landmarks(points, presence)
    for i in range(3):
        assert torch.equal(batch[i], _reference_features(points[i], presence[i]))
        assert torch.equal(batch[i], features_from_landmarks(points[i], presence[i]))


def test_datamodule_packs_on_first_use_and_reads_the_store(small_corpus, tmp_path):
    from sign_ctc.data.datamodule import SignDataModule

    dm = SignDataModule(small_corpus, batch_size=4, num_workers=0, store=True, store_dir=str(tmp_path / "st"),
                        train_subset=10)
    ds = dm.dataset("train")
    assert ds.store is not None and ds.store.path == tmp_path / "st" / "train" and len(ds) == 10
    raw = next(iter(dm.train_dataloader()))
    assert raw.features is None and raw.points.dtype == torch.float16  # 6.4x less to move than features
    batch = raw.with_features()
    assert batch.features.shape[-1] == 6516 and batch.features.dtype == torch.float32
    plain = SignDataModule(small_corpus, batch_size=4, num_workers=0, store=False)
    assert plain.dataset("train").store is None
    with pytest.raises(SampleError, match="no frames|not in the landmark store"):
        ds.sentences = [ds.sentences[0].__class__("unknown-id", ("A",))]
        ds.raw(0)


def test_pack_command_reports_and_reuses(make_cfg, small_corpus, tmp_path, capsys):
    from sign_ctc.cli.pack import run
    from tests.helpers import SMALL_CORPUS

    cfg = make_cfg(*SMALL_CORPUS, f"data.store_dir={tmp_path / 'cmd'}", "splits=[train,dev]", config_name="pack")
    assert run(cfg) == 0
    assert run(cfg) == 0
    out = capsys.readouterr().out
    assert "train: 48 sentences" in out and "dev: 12 sentences" in out and "up to date, reused" in out
    assert (tmp_path / "cmd" / "train" / MANIFEST_FILE).is_file() and not (tmp_path / "cmd" / "test").exists()
    bad = make_cfg(*SMALL_CORPUS, f"data.store_dir={tmp_path / 'cmd'}", "splits=[training]", config_name="pack")
    assert run(bad) == 2


def test_device_derivation_of_real_pose_files_equals_the_definition():
    """The four real `.pose` files (5-97 frames, hands lost in many frames) padded into one batch:
    the features derived from the batch equal each file's features by the definition, exactly;
    so do those from the float16 values the store keeps (float16 -> float32 is exact)."""
    from sign_ctc.data.sample import LandmarkSample

    data = Path(__file__).parent / "data"
    names = ["25October_2010_Monday_tagesschau-17.pose", "signer_holistic_97f.pose", "signer_refined_face_18f.pose",
             "signer_refined_face_5f.pose"]
    poses = [read_pose(data / n) for n in names]
    assert sum((~p.presence).sum() for p in poses) > 100  # undetected parts: the masks are exercised
    for dtype in (np.float32, np.float16):
        samples = [LandmarkSample(n, p.points.astype(dtype), p.presence, p.presence, torch.tensor([1]))
                   for n, p in zip(names, poses)]
        batch = collate_landmarks(samples).with_features()
        assert batch.features.shape == (4, 97, 6516) and batch.features.dtype == torch.float32
        for i, p in enumerate(poses):
            n = len(p.points)
            want = _reference_features(torch.from_numpy(p.points.astype(dtype).astype(np.float32)),
                                       torch.from_numpy(p.presence))
            assert torch.equal(batch.features[i, :n], want), names[i]
            assert not batch.features[i, n:].any()  # padding stays zero


def test_padding_to_a_multiple_keeps_every_sample_and_zeroes_the_rest(small_corpus, tmp_path):
    """data.pad_to_multiple (for torch.compile's static shapes): the time axis is rounded up, the
    features of every frame are those of the plain batch, the padding is zero and absent."""
    from sign_ctc.data.datamodule import SignDataModule

    vocab = _vocab(small_corpus)
    ds = MediaPipeFeatureDataset(small_corpus, "train", vocab, store=pack(small_corpus, "train", tmp_path / "s"))
    samples = [LandmarkView(ds)[i] for i in (3, 0, 17)]
    plain = collate_landmarks(samples).with_features()
    padded = collate_landmarks(samples, pad_to_multiple=64).with_features()
    T = plain.features.shape[1]
    assert padded.features.shape[1] == -(-T // 64) * 64 > T
    assert torch.equal(padded.features[:, :T], plain.features) and not padded.features[:, T:].any()
    assert not padded.presence[:, T:].any() and torch.equal(padded.lengths, plain.lengths)
    dm = SignDataModule(small_corpus, batch_size=4, num_workers=0, store=True, store_dir=str(tmp_path / "s"),
                        pad_to_multiple=32)
    dm.vocab = vocab
    assert all(b.points.shape[1] % 32 == 0 for b in dm.train_dataloader())
    with pytest.raises(ValueError, match="pad_to_multiple"):
        SignDataModule(small_corpus, pad_to_multiple=0)


def test_num_workers_auto_is_one_per_usable_core_up_to_8():
    import os

    from sign_ctc.data.datamodule import resolve_workers

    assert resolve_workers("auto") == max(1, min(8, len(os.sched_getaffinity(0))))
    assert resolve_workers(0) == 0 and resolve_workers(3) == 3
    for bad in (-1, "four", 2.5, True):
        with pytest.raises(ValueError, match="num_workers"):
            resolve_workers(bad)


def test_loader_workers_hand_over_batches_in_shared_memory_equal_to_the_main_process(small_corpus, tmp_path):
    """Batches a loader worker builds (in shared memory, data/dataset.py: no copy to send them) equal those
    built in the main process."""
    from sign_ctc.data.datamodule import SignDataModule

    batches = {}
    for workers in (0, 1):
        dm = SignDataModule(small_corpus, eval_batch_size=4, num_workers=workers, store=True,
                            store_dir=str(tmp_path / "store"))
        batches[workers] = list(dm.split_batches("dev"))
    assert len(batches[0]) == len(batches[1]) == 3
    for a, b in zip(batches[0], batches[1]):
        a, b = a.with_features(), b.with_features()
        assert a.ids == b.ids and torch.equal(a.features, b.features) and torch.equal(a.presence, b.presence)
        assert torch.equal(a.lengths, b.lengths)
