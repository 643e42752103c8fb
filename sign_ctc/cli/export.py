"""Export a checkpoint's model to ONNX or TorchScript, verified against PyTorch (:mod:`sign_ctc.models.export`).

    sign-ctc-export ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt format=onnx [out=model.onnx]
    sign-ctc-export ckpt_path=... streaming=true [chunk_frames=4]   # for sign-ctc-live model_path=...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from sign_ctc.cli import CONF_DIR, run_command
from sign_ctc.models.export import default_out, export_checkpoint


def out_path(cfg: DictConfig) -> Path:
    """Where the model goes: ``out=``, else beside the checkpoint (``best.stream.onnx`` when streaming)."""
    if cfg.get("out"):
        return Path(cfg.out)
    if cfg.get("streaming"):
        from sign_ctc.streaming.onnx_export import stream_out

        return stream_out(cfg.ckpt_path)
    return default_out(cfg.ckpt_path, str(cfg.format))


def run(cfg: DictConfig) -> dict[str, Any]:
    from sign_ctc.run.backend import apply_backend

    apply_backend(cfg, announce=False)
    if cfg.get("streaming"):
        from sign_ctc.models.export import ExportError
        from sign_ctc.streaming.onnx_export import export_streaming

        if str(cfg.format) != "onnx":
            raise ExportError(f"streaming=true exports ONNX only (a graph with fixed-shape state), not format={cfg.format}")
        return export_streaming(cfg.ckpt_path, cfg.get("out"), cfg.get("chunk_frames"), opset=int(cfg.opset),
                                verify_frames=list(cfg.verify.frames), atol=float(cfg.verify.atol), seed=int(cfg.seed))
    return export_checkpoint(cfg.ckpt_path, str(cfg.format), cfg.get("out"), opset=int(cfg.opset),
                             verify_frames=list(cfg.verify.frames), verify_batch_sizes=list(cfg.verify.batch_sizes),
                             atol=float(cfg.verify.atol), seed=int(cfg.seed))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    run_command("export", _export, cfg)


def _export(cfg: DictConfig) -> None:
    meta = run(cfg)
    streaming = f", streaming in chunks of {meta['streaming']['chunk_frames']} frames" if meta.get("streaming") else ""
    print(f"exported {out_path(cfg)} ({meta['format']}{streaming}, {meta['net']}, {len(meta['vocab'])} classes); "
          f"max abs diff to PyTorch: {meta['verified_max_abs_diff']}")


if __name__ == "__main__":
    main()
