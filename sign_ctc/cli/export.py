"""Export a checkpoint's model to ONNX or TorchScript, verified against PyTorch (:mod:`sign_ctc.models.export`).

    sign-ctc-export ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt format=onnx [out=model.onnx]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR
from sign_ctc.models.export import default_out, export_checkpoint


def run(cfg: DictConfig) -> dict[str, Any]:
    from sign_ctc.run.backend import apply_backend

    apply_backend(cfg)
    return export_checkpoint(cfg.ckpt_path, str(cfg.format), cfg.get("out"), opset=int(cfg.opset),
                             verify_frames=list(cfg.verify.frames), verify_batch_sizes=list(cfg.verify.batch_sizes),
                             atol=float(cfg.verify.atol), seed=int(cfg.seed))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    meta = run(cfg)
    out = Path(cfg.get("out") or default_out(cfg.ckpt_path, str(cfg.format)))
    print(f"exported {out} ({meta['format']}, {meta['net']}, {len(meta['vocab'])} classes); "
          f"max abs diff to PyTorch: {meta['verified_max_abs_diff']}")


if __name__ == "__main__":
    main()
