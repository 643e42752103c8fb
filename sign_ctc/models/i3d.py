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

from sign_ctc.features.layout import MODALITIES, PARTS, STATIC_DIM

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


def _out_len(length: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    return torch.div(length + 2 * padding - kernel, stride, rounding_mode="floor") + 1


def _mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    keep = torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None]
    return x * keep[:, None, :].to(x.dtype)


class ValidFrames:
    """The current stage's valid-frame mask [B, 1, T], shared by the masked BatchNorms of a net."""

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm whose training statistics count only valid (unpadded) frames.

    Plain BatchNorm averages over the padded zeros too, so its statistics (and the normalized values
    of real frames) depend on how much padding a batch holds. Eval mode uses the running statistics
    as usual; without a matching mask it behaves as plain BatchNorm.
    """

    def __init__(self, channels: int, frames: ValidFrames, **kwargs: float):
        super().__init__(channels, **kwargs)
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.frames.mask
        if not self.training or mask is None or mask.shape[-1] != x.shape[-1] or mask.shape[0] != x.shape[0]:
            return super().forward(x)
        m = mask.to(x.dtype)
        count = m.sum().clamp_min(1.0)
        mean = (x * m).sum((0, 2)) / count
        var = (((x - mean[None, :, None]) * m) ** 2).sum((0, 2)) / count
        with torch.no_grad():
            unbiased = var * count / (count - 1).clamp_min(1.0)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
            self.num_batches_tracked += 1
        x = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        return x * self.weight[None, :, None] + self.bias[None, :, None]


class Unit1d(nn.Module):
    """Conv1d + BatchNorm + ReLU, as I3D's Unit3D (``frames``: masked BatchNorm over valid frames)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, frames: ValidFrames | None = None):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = (MaskedBatchNorm1d(cout, frames, eps=1e-3, momentum=0.1) if frames is not None
                   else nn.BatchNorm1d(cout, eps=1e-3, momentum=0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


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


class ModalityFusion(nn.Module):
    """Per-modality projections (pose, hands, face, temporal), then a fusion layer.

    The part-presence mask [B, T, 4] is fed to the fusion layer so the network knows which
    zeros are "not detected" rather than "at the origin".
    """

    def __init__(self, widths: Mapping[str, int], out_dim: int, dropout: float, use_presence: bool = True,
                 modalities: Sequence[str] | None = None):
        super().__init__()
        names = list(modalities) if modalities is not None else list(MODALITIES)
        unknown = [m for m in names if m not in MODALITIES]
        if unknown or not names:
            raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}, got {names}")
        # Only the chosen blocks are read (ablations: e.g. without the 4887-dim temporal block).
        self.projections = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(MODALITIES[name].stop - MODALITIES[name].start, widths[name]),
                                nn.LayerNorm(widths[name]), nn.ReLU())
            for name in MODALITIES if name in names
        })
        # The leading layout blocks the projections read (whole 1629-channel blocks, as the Normalizer
        # takes them): 1629 without the temporal block, so its 4887 channels are not even normalized.
        self.input_dim = -(-max(MODALITIES[name].stop for name in self.projections) // STATIC_DIM) * STATIC_DIM
        self.use_presence = use_presence
        fused_in = sum(widths[name] for name in self.projections) + (len(PARTS) if use_presence else 0)
        self.fuse = nn.Sequential(nn.Dropout(dropout), nn.Linear(fused_in, out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        parts = [proj(x[..., MODALITIES[name]]) for name, proj in self.projections.items()]
        if self.use_presence:
            parts.append(presence.to(x.dtype))
        return self.fuse(torch.cat(parts, dim=-1))


class I3DTeacher(nn.Module):
    """``modalities``: feature blocks read (default all four). ``aux_ctc``: a second classifier on the
    convolutional output (before the BiLSTM), trained with its own CTC loss (VAC-style: it gives the
    convolutions a direct alignment signal). ``blank_bias``: initial classifier bias of the blank.
    ``residual``: each Inception block adds its input to the first channels of its output (a
    parameter-free shortcut: the widths never shrink), so the 9-block stack trains like a shallow one
    at first. The defaults are sign_ctc/conf/model/i3d.yaml's; a checkpoint written before ``aux_ctc`` and
    ``residual`` were on gets them off from :data:`sign_ctc.models.checkpoint.LEGACY_DEFAULTS`."""

    def __init__(self, num_classes: int, modality_widths: Mapping[str, int] | None = None,
                 fusion_dim: int = 256, lstm_hidden: int = 288, lstm_layers: int = 1, dropout: float = 0.1,
                 temporal_strides: Sequence[int] = (2, 1, 2, 1), use_presence: bool = True,
                 modalities: Sequence[str] = tuple(MODALITIES), aux_ctc: bool = True, blank_bias: float | None = None,
                 masked_bn: bool = False, residual: bool = True):
        super().__init__()
        self.residual = residual
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
        lengths = _out_len(lengths, 7, self.strides[0], 3)
        lengths = _out_len(lengths, 3, self.strides[1], 1)
        lengths = _out_len(lengths, 3, self.strides[2], 1)
        return _out_len(lengths, 3, self.strides[3], 1)

    def _set_valid(self, n: torch.Tensor, T: int) -> None:
        """Tell the next stage's Inception blocks (and masked BatchNorms) which of its T frames are real.

        ``T`` is shape arithmetic, never ``int(tensor)``: a traced export (TorchScript, ONNX) then keeps
        the time axis dynamic instead of baking in the example's length (:mod:`sign_ctc.models.export`)."""
        self.frames.mask = (torch.arange(T, device=n.device)[None, :] < n[:, None])[:, None, :]

    def forward(self, x: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor,
                return_aux: bool = False) -> tuple[torch.Tensor, ...]:
        """[B, T, 6516] -> logits [B, T', C] and their lengths [B] (+ the auxiliary head's logits with
        ``return_aux`` when the net has one)."""
        h = self.fusion(x, presence).transpose(1, 2)  # [B, C, T]
        n = lengths
        h = _mask(h, n)
        n = _out_len(n, 7, self.strides[0], 3)
        self._set_valid(n, (h.shape[-1] + 2 * 3 - 7) // self.strides[0] + 1)  # the stem conv's output frames
        h = _mask(self.stem_conv(h), n)
        n = _out_len(n, 3, self.strides[1], 1)
        h = _mask(self.stem_pool(h), n)
        self._set_valid(n, h.shape[-1])
        for unit in self.stem_units:
            h = _mask(unit(h), n)
        for name, block in self.blocks.items():
            y = block(h)
            if self.residual:
                y = torch.cat([y[:, : h.shape[1]] + h, y[:, h.shape[1]:]], dim=1)
            h = _mask(y, n)
            if name == "3c":
                n = _out_len(n, 3, self.strides[2], 1)
                h = _mask(self.pool3(h), n)  # a window over the last real frame spills into frame n
                self._set_valid(n, h.shape[-1])
            elif name == "4f":
                n = _out_len(n, 3, self.strides[3], 1)
                h = _mask(self.pool4(h), n)
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
