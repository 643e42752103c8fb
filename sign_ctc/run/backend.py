"""Process-wide torch backend settings, applied once at the start of every entry point.

They are chosen per machine, not per model, so they live in their own config group (`backend`)
rather than in the trainer or model configs, and a checkpoint never depends on them.

Two parts, because they take effect at different times:

- :func:`share_cores_politely` sets the OpenMP wait policy in the environment (a short spin). The OpenMP runtime
  torch uses (GNU libgomp in the CPU wheels) reads it once, when it is loaded with torch, so an entry
  point calls it first thing, before anything imports torch (``train.py``, ``eval.py``). Setting it
  later has no effect on the process itself (measured), only on the processes it starts.
- :class:`TorchBackend` (the `backend` group, ``_target_`` of ``conf/backend/default.yaml``) sets
  oneDNN, the matmul precision and the number of intra-op threads when the run starts.

torch is imported inside the functions: importing this module must not load the OpenMP runtime.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# The variables that decide how long an idle OpenMP thread spins before it sleeps: the standard one
# and those of GNU libgomp and Intel/LLVM OpenMP. A user's own value of any of them is kept.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

# What share_cores_politely sets: libgomp spins 3000 iterations (a few microseconds) before it sleeps;
# other OpenMP runtimes sleep at once. libgomp reads GOMP_SPINCOUNT over OMP_WAIT_POLICY.
POLITE_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}

# Whether share_cores_politely set the policy before torch was loaded (None: it was not called).
_policy_in_time: bool | None = None


def share_cores_politely(environ: MutableMapping[str, str] | None = None) -> bool:
    """Let idle OpenMP threads spin only briefly, unless the user chose a wait policy; returns whether
    it set one.

    Why: by default GNU libgomp (the torch CPU wheels' OpenMP) lets an idle thread spin ~300k
    iterations after every parallel region, waiting for the next one. Alone on a machine that saves a
    wake-up; beside other busy processes the spinning threads take the cores the other process's
    threads need to finish *their* region, whose peers then spin in turn: two trainings side by side
    took 3.2x the time of one, four 8.9x (issue 30). Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``)
    stops the collapse but costs a run alone a wake-up per region: the default teacher's epoch took
    17-35% longer. A short spin keeps both (measured on 2 cores, 30 batches of the default teacher, the
    epoch: alone 20.5 s spinning 300k, 19.6 s spinning 3k, 23.9 s passive; two side by side 38 s each
    at 3k against 50 s at 10k; ``bench/bench_parallel.py``). So: ``GOMP_SPINCOUNT=3000`` for libgomp,
    and ``OMP_WAIT_POLICY=PASSIVE`` for the other OpenMP runtimes (libgomp takes GOMP_SPINCOUNT over the
    policy). Must run before torch is imported to change this process; its children inherit it either
    way (joblib sweep workers, DDP ranks, spawned DataLoader workers).
    """
    global _policy_in_time
    env = os.environ if environ is None else environ
    if any(name in env for name in WAIT_VARIABLES):
        return False
    env.update(POLITE_WAIT)
    if environ is None:
        _policy_in_time = "torch" not in sys.modules
    return True


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's share), not all of the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_count_of(n_jobs: int, cores: int) -> int:
    """joblib's reading of n_jobs: -1 all cores, -2 all but one, ..."""
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def concurrent_jobs(cfg: DictConfig, hydra_launcher: Any = None, cores: int | None = None) -> int:
    """How many training processes this run itself starts at once on this machine: a joblib sweep's
    ``n_jobs`` (``hydra_launcher``: the multirun's launcher config), DDP processes on the CPU
    (``trainer.devices``); 1 otherwise. GPU DDP ranks compute on their GPUs, so they do not count."""
    cores = cores or usable_cores()
    jobs = 1
    if hydra_launcher is not None and "joblib" in str(hydra_launcher.get("_target_", "")).lower():
        jobs *= _cpu_count_of(int(hydra_launcher.get("n_jobs") or -1), cores)
    trainer = cfg.get("trainer") or {}
    strategy, accelerator = str(trainer.get("strategy", "")), str(trainer.get("accelerator", "auto"))
    if strategy.startswith("ddp") and _on_cpu(accelerator):
        devices = trainer.get("devices", 1)
        if isinstance(devices, int):
            jobs *= _cpu_count_of(devices, cores)
        elif not isinstance(devices, str):  # a list of device indices
            jobs *= max(1, len(devices))
    return jobs


def _on_cpu(accelerator: str) -> bool:
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    import torch

    return not torch.cuda.is_available()


def resolve_num_threads(num_threads: int | str, jobs: int, cores: int, current: int,
                        environ: MutableMapping[str, str] | None = None) -> tuple[int, str]:
    """The intra-op thread count and where it came from: an explicit ``backend.num_threads``; else a
    user's ``OMP_NUM_THREADS`` (also what joblib gives its workers) or, for a run alone, the count the
    process already has (``current``: torch's own, every usable core, or what the calling program set),
    so one run alone trains as before; else the usable cores shared by the run's concurrent jobs."""
    env = os.environ if environ is None else environ
    if num_threads != "auto":
        if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
            raise ValueError(f"backend.num_threads must be a positive integer or auto; got {num_threads!r}")
        return num_threads, "backend.num_threads"
    if env.get("OMP_NUM_THREADS", "").strip().isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        return current, "OMP_NUM_THREADS"
    if jobs <= 1:
        return current, f"one job on {cores} usable cores: the process's own count"
    return max(1, cores // jobs), f"{cores} usable cores / {jobs} concurrent jobs"


@dataclass(frozen=True)
class TorchBackend:
    """oneDNN on CPU, the float32 matmul precision (TF32 on Ampere+ GPUs) and the intra-op threads.

    ``onednn=False`` by default: oneDNN builds a convolution / LSTM kernel for every new input
    shape, and length-bucketed batches bring a new padded length at almost every step, so on CPU
    each step paid ~35% for kernel creation (``bench/bench_train.py``); PyTorch's native CPU
    kernels run as fast as oneDNN's cached ones for this model. GPUs use cuDNN either way.

    ``num_threads="auto"``: the usable cores divided by the jobs the run starts at once, so a sweep's
    jobs or CPU DDP ranks do not each take every core; a run alone, or a user's ``OMP_NUM_THREADS``,
    keeps the process's count (see :func:`resolve_num_threads`).
    """

    onednn: bool = False
    float32_matmul_precision: str = "highest"
    num_threads: int | str = "auto"

    def apply(self, jobs: int = 1, cores: int | None = None, announce: bool = True) -> int:
        """Apply the settings; returns the intra-op thread count set. ``announce``: the thread count and
        wait policy as an INFO line (training, eval); False for the commands whose output is their
        result on stdout (predict, live, export, ...), where Hydra's console log would mix into it."""
        import torch

        if self.float32_matmul_precision not in ("highest", "high", "medium"):
            raise ValueError(f"backend.float32_matmul_precision must be highest, high or medium; "
                             f"got {self.float32_matmul_precision!r}")
        cores = cores or usable_cores()
        threads, source = resolve_num_threads(self.num_threads, jobs, cores, torch.get_num_threads())
        torch.backends.mkldnn.enabled = bool(self.onednn)
        torch.set_float32_matmul_precision(self.float32_matmul_precision)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        log.debug("torch backend: oneDNN %s, float32 matmul precision %s",
                  "on" if self.onednn else "off", self.float32_matmul_precision)
        log.log(logging.INFO if announce else logging.DEBUG, "torch threads: %d (%s); OpenMP wait policy: %s",
                threads, source, _wait_policy())
        return threads


def _wait_policy() -> str:
    chosen = {name: os.environ[name] for name in WAIT_VARIABLES if name in os.environ}
    if not chosen:
        return "the runtime's default (idle threads spin; slow beside other busy processes)"
    shown = ", ".join(f"{k}={v}" for k, v in chosen.items())
    if _policy_in_time is False:
        return f"{shown} for the processes it starts (set after torch was loaded: this one spins)"
    return shown


def apply_backend(cfg: DictConfig, announce: bool = True) -> None:
    """Instantiate and apply the config's `backend` group (absent: torch's own defaults)."""
    if cfg.get("backend"):
        hydra.utils.instantiate(cfg.backend).apply(jobs=concurrent_jobs(cfg, _multirun_launcher()), announce=announce)


def _multirun_launcher() -> Any:
    """The launcher config of the Hydra multirun this job belongs to (None outside one)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return hydra_cfg.launcher if hydra_cfg.mode == RunMode.MULTIRUN else None
