"""The import rules of docs/ARCHITECTURE.md: data flows one way through the packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sign_ctc"

# package -> the sign_ctc packages (or single modules) it may import; ``atomic`` (writing a file
# atomically), ``checksum`` (a file's sha256) and ``errors`` (the base class of the project's own errors)
# are the shared helpers every package may use. The recognizers (api.py,
# streaming/) build their decoder from a decoding config through run.decoding_setup, as eval does.
# Of data/, a model holds the vocabulary (its output classes) and reads the typed batch, as the
# callbacks do.
ALLOWED: dict[str, set[str]] = {
    "conf": set(),
    "features": {"atomic", "checksum", "errors"},
    "extraction": {"atomic", "checksum", "errors", "features", "data"},
    "data": {"atomic", "checksum", "errors", "features"},
    "scoring": {"atomic", "checksum", "errors"},
    "decoding": {"atomic", "checksum", "errors", "scoring"},
    "models": {"atomic", "checksum", "errors", "features", "data.vocabulary", "data.batch", "decoding", "scoring"},
    "viz": {"atomic", "checksum", "errors", "features", "decoding", "models"},
    "callbacks": {"atomic", "checksum", "errors", "features", "data.batch", "decoding", "models", "viz"},
    "run": {"atomic", "checksum", "errors", "features", "data", "decoding", "scoring", "models", "callbacks", "viz"},
    "streaming": {"atomic", "checksum", "errors", "features", "data.vocabulary", "decoding", "models", "run.decoding_setup"},
    "cli": {"api", "atomic", "checksum", "errors", "features", "extraction", "data", "decoding", "scoring", "models", "callbacks", "run", "viz",
            "streaming", "serve"},
    # The live demo server: nothing imports it but its command (cli/serve.py).
    "serve": {"atomic", "checksum", "errors", "features", "extraction", "decoding", "models", "streaming"},
}
# Third-party imports a package may not make at all (scoring runs where torch is not installed).
FORBIDDEN: dict[str, set[str]] = {"scoring": {"torch", "lightning", "hydra", "numpy"}}
# Heavy optional imports that must stay inside functions (importing sign_ctc never loads them).
LAZY_ONLY = {"mediapipe", "cv2", "wandb", "onnx", "onnxruntime", "matplotlib", "fastapi", "starlette", "uvicorn",
             "anyio", "websockets", "selenium"}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) of every import: module level, inside functions and classes, and
    under ``if TYPE_CHECKING:`` (a type-only import is still a dependency; it never runs, so it counts
    as not at module level for the lazy-import rule)."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, top))
                found.extend((f"{child.module}.{a.name}", top) for a in child.names)
            type_only = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            visit(child, top and not (type_only or nested))

    visit(tree, True)
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """sign_ctc module -> the sign_ctc modules it imports (any import of :func:`_imports`; ``from a.b
    import c`` counts as ``a.b.c`` where that is a module, else ``a.b``)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = set()
        for module, _ in _imports(path):
            while module and module not in paths:
                module = module.rpartition(".")[0]
            if module and module not in (name, "sign_ctc"):
                targets.add(module)
        graph[name] = targets
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path (first == last), or None: depth-first search."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if len(p.relative_to(PACKAGE).parts) > 1)


def test_every_package_has_a_rule() -> None:
    packages = {p.relative_to(PACKAGE).parts[0] for p in _modules()}
    assert packages == set(ALLOWED), packages ^ set(ALLOWED)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_flow(path: Path) -> None:
    package = path.relative_to(PACKAGE).parts[0]
    for module, top in _imports(path):
        root, _, rest = module.partition(".")
        if root == "sign_ctc" and rest:
            target = rest.split(".")[0]
            allowed = ALLOWED[package]
            assert target == package or target in allowed or ".".join(rest.split(".")[:2]) in allowed, (
                f"{path.relative_to(PACKAGE)} imports {module}: {package}/ may import only {sorted(allowed)}")
        assert root not in FORBIDDEN.get(package, set()), f"{path.relative_to(PACKAGE)} imports {module}"
        if top:
            assert root not in LAZY_ONLY, f"{path.relative_to(PACKAGE)} imports {module} at module level (keep it lazy)"


def test_no_import_circles() -> None:
    """No module imports itself back through others, counting type-only and function-level imports:
    a circle hidden inside a function is still two modules that cannot be understood (or moved) apart."""
    assert _find_cycle(_import_graph()) is None, " -> ".join(_find_cycle(_import_graph()) or [])


def test_the_circle_check_finds_circles() -> None:
    """The search itself: a circle through three modules is found, a diamond is not a circle."""
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_type_only_and_function_level_imports_are_seen(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sign_ctc.x import T\n"
                      "def f():\n    import sign_ctc.y\n")
    found = _imports(source)
    assert ("sign_ctc.x", False) in found and ("sign_ctc.y", False) in found


def test_api_imports_follow_the_flow() -> None:
    """sign_ctc/api.py (the Recognizer) sits beside cli/: it may use the packages prediction needs, not cli or run."""
    allowed = {"atomic", "checksum", "errors", "features", "extraction", "data", "decoding", "models", "run.decoding_setup"}
    for module, top in _imports(PACKAGE / "api.py"):
        root, _, rest = module.partition(".")
        if root == "sign_ctc" and rest:
            assert rest.split(".")[0] in allowed or ".".join(rest.split(".")[:2]) in allowed, f"api.py imports {module}: it may import only {sorted(allowed)}"
        if top:
            assert root not in LAZY_ONLY, f"api.py imports {module} at module level (keep it lazy)"


def test_scoring_loads_without_torch() -> None:
    """Official scoring (sign-ctc-score) runs on a machine with no torch: importing it loads none."""
    import subprocess
    import sys

    code = ("import sys, sign_ctc.scoring.wer, sign_ctc.scoring.ctm, sign_ctc.scoring.sclite, "
            "sign_ctc.scoring.phoenix_rules; print(sorted(m for m in ('torch', 'lightning', 'hydra') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "[]"


def _console_scripts() -> dict[str, str]:
    import tomllib

    return tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_command_is_a_console_script() -> None:
    """Each module of cli/ is `sign-ctc-<name>` in [project.scripts], entered through `sign_ctc.launch.<name>`
    (which sets the OpenMP wait policy before the command loads torch), and installed."""
    import sys

    import sign_ctc.launch

    modules = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem != "__init__")
    scripts = _console_scripts()
    assert scripts == {f"sign-ctc-{m.replace('_', '-')}": f"sign_ctc.launch:{m}" for m in modules}
    assert all(callable(getattr(sign_ctc.launch, m)) for m in modules)
    missing = [name for name in scripts if not (Path(sys.executable).parent / name).is_file()]
    assert missing == [], f"not installed beside {sys.executable} (pip install -e .): {missing}"


@pytest.mark.parametrize("name", ["sign-ctc-train", "sign-ctc-eval"])
def test_console_script_finds_the_config_from_any_folder(name: str, tmp_path: Path) -> None:
    """The installed train/eval commands compose the project's config wherever they are run."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / name
    proc = subprocess.run([str(script), "--cfg", "job", "seed=7"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "seed: 7" in proc.stdout
    assert "_target_: sign_ctc." in proc.stdout  # the composed model/data groups, not an empty config
    assert not (tmp_path / "outputs").exists()  # --cfg only prints
