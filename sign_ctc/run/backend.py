"""Process-wide torch backend settings, applied once at the start of every entry point.

They are chosen per machine, not per model, so they live in their own config group (`backend`)
rather than in the trainer or model configs, and a checkpoint never depends on them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import hydra
import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TorchBackend:
    """oneDNN on CPU and the float32 matmul precision (TF32 on Ampere+ GPUs).

    ``onednn=False`` by default: oneDNN builds a convolution / LSTM kernel for every new input
    shape, and length-bucketed batches bring a new padded length at almost every step, so on CPU
    each step paid ~35% for kernel creation (``bench/bench_train.py``); PyTorch's native CPU
    kernels run as fast as oneDNN's cached ones for this model. GPUs use cuDNN either way.
    """

    onednn: bool = False
    float32_matmul_precision: str = "highest"

    def apply(self) -> None:
        if self.float32_matmul_precision not in ("highest", "high", "medium"):
            raise ValueError(f"backend.float32_matmul_precision must be highest, high or medium; "
                             f"got {self.float32_matmul_precision!r}")
        torch.backends.mkldnn.enabled = bool(self.onednn)
        torch.set_float32_matmul_precision(self.float32_matmul_precision)
        log.debug("torch backend: oneDNN %s, float32 matmul precision %s",
                  "on" if self.onednn else "off", self.float32_matmul_precision)


def apply_backend(cfg: DictConfig) -> None:
    """Instantiate and apply the config's `backend` group (absent: torch's own defaults)."""
    if cfg.get("backend"):
        hydra.utils.instantiate(cfg.backend).apply()
