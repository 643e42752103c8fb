"""Check that pyproject.toml's pinned dependencies install from binary wheels on each Python it declares.

    python .ci/resolve_pins.py            # every minor version requires-python allows (3.11, 3.12, 3.13)
    python .ci/resolve_pins.py 3.14       # what a newer Python lacks (exit 1, naming the pins)

`requires-python` may only name versions whose whole pinned set resolves with wheels alone: a user of
that Python must not need a compiler. pip's dry run resolves for another interpreter with
`--python-version` (wheel tags only), so one machine checks them all. It needs PyPI (CI has it).

pip evaluates environment markers for the interpreter that runs it, not for `--python-version`, so a
pin's own marker (`numpy==2.2.6; python_version >= "3.13"`) is evaluated here, for the version checked,
and the pins that apply are passed without it. Markers inside the dependencies' metadata are still
pip's, i.e. the running interpreter's (a limit of `--python-version`); installing the wheel into a
venv of that Python is the full check (tests/test_package.py, `SIGN_CTC_PYTHON_3_13`).

One exception is built here first: antlr4-python3-runtime 4.9.3 (hydra-core and omegaconf pin 4.9.*)
is published as a pure-Python sdist only; its wheel is the same on every Python 3, so it is built
once and offered to the dry run with --find-links. On failure, each pin is retried alone to name the
ones that have no wheel for that Python.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
# A recent pip reads wheel metadata from the index (PEP 658/714) and backtracks better than the one a
# fresh venv bundles.
PIP = "pip>=25"
PURE_PYTHON_SDISTS = ["antlr4-python3-runtime==4.9.3"]
CANDIDATES = [f"3.{minor}" for minor in range(8, 20)]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, **kwargs)


def _fail(message: str, proc: subprocess.CompletedProcess | None = None) -> None:
    if proc is not None:
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if not line.startswith("WARNING: Location")]
        print("\n".join(lines[-20:]), file=sys.stderr)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def declared_versions(project: dict) -> list[str]:
    """The minor versions requires-python admits, e.g. ['3.11', '3.12'] for '>=3.11,<3.13'."""
    spec = SpecifierSet(project["requires-python"])
    return [v for v in CANDIDATES if f"{v}.0" in spec]


def pins_for(pins: list[str], version: str) -> tuple[list[str], list[str]]:
    """``(applying, left_out)``: the pins whose marker holds on Python ``version`` ('3.13'), without
    their markers, and the names of those a marker leaves out there."""
    env = {**default_environment(), "python_version": version, "python_full_version": f"{version}.0"}
    applying, left_out = [], []
    for pin in pins:
        req = Requirement(pin)
        if req.marker is not None and not req.marker.evaluate(env):
            left_out.append(req.name)
            continue
        req.marker = None
        applying.append(str(req))
    return applying, left_out


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", help="Python versions (default: those requires-python allows)")
    versions = parser.parse_args().versions or declared_versions(project)
    declared = project["dependencies"]
    with tempfile.TemporaryDirectory(prefix="resolve_pins_") as tmp:
        tmp = Path(tmp)
        venv = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        proc = _run([*pip, "install", "--quiet", PIP])
        if proc.returncode:
            _fail(f"could not install {PIP} from the package index (is PyPI reachable?)", proc)
        wheels = tmp / "wheels"
        proc = _run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(wheels), *PURE_PYTHON_SDISTS])
        if proc.returncode:
            _fail(f"could not build the pure-Python wheels of {PURE_PYTHON_SDISTS}", proc)
        failed = []
        for version in versions:
            def dry_run(requirements: list[str], *extra: str) -> subprocess.CompletedProcess:
                return _run([*pip, "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
                             "--python-version", version, "--target", str(tmp / f"target-{version}"),
                             "--find-links", str(wheels), *extra, *requirements])

            pins, left_out = pins_for(declared, version)
            proc = dry_run(pins)
            if proc.returncode == 0:
                note = f" (its markers leave out {', '.join(left_out)})" if left_out else ""
                print(f"Python {version}: the pinned set of pyproject.toml resolves with binary wheels only{note}")
                continue
            missing = [pin for pin in pins if dry_run([pin], "--no-deps").returncode]
            if len(missing) == len(pins):
                _fail(f"no pin resolves alone for Python {version}: is the package index reachable?", proc)
            failed.append(version)
            detail = f"no {version} wheel for {', '.join(missing)}" if missing else "their dependencies conflict"
            print(f"Python {version}: the pinned set does NOT resolve with binary wheels only: {detail}", file=sys.stderr)
            if not missing:
                _fail(f"pip's dry run for Python {version} failed", proc)
        if failed:
            _fail(f"pyproject.toml's pins do not install from wheels on Python {', '.join(failed)}")


if __name__ == "__main__":
    main()
