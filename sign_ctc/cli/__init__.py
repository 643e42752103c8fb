"""Command-line entry points: each is `python -m sign_ctc.cli.<name>` and the console script `sign-ctc-<name>`."""

# The configs are package data (sign_ctc/conf): found the same way from a checkout, an editable install or
# a wheel. A relative config_path would make Hydra look beside the calling module instead. Hydra imports
# sign_ctc.conf to read them, which registers the configs' resolvers.
CONF_DIR = "pkg://sign_ctc.conf"
