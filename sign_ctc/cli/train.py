"""``sign-ctc-train [group=option ...] [key=value ...]``: train a model (``python train.py`` is the same command).

The run itself, top to bottom, is :func:`sign_ctc.run.train.train`; this module only gives it the
project's Hydra config (``sign_ctc/conf/train.yaml``) and returns the metric sweepers minimize.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR, EXIT_BAD_INPUT, guarded
from sign_ctc.decoding.decoders import require_decoding
from sign_ctc.run.sweeps import optuna_sweeper_error
from sign_ctc.run.train import train


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _train(cfg: DictConfig) -> float | None:
    """Returns the best value of metric.name (e.g. the best val/wer) for sweepers to minimize."""
    return guarded("train", _run, cfg)


def _run(cfg: DictConfig) -> float | None:
    require_decoding(cfg.get("decoding"))  # decoding=beam where flashlight-text is missing (Python 3.13)
    metrics = train(cfg)
    return metrics.get(f"{cfg.metric.name}_best")


def main() -> None:
    """The console script: Hydra's entry point, after the one check Hydra cannot report clearly.

    ``hparams_search=optuna`` without the Optuna sweeper plugin (not installed on Python 3.13) would
    fail in Hydra's config composition ("Could not load 'hydra/sweeper/optuna'"), which does not say
    why; the command line is checked first.
    """
    message = optuna_sweeper_error(sys.argv[1:])
    if message:
        print(f"train: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    _train()


if __name__ == "__main__":
    main()
