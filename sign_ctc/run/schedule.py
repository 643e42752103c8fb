"""How long a run trains: at least ``schedule.epochs`` epochs and at least ``schedule.min_steps``
optimizer steps.

Why a step floor: an epoch-based schedule gives a small corpus too few optimizer steps. The default
teacher on RWTH-BOSTON-104 (120 training sentences) gets ~15 steps an epoch, 150 in its 10 epochs,
and still outputs nothing at the end (100% WER, issue 26); given enough steps it learns. So the
number of epochs is ``max(schedule.epochs, ceil(schedule.min_steps / steps per epoch))``: the
default corpus (150 steps an epoch) keeps its 10 epochs, and with them ``make train``'s time, while
BOSTON-104 gets 80. The cosine learning-rate schedule (``model.scheduler.T_max:
${trainer.max_epochs}``, or ``total_steps`` with ``scheduler_interval: step``) follows the resulting
number of epochs, because the trainer's ``max_epochs`` is set before the model is built.

Lightning's own ``Trainer(min_steps=...)`` does not do this: ``max_epochs`` still ends the run, and
``min_steps`` only keeps early stopping from ending it sooner. An explicit ``trainer.max_epochs=N``
(an override, a debug or experiment config) is taken as it is: the floor applies only while the
trainer's ``max_epochs`` follows ``schedule.epochs`` (the ``${schedule.epochs}`` interpolation of
conf/trainer/default.yaml).
"""

from __future__ import annotations

import logging
import math

from omegaconf import DictConfig, OmegaConf, open_dict

from sign_ctc.data.datamodule import SignDataModule
from sign_ctc.data.sampler import LengthBucketBatchSampler
from sign_ctc.errors import ConfigError

log = logging.getLogger(__name__)


def optimizer_steps_per_epoch(cfg: DictConfig, datamodule: SignDataModule) -> int:
    """Optimizer steps in one training epoch: the training batches (per device, after
    ``trainer.limit_train_batches``) divided by ``trainer.accumulate_grad_batches``."""
    t = cfg.trainer
    devices = t.get("devices")
    world = (int(devices) if isinstance(devices, int) and devices > 0 else 1) * int(t.get("num_nodes") or 1)
    ds = datamodule.dataset("train")
    batches = len(LengthBucketBatchSampler(ds.lengths(), datamodule.batch_size, max_frames=datamodule.max_frames,
                                           shuffle=True, seed=datamodule.seed, num_replicas=world, rank=0))
    limit = t.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = int(batches * limit) if limit < 1.0 else batches
    return max(1, math.ceil(batches / int(t.get("accumulate_grad_batches") or 1)))


def epochs_for(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
    """The number of epochs that gives at least ``min_steps`` optimizer steps, and at least ``epochs``."""
    if epochs < 1 or min_steps < 0 or steps_per_epoch < 1:
        raise ConfigError(f"schedule needs epochs >= 1, min_steps >= 0 and steps per epoch >= 1, got "
                          f"{epochs}, {min_steps}, {steps_per_epoch}")
    return max(epochs, math.ceil(min_steps / steps_per_epoch))


def apply_schedule(cfg: DictConfig, datamodule: SignDataModule) -> int | None:
    """Set ``cfg.trainer.max_epochs`` from ``cfg.schedule`` (before the model and the trainer are
    built, so the cosine schedule is sized from it); returns it, or None when the config has no
    schedule or its ``trainer.max_epochs`` was set explicitly."""
    schedule = cfg.get("schedule")
    if schedule is None or not OmegaConf.is_interpolation(cfg.trainer, "max_epochs"):
        return None
    steps = optimizer_steps_per_epoch(cfg, datamodule)
    epochs = epochs_for(int(schedule.epochs), int(schedule.min_steps), steps)
    with open_dict(cfg):
        cfg.trainer.max_epochs = epochs
    if epochs > int(schedule.epochs):
        log.info("schedule: %d optimizer steps an epoch, so %d epochs (not %d) for at least %d steps "
                 "(schedule.min_steps; a small corpus)", steps, epochs, int(schedule.epochs), int(schedule.min_steps))
    return epochs
