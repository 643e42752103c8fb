"""The import rules of docs/ARCHITECTURE.md: data flows one way through the packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sign_ctc"

# package -> the sign_ctc packages (or single modules) it may import; ``atomic`` is the shared
# write-atomically helper, ``errors`` the base class of the project's own errors (every package may use
# both). Of data/, a model holds the vocabulary (its output classes) and reads the
# typed batch, as the callbacks do.
ALLOWED: dict[str, set[str]] = {
    "conf": set(),
    "features": {"atomic", "errors"},
    "extraction": {"atomic", "errors", "features", "data"},
    "data": {"atomic", "errors", "features"},
    "scoring": {"atomic", "errors"},
    "decoding": {"atomic", "errors", "scoring"},
    "models": {"atomic", "errors", "features", "data.vocabulary", "data.batch", "decoding", "scoring"},
    "viz": {"atomic", "errors", "features", "decoding", "models"},
    "callbacks": {"atomic", "errors", "features", "data.batch", "decoding", "models", "viz"},
    "run": {"atomic", "errors", "features", "data", "decoding", "scoring", "models", "callbacks", "viz"},
    "streaming": {"atomic", "errors", "features", "data.vocabulary", "decoding", "models"},
    "cli": {"api", "atomic", "errors", "features", "extraction", "data", "decoding", "scoring", "models", "callbacks",
            "run", "viz", "streaming", "serve"},
    # The live demo server: nothing imports it but its command (cli/serve.py).
    "serve": {"atomic", "errors", "features", "extraction", "decoding", "models", "streaming"},
}
# Third-party imports a package may not make at all (scoring runs where torch is not installed).
FORBIDDEN: dict[str, set[str]] = {"scoring": {"torch", "lightning", "hydra", "numpy"}}
# Heavy optional imports that must stay inside functions (importing sign_ctc never loads them).
LAZY_ONLY = {"mediapipe", "cv2", "wandb", "onnx", "onnxruntime", "matplotlib", "fastapi", "starlette", "uvicorn",
             "anyio", "websockets", "selenium"}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) of every import, leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, top))
            visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))

    visit(tree, True)
    return found


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


def test_api_imports_follow_the_flow() -> None:
    """sign_ctc/api.py (the Recognizer) sits beside cli/: it may use the packages prediction needs, not cli or run."""
    allowed = {"atomic", "errors", "features", "extraction", "data", "decoding", "models"}
    for module, top in _imports(PACKAGE / "api.py"):
        root, _, rest = module.partition(".")
        if root == "sign_ctc" and rest:
            assert rest.split(".")[0] in allowed, f"api.py imports {module}: it may import only {sorted(allowed)}"
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
    """Each module of cli/ is `sign-ctc-<name>` in [project.scripts], pointing at its `main`, and installed."""
    import sys

    modules = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem != "__init__")
    scripts = _console_scripts()
    assert scripts == {f"sign-ctc-{m.replace('_', '-')}": f"sign_ctc.cli.{m}:main" for m in modules}
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
