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

from importlib import import_module

from sign_ctc.run.backend import share_cores_politely


def _run(name: str) -> object:
    """The command's ``main()``, whose return value the script passes to ``sys.exit`` (an exit code for
    the argparse commands, None for the Hydra ones, which exit themselves on failure)."""
    share_cores_politely()
    return import_module(f"sign_ctc.cli.{name}").main()


def train() -> object:
    return _run("train")


def eval() -> object:  # noqa: A001 (the command's name; this module never calls the builtin)
    return _run("eval")


def extract() -> object:
    return _run("extract")


def pack() -> object:
    return _run("pack")


def lm() -> object:
    return _run("lm")


def score() -> object:
    return _run("score")


def predict() -> object:
    return _run("predict")


def diagnose() -> object:
    return _run("diagnose")


def render() -> object:
    return _run("render")


def export() -> object:
    return _run("export")


def sweep_summary() -> object:
    return _run("sweep_summary")


def live() -> object:
    return _run("live")


def serve() -> object:
    return _run("serve")
