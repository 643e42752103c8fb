"""The package works wherever it is installed: configs are package data, found without the checkout.

The fast tests compose the configs as a notebook would (Hydra's compose API in a fresh interpreter that
has not imported sign_ctc) and run a console script from an empty folder. The slow test builds the
wheel from a copy of the package alone, installs it into a new virtual environment outside the
checkout, and trains, evaluates and predicts with its console scripts from an empty folder: on this
interpreter, and on each other Python that requires-python declares where ``SIGN_CTC_PYTHON_3_13``
(etc.) names an interpreter whose environment holds the pinned dependencies for that Python (e.g. a
venv where the wheel was pip-installed), else that case is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import CONF, DATA, ROOT

VIDEO = DATA / "signer_58f.mp4"  # the same file as ../shared/data/real/signer_58f.mp4
POSE = DATA / "signer_holistic_97f.pose"  # a real extracted file (../shared/data/real/)
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# A tiny synthetic corpus and one epoch: the run is about the installed package, not the model.
TINY_RUN = ["data.corpus.train=16", "data.corpus.dev=4", "data.corpus.test=4", "data.num_workers=0",
            "data.batch_size=8", "data.eval_batch_size=4", "trainer.max_epochs=1", "logger=none",
            "callbacks.rich_progress_bar=null"]

COMPOSE = """
import json, sys
assert not any(m == "sign_ctc" or m.startswith("sign_ctc.") for m in sys.modules), "sign_ctc imported already"
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

initialize_config_module("sign_ctc.conf", version_base="1.3")
# No Hydra run, so no run directory for ${hydra:runtime.output_dir}: a notebook names its own.
cfg = compose("train", overrides=["trainer=ddp", "paths.output_dir=" + sys.argv[1]])
OmegaConf.resolve(cfg)
print(json.dumps({"root_dir": cfg.paths.root_dir, "log_dir": cfg.paths.log_dir, "precision": cfg.trainer.precision,
                  "accelerator": cfg.trainer.accelerator, "model": cfg.model._target_}))
"""


def _clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH (the checkout must not be importable) and W&B settings."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("WANDB_")}


def test_compose_api_resolves_without_importing_sign_ctc(tmp_path: Path) -> None:
    """`${sign_ctc.cwd:}` and `${sign_ctc.precision_for:...}` resolve: Hydra imports sign_ctc.conf, which registers them."""
    from sign_ctc.conf import _precision_for

    proc = subprocess.run([sys.executable, "-c", COMPOSE, str(tmp_path / "run")], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["root_dir"] == str(tmp_path) and got["log_dir"] == str(tmp_path / "outputs")
    assert got["precision"] == _precision_for(got["accelerator"])
    assert got["model"] == "sign_ctc.models.ctc_module.CTCModule"


def test_console_script_finds_the_package_configs(tmp_path: Path) -> None:
    """From an empty folder (no conf/ anywhere near), the installed script composes train and names its run dir there."""
    script = Path(sys.executable).parent / "sign-ctc-train"
    proc = subprocess.run([str(script), "--cfg", "job", "--resolve", "logger=none", "trainer.max_epochs=3"],
                          cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max_epochs: 3" in proc.stdout and f"root_dir: {tmp_path}\n" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # --cfg prints; no run folder, no outputs/


def _yaml_files(names: list[str]) -> set[str]:
    return {n.removeprefix("sign_ctc/conf/") for n in names if n.startswith("sign_ctc/conf/") and n.endswith(".yaml")}


def _copy_package_source(dest: Path) -> None:
    """What a source distribution holds (pyproject, README, the package): the wheel must need nothing else."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "sign_ctc", dest / "sign_ctc", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _offline_build() -> list[str]:
    """Build with this environment's setuptools when it can write wheels alone (>= 70.1: no `wheel` package),
    so the test needs no index; else pip's isolated build fetches pyproject's build requirements."""
    try:
        import setuptools
        from packaging.version import Version
    except ImportError:
        return []
    return ["--no-build-isolation"] if Version(setuptools.__version__) >= Version("70.1") else []


def _declared_pythons() -> list[str]:
    import tomllib

    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    return [f"3.{minor}" for minor in range(8, 20) if f"3.{minor}.0" in spec]


def _python_for(version: str) -> str:
    """The interpreter whose environment supplies the dependencies for Python ``version``, or skip."""
    if version == THIS_PYTHON:
        return sys.executable
    var = "SIGN_CTC_PYTHON_" + version.replace(".", "_")
    python = os.environ.get(var)
    if not python:
        pytest.skip(f"Python {version}: set {var} to a Python {version} whose environment holds the pinned "
                    f"dependencies (a venv where the wheel was pip-installed) to run the wheel there")
    got = subprocess.run([python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                         capture_output=True, text=True, timeout=60).stdout.strip()
    assert got == version, f"{var}={python} is Python {got or '?'}, not {version}"
    return python


def _wheel_venv(tmp: Path, python: str = sys.executable) -> tuple[Path, Path]:
    """Build the wheel and install it into a new venv of ``python``; returns (venv bin dir, the wheel).

    The venv gets the dependencies already installed beside ``python`` through a .pth line (no
    network), after its own site-packages. A plain path in a .pth file does not run the .pth files in that
    folder, so the checkout's editable-install finder stays inactive: sign_ctc comes from the wheel alone
    (the wheel is pure Python: the one built here installs on every Python).
    """
    src = tmp / "src"
    _copy_package_source(src)
    wheels = tmp / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *_offline_build(), "-w",
                           str(wheels), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = wheels.glob("sign_ctc-*.whl")
    venv = tmp / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    # Without PYTHONPATH: pip would take a sign_ctc.egg-info left in the checkout for an installed sign_ctc.
    proc = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                           str(wheel)], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    venv_site = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    deps = sysconfig.get_paths()["purelib"] if python == sys.executable else subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    (Path(venv_site) / "zz_checkout_dependencies.pth").write_text(deps + "\n")
    return bin_dir, wheel


@pytest.mark.slow
@pytest.mark.parametrize("version", _declared_pythons())
def test_wheel_runs_from_an_empty_folder(tmp_path: Path, version: str) -> None:
    bin_dir, wheel = _wheel_venv(tmp_path, _python_for(version))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        shipped = _yaml_files(names)
    in_checkout = {str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml")}
    assert shipped == in_checkout and "hydra/launcher/slurm.yaml" in shipped
    static = CONF.parent / "serve" / "static"  # the live page works from the wheel, not only a checkout
    assert {f"sign_ctc/serve/static/{p.name}" for p in static.iterdir()} <= set(names)

    work = tmp_path / "work"
    work.mkdir()
    env = _clean_env()

    def run(*argv: str, timeout: int = 600, rc: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        assert proc.returncode == rc, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        return proc

    where = run("python", "-c", "import sys, sign_ctc, sign_ctc.conf; print(sys.version_info[:2], sign_ctc.__file__)")
    assert where.stdout.startswith(f"({version.replace('.', ', ')})") and Path(
        where.stdout.split(") ", 1)[1].strip()).is_relative_to(tmp_path / "venv"), where.stdout
    # tracker=auto: the legacy graph where the installed mediapipe has it (3.11/3.12), else the Tasks API.
    backend = run("python", "-c", "from sign_ctc.extraction.tracker import HolisticOptions as O; print(O().backend)")
    backend = backend.stdout.strip()
    assert backend == ("tasks" if version >= "3.13" else "legacy")

    job = run("sign-ctc-train", "--cfg", "job", "logger=none").stdout
    assert "_target_: sign_ctc.models.ctc_module.CTCModule" in job

    proc = run("sign-ctc-train", *TINY_RUN)
    wer = re.search(r"^test WER (\d+\.\d\d)%", proc.stdout, flags=re.M)
    assert wer, proc.stdout[-2000:]
    (train_run,) = (work / "outputs" / "train" / "runs").iterdir()
    best = train_run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (work / ".cache").is_dir()  # the cache lands in the folder the command runs in
    tested = json.loads((train_run / "test_results.json").read_text())
    assert tested["checkpoint"].endswith("best.ckpt") and f"{tested['test']['wer']:.2f}" == wer.group(1)

    # The checkpoint's own corpus, rebuilt from the same config in this folder's cache: the same test WER.
    proc = run("sign-ctc-eval", f"ckpt_path={best}", "figures=false")
    (eval_run,) = (work / "outputs" / "eval" / "runs").iterdir()
    assert re.search(rf"^test WER {re.escape(wer.group(1))}%", proc.stdout, flags=re.M), proc.stdout[-2000:]
    rows = (eval_run / "test_predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header + the 4 test sentences

    proc = run("sign-ctc-predict", f"pose={POSE}", f"ckpt_path={best}", f"hydra.run.dir={work / 'predict_pose'}")
    (result,) = json.loads((work / "predict_pose" / "predictions.json").read_text())
    assert result["id"] == POSE.stem and result["frames"] == 97
    assert f"{POSE.stem}\t{result['glosses']}" in proc.stdout

    if backend == "legacy":
        proc = run("sign-ctc-predict", f"video={VIDEO}", f"ckpt_path={best}")
        (predict_run,) = (work / "outputs" / "predict" / "runs").iterdir()
        (result,) = json.loads((predict_run / "predictions.json").read_text())
        assert result["id"] == "signer_58f" and result["frames"] == 58
        assert f"signer_58f\t{result['glosses']}" in proc.stdout
    else:  # the Tasks model file is the user's download: without it, one line that says so
        proc = run("sign-ctc-predict", f"video={VIDEO}", f"ckpt_path={best}", rc=2)
        assert proc.stderr.startswith("predict: error: tracker=tasks: no model file given") and "Traceback" not in (
            proc.stderr), proc.stderr
    if version >= "3.13":  # no flashlight-text / SQLAlchemy 1.4 wheels: the beam search and Optuna say why
        proc = run("sign-ctc-eval", f"ckpt_path={best}", "decoding=beam", rc=2)
        assert proc.stderr.startswith("eval: error: decoding=beam needs flashlight-text"), proc.stderr
        proc = run("sign-ctc-train", "hparams_search=optuna", rc=2)
        assert proc.stderr.startswith("train: error: hparams_search=optuna needs the Optuna sweeper"), proc.stderr


def test_ci_checks_every_declared_python() -> None:
    """.ci/resolve_pins.py (a CI step: pip's binary-only dry run needs PyPI) checks the Pythons pyproject declares."""
    import importlib.util
    import tomllib

    spec = importlib.util.spec_from_file_location("resolve_pins", ROOT / ".ci" / "resolve_pins.py")
    resolve_pins = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resolve_pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert resolve_pins.declared_versions(project) == ["3.11", "3.12", "3.13"]
    assert resolve_pins.declared_versions({"requires-python": ">=3.11,<3.13"}) == ["3.11", "3.12"]
    assert "resolve_pins.py" in (ROOT / ".ci" / "run").read_text().split("make test\n")[0]


def test_pins_per_python_match_what_the_code_expects() -> None:
    """The pins each declared Python gets (markers evaluated for it, as resolve_pins.py passes them to pip):
    3.11 and 3.12 one set, with the legacy mediapipe; 3.13 numpy 2 and a mediapipe whose Tasks
    HolisticLandmarker does not abort, without flashlight-text and the Optuna sweeper stack."""
    import importlib.util
    import tomllib

    from packaging.requirements import Requirement

    from sign_ctc.extraction.tracker import LEGACY_LAST_EXCLUSIVE, TASKS_FIRST, _version_tuple, default_backend

    spec = importlib.util.spec_from_file_location("resolve_pins", ROOT / ".ci" / "resolve_pins.py")
    resolve_pins = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resolve_pins)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def pinned(version: str) -> dict[str, str]:
        pins, _ = resolve_pins.pins_for(declared, version)
        return {Requirement(p).name.lower(): str(Requirement(p).specifier).removeprefix("==") for p in pins}

    old, new = pinned("3.11"), pinned("3.13")
    assert pinned("3.12") == old and "SQLAlchemy==1.4.54" in resolve_pins.pins_for(declared, "3.12")[0]
    assert old["numpy"] == "1.26.4" and _version_tuple(old["mediapipe"]) < LEGACY_LAST_EXCLUSIVE
    assert default_backend(old["mediapipe"]) == "legacy" and default_backend(new["mediapipe"]) == "tasks"
    assert _version_tuple(new["mediapipe"]) >= TASKS_FIRST and _version_tuple(new["numpy"]) >= (2, 1)
    gone = {"flashlight-text", "hydra-optuna-sweeper", "optuna", "sqlalchemy", "alembic"}
    assert gone <= set(old) and not gone & set(new)
    assert {k: v for k, v in old.items() if k not in gone | {"numpy", "mediapipe"}} == {
        k: v for k, v in new.items() if k not in {"numpy", "mediapipe"}}
