"""The 6516-dim layout: named slices, the temporal definition, channel presence."""

import numpy as np
import pytest
import torch

from sign_ctc.features import layout as L


def test_dims_and_slices():
    assert (L.STATIC_DIM, L.TEMPORAL_DIM, L.FEATURE_DIM) == (1629, 4887, 6516)
    sizes = {k: s.stop - s.start for k, s in L.MODALITIES.items()}
    assert sizes == {"pose": 99, "hands": 126, "face": 1404, "temporal": 4887}
    assert L.SLICES["left_hand"] == slice(99, 162) and L.SLICES["right_hand"] == slice(162, 225)
    assert L.SLICES["face"] == slice(225, 1629)


def test_static_order_takes_points_from_the_right_parts():
    lm = torch.zeros(1, 543, 3)
    lm[0, :, 0] = torch.arange(543, dtype=torch.float32)  # x = raw point index
    static = L.static_from_landmarks(lm)[0].view(-1, 3)[:, 0]
    assert static[0] == 0 and static[32] == 32  # pose 0..32
    assert static[33] == 501 and static[53] == 521  # left hand
    assert static[54] == 522 and static[74] == 542  # right hand
    assert static[75] == 33 and static[-1] == 500  # face


def test_temporal_definition_exact():
    T = 7
    s = torch.arange(T, dtype=torch.float32)[:, None].pow(2).expand(T, L.STATIC_DIM)  # s[t] = t^2
    temporal = L.temporal_from_static(s)
    vel, acc, disp = temporal[:, :1629], temporal[:, 1629:3258], temporal[:, 3258:]
    t = torch.arange(T, dtype=torch.float32)
    held = lambda k: torch.clamp(t - k, min=0) ** 2  # noqa: E731 - the first frame is held
    assert torch.equal(vel[:, 0], t**2 - held(1))
    assert torch.equal(acc[:, 0], t**2 - 2 * held(1) + held(2))
    assert torch.equal(disp[:, 0], t**2 - held(4))


def test_channel_presence_masks_temporal_channels_that_read_a_missing_frame():
    presence = torch.ones(8, 4, dtype=torch.bool)
    presence[3, 1] = False  # left hand missing at frame 3
    mask = L.channel_presence(presence)
    lh = L.SLICES["left_hand"]
    vel = slice(1629 + lh.start, 1629 + lh.stop)
    disp = slice(4887 + lh.start, 4887 + lh.stop)
    assert not mask[3, lh].any() and mask[4, lh].all()
    assert not mask[4, vel].any() and mask[5, vel].all()  # v[4] reads frame 3
    assert not mask[7, disp].any() and mask[6, disp].all()  # d[7] reads frame 3
    assert mask[:, L.SLICES["pose"]].all()


def test_features_from_landmarks_zero_where_absent():
    rng = np.random.default_rng(0)
    lm = torch.from_numpy(rng.random((10, 543, 3), dtype=np.float32))
    presence = torch.ones(10, 4, dtype=torch.bool)
    presence[:, 2] = False  # right hand never detected
    feats = L.features_from_landmarks(lm, presence)
    assert feats.shape == (10, 6516)
    assert torch.isfinite(feats).all()
    assert (feats[:, L.SLICES["right_hand"]] == 0).all()


def test_leading_blocks_alone_equal_the_whole_layouts_leading_channels():
    """A net that reads only the static block (the default student) gets exactly the whole layout's first
    1629 channels without the temporal blocks being computed; any other width is refused."""
    g = torch.Generator().manual_seed(3)
    points = torch.rand(2, 23, L.NUM_POINTS, 3, generator=g)
    presence = torch.rand(2, 23, 4, generator=g) > 0.3
    whole = L.features_from_landmarks(points, presence)
    for blocks in (1, 2, 4):
        width = blocks * L.STATIC_DIM
        part = L.features_from_landmarks(points, presence, width)
        assert part.shape == (2, 23, width) and torch.equal(part, whole[..., :width])
    for bad in (0, 100, L.FEATURE_DIM + L.STATIC_DIM):
        with pytest.raises(ValueError, match="multiple of 1629"):
            L.features_from_landmarks(points, presence, bad)
