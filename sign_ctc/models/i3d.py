"""The I3D teacher: modality fusion, I3D stem, 1-D Inception blocks 3b-5c, BiLSTM, CTC classifier.

A 1-D (temporal) transcription of I3D (Carreira & Zisserman, 2017) over landmark features: the
stem is a k=7 temporal convolution and a max-pool, the Inception blocks keep I3D's branch widths,
and two further max-pools (after 3c and after 4f) set the temporal stride. The default total
stride is 4: stride 8 makes ~2.6% of PHOENIX-2014 training sentences too short for their glosses.
Padded frames are zeroed after every layer, so a sample's output does not depend on what it was
batched with, and :meth:`I3DTeacher.output_lengths` gives the exact CTC input length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sign_ctc.features.layout import MODALITIES
from sign_ctc.models.layers import ModalityFusion, Unit1d, ValidFrames, mask_frames, out_len

# I3D branch widths: (1x1, 3x3-reduce, 3x3, 3x3-reduce, 3x3, pool-proj)
INCEPTION_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3b": (64, 96, 128, 16, 32, 32),
    "3c": (128, 128, 192, 32, 96, 64),
    "4b": (192, 96, 208, 16, 48, 64),
    "4c": (160, 112, 224, 24, 64, 64),
    "4d": (128, 128, 256, 24, 64, 64),
    "4e": (112, 144, 288, 32, 64, 64),
    "4f": (256, 160, 320, 32, 128, 128),
    "5b": (256, 160, 320, 32, 128, 128),
    "5c": (384, 192, 384, 48, 128, 128),
}


class Inception1d(nn.Module):
    """``frames``: the valid-frame mask, applied between a reduce unit and its k=3 unit (BatchNorm's
    shift makes padded frames non-zero there, and the k=3 convolution would read them into the last
    real frames). ``masked_bn``: BatchNorm statistics over valid frames only."""

    def __init__(self, cin: int, widths: Sequence[int], frames: ValidFrames | None = None, masked_bn: bool = False):
        super().__init__()
        b0, b1r, b1, b2r, b2, b3 = widths
        bn_frames = frames if masked_bn else None
        self.frames = frames
        self.b0 = Unit1d(cin, b0, frames=bn_frames)
        self.b1 = nn.Sequential(Unit1d(cin, b1r, frames=bn_frames), Unit1d(b1r, b1, 3, frames=bn_frames))
        self.b2 = nn.Sequential(Unit1d(cin, b2r, frames=bn_frames), Unit1d(b2r, b2, 3, frames=bn_frames))
        self.b3 = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), Unit1d(cin, b3, frames=bn_frames))
        self.out_channels = b0 + b1 + b2 + b3

    def _masked(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.frames.mask if self.frames is not None else None
        if mask is None or mask.shape[-1] != x.shape[-1] or mask.shape[0] != x.shape[0]:
            return x
        return x * mask.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.b1[1](self._masked(self.b1[0](x)))
        b2 = self.b2[1](self._masked(self.b2[0](x)))
        return torch.cat([self.b0(x), b1, b2, self.b3(x)], dim=1)


class I3DTeacher(nn.Module):
    """``modalities``: feature blocks read (default all four). ``aux_ctc``: a second classifier on the
    convolutional output (before the BiLSTM), trained with its own CTC loss (VAC-style: it gives the
    convolutions a direct alignment signal). ``blank_bias``: initial classifier bias of the blank.
    ``residual``: each Inception block adds its input to the first channels of its output (a
    parameter-free shortcut: the widths never shrink), so the 9-block stack trains like a shallow one
    at first. ``drop_path``: stochastic depth (Huang et al., 2016) over those shortcuts: in training each
    sample skips block l of the L = 9 with probability ``drop_path * l / L`` (only its shortcut passes) and a
    kept block's output is scaled by 1 / (1 - p), so evaluation runs every block unscaled; a regularizer
    against a deep stack learning one signer's style (issue 26's ablation). The defaults are
    sign_ctc/conf/model/i3d.yaml's; a checkpoint written before ``aux_ctc`` and
    ``residual`` were on gets them off from :data:`sign_ctc.models.checkpoint.LEGACY_DEFAULTS`."""

    def __init__(self, num_classes: int, modality_widths: Mapping[str, int] | None = None,
                 fusion_dim: int = 256, lstm_hidden: int = 288, lstm_layers: int = 1, dropout: float = 0.1,
                 temporal_strides: Sequence[int] = (2, 1, 2, 1), use_presence: bool = True,
                 modalities: Sequence[str] = tuple(MODALITIES), aux_ctc: bool = True, blank_bias: float | None = None,
                 masked_bn: bool = False, residual: bool = True, drop_path: float = 0.0):
        super().__init__()
        self.residual = residual
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        if drop_path and not residual:
            raise ValueError("drop_path (stochastic depth) skips blocks along their shortcut: it needs residual=true")
        self.drop_path = float(drop_path)
        # The valid frames of the current stage (masks inside the Inception blocks, masked BatchNorm).
        self.frames = ValidFrames()
        frames = self.frames if masked_bn else None  # masked_bn: BatchNorm statistics over valid frames
        if len(temporal_strides) != 4 or any(s not in (1, 2) for s in temporal_strides):
            raise ValueError("temporal_strides = (stem conv, stem pool, pool after 3c, pool after 4f), each 1 or 2")
        widths = dict(modality_widths or {"pose": 64, "hands": 128, "face": 64, "temporal": 96})
        self.strides = tuple(int(s) for s in temporal_strides)
        self.fusion = ModalityFusion(widths, fusion_dim, dropout, use_presence, modalities)
        self.input_dim = self.fusion.input_dim  # feature channels read: the leading blocks of the layout
        self.stem_conv = Unit1d(fusion_dim, 64, 7, stride=self.strides[0], frames=frames)
        self.stem_pool = nn.MaxPool1d(3, stride=self.strides[1], padding=1)
        self.stem_units = nn.ModuleList([Unit1d(64, 64, 1, frames=frames), Unit1d(64, 192, 3, frames=frames)])
        self.blocks = nn.ModuleDict()
        cin = 192
        for name, w in INCEPTION_WIDTHS.items():
            self.blocks[name] = Inception1d(cin, w, frames=self.frames, masked_bn=masked_bn)
            cin = self.blocks[name].out_channels
        self.pool3 = nn.MaxPool1d(3, stride=self.strides[2], padding=1)
        self.pool4 = nn.MaxPool1d(3, stride=self.strides[3], padding=1)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(cin, lstm_hidden, num_layers=lstm_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if lstm_layers > 1 else 0.0)
        self.classifier = nn.Linear(2 * lstm_hidden, num_classes)
        self.aux_classifier = nn.Linear(cin, num_classes) if aux_ctc else None
        if blank_bias is not None:
            for head in (self.classifier, self.aux_classifier):
                if head is not None:
                    nn.init.constant_(head.bias[:1], blank_bias)

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Exact number of output frames for input lengths (the CTC input lengths)."""
        lengths = torch.as_tensor(lengths)
        lengths = out_len(lengths, 7, self.strides[0], 3)
        lengths = out_len(lengths, 3, self.strides[1], 1)
        lengths = out_len(lengths, 3, self.strides[2], 1)
        return out_len(lengths, 3, self.strides[3], 1)

    def _set_valid(self, n: torch.Tensor, T: int) -> None:
        """Tell the next stage's Inception blocks (and masked BatchNorms) which of its T frames are real.

        ``T`` is shape arithmetic, never ``int(tensor)``: a traced export (TorchScript, ONNX) then keeps
        the time axis dynamic instead of baking in the example's length (:mod:`sign_ctc.models.export`)."""
        self.frames.mask = (torch.arange(T, device=n.device)[None, :] < n[:, None])[:, None, :]

    @staticmethod
    def _kept(batch: int, p: float, like: torch.Tensor) -> torch.Tensor:
        """[B, 1, 1]: 0 for the samples that skip the block (probability ``p``), else 1 / (1 - p)."""
        keep = torch.empty(batch, 1, 1, device=like.device, dtype=like.dtype).bernoulli_(1.0 - p)
        return keep / (1.0 - p)

    def forward(self, x: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                return_aux: bool = False) -> tuple[torch.Tensor, ...]:
        """[B, T, 6516] -> logits [B, T', C] and their lengths [B] (+ the auxiliary head's logits with
        ``return_aux`` when the net has one)."""
        h = self.fusion(x, presence).transpose(1, 2)  # [B, C, T]
        n = lengths
        h = mask_frames(h, n)
        n = out_len(n, 7, self.strides[0], 3)
        self._set_valid(n, (h.shape[-1] + 2 * 3 - 7) // self.strides[0] + 1)  # the stem conv's output frames
        h = mask_frames(self.stem_conv(h), n)
        n = out_len(n, 3, self.strides[1], 1)
        h = mask_frames(self.stem_pool(h), n)
        self._set_valid(n, h.shape[-1])
        for unit in self.stem_units:
            h = mask_frames(unit(h), n)
        for depth, (name, block) in enumerate(self.blocks.items(), start=1):
            y = block(h)
            if self.training and self.drop_path:
                y = y * self._kept(y.shape[0], self.drop_path * depth / len(self.blocks), y)
            if self.residual:
                y = torch.cat([y[:, : h.shape[1]] + h, y[:, h.shape[1]:]], dim=1)
            h = mask_frames(y, n)
            if name == "3c":
                n = out_len(n, 3, self.strides[2], 1)
                h = mask_frames(self.pool3(h), n)  # a window over the last real frame spills into frame n
                self._set_valid(n, h.shape[-1])
            elif name == "4f":
                n = out_len(n, 3, self.strides[3], 1)
                h = mask_frames(self.pool4(h), n)
                self._set_valid(n, h.shape[-1])
        self.frames.mask = None
        h = self.dropout(h.transpose(1, 2))
        packed = pack_padded_sequence(h, n.cpu().clamp_min(1), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        logits = self.classifier(self.dropout(out))
        if return_aux and self.aux_classifier is not None:
            return logits, n, self.aux_classifier(h)
        return logits, n
