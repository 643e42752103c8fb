"""One sentence as the dataset gives it and the collate functions take it: its features
(:class:`Sample`) or its raw landmarks before feature derivation (:class:`LandmarkSample`).

Why a module of its own: the dataset makes these and ``collate`` pads them; with the types here
neither of the two imports the other's module for them (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Sample:
    """One sentence's features, presence and gloss ids (what ``collate`` pads)."""

    id: str
    features: torch.Tensor  # [T, 6516] float32
    presence: torch.Tensor  # [T, 4] bool
    targets: torch.Tensor  # [L] long
    signer: str = ""  # the corpus's signer id ("" unknown)


@dataclass
class LandmarkSample:
    """Raw landmarks of one sample, before feature derivation (what the training loaders carry)."""

    id: str
    points: np.ndarray  # [T, 543, 3] float16 as stored, or float32 once augmented / interpolated
    presence: np.ndarray  # [T, 4] bool as detected
    filled: np.ndarray  # [T, 4] bool after filling (which channels the features keep)
    targets: torch.Tensor  # [L] long
    signer: str = ""  # the corpus's signer id ("" unknown)
