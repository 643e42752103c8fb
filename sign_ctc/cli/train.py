"""``sign-ctc-train [group=option ...] [key=value ...]``: train a model (``python train.py`` is the same command).

The run itself, top to bottom, is :func:`sign_ctc.run.train.train`; this module only gives it the
project's Hydra config (``sign_ctc/conf/train.yaml``) and returns the metric sweepers minimize.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR
from sign_ctc.run.train import train


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the best value of metric.name (e.g. the best val/wer) for sweepers to minimize."""
    metrics = train(cfg)
    return metrics.get(f"{cfg.metric.name}_best")


if __name__ == "__main__":
    main()
