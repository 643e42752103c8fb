"""Real Holistic `.pose` files (543, 576 and 586 points) load into the layout; bad files get clear errors.

Other skeletons (reduced Holistic, OpenPose, hands only, partial files): tests/test_skeletons.py.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from sign_ctc.features.layout import features_from_landmarks
from sign_ctc.features.pose_io import PoseFileError, pose_from_landmarks, read_pose, write_pose_atomic

DATA = Path(__file__).parent / "data"

REAL = [
    ("25October_2010_Monday_tagesschau-17.pose", 86),  # 543 points, PHOENIX-2014-T
    ("signer_holistic_97f.pose", 97),  # 576 points (with POSE_WORLD)
    ("signer_refined_face_18f.pose", 18),  # 586 points (refined face 478)
    ("signer_refined_face_5f.pose", 5),
]


@pytest.mark.parametrize("name,frames", REAL)
def test_real_pose_files_load_into_the_feature_layout(name, frames):
    lm = read_pose(DATA / name)
    assert lm.points.shape == (frames, 543, 3) and lm.presence.shape == (frames, 4)
    assert np.isfinite(lm.points).all()
    # unit coordinates: pixel x / width, y / height (pose points of an on-screen signer)
    pose_xy = lm.points[lm.presence[:, 0], :33, :2]
    assert 0.2 < np.median(pose_xy) < 0.9
    feats = features_from_landmarks(torch.from_numpy(lm.points), torch.from_numpy(lm.presence))
    assert feats.shape == (frames, 6516) and torch.isfinite(feats).all()


def test_phoenix_sample_detection_rates_match_its_readme():
    rates = read_pose(DATA / "25October_2010_Monday_tagesschau-17.pose").detection_rates()
    assert rates["pose"] == 1.0 and rates["face"] == 1.0
    assert abs((1 - rates["left_hand"]) - 0.57) < 0.01  # "left hand undetected in ~57% of frames"
    assert abs((1 - rates["right_hand"]) - 0.51) < 0.01


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "half.pose"
    path.write_bytes((DATA / "signer_refined_face_5f.pose").read_bytes()[:300])
    with pytest.raises(PoseFileError, match="half.pose"):
        read_pose(path)


def test_write_read_round_trip(tmp_path):
    lm = read_pose(DATA / "25October_2010_Monday_tagesschau-17.pose")
    path = tmp_path / "out" / "x.pose"
    write_pose_atomic(pose_from_landmarks(lm, 210, 260), path)
    back = read_pose(path)
    assert np.abs(back.points - lm.points).max() < 1e-6
    assert (back.presence == lm.presence).all()
    assert not list(path.parent.glob("*.tmp"))
