"""Sliding windows that run a convolution or pooling layer on a stream, exactly as on the whole sequence.

A layer with kernel ``K``, stride ``s`` and padding ``P`` on each side emits output frame ``j`` from input
frames ``s*j - P .. s*j - P + K - 1``. A :class:`WindowState` keeps the inputs that later outputs still
need (and the left padding at the start); :func:`push` appends new input frames and emits every output
whose window is now complete, :func:`flush` appends the right padding at the end of the stream and emits
the rest. The outputs equal the layer over the whole sequence: the same windows, the same padding.

States are values: :func:`push` and :func:`flush` return a new state and never modify the one they were
given, so a caller can keep a state to look ahead from (a tentative decode) and carry on from the old one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Window:
    """A layer's geometry; ``pad_value``: what its padding holds (0 for convolutions, -inf for max-pooling)."""

    kernel: int
    stride: int
    padding: int
    pad_value: float = 0.0

    def initial(self, batch: int, channels: int, device: torch.device | None = None,
                dtype: torch.dtype = torch.float32) -> WindowState:
        pad = torch.full((batch, channels, self.padding), self.pad_value, device=device, dtype=dtype)
        return WindowState(buffer=pad, start=-self.padding, emitted=0, seen=0)

    def outputs_for(self, n: int) -> int:
        """Output frames of the whole layer for ``n`` input frames (as ``output_lengths``)."""
        return (n + 2 * self.padding - self.kernel) // self.stride + 1 if n > 0 else 0


@dataclass(frozen=True)
class WindowState:
    buffer: torch.Tensor  # [B, C, L]: input frames start .. start + L - 1 (negative: left padding)
    start: int  # absolute index of buffer[..., 0]
    emitted: int  # output frames emitted so far
    seen: int  # real input frames received so far


Layer = Callable[[torch.Tensor], torch.Tensor]  # the layer with padding 0: [B, C, L] -> [B, C', L']


def _emit(window: Window, layer: Layer, buffer: torch.Tensor, start: int, emitted: int, last: int,
          limit: int | None) -> tuple[torch.Tensor | None, int]:
    """Outputs ``emitted ..`` whose windows end at or before input index ``last`` (and < ``limit``)."""
    K, s, P = window.kernel, window.stride, window.padding
    count = (last + P - K + 1) // s + 1 - emitted if last + P - K + 1 >= 0 else 0
    if limit is not None:
        count = min(count, limit - emitted)
    if count <= 0:
        return None, emitted
    lo = s * emitted - P - start
    hi = lo + s * (count - 1) + K
    return layer(buffer[..., lo:hi]), emitted + count


def _keep(window: Window, buffer: torch.Tensor, start: int, emitted: int) -> tuple[torch.Tensor, int]:
    """Drop the inputs no later output reads."""
    first_needed = window.stride * emitted - window.padding
    drop = max(0, min(first_needed - start, buffer.shape[-1]))
    return buffer[..., drop:], start + drop


def push(window: Window, layer: Layer, state: WindowState, x: torch.Tensor) -> tuple[torch.Tensor | None, WindowState]:
    """Append input frames ``x`` [B, C, k]; the outputs now complete ([B, C', k'] or None) and the new state."""
    buffer = torch.cat([state.buffer, x], dim=-1) if x.shape[-1] else state.buffer
    seen = state.seen + x.shape[-1]
    y, emitted = _emit(window, layer, buffer, state.start, state.emitted, seen - 1, None)
    buffer, start = _keep(window, buffer, state.start, emitted)
    return y, WindowState(buffer=buffer, start=start, emitted=emitted, seen=seen)


def flush(window: Window, layer: Layer, state: WindowState) -> torch.Tensor | None:
    """The stream has ended: the right padding appended, the remaining outputs."""
    if state.seen == 0:
        return None
    B, C = state.buffer.shape[:2]
    pad = torch.full((B, C, window.padding), window.pad_value, device=state.buffer.device, dtype=state.buffer.dtype)
    buffer = torch.cat([state.buffer, pad], dim=-1)
    y, _ = _emit(window, layer, buffer, state.start, state.emitted, state.seen - 1 + window.padding,
                 window.outputs_for(state.seen))
    return y


Stage = tuple[Window, Layer]


def push_through(stages: list[Stage], states: list[WindowState], x: torch.Tensor,
                 final: bool = False) -> tuple[torch.Tensor | None, list[WindowState]]:
    """``x`` [B, C, k] through a stack of windowed layers; ``final``: the stream ends after ``x`` (each
    layer's remaining outputs go on to the next before that one is flushed). The last layer's new
    outputs (None when there are none) and the new states."""
    new_states = []
    y: torch.Tensor | None = x
    for (window, layer), state in zip(stages, states):
        if y is not None:
            y, state = push(window, layer, state, y)
        if final:
            tail = flush(window, layer, state)
            if tail is not None:
                y = tail if y is None else torch.cat([y, tail], dim=-1)
        new_states.append(state)
    return y, new_states


def lookahead(stages: list[Stage]) -> int:
    """Input frames past its own first input frame that a stack's output frame reads (each layer's right
    reach, carried back through the strides)."""
    need = 0
    for window, _ in reversed(stages):
        need = need * window.stride + (window.kernel - 1 - window.padding)
    return need
