"""The MediaPipe Holistic point order and the 6516-dim feature layout.

Raw landmarks follow pose-format's Holistic component order (543 points):
POSE 33 | FACE 468 | LEFT_HAND 21 | RIGHT_HAND 21, each point (x, y, z) in unit image
coordinates (x / width, y / height, MediaPipe's z).

Features per frame (6516 = 1629 static + 4887 temporal), in this order:

    pose 99 | left hand 63 | right hand 63 | face 1404 | temporal 4887

``static`` is the 1629 coordinates of the four parts above. ``temporal`` is three blocks of
1629 derived from the static vector ``s`` with the first frame held before the start
(``s[-k] = s[0]``):

    velocity      v[t] = s[t] - s[t-1]
    acceleration  a[t] = s[t] - 2 s[t-1] + s[t-2]
    displacement  d[t] = s[t] - s[t-4]      (about 160 ms at 25 fps)

A temporal channel is *present* only where every frame it reads had its part detected, so
a hand that appears after a gap never produces a huge fake velocity.
"""

from __future__ import annotations

import torch

LAYOUT_VERSION = "mp-holistic-6516-v1"

# Raw landmark order (pose-format Holistic).
RAW_PARTS: dict[str, tuple[int, int]] = {
    "pose": (0, 33),
    "face": (33, 501),
    "left_hand": (501, 522),
    "right_hand": (522, 543),
}
NUM_POINTS = 543

# Feature order of the parts, and of the presence vector [T, 4].
PARTS: tuple[str, ...] = ("pose", "left_hand", "right_hand", "face")
PART_DIMS: dict[str, int] = {p: (RAW_PARTS[p][1] - RAW_PARTS[p][0]) * 3 for p in PARTS}
STATIC_DIM = sum(PART_DIMS.values())  # 1629
TEMPORAL_LAGS: tuple[tuple[int, ...], ...] = ((0, 1), (0, 1, 2), (0, 4))  # velocity, acceleration, displacement
TEMPORAL_DIM = STATIC_DIM * len(TEMPORAL_LAGS)  # 4887
FEATURE_DIM = STATIC_DIM + TEMPORAL_DIM  # 6516


def _slices() -> dict[str, slice]:
    out: dict[str, slice] = {}
    start = 0
    for part in PARTS:
        out[part] = slice(start, start + PART_DIMS[part])
        start += PART_DIMS[part]
    out["hands"] = slice(out["left_hand"].start, out["right_hand"].stop)
    out["static"] = slice(0, STATIC_DIM)
    out["temporal"] = slice(STATIC_DIM, FEATURE_DIM)
    return out


SLICES: dict[str, slice] = _slices()
# The four modalities the model fuses, each a contiguous block of the 6516 features.
MODALITIES: dict[str, slice] = {k: SLICES[k] for k in ("pose", "hands", "face", "temporal")}

# Raw point indices in static-feature order (pose, left hand, right hand, face).
STATIC_POINT_ORDER = torch.cat([torch.arange(*RAW_PARTS[p]) for p in PARTS])


def static_from_landmarks(landmarks: torch.Tensor) -> torch.Tensor:
    """[..., 543, 3] raw landmarks -> [..., 1629] static features in layout order."""
    if landmarks.shape[-2:] != (NUM_POINTS, 3):
        raise ValueError(f"expected landmarks [..., {NUM_POINTS}, 3], got {tuple(landmarks.shape)}")
    return landmarks[..., STATIC_POINT_ORDER, :].flatten(-2)


def _lagged(x: torch.Tensor, lag: int) -> torch.Tensor:
    """x[t - lag] along dim -2 with the first frame held before the start."""
    if lag == 0:
        return x
    head = x[..., :1, :].expand(*x.shape[:-2], min(lag, x.shape[-2]), x.shape[-1])
    return torch.cat([head, x[..., : max(x.shape[-2] - lag, 0), :]], dim=-2)


def temporal_from_static(static: torch.Tensor) -> torch.Tensor:
    """[..., T, 1629] static -> [..., T, 4887] velocity | acceleration | displacement."""
    s1, s2, s4 = _lagged(static, 1), _lagged(static, 2), _lagged(static, 4)
    return torch.cat([static - s1, static - 2 * s1 + s2, static - s4], dim=-1)


def _part_slices() -> list[tuple[int, int, slice]]:
    """(block, part, channel slice) for every contiguous run of channels: 4 blocks x 4 parts."""
    groups = []
    for block in range(1 + len(TEMPORAL_LAGS)):
        for part_id, part in enumerate(PARTS):
            sl = SLICES[part]
            groups.append((block, part_id, slice(block * STATIC_DIM + sl.start, block * STATIC_DIM + sl.stop)))
    return groups


# Every feature channel belongs to exactly one (block, part) group; masks are per group, [.., T, 4, 4].
CHANNEL_GROUPS: list[tuple[int, int, slice]] = _part_slices()


def group_presence(presence: torch.Tensor) -> torch.Tensor:
    """[..., T, 4] part presence -> [..., T, 4 blocks, 4 parts]: the compact form of channel_presence."""
    presence = presence.bool()
    blocks = [presence]
    for lags in TEMPORAL_LAGS:
        mask = presence
        for lag in lags[1:]:
            mask = mask & _lagged(presence, lag)
        blocks.append(mask)
    return torch.stack(blocks, dim=-2)


# Group id (block * 4 + part) of every one of the 6516 channels.
CHANNEL_GROUP_INDEX = torch.cat([torch.full((sl.stop - sl.start,), block * len(PARTS) + part, dtype=torch.long)
                                 for block, part, sl in CHANNEL_GROUPS])


def channel_presence(presence: torch.Tensor) -> torch.Tensor:
    """[..., T, 4] part presence -> [..., T, 6516] presence of every feature channel."""
    groups = group_presence(presence).flatten(-2)
    return groups[..., CHANNEL_GROUP_INDEX.to(groups.device)]


def _held(n: int, lag: int, device: torch.device) -> torch.Tensor:
    """Frame indices t - lag with the first frame held before the start."""
    return (torch.arange(n, device=device) - lag).clamp_min(0)


def features_from_static(static: torch.Tensor, presence: torch.Tensor, width: int = FEATURE_DIM) -> torch.Tensor:
    """Static [..., T, 1629] + presence [..., T, 4] -> features [..., T, 6516], absent channels 0;
    ``width``: only the leading blocks (a multiple of 1629), for a net that reads only those (the
    default student reads the static block: the live path then skips three quarters of the work).

    The one feature derivation of the project (loaders, training on any device, predict, export).
    The four blocks are written straight into their columns and absent channels are zeroed per
    (block, part) group, which on a batch is ~6x faster than building the [..., T, 6516] mask of
    :func:`channel_presence`; the values are those of ``cat([s, temporal_from_static(s)])`` masked.
    Padded frames (presence False) come out 0, and no frame reads a later one, so a padded batch
    gives every sample exactly the features it has alone.
    """
    if width % STATIC_DIM or not 0 < width <= FEATURE_DIM:
        raise ValueError(f"feature width must be a multiple of {STATIC_DIM} up to {FEATURE_DIM}, got {width}")
    n_blocks = width // STATIC_DIM
    T = static.shape[-2]
    out = static.new_empty(*static.shape[:-1], width)
    out[..., :STATIC_DIM] = static
    lagged = {lag: static.index_select(-2, _held(T, lag, static.device)) for lag in (1, 2, 4)[: n_blocks - 1]}
    blocks = [out[..., STATIC_DIM * (k + 1) : STATIC_DIM * (k + 2)] for k in range(n_blocks - 1)]
    if n_blocks > 1:
        torch.sub(static, lagged[1], out=blocks[0])                      # velocity      s - s1
    if n_blocks > 2:
        torch.sub(static, 2 * lagged[1], out=blocks[1]).add_(lagged[2])  # acceleration  s - 2 s1 + s2
    if n_blocks > 3:
        torch.sub(static, lagged[4], out=blocks[2])                      # displacement  s - s4
    absent = ~group_presence(presence)  # [..., T, 4 blocks, 4 parts]
    for block, part, sl in CHANNEL_GROUPS[: n_blocks * len(PARTS)]:
        out[..., sl].masked_fill_(absent[..., block, part, None], 0.0)
    return out


def features_from_landmarks(landmarks: torch.Tensor, presence: torch.Tensor, width: int = FEATURE_DIM) -> torch.Tensor:
    """Raw landmarks [..., T, 543, 3] + part presence [..., T, 4] -> features [..., T, 6516] (or their
    leading ``width`` channels: :func:`features_from_static`)."""
    return features_from_static(static_from_landmarks(landmarks), presence, width)
