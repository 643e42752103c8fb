"""A run directory's bookkeeping: resuming, the W&B run id and group, and the completion record.

A run directory holds run.json (its overrides and W&B run id), checkpoints/last.ckpt and, once
finished, metrics.json; `ckpt_path=last` continues from the directory's own last.ckpt.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from sign_ctc.atomic import write_text_atomic
from sign_ctc.errors import ConfigError

log = logging.getLogger(__name__)

# Overrides that may differ between a run and its resumption (how it runs, not what it learns).
RESUME_FREE = ("ckpt_path=", "hydra.", "trainer.", "logger.", "callbacks.")


def resolve_ckpt_path(cfg: DictConfig, output_dir: Path) -> str | None:
    """`last` is this run directory's checkpoints/last.ckpt (None, a fresh start, when there is none)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path != "last":
        return ckpt_path
    last = output_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    log.warning("ckpt_path=last but %s does not exist: starting from scratch (to resume a run, pass its "
                "directory: hydra.run.dir=<run dir>, or hydra.sweep.dir=<sweep dir> for a multirun)", last)
    return None


def completed_metrics(output_dir: Path) -> dict[str, Any] | None:
    path = output_dir / "metrics.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    return info.get("metrics") if info.get("status") == "completed" else None


def job_overrides() -> list[str]:
    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(RESUME_FREE)]


def start_run(cfg: DictConfig, output_dir: Path, resuming: bool) -> dict[str, Any]:
    """Read or write <run dir>/run.json (overrides, W&B run id); fill the W&B logger's id and group."""
    path = output_dir / "run.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    overrides = job_overrides()
    if info and resuming and sorted(info.get("overrides", [])) != sorted(overrides):
        old, new = set(info.get("overrides", [])), set(overrides)
        raise ConfigError(f"{output_dir} holds a run with other overrides: missing {sorted(old - new)}, "
                          f"new {sorted(new - old)}. Resume it with the overrides it was started with.")
    info = {"overrides": overrides, "wandb_run_id": info.get("wandb_run_id") or secrets.token_hex(4),
            "started": info.get("started") or time.strftime("%Y-%m-%d %H:%M:%S")}
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is not None:
        with open_dict(wandb_cfg):
            wandb_cfg.id = wandb_cfg.get("id") or info["wandb_run_id"]
            wandb_cfg.group = wandb_cfg.get("group") or sweep_name()
            if wandb_cfg.get("offline") and wandb_cfg.get("log_model"):
                # Lightning refuses log_model with offline=True, but W&B records artifacts offline too
                # (uploaded by `wandb sync`): ask W&B itself for offline mode.
                wandb_cfg.offline, wandb_cfg.mode = False, "offline"
        info["wandb_run_id"] = wandb_cfg.id
    if rank_zero_only.rank == 0:
        write_text_atomic(path, json.dumps(info, indent=1) + "\n")
    return info


def sweep_name() -> str | None:
    """The W&B group of a multirun's jobs: the Optuna study name, else the sweep directory's name."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return OmegaConf.select(hc, "sweeper.study_name", default=None) or Path(hc.sweep.dir).name


def write_metrics(output_dir: Path, cfg: DictConfig, metrics: dict[str, float], run_info: dict[str, Any],
                  skipped_samples: dict[str, list[dict[str, str]]] | None = None, **extra: Any) -> None:
    """metrics.json (atomic): what sign_ctc.cli.sweep_summary reads, and what marks the job as completed.

    ``skipped_samples`` ({split: [{id, file, reason}]}, from ``data.skip_bad_files``) is always written,
    ``{}`` when none: a result is only comparable with others when one knows what data it left out.
    """
    best = metrics.get(f"{cfg.metric.name}_best")
    payload = {"status": "completed", "metric": cfg.metric.name, "best": best, "test/wer": metrics.get("test/wer"),
               **extra, "skipped_samples": skipped_samples or {}, "overrides": run_info["overrides"],
               "wandb_run_id": run_info["wandb_run_id"], "metrics": metrics}
    write_text_atomic(output_dir / "metrics.json", json.dumps(payload, indent=1, default=str) + "\n")
