"""The console scripts' entry points: set the OpenMP wait policy first, then load and run the command.

Why a module of its own: an installed ``sign-ctc-<name>`` script imports its entry point's module before
calling it, and every command module imports torch, whose OpenMP runtime reads ``OMP_WAIT_POLICY`` once,
when torch loads. Pointing the scripts straight at ``sign_ctc.cli.<name>:main`` would load torch with
libgomp's spinning threads, which collapse runs sharing a machine (:func:`sign_ctc.run.backend.share_cores_politely`).
This module imports neither torch nor a command until the script calls it. ``python train.py`` and
``python eval.py`` do the same in their ``__main__`` block; ``python -m sign_ctc.cli.<name>`` cannot (the
module loads torch before any of its code runs): export ``GOMP_SPINCOUNT=3000`` there.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec

from sign_ctc.run.backend import share_cores_politely


def __getattr__(name: str) -> Callable[[], object]:
    """``sign_ctc.launch.<name>``: the entry point of ``sign_ctc/cli/<name>.py`` (what ``[project.scripts]``
    names), made on lookup so that a new command needs no line here. Calling it sets the wait policy,
    then imports the command and returns its ``main()``, whose value the script passes to ``sys.exit``
    (an exit code for the argparse commands, None for the Hydra ones, which exit themselves on failure)."""
    if name.startswith("_") or find_spec(f"sign_ctc.cli.{name}") is None:
        raise AttributeError(f"module 'sign_ctc.launch' has no attribute {name!r}: no command sign_ctc/cli/{name}.py")

    def entry() -> object:
        share_cores_politely()
        return import_module(f"sign_ctc.cli.{name}").main()

    entry.__name__ = entry.__qualname__ = name
    return entry
