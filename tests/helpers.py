"""What the tests share besides fixtures: paths, the small-corpus overrides and the config composer.

Tests import it as ``tests.helpers`` (``tests`` is a package, so pytest puts the repository on the path
from whatever directory it runs in).
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "sign_ctc" / "conf"
DATA = Path(__file__).resolve().parent / "data"

# The small corpus every training test shares (built once per session under the cache dir).
SMALL_CORPUS = ["data.corpus.train=48", "data.corpus.dev=12", "data.corpus.test=12", "data.num_workers=0",
                "data.batch_size=8", "data.eval_batch_size=12"]


def compose_cfg(config_name: str, overrides: list[str], output_dir: Path, cache: Path) -> DictConfig:
    """Compose the real config (pkg://sign_ctc.conf) as Hydra would for a run, with test paths."""
    GlobalHydra.instance().clear()
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=[
            f"paths.output_dir={output_dir}", f"paths.log_dir={output_dir}", f"paths.cache_dir={cache}",
            *overrides,
        ])
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
