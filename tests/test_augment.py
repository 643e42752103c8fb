"""Pose augmentation: geometry, presence, CTC feasibility, determinism, mirror, and the training loader."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sign_ctc.data.augment import PoseAugmentation, ctc_min_outputs, sample_rng, sample_seed, transform_rng
from sign_ctc.data.augmentation.affine import Affine, affine_matrix, apply_affine
from sign_ctc.data.augmentation.base import POINT_PART
from sign_ctc.data.augmentation.hand_dropout import HandDropout
from sign_ctc.data.augmentation.mirror import FACE_MIDLINE, MIRROR_POINTS, face_mirror_permutation, mirror
from sign_ctc.data.augmentation.temporal import TimeResample, resample
from sign_ctc.data.collate import collate_landmarks
from sign_ctc.features.layout import PARTS, RAW_PARTS

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_YAML = Path(__file__).resolve().parents[1] / "sign_ctc" / "conf" / "augmentation" / "default.yaml"
# The shrunk synthetic corpus of conftest.small_corpus, with the loaders' default num_workers (2).
CORPUS = ["data.corpus.train=48", "data.corpus.dev=12", "data.corpus.test=12", "data.batch_size=8",
          "data.eval_batch_size=12"]
POSE, LEFT, RIGHT, FACE = (PARTS.index(p) for p in ("pose", "left_hand", "right_hand", "face"))
# Every operation of conf/augmentation/default.yaml off: what the tests switch on one at a time.
OFF = ["transforms.mirror.p=0", "transforms.affine.rotation=0", "transforms.affine.shear=0",
       "transforms.affine.scale=[1,1]", "transforms.affine.translate=0", "transforms.time.time_scale=[1,1]",
       "transforms.time.frame_dropout=0", "transforms.jitter.std=0", "transforms.hand_dropout.p=0"]


def default_augmentation(*overrides: str) -> PoseAugmentation:
    """conf/augmentation/default.yaml with dotted overrides (``transforms.jitter.std=0.02``), instantiated."""
    cfg = OmegaConf.merge(OmegaConf.load(DEFAULT_YAML), OmegaConf.from_dotlist(list(overrides)))
    return hydra.utils.instantiate(cfg)


def landmarks(T: int = 40, seed: int = 0, float16: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Random points in the unit square (on the store's float16 grid) with parts missing as 0."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.05, 0.95, (T, 543, 3)).astype(np.float32)
    presence = rng.random((T, 4)) < 0.7
    presence[:, POSE] |= np.arange(T) % 3 != 0
    points[~presence[:, POINT_PART]] = 0.0
    if float16:
        points = points.astype(np.float16).astype(np.float32)
    return points, presence


def pairwise(xy: np.ndarray) -> np.ndarray:
    return np.linalg.norm(xy[:, None] - xy[None], axis=-1)


def test_face_mirror_pairs_match_mediapipe_topology_and_a_real_face():
    from mediapipe.python.solutions import face_mesh_connections as fm

    perm = face_mirror_permutation()
    assert np.array_equal(perm[perm], np.arange(468))
    assert np.flatnonzero(perm == np.arange(468)).tolist() == list(FACE_MIDLINE)  # 28 points on the midline
    assert (perm[33], perm[263], perm[61], perm[1]) == (263, 33, 291, 1)  # eye corners, mouth corners, nose tip

    def edges(conns, p=np.arange(468)):
        return {frozenset((int(p[a]), int(p[b]))) for a, b in conns}

    assert edges(fm.FACEMESH_LEFT_EYE, perm) == edges(fm.FACEMESH_RIGHT_EYE)
    assert edges(fm.FACEMESH_LEFT_EYEBROW, perm) == edges(fm.FACEMESH_RIGHT_EYEBROW)
    assert edges(fm.FACEMESH_LIPS, perm) == edges(fm.FACEMESH_LIPS)
    assert edges(fm.FACEMESH_FACE_OVAL, perm) == edges(fm.FACEMESH_FACE_OVAL)
    tess = edges(fm.FACEMESH_TESSELATION)
    # 1316 of the 1322 mesh edges map onto edges (6 quads are split along the other diagonal on one
    # side); a random relabelling keeps ~20.
    assert len(tess) == 1322 and len(edges(fm.FACEMESH_TESSELATION, perm) & tess) == 1316
    assert len(edges(fm.FACEMESH_TESSELATION, np.random.default_rng(0).permutation(468)) & tess) < 40

    # Real MediaPipe Holistic output: paired points share their height, and their midpoint lies on the midline.
    from sign_ctc.features.pose_io import read_pose

    lm = read_pose(DATA / "signer_holistic_97f.pose")
    face = lm.points[lm.presence[:, FACE]][:, slice(*RAW_PARTS["face"]), :2]
    height = np.ptp(face[..., 1], axis=1)[:, None]
    dy = np.abs(face[:, :, 1] - face[:, perm, 1]) / height
    midline = face[:, list(FACE_MIDLINE), 0].mean(axis=1, keepdims=True)
    dx = np.abs((face[:, :, 0] + face[:, perm, 0]) / 2 - midline) / height
    assert len(face) == 97 and dy.mean() < 0.01 and dx.mean() < 0.015  # measured 0.005, 0.009
    assert np.abs(face[:, :, 0] - midline).mean() / height.mean() > 0.1  # vs 0.11 for the points themselves


def test_mirror_twice_is_identity_and_exchanges_sides():
    points, presence = landmarks()
    once, p1 = mirror(points, presence)
    twice, p2 = mirror(once, p1)
    assert np.array_equal(twice, points) and np.array_equal(p2, presence)  # exactly, on the float16 grid
    assert np.array_equal(p1[:, [POSE, LEFT, RIGHT, FACE]], presence[:, [POSE, RIGHT, LEFT, FACE]])
    lh, rh = slice(*RAW_PARTS["left_hand"]), slice(*RAW_PARTS["right_hand"])
    seen = presence[:, RIGHT]
    assert np.array_equal(once[seen][:, lh, 0], 1 - points[seen][:, rh, 0])
    assert np.array_equal(once[seen][:, lh, 1:], points[seen][:, rh, 1:])
    assert not once[~presence[:, RIGHT]][:, lh].any()  # a missing right hand is a missing left hand, 0
    pose = presence[:, POSE]
    assert np.array_equal(once[pose][:, 11, 0], 1 - points[pose][:, 12, 0])  # shoulders
    assert np.array_equal(once[pose][:, 0, 0], 1 - points[pose][:, 0, 0])  # the nose stays the nose
    assert np.array_equal(MIRROR_POINTS[MIRROR_POINTS], np.arange(543))
    # Arbitrary float32 (off the float16 grid): within one rounding of 1 - x.
    raw, pres = landmarks(float16=False)
    assert np.abs(mirror(*mirror(raw, pres))[0] - raw).max() <= 2**-24


def test_rotation_keeps_distances_and_scale_multiplies_them_about_the_centre():
    points, presence = landmarks()
    centre = np.array([0.5, 0.45], dtype=np.float32)
    frame = int(np.flatnonzero(presence.all(axis=1))[0])
    xy = points[frame, :, :2]

    rotated = apply_affine(points, presence, affine_matrix(13.0, 0.0, (1.0, 1.0)), centre)
    np.testing.assert_allclose(pairwise(rotated[frame, :, :2]), pairwise(xy), atol=2e-6)
    # Anisotropic scale then rotation: distances are those of the scaled points (scale undone by the rotation).
    s = np.array([0.85, 1.15], dtype=np.float32)
    both = apply_affine(points, presence, affine_matrix(-11.0, 0.0, s), centre)
    np.testing.assert_allclose(pairwise(both[frame, :, :2]), pairwise((xy - centre) * s), atol=2e-6)
    # Isotropic scale by 1.2: every distance from the centre x 1.2, directions kept; z scaled too.
    scaled = apply_affine(points, presence, affine_matrix(0.0, 0.0, (1.2, 1.2)), centre, z_scale=1.2)
    np.testing.assert_allclose(scaled[frame, :, :2] - centre, 1.2 * (xy - centre), atol=1e-6)
    np.testing.assert_allclose(scaled[frame, :, 2], 1.2 * points[frame, :, 2], rtol=1e-6)
    for out in (rotated, both, scaled):  # missing points stay exactly 0
        assert np.array_equal(out[~presence[:, POINT_PART]], points[~presence[:, POINT_PART]])
        assert not out[~presence[:, POINT_PART]].any()


def test_the_drawn_rotation_is_within_range_and_all_off_changes_nothing():
    points, presence = landmarks()
    affine = Affine(rotation=15.0, shear=0.0, scale=(1.0, 1.0), translate=0.0)
    angles = []
    for k in range(20):
        params = affine.draw(transform_rng(sample_seed(1, 0, f"s{k}"), "affine"))
        out, pres = affine.apply(points, presence, params), presence
        angles.append(params.rotation)
        frame = int(np.flatnonzero(presence[:, POSE])[0])
        pose = slice(*RAW_PARTS["pose"])
        np.testing.assert_allclose(pairwise(out[frame, pose, :2]), pairwise(points[frame, pose, :2]), atol=2e-6)
        assert np.array_equal(pres, presence)
    assert max(np.abs(angles)) <= 15.0 and np.ptp(angles) > 10.0
    out, pres = default_augmentation(*OFF)(points, presence, 3, sample_rng(1, 0, "x"))
    np.testing.assert_allclose(out, points, atol=1e-6)
    assert np.array_equal(pres, presence)


def test_missing_parts_stay_missing_through_the_default_augmentation():
    points, presence = landmarks(T=60)
    aug = default_augmentation("transforms.hand_dropout.p=1.0")
    for k in range(10):
        out, pres = aug(points, presence, 4, sample_rng(7, k, "a"))
        assert out.dtype == np.float32 and out.shape == (len(pres), 543, 3) and pres.shape == (len(out), 4)
        missing = ~pres[:, POINT_PART]
        assert missing.any() and not out[missing].any()  # every undetected point is exactly 0
        # Each output frame's presence is an input frame's, or that with a hand dropped for a burst.
        hands = np.ones((4, 4), dtype=bool)  # nothing, left, right, both hands dropped
        hands[1, LEFT] = hands[2, RIGHT] = False
        hands[3, [LEFT, RIGHT]] = False
        allowed = {tuple(r & m) for r in presence for m in hands}
        assert all(tuple(r) in allowed for r in pres)


def test_hand_dropout_is_a_burst_of_undetected_frames():
    points = np.random.default_rng(0).uniform(0.05, 0.95, (50, 543, 3)).astype(np.float32)
    presence = np.ones((50, 4), dtype=bool)
    aug = PoseAugmentation({"hand_dropout": HandDropout(p=1.0, frames=(4, 16))})
    out, pres = aug(points, presence, 2, sample_rng(3, 0, "h"))
    for col, part in ((LEFT, "left_hand"), (RIGHT, "right_hand")):
        gone = np.flatnonzero(~pres[:, col])
        assert 4 <= len(gone) <= 16 and np.array_equal(gone, np.arange(gone[0], gone[-1] + 1))  # one burst
        assert not out[gone][:, slice(*RAW_PARTS[part])].any()
        kept = pres[:, col]
        np.testing.assert_allclose(out[kept][:, slice(*RAW_PARTS[part])], points[kept][:, slice(*RAW_PARTS[part])],
                                   atol=1e-6)


def test_resampling_interpolates_between_detections_and_keeps_gaps():
    T = 10
    points = np.zeros((T, 543, 3), dtype=np.float32)
    points[:, :, 0] = np.arange(T, dtype=np.float32)[:, None] / 10
    presence = np.ones((T, 4), dtype=bool)
    presence[4:6, LEFT] = False
    points[4:6, slice(*RAW_PARTS["left_hand"])] = 0.0
    out, pres = resample(points, presence, 20)
    # Pose: frame t of 20 sits at (t + 0.5) / 2 - 0.5 of the original time axis.
    np.testing.assert_allclose(out[5:15, 0, 0], ((np.arange(5, 15) + 0.5) / 2 - 0.5) / 10, atol=1e-6)
    assert not pres[8:12, LEFT].any() and pres[:7, LEFT].all() and pres[13:, LEFT].all()
    assert not out[~pres[:, LEFT]][:, slice(*RAW_PARTS["left_hand"])].any()


def test_ctc_min_outputs_matches_the_module():
    from sign_ctc.models.ctc_module import ctc_required_lengths

    rng = np.random.default_rng(0)
    targets = [rng.integers(2, 5, rng.integers(1, 9)) for _ in range(50)]
    flat = torch.tensor(np.concatenate(targets))
    want = ctc_required_lengths(flat, torch.tensor([len(t) for t in targets])).tolist()
    assert [ctc_min_outputs(t) for t in targets] == want


@pytest.mark.parametrize("strides, stride", [((2, 1, 2, 1), 4), ((2, 1, 2, 2), 8)])
def test_temporal_resampling_keeps_ctc_feasible(strides, stride):
    from sign_ctc.models.i3d import I3DTeacher

    net = I3DTeacher(num_classes=6, temporal_strides=strides)
    assert net.total_stride == stride
    time = TimeResample(time_scale=(0.5, 1.5), frame_dropout=0.3)
    aug = PoseAugmentation({"time": time}, temporal_stride=stride)

    def draw(seed: np.random.SeedSequence, T: int, need: int):
        return time.draw(transform_rng(seed, "time"), T, min(T, aug.min_frames(need)))

    rng = np.random.default_rng(1)
    needs, frames, lengths = [], [], []
    for k in range(400):  # short sentences with repeats, from exactly the feasible minimum upwards
        need = ctc_min_outputs(rng.integers(2, 4, rng.integers(1, 7)))
        T = int(net.output_lengths(torch.arange(1, 200)).ge(need).int().argmax()) + 1 + int(rng.integers(0, 3 * stride))
        params = draw(sample_seed(0, k, "s"), T, need)
        needs.append(need), frames.append(T), lengths.append(params.length)
    needs, frames, lengths = (torch.tensor(v) for v in (needs, frames, lengths))
    assert bool((net.output_lengths(frames) >= needs).all())
    assert bool((net.output_lengths(lengths) >= needs).all())
    floor = torch.minimum(frames, needs * stride)
    assert bool((lengths >= floor).all()) and int((lengths == floor).sum()) > 20  # the floor was hit often
    assert int((lengths < frames).sum()) > 50  # and samples were shortened where it allowed
    # Through the augmentation: the output really has the drawn length (its "time" generator drew it).
    points, presence = landmarks(T=int(frames[0]))
    assert aug(points, presence, int(needs[0]), sample_rng(0, 0, "s"))[0].shape[0] == int(lengths[0])
    # A sentence already too short for CTC is never shortened further.
    short = [draw(sample_seed(0, k, "t"), 9, need=5).length for k in range(100)]
    assert min(short) == 9 and max(short) >= 12


def test_same_seed_epoch_and_sample_give_the_same_augmentation():
    points, presence = landmarks()
    aug = default_augmentation()

    def run(seed: int, epoch: int, sid: str) -> tuple[np.ndarray, np.ndarray]:
        return aug(points, presence, 3, sample_rng(seed, epoch, sid))

    a, b = run(1234, 2, "s1"), run(1234, 2, "s1")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for other in (run(1234, 3, "s1"), run(1234, 2, "s2"), run(1235, 2, "s1")):
        assert other[0].shape != a[0].shape or np.abs(other[0] - a[0]).max() > 1e-3


def test_the_training_loader_is_augmented_and_dev_and_statistics_are_not(make_cfg, small_corpus):
    cfgs = {name: make_cfg(f"augmentation={name}", *CORPUS) for name in ("none", "default")}
    assert cfgs["default"].data.num_workers == "auto" and cfgs["none"].augmentation._target_.endswith("no_augmentation")
    dms = {name: hydra.utils.instantiate(cfg.data) for name, cfg in cfgs.items()}
    assert dms["default"].num_workers >= 1  # the default: loader worker processes (one per core, <= 8)
    assert dms["none"].augmentation is None and isinstance(dms["default"].augmentation, PoseAugmentation)

    def first(loader) -> dict:
        return next(iter(loader)).with_features()

    train = {name: dm.train_dataloader() for name, dm in dms.items()}
    plain, augmented = first(train["none"]), first(train["default"])
    assert plain.ids == augmented.ids  # the same sampler order
    n = min(plain.features.shape[1], augmented.features.shape[1])
    assert (augmented.features[:, :n] - plain.features[:, :n]).abs().max() > 1e-3
    # Epoch determinism with workers: epoch 0 again is identical; epoch 1 differs; 0 workers agree.
    again = first(train["default"])
    assert torch.equal(again.features, augmented.features) and torch.equal(again.presence,
                                                                                 augmented.presence)
    sampler = train["default"].batch_sampler
    sampler.set_epoch(1)
    epoch1 = first(train["default"])
    # The workers augmented epoch 1's samples as epoch 1: the view keyed (index, 1) gives that batch,
    # and each sample differs from its epoch-0 augmentation.
    view = train["default"].dataset
    ids = [s.id for s in view.dataset.sentences]
    rows = [ids.index(sid) for sid in epoch1.ids]
    assert torch.equal(collate_landmarks([view[(i, 1)] for i in rows]).with_features().features, epoch1.features)
    for i in rows:
        e0, e1 = view[(i, 0)], view[(i, 1)]
        assert e0.points.shape != e1.points.shape or np.abs(e0.points - e1.points).max() > 1e-3
    dms["default"].num_workers = 0
    assert torch.equal(first(dms["default"].train_dataloader()).features, augmented.features)
    dms["default"].num_workers = 2
    # Dev batches and the normalization statistics' batches are the plain landmarks.
    dev = [(a.with_features(), b.with_features()) for a, b in zip(dms["none"].val_dataloader(), dms["default"].val_dataloader())]
    assert sum(len(a.ids) for a, _ in dev) == 12
    for dev_none, dev_aug in dev:
        assert dev_none.ids == dev_aug.ids and torch.equal(dev_none.features, dev_aug.features)
        assert torch.equal(dev_none.presence, dev_aug.presence)
    stats_none, stats_aug = first(dms["none"].split_batches("train")), first(dms["default"].split_batches("train"))
    assert torch.equal(stats_none.features, stats_aug.features)


def test_build_model_refuses_an_augmentation_stride_below_the_nets(make_cfg, small_corpus):
    from sign_ctc.run.build import build_datamodule, build_model

    short = make_cfg("augmentation=default", "model.net.temporal_strides=[2,1,2,2]", "normalization=none", *CORPUS)
    with pytest.raises(ValueError, match="set augmentation.temporal_stride=8"):
        build_model(short, build_datamodule(short))
    ok = make_cfg("augmentation=default", "augmentation.temporal_stride=8", "model.net.temporal_strides=[2,1,2,2]",
                  "normalization=none", *CORPUS)
    assert build_model(ok, build_datamodule(ok)).net.total_stride == 8


@pytest.mark.parametrize("name", ["signer_reduced_holistic_97f.pose", "openpose_93f.pose"])
def test_points_a_skeleton_lacks_stay_missing_through_augmentation(name):
    """Inside a detected part, the points a reduced Holistic or OpenPose file does not have read 0; mirror,
    the affine map, resampling and jitter leave them 0 (no invented coordinate) and move the others."""
    from sign_ctc.features.pose_io import read_pose

    lm = read_pose(DATA / name)
    lacks = ~(lm.points != 0).any(-1).any(0)  # never a value in the file
    assert lacks[: RAW_PARTS["pose"][1]].sum() >= 12 and lacks[slice(*RAW_PARTS["face"])].sum() >= 340
    aug = default_augmentation("transforms.mirror.p=1.0", "transforms.jitter.std=0.02",
                               "transforms.time.time_scale=[0.7,1.3]")
    for k in range(4):
        out, pres = aug(lm.points, lm.presence, 4, sample_rng(3, k, name))
        lost = ~(out != 0).any(-1).any(0)
        mirrored = lacks[MIRROR_POINTS]  # the mirror exchanges left and right points
        assert np.array_equal(lost, mirrored)
        assert pres[:, PARTS.index("pose")].all()
        shoulders = out[:, [11, 12], :2]  # present in every frame: moved, kept, and still in the picture
        assert (shoulders != 0).all() and 0 < shoulders.min() and shoulders.max() < 1.2
