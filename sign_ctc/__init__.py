"""sign_ctc: continuous sign language recognition from MediaPipe landmarks with CTC."""

import os

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `${sign_ctc.cwd:}`: the folder the command runs in (conf/paths). Unlike `${hydra:runtime.cwd}` it
# resolves before a job starts too, where a `-m` sweep resolves `hydra.sweep.dir` and the Optuna
# storage path (paths.log_dir): `python train.py -m ...` failed there with "HydraConfig was not set".
if not OmegaConf.has_resolver("sign_ctc.cwd"):
    OmegaConf.register_new_resolver("sign_ctc.cwd", os.getcwd)
