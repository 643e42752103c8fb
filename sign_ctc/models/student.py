"""The student: a small fast CTC model on the teacher's features and at the teacher's temporal stride.

Per-modality projections and the fusion layer of the teacher (``ModalityFusion``), a few temporal
convolution blocks (Conv1d + BatchNorm + ReLU, then a k=3 max-pool), a (Bi)LSTM and a classifier.
Each max-pool with stride s maps n frames to ceil(n / s), exactly as the teacher's stride-2 stages
do, so with the same product of strides the two nets emit the same number of output frames for
every input length and their frames can be distilled one to one. ``bidirectional=false`` gives a
unidirectional LSTM (streaming: no look-ahead beyond the convolutions' receptive field).

``context_blocks``: conv blocks (Conv1d + BatchNorm + ReLU, no pooling) at the output rate after the
strided ones. Each gives every output frame ``kernel_size // 2`` output frames of past and future
context (4× that in input frames): the future context that a streaming student, distilled frame by
frame from a teacher that reads the whole sentence, lacks most on signers it never saw. Without a
pool: a max-pool at the output rate would smear each CTC spike over its neighbours, and two spikes of
a repeated gloss (``NORD NORD``) would merge.

``output_delay`` D: output frame ``j`` is read from the LSTM after it has consumed frame ``j + D`` (the
sentence is followed by D zero frames). Without it a unidirectional student must name a sign from what
it has seen so far while the bidirectional teacher it is distilled from, frame by frame, names it from
the whole sentence; the delay lets the LSTM carry D output frames (``D * total_stride`` input frames)
of future into each output, at that much more latency. The number of output frames, and so their
one-to-one alignment with the teacher's, is unchanged. It helps less than conv context for the same
look-ahead (the LSTM must hold a sign until it may name it; docs/REAL_DATA.md), so it is off by default.
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
    pending: int = 0  # LSTM outputs still to drop: the first ``output_delay`` of a stream label no frame


class CTCStudent(nn.Module):
    """``conv_strides``: the max-pool stride after each conv block (1 or 2); their product is the
    total stride and must equal the teacher's for distillation. ``context_blocks``: conv blocks without
    pooling at the output rate, after them. ``output_delay``: output frames of future
    the LSTM reads before it labels a frame (0: none; streaming only, a BiLSTM reads the whole future)."""

    def __init__(self, num_classes: int, modality_widths: Mapping[str, int], fusion_dim: int,
                 conv_channels: Sequence[int], conv_strides: Sequence[int], kernel_size: int,
                 lstm_hidden: int, bidirectional: bool, dropout: float, use_presence: bool = True,
                 modalities: Sequence[str] = ("pose", "hands", "face"), blank_bias: float | None = None,
                 context_blocks: int = 1, output_delay: int = 0):
        super().__init__()
        if len(conv_channels) != len(conv_strides) or not conv_channels:
            raise ValueError("conv_channels and conv_strides need one entry per conv block")
        if any(s not in (1, 2) for s in conv_strides):
            raise ValueError(f"conv_strides must be 1 or 2, got {list(conv_strides)}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (length-preserving padding), got {kernel_size}")
        if int(output_delay) < 0 or (output_delay and bidirectional):
            raise ValueError(f"output_delay must be >= 0, and 0 with a bidirectional LSTM (it reads the whole "
                             f"sentence already), got {output_delay} (bidirectional={bidirectional})")
        self.output_delay = int(output_delay)
        self.strides = tuple(int(s) for s in conv_strides)
        self.fusion = ModalityFusion(dict(modality_widths), fusion_dim, dropout, use_presence, modalities)
        self.input_dim = self.fusion.input_dim  # feature channels read: the leading blocks of the layout
        cin = fusion_dim
        self.convs = nn.ModuleList()
        for cout in conv_channels:
            self.convs.append(Unit1d(cin, int(cout), kernel_size))
            cin = int(cout)
        self.pools = nn.ModuleList([nn.MaxPool1d(3, stride=s, padding=1) for s in self.strides])
        if int(context_blocks) < 0:
            raise ValueError(f"context_blocks must be >= 0, got {context_blocks}")
        self.context = nn.ModuleList([Unit1d(cin, cin, kernel_size) for _ in range(int(context_blocks))])
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
        for conv in self.context:
            h = mask_frames(conv(h), n)
        h = self.dropout(h.transpose(1, 2))
        D = self.output_delay
        if D:  # D zero frames after every sentence (its frames past n are zero already)
            h = F.pad(h, (0, 0, 0, D))
        packed = pack_padded_sequence(h, (n + D).cpu().clamp_min(1), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        return self.classifier(self.dropout(out[:, D:])), n

    # ---- streaming -----------------------------------------------------------------------------------
    @property
    def stream_refusal(self) -> str | None:
        """Why this net cannot run on a stream (None: it can)."""
        if self.bidirectional:
            return ("the student's LSTM is bidirectional (model.net.bidirectional=true): it reads the whole sentence "
                    "backwards; train with model.net.bidirectional=false to stream")
        return None

    def _stages(self) -> list[Stage]:
        """The conv and pool layers in order, each with its window (what the stream and the streaming export run)."""
        stages: list[Stage] = []
        for conv, s in zip(self.convs, self.strides):
            stages.append(conv_stage(conv))
            stages.append((Window(3, s, 1, float("-inf")), partial_pool(s)))
        return stages + [conv_stage(conv) for conv in self.context]

    def stage_channels(self) -> list[int]:
        """The input channels of each of :meth:`_stages`."""
        channels = [self.fusion.fuse[1].out_features]
        for conv in self.convs:
            channels += [conv.conv.out_channels, conv.conv.out_channels]
        return channels + [conv.conv.in_channels for conv in self.context]

    @property
    def lookahead_frames(self) -> int:
        """Input frames past the last one an output frame stands for that it still needs: the algorithmic
        latency of streaming: the conv and pool layers' reach, plus the output delay's frames."""
        return lookahead(self._stages()) - (self.total_stride - 1) + self.output_delay * self.total_stride

    def initial_state(self, batch: int = 1, device: torch.device | None = None) -> StudentStreamState:
        """The state of ``batch`` streams before their first frame."""
        windows = [w.initial(batch, c, device) for (w, _), c in zip(self._stages(), self.stage_channels())]
        return StudentStreamState(windows, None, self.output_delay)

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
        rows = y.transpose(1, 2) if y is not None else x.new_zeros(x.shape[0], 0, self.lstm.input_size)
        if final and self.output_delay and (state.hc is not None or rows.shape[1]):  # the sentence's D zero frames
            rows = torch.cat([rows, rows.new_zeros(rows.shape[0], self.output_delay, rows.shape[2])], 1)
        if rows.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.classifier.out_features), StudentStreamState(windows, state.hc,
                                                                                              state.pending)
        out, hc = self.lstm(rows, state.hc)
        drop = min(state.pending, out.shape[1])
        return self.classifier(out[:, drop:]), StudentStreamState(windows, hc, state.pending - drop)


def conv_stage(unit: Unit1d) -> Stage:
    """A conv block (length-preserving padding) as a windowed layer: the window supplies the padding."""
    k = unit.conv.kernel_size[0]

    def conv_layer(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(unit.bn(F.conv1d(x, unit.conv.weight, unit.conv.bias)))

    return Window(k, 1, k // 2, 0.0), conv_layer


def partial_pool(stride: int):
    """Max-pooling k=3 with the given stride and no padding (the window supplies it)."""

    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool1d(x, 3, stride=stride)

    return pool
