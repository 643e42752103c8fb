"""The building blocks the nets share: the temporal conv unit, the modality fusion, padding masks and
the exact output length of a strided layer.

They live here, not inside one net, so that every net (the I3D teacher, the student, the reference model,
a new one) builds from the same public parts. Each block keeps padded frames out of the real ones: a
sample's output must not depend on what it was batched with (tests/test_model.py, tests/test_net_contract.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from sign_ctc.features.layout import MODALITIES, PARTS, STATIC_DIM


def out_len(length: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Output frames of a 1-D conv or pool layer for input ``length`` frames (exact, as PyTorch computes it)."""
    return torch.div(length + 2 * padding - kernel, stride, rounding_mode="floor") + 1


def mask_frames(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` [B, C, T] with the frames past each sample's length set to 0."""
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
