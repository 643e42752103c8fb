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
from tests.helpers import DATA


@pytest.fixture(scope="module")
def signer():
    """A real signer (97 frames of MediaPipe Holistic): raw features [1, T, 6516] and presence [1, T, 4]."""
    lm = read_pose(DATA / "signer_holistic_97f.pose")
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


SKELETON_FILES = ["signer_holistic_97f.pose", "signer_refined_face_18f.pose", "signer_reduced_holistic_97f.pose",
                  "openpose_93f.pose", "right_hand_only_170f.pose"]


def _batch(lm, cut_shoulders: bool = False):
    presence = torch.from_numpy(lm.presence)[None]
    feats = features_from_landmarks(torch.from_numpy(lm.points)[None], presence)
    if cut_shoulders:
        feats = _without(feats, LEFT_SHOULDER, RIGHT_SHOULDER)
    return feats, presence


@pytest.mark.parametrize("name", SKELETON_FILES)
def test_every_skeleton_family_is_normalized_within_range(name):
    """Each real skeleton family: finite features inside the clip range, and a body width of the
    signer's size (never the 1e-3 floor that multiplied every coordinate by 1000)."""
    lm = read_pose(DATA / name)
    feats, presence = _batch(lm)
    lengths = torch.tensor([feats.shape[1]])
    _, width = body_frame(feats, presence, lengths, per_frame=True)
    assert float(width.min()) > 0.02, name  # hands only: the default frame (fitting refuses such a corpus)
    out = Normalizer("none", body_relative=True)(feats, presence, lengths)
    assert torch.isfinite(out).all() and float(out.abs().max()) <= 10.0


def test_a_model_learns_on_shoulderless_and_reduced_skeletons():
    """A tiny corpus of real files without shoulders (Holistic with them cut, pose-format's reduced
    Holistic with them cut, OpenPose with them cut): the student's CTC loss goes down."""
    from functools import partial

    from sign_ctc.data.batch import Batch
    from sign_ctc.models.ctc_module import CTCModule
    from sign_ctc.models.student import CTCStudent

    files = ["signer_holistic_97f.pose", "signer_reduced_holistic_97f.pose", "openpose_93f.pose"]
    parts = [_batch(read_pose(DATA / n), cut_shoulders=True) for n in files]
    T = max(f.shape[1] for f, _ in parts)
    feats = torch.zeros(len(parts), T, parts[0][0].shape[-1])
    presence = torch.zeros(len(parts), T, 4, dtype=torch.bool)
    for i, (f, p) in enumerate(parts):
        feats[i, : f.shape[1]], presence[i, : f.shape[1]] = f[0], p[0]
    lengths = torch.tensor([f.shape[1] for f, _ in parts])
    norm = Normalizer("global")
    norm.fit([Batch.unlabelled(feats, presence, lengths)])
    torch.manual_seed(0)
    net = partial(CTCStudent, modality_widths={"pose": 32, "hands": 32, "face": 32, "temporal": 32}, fusion_dim=64,
                  conv_channels=[64, 64], conv_strides=[2, 2], kernel_size=5, lstm_hidden=64, bidirectional=False,
                  dropout=0.0)
    module = CTCModule(net, norm, ["<blank>", "<unk>", "A", "B", "C"],
                       optimizer=partial(torch.optim.AdamW, lr=3e-3), aux_ctc_weight=0.0)
    module.log = lambda *a, **k: None
    batch = Batch(features=feats, presence=presence, lengths=lengths, targets=torch.tensor([2, 3, 4, 3, 2, 2, 4]),
                  target_lengths=torch.tensor([3, 2, 2]), ids=files)
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]


def test_a_skeleton_without_any_anchor_is_named_in_one_error():
    """A hands-only file has nothing to centre on: fitting body-relative statistics names it."""
    from sign_ctc.data.batch import Batch
    from sign_ctc.models.normalization import NoBodyAnchorError

    hands = read_pose(DATA / "right_hand_only_170f.pose")
    holistic = read_pose(DATA / "signer_holistic_97f.pose")
    parts = [_batch(hands), _batch(holistic)]
    T = max(f.shape[1] for f, _ in parts)
    feats = torch.zeros(2, T, parts[0][0].shape[-1])
    presence = torch.zeros(2, T, 4, dtype=torch.bool)
    for i, (f, p) in enumerate(parts):
        feats[i, : f.shape[1]], presence[i, : f.shape[1]] = f[0], p[0]
    batch = Batch(features=feats, presence=presence, lengths=torch.tensor([parts[0][0].shape[1], parts[1][0].shape[1]]),
                  ids=["hands_only_clip", "holistic_clip"], target_lengths=torch.zeros(2, dtype=torch.long))
    with pytest.raises(NoBodyAnchorError, match=r"1 training sample\(s\).*: hands_only_clip\. Train"):
        Normalizer("global").fit([batch])
    Normalizer("global", body_relative=False).fit([batch])  # without the body frame it has no need of one
