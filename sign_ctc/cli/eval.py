"""``sign-ctc-eval ckpt_path=... [split=test] [decoding=beam] ...``: evaluate a checkpoint (``python eval.py`` is the same command).

The evaluation is :func:`sign_ctc.run.evaluate.evaluate`; this module gives it the project's Hydra
config (``sign_ctc/conf/eval.yaml``) and returns the WER sweepers minimize.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR
from sign_ctc.run.evaluate import evaluate


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    return float(evaluate(cfg)["wer"])


if __name__ == "__main__":
    main()
