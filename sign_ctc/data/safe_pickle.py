"""Reading annotation pickles without running their code.

``pickle.load`` imports and calls whatever a file names, so a downloaded annotation file could run
arbitrary code. Annotation pickles (CSL-Daily's ``csl2020ct_v2.pkl``) hold only dicts, lists,
strings and numbers: the unpickler here builds those and refuses every class or function a file
asks for, naming it.
"""

from __future__ import annotations

import builtins
import io
import pickle
from pathlib import Path
from typing import Any

from sign_ctc.errors import SignCtcError

# Builtin containers and scalars that some pickle protocols reach through find_class (protocol 2
# writes sets as ``builtins.set``); everything else (numpy, pandas, functions) is refused.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("builtins", name): getattr(builtins, name)
    for name in ("set", "frozenset", "list", "dict", "tuple", "str", "bytes", "bytearray", "int", "float", "bool",
                 "complex")
}


class UnsafePickleError(SignCtcError, ValueError):
    """A pickle that asks for a class or function outside builtin containers and scalars."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafePickleError(
            f"{self.source}: the pickle asks for {module}.{name}; only builtin containers and scalars "
            "(dict, list, tuple, set, str, int, float, bool) are read from annotation files"
        )


def load_plain_pickle(path: str | Path) -> Any:
    """The object in ``path``, built only from builtin containers and scalars."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open("rb") as f:
        try:
            return _RestrictedUnpickler(f, str(path)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
            raise UnsafePickleError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
