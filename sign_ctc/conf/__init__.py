"""The project's Hydra configs (``pkg://sign_ctc.conf``), shipped in the package so installed commands find them.

Importing this package registers the OmegaConf resolvers the configs use. Hydra imports it whenever it
reads a config from here (``importlib.resources.files("sign_ctc.conf")``), so a config composed through
the console scripts, ``train.py`` or the compose API (``initialize_config_module("sign_ctc.conf")``)
resolves without the caller importing anything first.
"""

import os

from omegaconf import OmegaConf

def _precision_for(accelerator: str) -> str:
    """bf16-mixed where the run lands on a CUDA GPU (the CTC loss stays float32), else 32-true."""
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu else "32-true"


# `${sign_ctc.cwd:}`: the folder the command runs in (paths/default.yaml). Unlike `${hydra:runtime.cwd}` it
# resolves before a job starts too, where a `-m` sweep resolves `hydra.sweep.dir` and the Optuna
# storage path (paths.log_dir): `python train.py -m ...` failed there with "HydraConfig was not set".
if not OmegaConf.has_resolver("sign_ctc.cwd"):
    OmegaConf.register_new_resolver("sign_ctc.cwd", os.getcwd)
# `${sign_ctc.precision_for:${.accelerator}}`: trainer=ddp trains in bf16 on GPUs and in float32 on CPUs.
if not OmegaConf.has_resolver("sign_ctc.precision_for"):
    OmegaConf.register_new_resolver("sign_ctc.precision_for", _precision_for)
