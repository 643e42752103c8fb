"""Building callbacks and loggers from their config groups (each entry has a `_target_`)."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a config group such as `callbacks` or `logger`."""
    if not group:
        return []
    objects = []
    for name, conf in group.items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            objects.append(hydra.utils.instantiate(conf))
        elif conf is not None:
            raise TypeError(f"config entry {name!r} has no _target_: {conf}")
    return objects
