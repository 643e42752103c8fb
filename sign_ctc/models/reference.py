"""The reference model: the small conv + BiLSTM baseline every recipe is compared with.

Two temporal convolution blocks (Conv1d k=5 + BatchNorm + ReLU, then a k=3 stride-2 max-pool:
total stride 4, the teacher's) and a BiLSTM of 128 per direction, ~0.5M parameters, reading the
coordinates directly (no per-modality projections): the pose, both hands and a small face subset
(:data:`FACE_SUBSET`), plus the 4 part-presence flags. It is deliberately plain: on real signers it
never saw, a model of this size generalizes better than the 7.3M teacher (issue 26: 11.0% against
16.2% test WER on real webcam landmarks), so it is the bar the project's recipes must clear.
"Body-centred" comes from the one normalizer (``normalization.body_relative``) like every net's
input; the net only chooses the channels it reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sign_ctc.features.layout import PARTS, SLICES, STATIC_DIM
from sign_ctc.models.layers import Unit1d, mask_frames, out_len

# MediaPipe face-mesh indices (0-467) of the contours that carry signing information, 44 points:
# the outer lip contour (20: mouthing, mouth gestures), both eyebrows (2 x 10: questions, negation)
# and the 4 eye corners (the face's own frame: where the brows and lips sit relative to the eyes).
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
BROW_RIGHT = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
BROW_LEFT = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
EYE_CORNERS = (33, 133, 362, 263)
FACE_SUBSET: tuple[int, ...] = LIPS_OUTER + BROW_RIGHT + BROW_LEFT + EYE_CORNERS


def reference_channels(face_points: Sequence[int] = FACE_SUBSET) -> torch.Tensor:
    """Indices into the 1629 static features: pose (99), both hands (126), then x, y, z of each
    chosen face point (the face block of the layout is 468 points x 3)."""
    bad = [p for p in face_points if not 0 <= int(p) < 468]
    if bad:
        raise ValueError(f"face_points must be MediaPipe face-mesh indices 0-467, got {bad}")
    face = SLICES["face"].start + 3 * torch.as_tensor(list(face_points), dtype=torch.long)
    face = (face[:, None] + torch.arange(3)[None]).flatten()
    return torch.cat([torch.arange(SLICES["pose"].start, SLICES["pose"].stop),
                      torch.arange(SLICES["hands"].start, SLICES["hands"].stop), face])


class ReferenceNet(nn.Module):
    """``face_points``: face-mesh indices read (None: :data:`FACE_SUBSET`; empty: no face).
    ``use_presence``: the 4 part-presence flags are input channels (a zero then reads as "not
    detected", not "at the body centre")."""

    def __init__(self, num_classes: int, conv_channels: int = 96, kernel_size: int = 5, lstm_hidden: int = 128,
                 dropout: float = 0.1, face_points: Sequence[int] | None = None, use_presence: bool = True,
                 blank_bias: float | None = None):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (length-preserving padding), got {kernel_size}")
        points = FACE_SUBSET if face_points is None else tuple(face_points)
        self.register_buffer("channels", reference_channels(points), persistent=False)
        self.input_dim = STATIC_DIM  # reads the static block only: the temporal block is never normalized
        self.use_presence = use_presence
        cin = len(self.channels) + (len(PARTS) if use_presence else 0)
        self.convs = nn.ModuleList([Unit1d(cin, conv_channels, kernel_size),
                                    Unit1d(conv_channels, conv_channels, kernel_size)])
        self.pools = nn.ModuleList([nn.MaxPool1d(3, stride=2, padding=1) for _ in self.convs])
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(conv_channels, lstm_hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * lstm_hidden, num_classes)
        if blank_bias is not None:
            nn.init.constant_(self.classifier.bias[:1], blank_bias)

    @property
    def total_stride(self) -> int:
        return math.prod(p.stride for p in self.pools)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Exact number of output frames for input lengths (the CTC input lengths): ceil(n / 4)."""
        lengths = torch.as_tensor(lengths)
        for _ in self.pools:
            lengths = out_len(lengths, 3, 2, 1)
        return lengths

    def forward(self, x: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, >=1629] -> logits [B, T', C] and their lengths [B]. Padded frames are zeroed after
        every block, so a sample's output does not depend on what it was batched with."""
        h = x[..., self.channels]
        if self.use_presence:
            h = torch.cat([h, presence.to(h.dtype)], dim=-1)
        h = mask_frames(h.transpose(1, 2), lengths)
        n = lengths
        for conv, pool in zip(self.convs, self.pools):
            h = mask_frames(conv(h), n)
            n = out_len(n, 3, 2, 1)
            h = mask_frames(pool(h), n)
        h = self.dropout(h.transpose(1, 2))
        packed = pack_padded_sequence(h, n.cpu().clamp_min(1), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        return self.classifier(self.dropout(out)), n
