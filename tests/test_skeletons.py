"""Every skeleton that names its points reads into the 543-point layout, by name, nothing invented.

Real files (tests/data, see its README): full Holistic (543 / 576 points), refined face (586),
pose-format's reduced Holistic (178), OpenPose BODY_25 + face + hands (137) and a hand-only file (21).
"""

from __future__ import annotations

import numpy as np
import pytest

from sign_ctc.features import skeletons
from sign_ctc.features.layout import NUM_POINTS, PARTS, RAW_PARTS
from sign_ctc.features.pose_io import PoseFileError, read_pose, read_pose_counted
from tests.helpers import DATA

FACE0 = RAW_PARTS["face"][0]
L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST = 11, 12, 15, 16
L_HAND_WRIST, R_HAND_WRIST = RAW_PARTS["left_hand"][0], RAW_PARTS["right_hand"][0]

# name, frames, skeleton, parts present in every frame, parts never present (the rest: some frames)
REAL = [
    ("25October_2010_Monday_tagesschau-17.pose", 86, "mediapipe_holistic", {"pose", "face"}, set()),
    ("signer_holistic_97f.pose", 97, "mediapipe_holistic", {"pose", "face"}, set()),
    ("signer_refined_face_18f.pose", 18, "mediapipe_holistic", {"pose", "face", "left_hand"}, set()),
    ("signer_reduced_holistic_97f.pose", 97, "mediapipe_holistic_reduced", {"pose", "face"}, set()),
    ("openpose_93f.pose", 93, "openpose_body25", {"pose", "face"}, set()),
    ("right_hand_only_170f.pose", 170, "mediapipe_hands", set(), {"pose", "face", "left_hand"}),
]


def _header_of(path):
    from pose_format import Pose

    pose = Pose.read(path.read_bytes())
    return pose, [(c.name, list(c.points)) for c in pose.header.components]


@pytest.mark.parametrize("name,frames,skeleton,always,never", REAL)
def test_real_files_read_into_the_layout(name, frames, skeleton, always, never):
    lm, nonfinite = read_pose_counted(DATA / name)
    assert lm.points.shape == (frames, NUM_POINTS, 3) and lm.presence.shape == (frames, len(PARTS))
    assert lm.skeleton == skeleton and nonfinite == 0 and np.isfinite(lm.points).all()
    for i, part in enumerate(PARTS):
        rate = lm.presence[:, i].mean()
        if part in always:
            assert rate == 1.0, part
        elif part in never:
            assert rate == 0.0, part
        else:  # hands come and go in these clips
            assert 0.3 < rate < 1.0, (part, rate)
        # an absent part has no coordinate at all
        assert not lm.points[~lm.presence[:, i], slice(*RAW_PARTS[part])].any(), part
    # points the skeleton does not have are 0 in every frame
    _, header = _header_of(DATA / name)
    lacks = ~skeletons.resolve(header).available
    assert not lm.points[:, lacks].any()
    # detected x / y are unit image coordinates (MediaPipe also guesses some unseen points outside the frame)
    xy = lm.points[..., :2][(lm.points[..., :2] != 0).any(-1)]
    inside = ((xy >= 0) & (xy <= 1)).all(-1).mean()
    assert len(xy) and inside > 0.95 and xy.min() > -0.1


def test_reduced_holistic_equals_the_full_file_at_its_points_and_lacks_the_rest():
    full = read_pose(DATA / "signer_holistic_97f.pose")
    reduced = read_pose(DATA / "signer_reduced_holistic_97f.pose")
    _, header = _header_of(DATA / "signer_reduced_holistic_97f.pose")
    has = skeletons.resolve(header).available
    coverage = {p: int(has[slice(*RAW_PARTS[p])].sum()) for p in PARTS}
    assert coverage == {"pose": 8, "left_hand": 21, "right_hand": 21, "face": 128}
    assert np.flatnonzero(has[:33]).tolist() == [11, 12, 13, 14, 15, 16, 23, 24]  # shoulders, elbows, wrists, hips
    assert np.array_equal(reduced.points[:, has], full.points[:, has])
    assert np.array_equal(reduced.presence, full.presence)
    assert not reduced.points[:, ~has].any() and full.points[:, ~has].any()


def test_name_tables_are_mediapipes_own():
    """The hard-coded MediaPipe names and the reduced face's contour set are MediaPipe's."""
    holistic = pytest.importorskip("mediapipe.python.solutions.holistic")
    assert list(skeletons.MEDIAPIPE_POSE_POINTS) == holistic.PoseLandmark._member_names_
    assert list(skeletons.MEDIAPIPE_HAND_POINTS) == holistic.HandLandmark._member_names_
    contours = {p for edge in holistic.FACEMESH_CONTOURS for p in edge}
    assert skeletons.FACE_CONTOUR_POINTS == contours


def test_openpose_name_tables_are_pose_formats_own():
    """Every BODY_25 joint is mapped or knowingly left out; hand and face names are pose-format's OpenPose names."""
    from pose_format.utils import openpose

    assert set(skeletons.OPENPOSE_BODY_TO_MEDIAPIPE) | skeletons.OPENPOSE_BODY_UNMAPPED == set(openpose.BODY_POINTS)
    assert len(openpose.BODY_POINTS) == 25 and skeletons.BODY25_ONLY <= set(openpose.BODY_POINTS)
    assert list(skeletons.OPENPOSE_HAND_POINTS) == openpose.HAND_POINTS
    assert set(skeletons.OPENPOSE_FACE_TO_MEDIAPIPE) <= set(openpose.FACE_POINTS) and len(openpose.FACE_POINTS) == 70
    # the 68-point numbering is in the names: the mapped points are the chin, nose, eyes and lips
    numbers = sorted(int(n.split("_")[1]) for n in skeletons.OPENPOSE_FACE_TO_MEDIAPIPE)
    assert numbers == [8, 27, 30, 33, *range(36, 48), 48, 51, 54, 57, 60, 62, 64, 66]


def test_refined_face_keeps_the_first_468_mesh_points():
    from pose_format import Pose

    pose = Pose.read((DATA / "signer_refined_face_18f.pose").read_bytes())
    lm = read_pose(DATA / "signer_refined_face_18f.pose")
    names = [c.name for c in pose.header.components]
    off = sum(len(c.points) for c in pose.header.components[: names.index("FACE_LANDMARKS")])
    raw = np.asarray(pose.body.data)[:, 0, off : off + 468, :2] / [pose.header.dimensions.width,
                                                                   pose.header.dimensions.height]
    assert np.allclose(lm.points[:, FACE0 : FACE0 + 468, :2], raw, atol=1e-6)


def _sides(lm):
    """Per pose frame: x offsets from the shoulder midpoint in shoulder widths, and the shoulder width."""
    ok = lm.presence[:, 0]
    pts = lm.points[ok][:, :, :2]
    mid = (pts[:, L_SHOULDER] + pts[:, R_SHOULDER]) / 2
    width = np.linalg.norm(pts[:, L_SHOULDER] - pts[:, R_SHOULDER], axis=-1)
    return (pts - mid[:, None]) / width[:, None, None], width


@pytest.mark.parametrize("name", ["openpose_93f.pose", "signer_holistic_97f.pose"])
def test_left_is_the_persons_left_and_the_body_is_upright(name):
    """Both signers face the camera: the person's left shoulder, elbow, eye and ear are on the image's right
    (larger x) in MediaPipe's convention, for the OpenPose file too; the head is above the shoulders."""
    lm = read_pose(DATA / name)
    rel, width = _sides(lm)
    assert (width > 0.05).all()  # a real shoulder width in unit coordinates, every frame
    assert (rel[:, L_SHOULDER, 0] > 0).all() and (rel[:, R_SHOULDER, 0] < 0).all()
    for left, right in ((13, 14), (2, 5), (7, 8)):  # elbows, eyes, ears
        assert np.median(rel[:, left, 0]) > 0.03 and np.median(rel[:, right, 0]) < -0.03, (left, right)
    assert np.median(rel[:, 0, 1]) < -0.3  # nose above the shoulders (y grows downward)
    # each hand's wrist sits on its own side's body wrist, a shoulder width from the other one
    for hand, part, own, other in ((L_HAND_WRIST, 1, L_WRIST, R_WRIST), (R_HAND_WRIST, 2, R_WRIST, L_WRIST)):
        ok = lm.presence[:, part] & lm.presence[:, 0] & (lm.points[:, own, :2] != 0).any(-1)
        assert ok.sum() >= 20
        shoulders = np.linalg.norm(lm.points[ok, L_SHOULDER, :2] - lm.points[ok, R_SHOULDER, :2], axis=-1)
        near = np.linalg.norm(lm.points[ok, hand, :2] - lm.points[ok, own, :2], axis=-1) / shoulders
        far = np.linalg.norm(lm.points[ok, hand, :2] - lm.points[ok, other, :2], axis=-1) / shoulders
        assert np.median(near) < 0.2 and np.median(far) > 0.6


def _face_shape(lm, mesh):
    """Median over frames of the given mesh points, centred and in units of the outer eye-corner distance."""
    pts = lm.points[lm.presence[:, 3]][..., :2]
    iod = np.linalg.norm(pts[:, FACE0 + 263] - pts[:, FACE0 + 33], axis=-1)
    sel = pts[:, FACE0 + mesh]
    return np.median((sel - sel.mean(1, keepdims=True)) / iod[:, None, None], 0)


def test_openpose_face_points_land_where_mediapipe_puts_the_same_landmarks():
    """The 24 mapped OpenPose face points form the same face as those mesh points of a real Holistic file
    (another signer): every point within 0.3 eye-corner distances, while swapping two mapped points
    (e.g. the mouth corners, 0.54 apart) would move them further than that."""
    mesh = np.array(sorted(skeletons.OPENPOSE_FACE_TO_MEDIAPIPE.values()))
    assert len(mesh) == 24
    openpose = _face_shape(read_pose(DATA / "openpose_93f.pose"), mesh)
    holistic = _face_shape(read_pose(DATA / "signer_holistic_97f.pose"), mesh)
    gap = np.linalg.norm(openpose - holistic, axis=-1)
    assert gap.max() < 0.3, dict(zip(mesh.tolist(), gap.round(2).tolist()))
    corners = [mesh.tolist().index(61), mesh.tolist().index(291)]
    assert np.linalg.norm(holistic[corners[0]] - holistic[corners[1]]) > 2 * 0.3 - 0.1


def test_openpose_hand_presence_follows_its_confidence():
    """Frames where OpenPose reports a hand only with its ~0.01 'nothing here' confidence read absent;
    frames with a hand keep every point it located (no zero inside a present hand)."""
    pose, _ = _header_of(DATA / "openpose_93f.pose")
    conf = np.asarray(pose.body.confidence)[:, 0]
    lm = read_pose(DATA / "openpose_93f.pose")
    for part, start in ((1, 25 + 70), (2, 25 + 70 + 21)):
        hand_conf = conf[:, start : start + 21]
        mean = hand_conf.sum(-1) / np.maximum((hand_conf > 0).sum(-1), 1)
        present = lm.presence[:, part]
        assert present.any() and (~present).any()
        assert (mean[~present] < skeletons.OPENPOSE_PART_MIN_CONFIDENCE).all()
        assert (mean[present] >= skeletons.OPENPOSE_PART_MIN_CONFIDENCE).all()
        lo, hi = RAW_PARTS[PARTS[part]]
        located = hand_conf[present] > 0
        assert ((lm.points[present, lo:hi, :2] != 0).any(-1) == located).all()


def _write(pose, path):
    with path.open("wb") as f:
        pose.write(f)
    return path


def test_coco18_body_reads_its_joints_and_lacks_the_feet(tmp_path):
    coco = ["Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee",
            "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar"]
    pose, header = _header_of(DATA / "openpose_93f.pose")
    names = [n for n, _ in header]
    path = _write(pose.get_components(names, {"pose_keypoints_2d": coco}), tmp_path / "coco18.pose")
    lm, body25 = read_pose(path), read_pose(DATA / "openpose_93f.pose")
    assert lm.skeleton == "openpose_coco18"
    joints = sorted(skeletons.OPENPOSE_BODY_TO_MEDIAPIPE[n] for n in coco if n in skeletons.OPENPOSE_BODY_TO_MEDIAPIPE)
    assert len(joints) == 17  # all but Neck
    assert np.array_equal(lm.points[:, joints], body25.points[:, joints])
    assert not lm.points[:, 29:33].any()  # heels and foot tips: BODY_25 only


def test_partial_holistic_file_reads_what_it_has(tmp_path):
    pose, _ = _header_of(DATA / "signer_holistic_97f.pose")
    path = _write(pose.get_components(["POSE_LANDMARKS", "LEFT_HAND_LANDMARKS"]), tmp_path / "partial.pose")
    lm, full = read_pose(path), read_pose(DATA / "signer_holistic_97f.pose")
    assert lm.skeleton == "mediapipe_holistic_partial"
    assert not lm.presence[:, [2, 3]].any()  # right hand, face: not in the file
    assert np.array_equal(lm.presence[:, :2], full.presence[:, :2])
    keep = np.r_[0:33, slice(*RAW_PARTS["left_hand"])]
    assert np.array_equal(lm.points[:, keep], full.points[:, keep])


def _synthetic(tmp_path, components, name):
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    comps = [PoseHeaderComponent(name=n, points=pts, limbs=[], colors=[(255, 0, 0)], point_format="XYC")
             for n, pts in components]
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=100, height=100, depth=0), components=comps)
    total = sum(len(p) for _, p in components)
    body = NumPyPoseBody(fps=25, data=np.ma.masked_array(np.ones((3, 1, total, 2), np.float32)),
                         confidence=np.ones((3, 1, total), np.float32))
    return _write(Pose(header, body), tmp_path / name)


def test_unknown_skeleton_is_one_error_naming_the_file_and_its_components(tmp_path):
    path = _synthetic(tmp_path, [("BODY", ["nose", "neck"]), ("LEFT_HAND", ["wrist"])], "wholebody.pose")
    with pytest.raises(PoseFileError, match=r"wholebody\.pose: no known skeleton.*BODY\(2\), LEFT_HAND\(1\)"):
        read_pose(path)


def test_known_component_with_unknown_point_names_and_mixed_families_are_refused(tmp_path):
    path = _synthetic(tmp_path, [("POSE_LANDMARKS", ["p0", "p1"])], "renamed.pose")
    with pytest.raises(PoseFileError, match=r"renamed\.pose: component POSE_LANDMARKS names none.*p0, p1"):
        read_pose(path)
    path = _synthetic(tmp_path, [("POSE_LANDMARKS", ["NOSE"]), ("hand_left_keypoints_2d", ["BASE"])], "mixed.pose")
    with pytest.raises(PoseFileError, match=r"mixed\.pose: the header mixes"):
        read_pose(path)
    path = _synthetic(tmp_path, [("POSE_WORLD_LANDMARKS", ["NOSE"])], "world.pose")
    with pytest.raises(PoseFileError, match=r"world\.pose: no point of the header has a place.*WORLD_LANDMARKS\(1\)"):
        read_pose(path)


def test_a_corpus_of_other_skeletons_packs_into_the_store(tmp_path, caplog):
    """The store reads through the same reader: reduced Holistic, OpenPose and hand-only files pack; the
    manifest counts the skeletons and the pack warns that the split mixes them."""
    import shutil

    from sign_ctc.data.corpus import Corpus, Sentence, write_phoenix2014
    from sign_ctc.data.store import FLOAT16_ATOL, pack

    names = ["signer_reduced_holistic_97f.pose", "openpose_93f.pose", "right_hand_only_170f.pose"]
    (tmp_path / "c" / "train").mkdir(parents=True)
    sentences = [Sentence(f"s{i}", ("A", "B")) for i in range(len(names))]
    for s, name in zip(sentences, names, strict=True):
        shutil.copy(DATA / name, tmp_path / "c" / "train" / f"{s.id}.pose")
    write_phoenix2014(tmp_path / "c" / "train.corpus.csv", sentences)
    with caplog.at_level("WARNING", logger="sign_ctc.data.sources"):
        store = pack(Corpus(tmp_path / "c"), "train", tmp_path / "store")
    assert store.ids == ["s0", "s1", "s2"]
    assert store.manifest["skeletons"] == {"mediapipe_hands": 1, "mediapipe_holistic_reduced": 1, "openpose_body25": 1}
    (warning,) = [r.getMessage() for r in caplog.records if "skeletons" in r.getMessage()]
    assert "train: the landmark files are of 3 skeletons" in warning and "openpose_body25 (e.g." in warning
    for i, name in enumerate(names):
        points, presence = store.read(i)
        lm = read_pose(DATA / name)
        assert np.array_equal(presence, lm.presence)
        assert np.abs(points.astype(np.float32) - lm.points).max() < FLOAT16_ATOL


def test_interpolation_fills_absent_frames_without_inventing_points():
    """missing=interpolate on an OpenPose file: a hand's absent frames are filled from its detections; a
    point located in only one of the two detections (here: one made unlocated) takes the nearer
    detection's value or stays 0, never a blend with the 0; points the skeleton lacks stay 0."""
    from sign_ctc.features.missing import fill_missing

    lm = read_pose(DATA / "openpose_93f.pose")
    col = PARTS.index("right_hand")
    seen = np.flatnonzero(lm.presence[:, col])
    gaps = np.flatnonzero(np.diff(seen) > 2)
    assert gaps.size  # the right hand disappears for a while and comes back
    before, after = seen[gaps[0]], seen[gaps[0] + 1]
    point = RAW_PARTS["right_hand"][0] + 8  # index finger tip
    pts = lm.points.copy()
    pts[after, point] = 0.0  # not located in the detection after the gap
    filled, presence = fill_missing(pts, lm.presence, "interpolate")
    assert presence[before:after, col].all()
    gap = filled[before + 1 : after, point]
    kept = (gap == pts[before, point]).all(-1)
    assert (kept | (gap == 0).all(-1)).all() and kept.any()
    # a point located in both detections is blended between them
    other = point - 1
    mid = filled[(before + after) // 2, other]
    assert np.allclose(mid, pts[before, other] + (pts[after, other] - pts[before, other])
                       * (((before + after) // 2 - before) / (after - before)), atol=1e-6)
    lacks = ~(lm.points != 0).any(-1).any(0)
    assert lacks.sum() >= 468 - 24 and not filled[:, lacks].any()
