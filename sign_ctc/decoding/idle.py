"""Nobody in view, no gloss: output frames that stand only for frames in which nothing was detected
decode as blank.

A CTC model still emits a distribution for an empty picture, and its classifier's biases can make a
gloss win there (a video of black frames used to answer a gloss). An output frame ``t`` of a net with
total stride ``S`` stands for input frames ``t*S .. t*S + S - 1``; when no part (pose, hands, face) was
detected in any of them, its log-probs become "certainly blank". The same rule serves the offline
decode (``sign-ctc-predict``) and the streaming one (``sign-ctc-live``), so both answer alike.
"""

from __future__ import annotations

import torch

# "Certainly blank" as a finite log-probability: beam decoders and sums stay finite.
IMPOSSIBLE = -1.0e4


def idle_output_frames(presence: torch.Tensor, stride: int, num_out: int) -> torch.Tensor:
    """[T', ] bool: output frames all of whose input frames (``presence`` [T, 4]) have nothing detected."""
    anything = presence.bool().any(-1)
    T = anything.shape[0]
    pad = num_out * stride - T
    if pad > 0:
        anything = torch.cat([anything, anything.new_zeros(pad)])
    return ~anything[: num_out * stride].view(num_out, stride).any(-1) if num_out else anything.new_zeros(0)


def blank_idle(log_probs: torch.Tensor, idle: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """``log_probs`` [T', C] with the ``idle`` [T'] frames set to certainly-blank (a new tensor)."""
    if not bool(idle.any()):
        return log_probs
    certain = torch.full_like(log_probs[:1], IMPOSSIBLE)
    certain[:, blank] = 0.0
    return torch.where(idle[:, None].to(log_probs.device), certain, log_probs)
