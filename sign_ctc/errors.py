"""The one base class of sign_ctc's own errors, so that every command reports them the same way.

Each error the project raises for something the user can fix (a bad or missing file, a refused
checkpoint, a config that would normalize twice, a model that cannot stream, a tool that is not
installed) derives from :class:`SignCtcError` *and* from the built-in type it always had
(``ValueError``, ``RuntimeError``, ``ImportError``): existing ``except ValueError`` code keeps
working, and the commands (:func:`sign_ctc.cli.guarded`) turn any of them into one line on stderr
and a non-zero exit instead of a traceback. An error that is not a ``SignCtcError`` is a bug and
keeps its traceback. No imports: every package, ``scoring`` (no torch) included, may use it.
"""

from __future__ import annotations


class SignCtcError(Exception):
    """Something the user can fix; the message says what and names the file, sample or setting."""


class ConfigError(SignCtcError, ValueError):
    """A command line or config that cannot work (a missing or contradictory setting); the message names
    the setting and what to give instead. For refusals that have no more specific error type."""
