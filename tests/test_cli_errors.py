"""Every command turns a user error into one line and a non-zero exit, never a traceback (issue 30 item 6).

Each command is run as a user runs it (``python -m sign_ctc.cli.<name>``, ``python eval.py``) on one
realistic mistake: a refused checkpoint, a corrupt .pose, a config that normalizes twice, a missing
file, an empty input folder, a malformed annotation or CTM. Its stderr must hold exactly one
``<command>: error: ...`` line naming the file or setting, and no traceback; ``HYDRA_FULL_ERROR=1``
brings the traceback back. The Hydra commands import torch (~5-25 s each on a busy 2-core machine):
they start as subprocesses two at a time and are marked slow (~2.5 min together there); the argparse
commands (lm, score, sweep-summary) and the in-process checks of the shared helper stay fast.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import DATA, ROOT, SMALL_CORPUS, compose_cfg

STM = DATA / "phoenix2014-groundtruth-dev.stm"

# name -> (argv after the interpreter, exit code, what the one error line says). `{tiny}`: a valid checkpoint.
HYDRA_CASES: dict[str, tuple[list[str], int, str]] = {
    "train": (["-m", "sign_ctc.cli.train", "+data.normalize=true", "logger=none"], 2,
              "train: error: features would be normalized in two places: `normalization` (mode=global) and "
              "`data.normalize`"),
    "eval": ([str(ROOT / "eval.py"), "ckpt_path=refused.ckpt"], 2,
             "eval: error: refused.ckpt was not written by sign_ctc's train.py (no vocabulary/recipe inside)"),
    "export": (["-m", "sign_ctc.cli.export", "ckpt_path=missing.ckpt"], 2,
               "export: error: checkpoint not found: missing.ckpt"),
    "predict": (["-m", "sign_ctc.cli.predict", "ckpt_path={tiny}", "pose=corrupt.pose"], 2,
                "predict: error: corrupt.pose"),
    "predict_without_a_model": (["-m", "sign_ctc.cli.predict", "pose=corrupt.pose"], 2,
                                "predict: error: give ckpt_path=<checkpoint.ckpt> or model_path=<model exported by "
                                "sign-ctc-export> (one of them)"),
    "render": (["-m", "sign_ctc.cli.render", "ckpt_path={tiny}", "pose=corrupt.pose"], 2,
               "render: error: corrupt.pose"),
    "extract": (["-m", "sign_ctc.cli.extract", "input=empty", "output=landmarks"], 2,
                "extract: error: empty: no videos, frame images or frame folders found"),
    "pack": (["-m", "sign_ctc.cli.pack", "data=phoenix2014", "data.root=nocorpus"], 2,
             "pack: error: corpus annotation nocorpus/annotations/manual/train.corpus.csv not found"),
    "live": (["-m", "sign_ctc.cli.live", "ckpt_path={tiny}", "source=missing.mp4"], 2,
             "live: error: source not found: missing.mp4"),
    "serve": (["-m", "sign_ctc.cli.serve", "ckpt_path=missing.ckpt"], 2,
              "serve: error: checkpoint not found: missing.ckpt"),
}
ARGPARSE_CASES: dict[str, tuple[list[str], int, str]] = {
    "lm": (["-m", "sign_ctc.cli.lm", "--corpus-csv", "bad.corpus.csv", "--out", "gloss.arpa"], 2,
           "lm: error: bad.corpus.csv:2: wrong number of '|'-separated fields"),
    "score": (["-m", "sign_ctc.cli.score", "--hyp", "bad.ctm", "--ref", str(STM)], 1,
              "score: error: bad.ctm:1: CTM line needs 5 or 6 fields, got 3: 'no start time'"),
    "sweep_summary": (["-m", "sign_ctc.cli.sweep_summary", "no_sweep"], 2,
                      "sign-ctc-sweep-summary: error: not a directory: no_sweep"),
}
# With HYDRA_FULL_ERROR=1 a command shows the traceback of the error type instead.
FULL_ERROR = {
    "export": (HYDRA_CASES["export"][0], "CheckpointError: checkpoint not found: missing.ckpt"),
    "lm": (ARGPARSE_CASES["lm"][0], "AnnotationError: bad.corpus.csv:2: wrong number of '|'-separated fields"),
}


def _inputs(folder: Path) -> None:
    """The users' mistakes, on disk."""
    import torch

    torch.save({"state_dict": {}}, folder / "refused.ckpt")  # a torch file, not a sign_ctc checkpoint
    _argparse_inputs(folder)


def _argparse_inputs(folder: Path) -> None:
    (folder / "corrupt.pose").write_bytes(b"\x00\x01 not a pose file")
    (folder / "empty").mkdir()
    (folder / "bad.corpus.csv").write_text("id|folder|signer|annotation\nsent1|only two fields\n")
    (folder / "bad.ctm").write_text("no start time\n")


def _run(argv: list[str], cwd: Path, full_error: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):
    """Every Hydra case started at once (two processes at a time); each test waits for its own."""
    from tests.test_export import write_tiny_checkpoint

    folder = tmp_path_factory.mktemp("cli_errors")
    _inputs(folder)
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model=student"], folder / "run", cache_dir)
    tiny = write_tiny_checkpoint(cfg, folder / "tiny.ckpt")
    pool = ThreadPoolExecutor(max_workers=2)
    futures: dict[str, Future] = {
        name: pool.submit(_run, [a.replace("{tiny}", str(tiny)) for a in argv], folder)
        for name, (argv, _, _) in HYDRA_CASES.items()
    }
    futures["full:export"] = pool.submit(_run, FULL_ERROR["export"][0], folder, True)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _check_one_line(proc: subprocess.CompletedProcess, code: int, says: str) -> None:
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(says), proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HYDRA_CASES))
def test_hydra_command_reports_a_user_error_in_one_line(runs, name: str) -> None:
    _check_one_line(runs[name].result(), *HYDRA_CASES[name][1:])


@pytest.mark.parametrize("name", list(ARGPARSE_CASES))
def test_argparse_command_reports_a_user_error_in_one_line(tmp_path: Path, name: str) -> None:
    _argparse_inputs(tmp_path)
    argv, code, says = ARGPARSE_CASES[name]
    _check_one_line(_run(argv, tmp_path), code, says)


@pytest.mark.slow
def test_predict_names_what_is_wrong_with_the_pose_file(runs) -> None:
    """The one line says why the file was refused, not only which file."""
    (line,) = [ln for ln in runs["predict"].result().stderr.splitlines() if "error:" in ln]
    assert "corrupt.pose" in line and len(line) > len("predict: error: corrupt.pose") + 10, line


def _check_traceback(proc: subprocess.CompletedProcess, name: str) -> None:
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr, proc.stderr[-3000:]
    assert FULL_ERROR[name][1] in proc.stderr, proc.stderr[-3000:]
    assert f"{name}: error:" not in proc.stderr


@pytest.mark.slow
def test_hydra_full_error_keeps_the_traceback(runs) -> None:
    _check_traceback(runs["full:export"].result(), "export")


def test_hydra_full_error_keeps_the_traceback_of_argparse_commands(tmp_path: Path) -> None:
    _argparse_inputs(tmp_path)
    _check_traceback(_run(FULL_ERROR["lm"][0], tmp_path, full_error=True), "lm")


@pytest.mark.slow
def test_diagnose_reports_a_refused_config_as_a_failed_check(tmp_path: Path) -> None:
    """sign-ctc-diagnose reports every failure as a FAIL row (exit 1), a refused config included."""
    proc = _run(["-m", "sign_ctc.cli.diagnose", "+data.normalize=true", "logger=none"], tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())  # the table folds long figures over lines
    assert "1 dataset loads" in out and "FAIL" in out and "NormalizationConfigError" in out, proc.stdout


def test_guarded_reports_user_errors_and_keeps_bugs_tracebacks(capsys, monkeypatch) -> None:
    """In process: a project error or a missing file is one line and exit 2; anything else is a bug and
    propagates (with its traceback); HYDRA_FULL_ERROR=1 re-raises the user error too."""
    from sign_ctc.cli import guarded, run_command
    from sign_ctc.features.pose_io import PoseFileError

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def fails(exc: BaseException) -> None:
        raise exc

    with pytest.raises(SystemExit) as info:
        guarded("predict", fails, PoseFileError("clip.pose: truncated header"))
    assert info.value.code == 2 and capsys.readouterr().err == "predict: error: clip.pose: truncated header\n"
    with pytest.raises(SystemExit) as info:
        guarded("lm", fails, FileNotFoundError(2, "No such file or directory", "train.corpus.csv"))
    assert info.value.code == 2 and "train.corpus.csv" in capsys.readouterr().err
    with pytest.raises(KeyError):
        guarded("eval", fails, KeyError("a bug"))
    assert guarded("eval", lambda: 0.25) == 0.25  # train/eval hand their metric to the sweeper
    with pytest.raises(SystemExit) as info:
        run_command("extract", lambda: 1)  # a command's own non-zero exit code
    assert info.value.code == 1
    assert run_command("extract", lambda: 0) is None
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(PoseFileError, match="truncated header"):
        guarded("predict", fails, PoseFileError("clip.pose: truncated header"))


def _error_classes() -> dict[str, tuple[str, list[str]]]:
    """class name -> (module, base names) of every ``class ...Error`` in sign_ctc."""
    found = {}
    for path in sorted((ROOT / "sign_ctc").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                found[node.name] = (str(path.relative_to(ROOT)), [ast.unparse(b) for b in node.bases])
    return found


def test_every_project_error_derives_from_the_one_base() -> None:
    """Each error class of sign_ctc is a SignCtcError (directly or through another project error), so
    that every command reports it as one line."""
    classes = _error_classes()
    assert len(classes) >= 20, sorted(classes)

    def rooted(name: str) -> bool:
        return name == "SignCtcError" or any(rooted(b) for b in classes.get(name, ("", []))[1])

    assert [f"{m}: {n}" for n, (m, _) in classes.items() if not rooted(n)] == []


def test_every_command_main_goes_through_the_shared_helper() -> None:
    """No command repeats the error handling or the exit-code boilerplate: each uses sign_ctc.cli's helper."""
    for path in sorted((ROOT / "sign_ctc" / "cli").glob("*.py")):
        if path.stem == "__init__":
            continue
        source = path.read_text()
        assert "run_command(" in source or "guarded(" in source, path.name
        assert "if code:\n        sys.exit(code)" not in source, path.name


def test_a_sweep_job_leaves_its_error_to_the_sweeper(capsys, monkeypatch) -> None:
    """In a Hydra multirun job the error propagates: the sweeper records the failed job (Optuna goes on to
    the next trial up to its max_failure_rate) instead of the whole sweep exiting at the first bad job."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from sign_ctc.cli import guarded
    from sign_ctc.models.normalization import NormalizationConfigError

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def refused() -> None:
        raise NormalizationConfigError("features would be normalized in two places")

    GlobalHydra.instance().clear()
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        HydraConfig().set_config(compose(config_name="export", return_hydra_config=True,
                                         overrides=["hydra.mode=MULTIRUN"]))
    try:
        with pytest.raises(NormalizationConfigError):
            guarded("train", refused)
    finally:
        HydraConfig.instance().cfg = None
    with pytest.raises(SystemExit):  # a single run again
        guarded("train", refused)
    assert capsys.readouterr().err == "train: error: features would be normalized in two places\n"
