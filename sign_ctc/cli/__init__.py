"""Command-line entry points: each is `python -m sign_ctc.cli.<name>` and the console script `sign-ctc-<name>`.

Every command's ``main`` runs its body through :func:`run_command` (or :func:`guarded`): an error the
user can fix (:class:`sign_ctc.errors.SignCtcError` - a bad file, a refused checkpoint, a config
refusal - or a missing file) becomes one line, ``<command>: error: <message>``, on stderr and exit
status 2, not a traceback. ``HYDRA_FULL_ERROR=1`` keeps the traceback, for every command (Hydra's own
switch, honoured by the argparse commands too). Inside a Hydra task function this is the only way:
an exception that leaves it is printed by Hydra with a traceback, while ``SystemExit`` passes through.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from sign_ctc.errors import SignCtcError

# The configs are package data (sign_ctc/conf): found the same way from a checkout, an editable install or
# a wheel. A relative config_path would make Hydra look beside the calling module instead. Hydra imports
# sign_ctc.conf to read them, which registers the configs' resolvers.
CONF_DIR = "pkg://sign_ctc.conf"

EXIT_BAD_INPUT = 2
# What the user can fix. A missing file is one too: its message names the path.
USER_ERRORS: tuple[type[BaseException], ...] = (SignCtcError, FileNotFoundError)


def full_error() -> bool:
    """``HYDRA_FULL_ERROR=1``: show the traceback instead of the one line (for a bug report)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def in_multirun() -> bool:
    """A job of a Hydra sweep (``-m``): its error is the job's, recorded by the launcher or sweeper (the
    Optuna sweeper marks the trial failed and goes on, up to its ``max_failure_rate``); exiting here
    would end the whole sweep."""
    if "hydra" not in sys.modules:  # an argparse command: Hydra is not even imported
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def report_error(name: str, exc: BaseException, code: int = EXIT_BAD_INPUT) -> int:
    """Print ``<name>: error: <message>`` to stderr and return the exit code; re-raise under HYDRA_FULL_ERROR=1.

    For the commands whose ``run(cfg)`` returns an exit code (tests call it) and catches its errors itself."""
    if full_error():
        raise exc
    print(f"{name}: error: {exc}", file=sys.stderr)
    return code


def guarded(name: str, body: Callable[..., Any], *args: Any) -> Any:
    """``body(*args)``'s value (train/eval: the metric a sweeper minimizes; argparse commands: the exit
    code); a user error ends the process with its one line and exit status 2, except in a sweep's job."""
    try:
        return body(*args)
    except USER_ERRORS as exc:
        if in_multirun():
            raise
        sys.exit(report_error(name, exc))


def run_command(name: str, body: Callable[..., int | None], *args: Any) -> None:
    """Run a command whose ``body(*args)`` returns its exit code: a non-zero code ends the process with it."""
    code = guarded(name, body, *args)
    if code:
        sys.exit(code)
