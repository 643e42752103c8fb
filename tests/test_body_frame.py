"""The body frame: anchors other than the shoulders, and a causal fallback that lets a stream
normalize exactly as the whole sentence (sign_ctc.models.normalization.body_frame)."""

from __future__ import annotations

import pytest
import torch

from sign_ctc.features.layout import features_from_landmarks
from sign_ctc.features.pose_io import read_pose
from sign_ctc.models.normalization import (
    LEFT_EAR,
    LEFT_EYE,
    LEFT_SHOULDER,
    RIGHT_EAR,
    RIGHT_EYE,
    RIGHT_SHOULDER,
    Normalizer,
    body_frame,
)
from tests.helpers import REAL


@pytest.fixture(scope="module")
def signer():
    """A real signer (97 frames of MediaPipe Holistic): raw features [1, T, 6516] and presence [1, T, 4]."""
    lm = read_pose(REAL / "signer_holistic_97f.pose")
    presence = torch.from_numpy(lm.presence)[None]
    return features_from_landmarks(torch.from_numpy(lm.points)[None], presence), presence


def _without(features: torch.Tensor, *points: int) -> torch.Tensor:
    out = features.clone()
    for p in points:
        out[..., 3 * p : 3 * p + 3] = 0.0
    return out


def test_the_ears_eyes_and_face_stand_in_for_missing_shoulders(signer):
    """Each fallback anchor, alone, places the body frame near where the shoulders put it on a real signer."""
    feats, presence = signer
    lengths = torch.tensor([feats.shape[1]])
    ref_c, ref_w = body_frame(feats, presence, lengths, per_frame=True)
    assert presence[0, :, 0].all() and float(ref_w.min()) > 0.05  # the signer's shoulders are in every frame
    cases = {
        "ears": _without(feats, LEFT_SHOULDER, RIGHT_SHOULDER),
        "eyes": _without(feats, LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_EAR, RIGHT_EAR),
    }
    no_pose_points = _without(feats, LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_EAR, RIGHT_EAR, LEFT_EYE, RIGHT_EYE)
    cases["face"] = no_pose_points
    for name, x in cases.items():
        c, w = body_frame(x, presence, lengths, per_frame=True)
        ratio = (w / ref_w)[0]
        offset = ((c - ref_c)[0, :, :2].norm(dim=-1) / ref_w[0])
        assert 0.6 < float(ratio.median()) < 1.6, (name, ratio.median())
        assert float(offset.median()) < 0.6, (name, offset.median())


def test_a_skeleton_without_shoulders_stays_in_range(signer):
    """Shoulders removed from a real file: no width near zero (the old 1e-3 floor scaled every
    coordinate by 1000), and body-relative coordinates of the size the shoulders give."""
    feats, presence = signer
    lengths = torch.tensor([feats.shape[1]])
    cut = _without(feats, LEFT_SHOULDER, RIGHT_SHOULDER)
    norm = Normalizer("none", body_relative=True, body_per_frame=True)
    full, shoulderless = norm(feats, presence, lengths), norm(cut, presence, lengths)
    hands = slice(99, 225)
    assert float(shoulderless.abs().max()) <= 10.0
    scale = shoulderless[..., hands].abs().max() / full[..., hands].abs().max()
    assert 0.5 < float(scale) < 2.0


def test_the_causal_fallback_never_reads_a_later_frame(signer):
    """Frames without an anchor hold the last anchored frame: changing later frames changes nothing before."""
    feats, presence = signer
    presence = presence.clone()
    presence[0, 10:20, 0] = False  # the pose lost for ten frames
    presence[0, 10:20, 3] = False
    T = feats.shape[1]
    lengths = torch.tensor([T])
    c, w = body_frame(feats, presence, lengths, per_frame=True)
    assert torch.equal(c[0, 10:20], c[0, 9:10].expand(10, -1)) and torch.equal(w[0, 10:20], w[0, 9].expand(10))
    moved = feats.clone()
    moved[0, 40:] += 0.1
    c2, w2 = body_frame(moved, presence, lengths, per_frame=True)
    assert torch.equal(c2[0, :40], c[0, :40]) and torch.equal(w2[0, :40], w[0, :40])
    assert not torch.equal(c2[0, 40:], c[0, 40:])
    # The sequence fallback (older checkpoints) takes the mean of the whole sentence instead.
    cs, _ = body_frame(feats, presence, lengths, per_frame=True, fallback="sequence")
    cs2, _ = body_frame(moved, presence, lengths, per_frame=True, fallback="sequence")
    assert not torch.equal(cs[0, 10:20], cs2[0, 10:20])


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_a_stream_normalizes_exactly_as_the_whole_sentence(signer, chunk):
    feats, presence = signer
    presence = presence.clone()
    presence[0, :5, 0] = False  # starts without a pose: the default frame until the first anchor
    presence[0, 30:41, 0] = False
    norm = Normalizer("none", body_relative=True, body_per_frame=True)
    whole = norm(feats, presence, torch.tensor([feats.shape[1]]))
    state, parts = None, []
    for start in range(0, feats.shape[1], chunk):
        out, state = norm.stream(feats[:, start : start + chunk], presence[:, start : start + chunk], state)
        parts.append(out)
    assert torch.equal(torch.cat(parts, 1), whole)


def test_normalizers_that_cannot_stream_say_why():
    assert Normalizer("global").streamable is None
    assert "per_sample" in Normalizer("per_sample").streamable
    assert "body_fallback" in Normalizer("global", body_fallback="sequence").streamable
    with pytest.raises(ValueError, match="body_per_frame"):
        Normalizer("none", body_per_frame=False).stream(torch.zeros(1, 1, 1629), torch.ones(1, 1, 4, dtype=torch.bool), None)
