"""The student: a small fast CTC model on the teacher's features and at the teacher's temporal stride.

Per-modality projections and the fusion layer of the teacher (``ModalityFusion``), a few temporal
convolution blocks (Conv1d + BatchNorm + ReLU, then a k=3 max-pool), a (Bi)LSTM and a classifier.
Each max-pool with stride s maps n frames to ceil(n / s), exactly as the teacher's stride-2 stages
do, so with the same product of strides the two nets emit the same number of output frames for
every input length and their frames can be distilled one to one. ``bidirectional=false`` gives a
unidirectional LSTM (streaming: no look-ahead beyond the convolutions' receptive field).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sign_ctc.models.layers import ModalityFusion, Unit1d, mask_frames, out_len
from sign_ctc.models.stream_buffers import Stage, Window, WindowState, lookahead, push_through


@dataclass(frozen=True)
class StudentStreamState:
    """What the student carries between chunks of a stream: each conv and pool layer's window, the LSTM's (h, c)."""

    windows: list[WindowState]
    hc: tuple[torch.Tensor, torch.Tensor] | None


class CTCStudent(nn.Module):
    """``conv_strides``: the max-pool stride after each conv block (1 or 2); their product is the
    total stride and must equal the teacher's for distillation."""

    def __init__(self, num_classes: int, modality_widths: Mapping[str, int], fusion_dim: int,
                 conv_channels: Sequence[int], conv_strides: Sequence[int], kernel_size: int,
                 lstm_hidden: int, bidirectional: bool, dropout: float, use_presence: bool = True,
                 modalities: Sequence[str] = ("pose", "hands", "face"), blank_bias: float | None = None):
        super().__init__()
        if len(conv_channels) != len(conv_strides) or not conv_channels:
            raise ValueError("conv_channels and conv_strides need one entry per conv block")
        if any(s not in (1, 2) for s in conv_strides):
            raise ValueError(f"conv_strides must be 1 or 2, got {list(conv_strides)}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (length-preserving padding), got {kernel_size}")
        self.strides = tuple(int(s) for s in conv_strides)
        self.fusion = ModalityFusion(dict(modality_widths), fusion_dim, dropout, use_presence, modalities)
        self.input_dim = self.fusion.input_dim  # feature channels read: the leading blocks of the layout
        cin = fusion_dim
        self.convs = nn.ModuleList()
        for cout in conv_channels:
            self.convs.append(Unit1d(cin, int(cout), kernel_size))
            cin = int(cout)
        self.pools = nn.ModuleList([nn.MaxPool1d(3, stride=s, padding=1) for s in self.strides])
        self.dropout = nn.Dropout(dropout)
        self.bidirectional = bool(bidirectional)
        self.lstm = nn.LSTM(cin, lstm_hidden, batch_first=True, bidirectional=bidirectional)
        self.classifier = nn.Linear(lstm_hidden * (2 if bidirectional else 1), num_classes)
        if blank_bias is not None:
            nn.init.constant_(self.classifier.bias[:1], blank_bias)

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Exact number of output frames for input lengths (the CTC input lengths)."""
        lengths = torch.as_tensor(lengths)
        for s in self.strides:
            lengths = out_len(lengths, 3, s, 1)
        return lengths

    def forward(self, x: torch.Tensor, presence: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, 6516] -> logits [B, T', C] and their lengths [B]. Padded frames are zeroed after
        every block, so a sample's output does not depend on what it was batched with."""
        h = mask_frames(self.fusion(x, presence).transpose(1, 2), lengths)
        n = lengths
        for conv, pool, s in zip(self.convs, self.pools, self.strides):
            h = mask_frames(conv(h), n)
            n = out_len(n, 3, s, 1)
            h = mask_frames(pool(h), n)
        h = self.dropout(h.transpose(1, 2))
        packed = pack_padded_sequence(h, n.cpu().clamp_min(1), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        return self.classifier(self.dropout(out)), n

    # ---- streaming -----------------------------------------------------------------------------------
    @property
    def stream_refusal(self) -> str | None:
        """Why this net cannot run on a stream (None: it can)."""
        if self.bidirectional:
            return ("the student's LSTM is bidirectional (model.net.bidirectional=true): it reads the whole sentence "
                    "backwards; train with model.net.bidirectional=false to stream")
        return None

    def _stages(self) -> list[Stage]:
        stages: list[Stage] = []
        for conv, pool, s in zip(self.convs, self.pools, self.strides):
            k = conv.conv.kernel_size[0]

            def conv_layer(x: torch.Tensor, unit: Unit1d = conv) -> torch.Tensor:
                return torch.relu(unit.bn(F.conv1d(x, unit.conv.weight, unit.conv.bias)))

            stages.append((Window(k, 1, k // 2, 0.0), conv_layer))
            stages.append((Window(3, s, 1, float("-inf")), partial_pool(s)))
        return stages

    @property
    def lookahead_frames(self) -> int:
        """Input frames past the last one an output frame stands for that it still needs: the algorithmic
        latency of streaming (6 with the defaults: 0.24 s at 25 fps)."""
        return lookahead(self._stages()) - (self.total_stride - 1)

    def initial_state(self, batch: int = 1, device: torch.device | None = None) -> StudentStreamState:
        """The state of ``batch`` streams before their first frame."""
        widths = [self.fusion.fuse[1].out_features]
        for conv in self.convs:
            widths += [conv.conv.out_channels, conv.conv.out_channels]
        windows = [w.initial(batch, c, device) for (w, _), c in zip(self._stages(), widths)]
        return StudentStreamState(windows, None)

    def step(self, x: torch.Tensor, presence: torch.Tensor, state: StudentStreamState,
             final: bool = False) -> tuple[torch.Tensor, StudentStreamState]:
        """The next frames of a stream, normalized features [B, k, input_dim] (k >= 0) and presence
        [B, k, 4]: the logits of every output frame now fully determined [B, k', C] and the new state;
        ``final``: the stream ends here (the rest is flushed). In eval mode the logits of all calls,
        concatenated, equal :meth:`forward` over the whole sequence. The state is not modified."""
        if self.stream_refusal:
            raise ValueError(self.stream_refusal)
        h = self.fusion(x, presence).transpose(1, 2) if x.shape[1] else x.new_zeros(x.shape[0], self.fusion.fuse[1].out_features, 0)
        y, windows = push_through(self._stages(), state.windows, h, final)
        if y is None or y.shape[-1] == 0:
            return x.new_zeros(x.shape[0], 0, self.classifier.out_features), StudentStreamState(windows, state.hc)
        out, hc = self.lstm(y.transpose(1, 2), state.hc)
        return self.classifier(out), StudentStreamState(windows, hc)


def partial_pool(stride: int):
    """Max-pooling k=3 with the given stride and no padding (the window supplies it)."""

    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool1d(x, 3, stride=stride)

    return pool
