"""``sign-ctc-eval ckpt_path=... [split=test] [decoding=beam] ...``: evaluate a checkpoint (``python eval.py`` is the same command).

The evaluation is :func:`sign_ctc.run.evaluate.evaluate`; this module gives it the project's Hydra
config (``sign_ctc/conf/eval.yaml``) and returns the WER sweepers minimize.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR, guarded
from sign_ctc.decoding.decoders import require_decoding
from sign_ctc.run.evaluate import evaluate


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    """Returns the WER, for sweepers to minimize."""
    return guarded("eval", _run, cfg)


def _run(cfg: DictConfig) -> float:
    require_decoding(cfg.get("decoding"))  # decoding=beam where flashlight-text is missing (Python 3.13)
    return float(evaluate(cfg)["wer"])


if __name__ == "__main__":
    main()
