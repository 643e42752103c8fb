"""The contract a net keeps with the rest of the project, written down as Protocols.

``CTCModule``, the normalizer, the collate padding, distillation, export and decoding read a net only
through these members; ``tests/test_net_contract.py`` holds every ``sign_ctc/conf/model/*.yaml`` net to
them. A new net implements :class:`CTCNet`; a causal one that can run live also :class:`StreamingNet`
(the student does; the recognizer in :mod:`sign_ctc.streaming` needs nothing else).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class CTCNet(Protocol):
    """A CTC net over the feature layout.

    - ``input_dim``: the leading feature channels it reads (a multiple of 1629: the static block alone,
      or more of the layout), so the normalizer and the live path compute no more than that.
    - ``total_stride``: input frames per output frame (the product of its temporal strides); the CTC
      times, the streaming look-ahead and distillation's frame pairing use it.
    - ``output_lengths(lengths)``: the exact number of output frames for each input length (the CTC
      input lengths), equal to what ``forward`` returns.
    - ``forward(x, presence, lengths)``: features [B, T, >= input_dim], part presence [B, T, 4], lengths
      [B] -> logits [B, T', C] (class 0 the blank) and their lengths [B]; a sample's output does not
      depend on the padding it was batched with.
    """

    input_dim: int

    @property
    def total_stride(self) -> int: ...

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor: ...

    def forward(self, x: torch.Tensor, presence: torch.Tensor,
                lengths: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


@runtime_checkable
class StreamingNet(CTCNet, Protocol):
    """A causal :class:`CTCNet` that runs on a stream (live recognition).

    - ``stream_refusal``: None, or why this instance cannot stream (e.g. a bidirectional LSTM) and what to
      change; the recognizer refuses it with that message before any work.
    - ``lookahead_frames``: input frames past an output frame's own that it still needs (the algorithmic
      latency).
    - ``initial_state(batch)``: the state before a stream's first frame.
    - ``step(x, presence, state, final)``: the next k >= 0 normalized frames -> the logits of every output
      frame now fully determined and the new state (the old one is not modified); ``final`` flushes the
      rest. In eval mode the logits of all calls, concatenated, equal ``forward`` over the whole sequence.
    """

    @property
    def stream_refusal(self) -> str | None: ...

    @property
    def lookahead_frames(self) -> int: ...

    def initial_state(self, batch: int = 1, device: torch.device | None = None) -> Any: ...

    def step(self, x: torch.Tensor, presence: torch.Tensor, state: Any,
             final: bool = False) -> tuple[torch.Tensor, Any]: ...
