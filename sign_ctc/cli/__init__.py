"""Command-line entry points: each is `python -m sign_ctc.cli.<name>` and the console script `sign-ctc-<name>`."""

from pathlib import Path

# The repository's conf/ as an absolute path: a console script's Hydra would otherwise look for a
# Python package named `conf` (it resolves a relative config_path against the calling module).
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
