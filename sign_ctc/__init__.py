"""sign_ctc: continuous sign language recognition from MediaPipe landmarks with CTC."""

import os

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `${sign_ctc.cwd:}`: the folder the command runs in (conf/paths). Unlike `${hydra:runtime.cwd}` it
# resolves before a job starts too, where a `-m` sweep resolves `hydra.sweep.dir` and the Optuna
# storage path (paths.log_dir): `python train.py -m ...` failed there with "HydraConfig was not set".
if not OmegaConf.has_resolver("sign_ctc.cwd"):
    OmegaConf.register_new_resolver("sign_ctc.cwd", os.getcwd)


def _precision_for(accelerator: str) -> str:
    """bf16-mixed where the run lands on a CUDA GPU (the CTC loss stays float32), else 32-true."""
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu else "32-true"


# `${sign_ctc.precision_for:${.accelerator}}`: trainer=ddp trains in bf16 on GPUs and in float32 on CPUs.
if not OmegaConf.has_resolver("sign_ctc.precision_for"):
    OmegaConf.register_new_resolver("sign_ctc.precision_for", _precision_for)
