"""The README's commands, run exactly as written there (only the paths filled in), with defaults.

Every command in a fenced ``bash`` block of README.md or of a docs/*.md page and every inline
`python ...` / `make ...` / `sign-ctc-...` span there is either run by a test here (``RUNS``) or listed
in ``NOT_RUN_HERE`` with the reason; a command in neither fails ``test_every_readme_command_is_run``. Commands run in subprocesses from a scratch
folder (so ``outputs/`` and ``.cache/`` land there), with the default logger (W&B, offline) and the
default number of DataLoader workers. The corpora are small copies in each release's layout
(``tests/corpora.py``); the own-corpus path starts from frame folders of a real video.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests import corpora
from tests.helpers import DATA, ROOT

README = ROOT / "README.md"
# The pages whose commands are held to RUNS / NOT_RUN_HERE like the README's: the README and every doc page.
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
VIDEO = DATA / "signer_58f.mp4"
PHOENIX_FRAMES = DATA / "phoenix2014t_frames"

# What each test runs, README / docs text verbatim.
RUNS: dict[str, list[str]] = {
    "own_corpus": [
        "sign-ctc-extract input=/data/my_videos/train output=/data/my_corpus/train workers=2",
        "sign-ctc-extract input=/data/my_videos/dev output=/data/my_corpus/dev workers=2",
        "sign-ctc-extract input=/data/my_videos/test output=/data/my_corpus/test workers=2",
        "python train.py model=i3d data=mediapipe_full data.root=/data/my_corpus",
    ],
    "phoenix2014": [
        "python train.py experiment=phoenix2014_i3d data.root=/data/phoenix-2014-multisigner data.landmarks_dir=/data/ph14_lm",
    ],
    "phoenix2014t": [
        "python train.py data=phoenix2014t data.root=/data/PHOENIX-2014-T data.landmarks_dir=/data/ph14t_lm",
    ],
    "csl_daily": [
        "python train.py data=csl_daily data.root=/data/CSL-Daily data.landmarks_dir=/data/csl_lm",
    ],
    "extract_releases": [
        "sign-ctc-extract input=/data/phoenix-2014-multisigner split=train output=/data/ph14_lm workers=2",
        "sign-ctc-extract input=/data/PHOENIX-2014-T split=train output=/data/ph14t_lm workers=2",
        "sign-ctc-extract input=/data/CSL-Daily split=train output=/data/csl_lm workers=2",
    ],
    "extract_shards": [
        "sign-ctc-extract -m input=/data/PHOENIX-2014-T split=train output=/data/ph14t_lm shard=0/4,1/4,2/4,3/4 "
        "hydra/launcher=submitit_local",
        "sign-ctc-extract output=/data/ph14t_lm merge=true",
    ],
    "eval": [
        "python eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt",
        "python eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt split=dev decoding=beam decoding.beam_width=10",
        "sign-ctc-lm --corpus-csv /data/my_corpus/train.corpus.csv --order 3 --out gloss.arpa",
        "python eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt decoding=beam decoding.lm_path=gloss.arpa decoding.lm_weight=0.5",
        "python eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt decoding=beam decoding.lm_path=gloss.arpa decoding.tune=true",
    ],
    "official_scoring": [
        "python eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt split=dev scoring.stm=/data/phoenix-2014-multisigner/evaluation/phoenix2014-groundtruth-dev.stm scoring.rules=phoenix2014",
        "sign-ctc-score --hyp outputs/eval/runs/<eval run>/dev_hyp.ctm --ref /data/phoenix-2014-multisigner/evaluation/phoenix2014-groundtruth-dev.stm --rules phoenix2014 --sclite",
    ],
    "predict": [
        "sign-ctc-predict video=/data/clip.mp4 ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt",
    ],
    "live": [
        "sign-ctc-live source=/data/clip.mp4 ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt",
        "sign-ctc-live source=/data/clip.mp4 ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt decoding=beam decoding.lm_path=gloss.arpa",
        "sign-ctc-export ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt streaming=true",
        "sign-ctc-live source=/data/clip.mp4 model_path=outputs/train/runs/<run>/checkpoints/best.stream.onnx",
    ],
    "export": [
        "sign-ctc-export ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt format=onnx",
        "sign-ctc-export ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt format=torchscript",
        "sign-ctc-predict video=/data/clip.mp4 model_path=outputs/train/runs/<run>/checkpoints/best.onnx",
    ],
    "render": [
        "sign-ctc-render ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt sample=test_00053_S07 still=14",
        "sign-ctc-render ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt pose=/data/my_corpus/test/clip_e.pose reference=\"YOU HELLO\"",
        "sign-ctc-render ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt video=/data/clip.mp4",
        "python eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt figures.n=10",
    ],
    "diagnose": [
        "sign-ctc-diagnose data=mediapipe_full data.root=/data/my_corpus",
    ],
    "sweeps": [
        "python train.py -m model.optimizer.lr=3e-4,1e-3 data=mediapipe_full data.root=/data/my_corpus",
        "sign-ctc-sweep-summary outputs/train/multiruns/<sweep>",
        "python train.py -m model.optimizer.lr=3e-4,1e-3 data=mediapipe_full data.root=/data/my_corpus hydra/launcher=joblib hydra.launcher.n_jobs=2",
    ],
    "optuna": [
        "python train.py hparams_search=optuna hydra.sweeper.n_trials=2 data=mediapipe_full data.root=/data/my_corpus",
    ],
    "ddp": [
        "python train.py trainer=ddp trainer.devices=2 trainer.accelerator=cpu data=mediapipe_full data.root=/data/my_corpus",
    ],
    "resume": [
        "python train.py model=i3d data=mediapipe_full data.root=/data/my_corpus hydra.run.dir=outputs/train/runs/<run> ckpt_path=last",
    ],
    "pack": [
        "sign-ctc-pack data=phoenix2014 data.root=/data/phoenix-2014-multisigner data.landmarks_dir=/data/ph14_lm",
    ],
}

# README / docs commands no test here runs, and why.
NOT_RUN_HERE: dict[str, str] = {
    "make train": ".ci/run runs it (about 12 minutes on 2 cores); its command line is train.py's defaults",
    "make test": "the test suite itself, run by .ci/run",
    "python train.py model=student": ".ci/run runs it after make train (10 epochs on the default corpus)",
    "python train.py model=student distillation=frame_kl distillation.teacher_ckpt=outputs/train/runs/<run>/checkpoints/best.ckpt":
        ".ci/run runs it with make train's best checkpoint as the teacher (20 epochs, the distilled default)",
    'make train ARGS="seed=1"': "a make train variant (.ci/run runs make train)",
    ".venv/bin/python .ci/resolve_pins.py 3.13": "needs PyPI; .ci/run runs the script for every declared Python "
        "(3.11, 3.12, 3.13); tests/test_package.py checks the per-Python pins it passes to pip",
    "make train PYTHON=python3.12": "make train on another interpreter; .ci/resolve_pins.py checks the pins resolve on 3.12",
    "make test-slow": "run by .ci/run",
    "python bench/bench_live.py --ckpt <student>":
        "the live benchmark (a 30-minute stream, the video paced at 25 and 30 fps); tests/test_bench.py runs its smoke mode",
    "python bench/bench_serve.py --ckpt <student>":
        "the page benchmark (headless Chromium, 45-60 s per camera rate); tests/test_serve_browser.py drives the same page",
    "sign-ctc-serve ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt":
        "tests/test_serve_browser.py runs it as written, with the page in headless Chromium",
    "make test-all": "make test + make test-slow",
    "make bench": "benchmarks print figures; tests/test_bench.py runs each script's smoke mode",
    "python bench/bench_distill.py --teacher outputs/bench_accuracy/teacher_s1234/checkpoints/best.ckpt":
        "six student trainings (~35 minutes) after the accuracy benchmark; .ci/run runs both student commands",
    "python bench/bench_accuracy.py --runs teacher --seeds 1234 1 2":
        "three make train runs (~35 minutes); .ci/run runs make train, the same train.py defaults",
    "python bench/report.py": "benchmark report (tests/test_bench.py)",
    "python bench/bench_train.py --fraction 1": "full PHOENIX-scale benchmark (~11 GB, hours on 2 cores)",
    "python train.py trainer=gpu data=mediapipe_full data.root=/data/my_corpus":
        "needs a CUDA GPU; tests/test_bench.py runs bench_gpu.py --smoke: the same loop in bf16-mixed on the CPU",
    "python train.py trainer=gpu model.compile_net=true data.pad_to_multiple=64 data=mediapipe_full data.root=/data/my_corpus":
        "needs a CUDA GPU; bench_gpu.py --smoke (tests/test_bench.py) runs the compiled net on padded batches on the CPU",
    "python bench/bench_gpu.py": "the GPU benchmark (630 teacher steps); its --smoke mode is tests/test_bench.py's",
    # docs/ pages (the README's own commands moved there keep their RUNS entries)
    "python train.py": "train.py's defaults, the command line of make train (docs/teacher_ablation.md); .ci/run runs make train",
    "python train.py ...": "an elided command in prose (docs/ARCHITECTURE.md), not a command line",
    "sign-ctc-export ... streaming=true": "an elided command in prose (docs/ARCHITECTURE.md); its full form runs in RUNS['live']",
    "python -m sign_ctc.features.header": "regenerates the recorded Holistic header under mediapipe 0.10.21 "
        "(docs/EXTRACTION.md); tests/test_tracker.py checks the recorded copy against pose-format's header",
    "sign-ctc-extract input=clips/ output=poses/ tracker=tasks model_asset=/models/holistic_landmarker.task":
        "needs the downloaded holistic_landmarker.task model, which is not here; tests/test_tracker.py runs the Tasks "
        "backend with the landmarker replaced by a recorded fake",
    "sign-ctc-predict video=clip.mp4 ckpt_path=best.ckpt tracker=tasks model_asset=/models/holistic_landmarker.task":
        "needs the downloaded holistic_landmarker.task model, which is not here; tests/test_tracker.py checks predict's "
        "tracker=tasks options",
    "sign-ctc-extract -m input=/data/videos output=/data/poses shard=0/4,1/4,2/4,3/4 hydra/launcher=submitit_local":
        "the sharded extraction of RUNS['extract_shards'] with other folders",
    "sign-ctc-extract -m input=... output=... shard=0/8,1/8,2/8,3/8,4/8,5/8,6/8,7/8 workers=4 "
    "hydra/launcher=submitit_slurm hydra.launcher.cpus_per_task=6 hydra.launcher.timeout_min=600":
        "needs a SLURM cluster (and its folders are elided); the same shards with submitit_local run in RUNS['extract_shards']",
    "sign-ctc-extract output=/data/poses merge=true": "the merge of RUNS['extract_shards'] with another folder",
    "python bench/ablation.py --epochs 4 --only NAME ...":
        "a template (NAME: one row of docs/teacher_ablation.md); each row is a 4-epoch teacher training",
    "python bench/bench_real.py": "2 corpora x 4 models x 3 seeds (many hours on 2 cores); tests/test_bench_real.py "
        "runs its --quick mode",
    "python bench/bench_real.py --quick": "tests/test_bench_real.py runs bench_real.main with --quick (one corpus, "
        "one model, one seed, in a scratch folder)",
    "python train.py model=reference data=phoenix2014 data.root=../shared/data/boston104 "
    "data.landmarks_dir=../shared/data/boston104/landmarks":
        "needs RWTH-BOSTON-104 in the shared data folder, not in the repository; bench_real.py trains it (--quick in tests)",
    "python train.py data=synthetic_shift trainer.max_epochs=3 seed=1234 logger=csv "
    "hydra.run.dir=outputs/ablation_shift/teacher_base_e3":
        "a 3-epoch teacher training of docs/REAL_DATA.md's ablation (1082 s on 2 cores)",
    "python train.py data=synthetic_shift trainer.max_epochs=3 seed=1234 logger=csv "
    "hydra.run.dir=outputs/ablation_shift/teacher_aug_e3 augmentation=default":
        "a 3-epoch teacher training of docs/REAL_DATA.md's ablation (1202 s on 2 cores)",
    'python eval.py ckpt_path=outputs/bench_real/synthetic_shift/student_distilled_shallow_s1234/checkpoints/best.ckpt '
    'decoding=beam decoding.tune=true "decoding.tune_word_bonuses=[0.0,1.0,2.0,3.0,4.0,6.0]"':
        "needs bench_real.py's distilled synthetic_shift checkpoint (a teacher and a student training); "
        "tests/test_decoding_tuning.py tunes the word bonus of decoding=beam on dev",
    "python train.py seed=1234 logger=csv callbacks.rich_progress_bar=null backend.num_threads=1 "
    "hydra.run.dir=outputs/bench_distill/default_teacher_s1234":
        "the teacher of docs/RESULTS.md's 20-epoch distillation figures: make train on one thread (.ci/run runs make train)",
}

# Benchmark invocations that pick corpora, models and seeds (bench_real.py records each one it was run
# with under the table it writes): hours of training each; tests/test_bench_real.py runs the same
# script's --quick mode (a tiny training through train.py and eval.py, the results file and the table).
NOT_RUN_PATTERNS: dict[str, str] = {
    r"python bench/bench_real\.py( --(corpora|models|seeds|threads)( [\w.-]+)+)+":
        "a selection of bench_real.py's trainings (synthetic_shift, or RWTH-BOSTON-104 from the shared data folder)",
}


def not_run_here(command: str) -> bool:
    """Listed in NOT_RUN_HERE, or of a NOT_RUN_PATTERNS form."""
    return command in NOT_RUN_HERE or any(re.fullmatch(p, command) for p in NOT_RUN_PATTERNS)


INLINE = re.compile(r"`((?:python|make|\.venv/bin/python|sign-ctc-[a-z-]+) [^`]+)`")


def readme_commands(text: str | None = None) -> list[str]:
    """Commands of the README: fenced bash lines (continuations joined, comments dropped) and inline
    `python ...` / `make ...` / `sign-ctc-... ...` spans."""
    text = README.read_text(encoding="utf-8") if text is None else text
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [re.sub(r"\s+", " ", m) for m in INLINE.findall(prose)]
    return commands


def documented_commands() -> list[str]:
    """The commands of README.md and of every docs/*.md page (``PAGES``), read as ``readme_commands`` reads one."""
    return [c for page in PAGES for c in readme_commands(page.read_text(encoding="utf-8"))]


def readme_python_examples(text: str | None = None) -> list[str]:
    """The README's fenced ``python`` blocks (the API examples), each run by a test below."""
    text = README.read_text(encoding="utf-8") if text is None else text
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_readme_python_example_is_run() -> None:
    # One example, run by test_python_api_example: a new block needs its own test (and this count).
    assert len(readme_python_examples()) == 1
    # The doc pages hold none: an example added there needs a test that runs it, like the README's.
    assert {p.name: readme_python_examples(p.read_text(encoding="utf-8")) for p in PAGES[1:]} == {
        p.name: [] for p in PAGES[1:]}


def test_every_readme_command_is_run() -> None:
    """Every command of README.md and of every docs/*.md page is run here or listed with its reason."""
    assert len(PAGES) > 1 and all(p.is_file() for p in PAGES)
    documented = set(documented_commands())
    run = {c for cmds in RUNS.values() for c in cmds}
    assert sorted(c for c in documented - run if not not_run_here(c)) == [], "README / docs commands no test runs"
    assert sorted(run - documented) == [], "tests run commands the README / docs no longer show"
    assert sorted(set(NOT_RUN_HERE) - documented) == [], "stale NOT_RUN_HERE entries"


def test_readme_parser_reads_blocks_continuations_and_inline() -> None:
    text = "x `python a.py b=1` y\n```bash\n# note\npython t.py \\\n  x=1   # why\nmake test\n```\n"
    assert readme_commands(text) == ["python t.py x=1", "make test", "python a.py b=1"]


# ---------------------------------------------------------------------------------- running


class Shell:
    """Runs README commands from one scratch folder with placeholders mapped to real paths."""

    def __init__(self, cwd: Path, paths: dict[str, Path | str]):
        self.cwd = cwd
        self.paths = {k: str(v) for k, v in paths.items()}

    def fill(self, command: str, **extra: str) -> list[str]:
        mapping = {**self.paths, **extra}
        for key in sorted(mapping, key=len, reverse=True):
            command = command.replace(key, mapping[key])
        argv = shlex.split(command)
        if argv[0].startswith("sign-ctc-"):  # a console script of the active environment ([project.scripts])
            script = Path(sys.executable).parent / argv[0]
            assert script.is_file(), f"{argv[0]} is not installed beside {sys.executable}: pip install -e ."
            return [str(script), *argv[1:]]
        assert argv[0] == "python", command
        argv[0] = sys.executable
        if argv[1] in ("train.py", "eval.py"):
            argv[1] = str(ROOT / argv[1])
        return argv

    def run(self, key: str, index: int, timeout: int = 900, **extra: str) -> subprocess.CompletedProcess:
        command = RUNS[key][index]
        assert command in documented_commands(), f"not in README.md or docs/: {command}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        proc = subprocess.run(self.fill(command, **extra), cwd=self.cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        return proc

    def runs(self, kind: str = "train/runs") -> set[Path]:
        folder = self.cwd / "outputs" / kind
        return set(folder.iterdir()) if folder.is_dir() else set()

    def run_new(self, key: str, index: int, kind: str = "train/runs", **extra: str) -> tuple[subprocess.CompletedProcess, Path]:
        """Run a command that makes one new run folder; returns it."""
        before = self.runs(kind)
        proc = self.run(key, index, **extra)
        (new,) = self.runs(kind) - before
        return proc, new


def test_placeholders_are_filled_exactly(tmp_path: Path) -> None:
    shell = Shell(tmp_path, {"/data/my_corpus": tmp_path / "c"})
    argv = shell.fill(RUNS["own_corpus"][3])
    assert argv == [sys.executable, str(ROOT / "train.py"), "model=i3d", "data=mediapipe_full",
                    f"data.root={tmp_path / 'c'}"]


def video_frames() -> list:
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def frame_folder(folder: Path, frames: Iterable, ext: str = ".png") -> None:
    import cv2

    folder.mkdir(parents=True)
    for i, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"images{i:04d}{ext}"), frame)


# Own corpus: frame folders of the real video (overlapping stretches), glosses made up per sentence.
OWN = {"train": {"clip_a": (0, 24, "HELLO YOU"), "clip_b": (17, 41, "YOU THANK"), "clip_c": (34, 58, "THANK HELLO")},
       "dev": {"clip_d": (8, 32, "HELLO THANK")}, "test": {"clip_e": (26, 50, "YOU HELLO")}}


@pytest.fixture(scope="module")
def shell(tmp_path_factory, small_corpus) -> Shell:
    """A scratch folder with every corpus of the README's commands."""
    work = tmp_path_factory.mktemp("front_door")
    data = work / "data"
    frames = video_frames()
    for split, clips in OWN.items():
        for name, (a, b, _) in clips.items():
            frame_folder(data / "my_videos" / split / name, frames[a:b])
    corpora.phoenix2014(small_corpus, data / "phoenix-2014-multisigner", data / "ph14_lm")
    corpora.phoenix2014t(small_corpus, data / "PHOENIX-2014-T", data / "ph14t_lm")
    corpora.csl_daily(small_corpus, data / "CSL-Daily", data / "csl_lm")
    return Shell(work, {
        "/data/my_videos": data / "my_videos", "/data/my_corpus": data / "my_corpus",
        "/data/phoenix-2014-multisigner": data / "phoenix-2014-multisigner", "/data/ph14_lm": data / "ph14_lm",
        "/data/PHOENIX-2014-T": data / "PHOENIX-2014-T", "/data/ph14t_lm": data / "ph14t_lm",
        "/data/CSL-Daily": data / "CSL-Daily", "/data/csl_lm": data / "csl_lm", "/data/clip.mp4": VIDEO,
    })


def check_trained(proc: subprocess.CompletedProcess, run: Path) -> dict:
    """A run that trained, tested on its best checkpoint and printed the test WER."""
    assert re.search(r"^test WER \d+\.\d\d%", proc.stdout, flags=re.M), proc.stdout[-2000:]
    results = json.loads((run / "test_results.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] >= 1
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "wandb").glob("offline-run-*")), "the default W&B logger wrote no offline run"
    assert results["checkpoint"].endswith("best.ckpt") and 0.0 <= results["test"]["wer"] <= 100.0
    return results


@pytest.fixture(scope="module")
def own_run(shell: Shell) -> Path:
    """Extract the three splits from frame folders, write the annotations, train (the design card)."""
    for i, split in enumerate(("train", "dev", "test")):
        shell.run("own_corpus", i)
        out = Path(shell.paths["/data/my_corpus"]) / split
        assert sorted(p.stem for p in out.glob("*.pose")) == sorted(OWN[split])
    root = Path(shell.paths["/data/my_corpus"])
    for split, clips in OWN.items():
        rows = ["id|folder|signer|annotation"] + [f"{n}|{n}|s1|{g}" for n, (_, _, g) in clips.items()]
        (root / f"{split}.corpus.csv").write_text("\n".join(rows) + "\n")
    proc, run = shell.run_new("own_corpus", 3)
    check_trained(proc, run)
    return run


@pytest.mark.slow
def test_own_corpus_from_frame_folders_trains_and_prints_wer(own_run: Path) -> None:
    results = json.loads((own_run / "test_results.json").read_text())
    assert results["test"]["sentences"] == 1 and results["test"]["num_ref"] == 2


@pytest.fixture(scope="module")
def phoenix_run(shell: Shell) -> Path:
    proc, run = shell.run_new("phoenix2014", 0)
    results = check_trained(proc, run)
    assert results["test"]["sentences"] == corpora.SIZES["test"]
    return run


@pytest.mark.slow
def test_phoenix2014_release_layout_trains(phoenix_run: Path) -> None:
    cfg = (phoenix_run / ".hydra" / "config.yaml").read_text()
    assert "Phoenix2014Corpus" in cfg and "max_epochs: 80" in cfg


@pytest.mark.slow
@pytest.mark.parametrize("key", ["phoenix2014t", "csl_daily"])
def test_release_layouts_train(shell: Shell, key: str) -> None:
    proc, run = shell.run_new(key, 0)
    results = check_trained(proc, run)
    assert results["test"]["sentences"] == corpora.SIZES["test"]


def test_extract_reads_each_release_layout(tmp_path: Path) -> None:
    """PHOENIX-2014 / 2014-T / CSL-Daily release roots with frames of two train sentences."""
    import cv2

    pngs = sorted(PHOENIX_FRAMES.glob("*.png"))
    frames = [cv2.imread(str(p)) for p in pngs]
    ph = tmp_path / "phoenix-2014-multisigner"
    (ph / "annotations" / "manual").mkdir(parents=True)
    (ph / "annotations" / "manual" / "train.corpus.csv").write_text(
        "id|folder|signer|annotation\nsent_a|sent_a/1/*.png|Signer01|REGEN\nsent_b|sent_b/1/*.png|Signer02|SONNE WIND\n")
    for sid in ("sent_a", "sent_b"):
        frame_folder(ph / "features" / "fullFrame-210x260px" / "train" / sid / "1", frames)
    ph_t = tmp_path / "PHOENIX-2014-T"
    (ph_t / "annotations" / "manual").mkdir(parents=True)
    (ph_t / "annotations" / "manual" / "PHOENIX-2014-T.train.corpus.csv").write_text(
        "name|video|start|end|speaker|orth|translation\nt_a|t_a/1/*.png|-1|-1|Signer01|REGEN|es regnet .\n")
    frame_folder(ph_t / "features" / "fullFrame-210x260px" / "train" / "t_a", frames)
    csl = tmp_path / "CSL-Daily"
    corpora.csl_daily_labels({"train": [corpora.Sentence("S000000_P0000_T00", ("我", "好"), "0")],
                              "dev": [corpora.Sentence("S000001_P0001_T00", ("你",), "1")], "test": []}, csl)
    frame_folder(csl / "sentence_frames-512x512" / "frames_512x512" / "S000000_P0000_T00", frames, ".jpg")
    shell = Shell(tmp_path, {"/data/phoenix-2014-multisigner": ph, "/data/ph14_lm": tmp_path / "ph14_lm",
                             "/data/PHOENIX-2014-T": ph_t, "/data/ph14t_lm": tmp_path / "ph14t_lm",
                             "/data/CSL-Daily": csl, "/data/csl_lm": tmp_path / "csl_lm"})
    from sign_ctc.features.pose_io import read_pose

    expected = {0: ("ph14_lm", ["sent_a", "sent_b"]), 1: ("ph14t_lm", ["t_a"]), 2: ("csl_lm", ["S000000_P0000_T00"])}
    for index, (out, ids) in expected.items():
        shell.run("extract_releases", index)
        written = sorted((tmp_path / out / "train").glob("*.pose"))
        assert [p.stem for p in written] == ids
        assert all(len(read_pose(p)) == len(frames) for p in written)


@pytest.mark.slow
def test_extract_shards_over_a_launcher_and_merge(tmp_path: Path) -> None:
    """Four shards as four submitit_local jobs over a PHOENIX-2014-T root of four sentences; the last
    merges the summaries; ``merge=true`` merges them again on demand."""
    import cv2

    frames = [cv2.imread(str(p)) for p in sorted(PHOENIX_FRAMES.glob("*.png"))]
    ph_t = tmp_path / "PHOENIX-2014-T"
    (ph_t / "annotations" / "manual").mkdir(parents=True)
    ids = [f"t_{k}" for k in range(4)]
    (ph_t / "annotations" / "manual" / "PHOENIX-2014-T.train.corpus.csv").write_text(
        "name|video|start|end|speaker|orth|translation\n"
        + "".join(f"{i}|{i}/1/*.png|-1|-1|Signer01|REGEN|es regnet .\n" for i in ids))
    for i in ids:
        frame_folder(ph_t / "features" / "fullFrame-210x260px" / "train" / i, frames)
    out = tmp_path / "ph14t_lm"
    shell = Shell(tmp_path, {"/data/PHOENIX-2014-T": ph_t, "/data/ph14t_lm": out})
    shell.run("extract_shards", 0)
    assert sorted(p.stem for p in (out / "train").glob("*.pose")) == ids
    merged = json.loads((out / "extract_summary.json").read_text())
    assert merged["shards"] == "4 of 4" and merged["counts"]["extracted"] == 4 and merged["frames"] == 4 * len(frames)
    (out / "extract_summary.json").unlink()
    shell.run("extract_shards", 1)
    again = json.loads((out / "extract_summary.json").read_text())
    assert again["counts"] == merged["counts"] and again["sentences"] == merged["sentences"]


@pytest.mark.slow
def test_eval_lm_and_beam_commands(shell: Shell, own_run: Path) -> None:
    train_results = json.loads((own_run / "test_results.json").read_text())
    _, greedy = shell.run_new("eval", 0, kind="eval/runs", **{"<run>": own_run.name})
    test = json.loads((greedy / "test_results.json").read_text())["test"]
    assert test["wer"] == pytest.approx(train_results["test"]["wer"])  # the run's own corpus, same checkpoint
    assert (greedy / "test_predictions.csv").read_text() == (own_run / "test_predictions.csv").read_text()
    _, beam = shell.run_new("eval", 1, kind="eval/runs", **{"<run>": own_run.name})
    dev = json.loads((beam / "dev_results.json").read_text())["dev"]
    assert dev["decoding"] == "BeamSearchDecoder" and dev["sentences"] == len(OWN["dev"])
    shell.run("eval", 2)
    arpa = (shell.cwd / "gloss.arpa").read_text()
    assert "\\data\\" in arpa and "\\3-grams:" in arpa
    _, lm = shell.run_new("eval", 3, kind="eval/runs", **{"<run>": own_run.name})
    assert json.loads((lm / "test_results.json").read_text())["test"]["sentences"] == len(OWN["test"])
    # LM weight and word bonus tuned on dev, written beside the checkpoint, then used on test
    proc, tuned = shell.run_new("eval", 4, kind="eval/runs", **{"<run>": own_run.name})
    record = json.loads((own_run / "checkpoints" / "best.decoding.json").read_text())
    assert Path(record["lm_path"]) == (shell.cwd / "gloss.arpa").resolve() and record["sentences"] == len(OWN["dev"])
    assert record["dev_wer"] <= min(p["wer"] for p in record["grid"] if p["lm_weight"] == 0.0)
    test = json.loads((tuned / "test_results.json").read_text())["test"]
    assert (test["decoder"]["lm_weight"], test["decoder"]["word_bonus"]) == (record["lm_weight"], record["word_bonus"])
    assert test["tuning"]["grid"] == record["grid"] and "chosen: lm_weight=" in proc.stdout


@pytest.mark.slow
def test_official_scoring_commands(shell: Shell, phoenix_run: Path) -> None:
    from sign_ctc.scoring.sclite import find_sclite

    if find_sclite() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("NIST sclite (Debian package sctk) is not installed in CI")
        pytest.skip("NIST sclite (Debian package sctk) is not installed")
    proc, ev = shell.run_new("official_scoring", 0, kind="eval/runs", **{"<run>": phoenix_run.name})
    official = json.loads((ev / "dev_results.json").read_text())["dev"]["official"]
    proc = shell.run("official_scoring", 1, **{"<eval run>": ev.name})
    assert f"WER {official['wer']:.2f}%" in proc.stdout and f"sclite WER {official['wer']:.2f}%" in proc.stdout


@pytest.mark.slow
def test_predict_video(shell: Shell, own_run: Path) -> None:
    proc = shell.run("predict", 0, **{"<run>": own_run.name})
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("signer_58f\t")]
    glosses = line.split("\t")[1].split()
    assert set(glosses) <= {"HELLO", "YOU", "THANK"}


@pytest.mark.slow
def test_python_api_example(shell: Shell, own_run: Path) -> None:
    """The README's Python example, paths filled in, prints the glosses and times sign-ctc-predict writes."""
    (example,) = readme_python_examples()
    code = example.replace("<run>", own_run.name)
    for key in sorted(shell.paths, key=len, reverse=True):
        code = code.replace(key, shell.paths[key])
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=shell.cwd, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, *timed = proc.stdout.splitlines()
    glosses = first.split()  # may be none: own_run's short training often hears nothing in the whole video
    assert set(glosses) <= {"HELLO", "YOU", "THANK"}
    spans = [(g, *map(float, t.split("-"))) for g, t in (line.split(" ") for line in timed)]
    assert [g for g, _, _ in spans] == glosses

    before = shell.runs("predict/runs")
    shell.run("predict", 0, **{"<run>": own_run.name})
    (run,) = shell.runs("predict/runs") - before
    (written,) = json.loads((run / "predictions.json").read_text())
    assert written["glosses"].split() == glosses
    duration = written["frames"] / written["fps"]  # 58 frames of the video, at its frame rate
    ends = [0.0] + [end for _, _, end in spans]
    assert all(prev <= start < end <= duration + 0.005 for prev, (_, start, end) in zip(ends, spans))
    assert [(s["gloss"], f"{s['start']:.2f}", f"{s['end']:.2f}") for s in written["spans"]] == \
        [(g, f"{a:.2f}", f"{b:.2f}") for g, a, b in spans]


@pytest.mark.slow
def test_export_commands(shell: Shell, cache_dir: Path) -> None:
    """Both export formats, then the README's predict on the real video with the ONNX model gives the
    checkpoint's glosses. The checkpoint is a small untrained one in a run folder (blank bias -1, so
    it emits glosses): exporting needs no trained model, and own_run trains for minutes."""
    from tests.helpers import SMALL_CORPUS, compose_cfg
    from tests.test_export import write_tiny_checkpoint

    run = shell.cwd / "outputs" / "train" / "runs" / "export_tiny"
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model.net.blank_bias=-1"], run, cache_dir)
    ckpt = write_tiny_checkpoint(cfg, run / "checkpoints" / "best.ckpt")
    for index, name in ((0, "best.onnx"), (1, "best.torchscript.pt")):
        proc = shell.run("export", index, **{"<run>": run.name})
        assert f"exported outputs/train/runs/{run.name}/checkpoints/{name}" in proc.stdout
        meta = json.loads((ckpt.parent / f"{name}.json").read_text())
        assert meta["net"] == "I3DTeacher" and max(meta["verified_max_abs_diff"].values()) <= 1e-4
    lines = {}
    for key, index in (("export", 2), ("predict", 0)):
        proc = shell.run(key, index, **{"<run>": run.name})
        (lines[key],) = [ln for ln in proc.stdout.splitlines() if ln.startswith("signer_58f\t")]
    assert lines["export"] == lines["predict"] and lines["export"].split("\t")[1].split()


@pytest.mark.slow
def test_live_command_gives_predicts_glosses(shell: Shell, cache_dir: Path) -> None:
    """The README's live command on the real video, every frame processed: its final glosses equal
    sign-ctc-predict's on the same video and checkpoint, with times in live.ctm; then paced at the
    video's rate (realtime=true) it reports its drops in live.json. The checkpoint is a small untrained
    student (blank bias -1, so it emits glosses): streaming needs no trained model."""
    from tests.helpers import SMALL_CORPUS, compose_cfg
    from tests.test_export import write_tiny_checkpoint

    run = shell.cwd / "outputs" / "train" / "runs" / "live_student"
    cfg = compose_cfg("train", ["logger=none", *SMALL_CORPUS, "model=student", "model.net.blank_bias=-1"], run,
                      cache_dir)
    write_tiny_checkpoint(cfg, run / "checkpoints" / "best.ckpt")
    proc, live_run = shell.run_new("live", 0, kind="live/runs", **{"<run>": run.name})
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("signer_58f\t")]
    predicted = shell.run("predict", 0, **{"<run>": run.name})
    (expected,) = [ln for ln in predicted.stdout.splitlines() if ln.startswith("signer_58f\t")]
    assert line == expected and line.split("\t")[1].split()
    result = json.loads((live_run / "live.json").read_text())
    assert result["frames"] == result["processed"] == 58 and result["dropped"] == 0 and result["detected"]
    ctm = (live_run / "live.ctm").read_text().splitlines()
    assert [c.split()[4] for c in ctm] == line.split("\t")[1].split()
    assert all(0 <= float(c.split()[2]) and float(c.split()[3]) > 0 for c in ctm)
    assert float(ctm[-1].split()[2]) + float(ctm[-1].split()[3]) <= 58 / result["fps"] + 1e-3
    paced = subprocess.run([*shell.fill(RUNS["live"][0], **{"<run>": run.name}), "realtime=true"], cwd=shell.cwd,
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert paced.returncode == 0, paced.stderr[-3000:]
    latest = max((shell.cwd / "outputs" / "live" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    result = json.loads((latest / "live.json").read_text())
    assert result["frames"] == 58 and result["processed"] + result["dropped"] == 58
    assert result["wall_s"] >= 0.9 * 58 / result["fps"]  # paced at the video's rate, not faster
    # Beam search with a gloss LM (over the glosses live gave): the same answer as predict with that decoding.
    from sign_ctc.decoding.lm import train_kneser_ney, write_arpa

    glosses = line.split("\t")[1].split()
    write_arpa(train_kneser_ney([glosses, glosses[::-1]], order=2), shell.cwd / "gloss.arpa")
    proc, beam_run = shell.run_new("live", 1, kind="live/runs", **{"<run>": run.name})
    beam = json.loads((beam_run / "live.json").read_text())
    predicted = subprocess.run([*shell.fill(RUNS["predict"][0], **{"<run>": run.name}), "decoding=beam",
                                "decoding.lm_path=gloss.arpa"], cwd=shell.cwd, capture_output=True, text=True,
                               timeout=300, stdin=subprocess.DEVNULL)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (expected,) = [ln for ln in predicted.stdout.splitlines() if ln.startswith("signer_58f\t")]
    assert beam["glosses"] == expected.split("\t")[1] and beam["glosses"]
    # The streaming ONNX export, run by onnxruntime: the checkpoint's glosses and times.
    proc = shell.run("live", 2, **{"<run>": run.name})
    assert (run / "checkpoints" / "best.stream.onnx").is_file()
    (line_onnx,) = [ln for ln in shell.run_new("live", 3, kind="live/runs", **{"<run>": run.name})[0].stdout.splitlines()
                    if ln.startswith("signer_58f\t")]
    assert line_onnx == line


@pytest.mark.slow
def test_render_commands(shell: Shell, own_run: Path) -> None:
    """Pictures of a corpus sample (the README's synthetic id stands for the own corpus' test clip), a
    .pose with a reference, the real video, and eval.py's figures."""
    import cv2

    from sign_ctc.features.pose_io import read_pose

    pose = Path(shell.paths["/data/my_corpus"]) / "test" / "clip_e.pose"
    frames = len(read_pose(pose))
    _, run = shell.run_new("render", 0, kind="render/runs", **{"<run>": own_run.name, "test_00053_S07": "clip_e"})
    record = json.loads((run / "clip_e_alignment.json").read_text())
    assert record["reference"] == "YOU HELLO" and record["frames"] == frames
    cap = cv2.VideoCapture(str(run / "clip_e.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    cap.release()
    still = cv2.imread(str(run / "clip_e_frame14.png"))
    assert still is not None and still.shape[1] == 480 and (run / "clip_e_posteriorgram.png").is_file()
    _, run = shell.run_new("render", 1, kind="render/runs", **{"<run>": own_run.name})
    record = json.loads((run / "clip_e_alignment.json").read_text())
    assert [s["gloss"] for s in record["reference_alignment"]] == ["YOU", "HELLO"]
    proc, run = shell.run_new("render", 2, kind="render/runs", **{"<run>": own_run.name})
    cap = cv2.VideoCapture(str(run / "signer_58f.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 58 and "signer_58f\t" in proc.stdout
    cap.release()
    _, ev = shell.run_new("render", 3, kind="eval/runs", **{"<run>": own_run.name})
    figures = sorted(p.name for p in (ev / "figures").iterdir())
    assert "worst_1_clip_e.mp4" in figures and "wer_by_length.png" in figures  # one test sentence: worst only


@pytest.mark.slow
def test_diagnose_command(shell: Shell, own_run: Path) -> None:
    proc = shell.run("diagnose", 0)
    assert "PASS" in proc.stdout and "FAIL" not in proc.stdout


@pytest.mark.slow
def test_sweep_commands(shell: Shell, own_run: Path) -> None:
    _, sweep = shell.run_new("sweeps", 0, kind="train/multiruns")
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "completed"
    proc = shell.run("sweeps", 1, **{"<sweep>": sweep.name})
    assert (sweep / "summary.csv").is_file() and "model.optimizer.lr=0.001" in proc.stdout
    _, joblib_sweep = shell.run_new("sweeps", 2, kind="train/multiruns")
    for job in ("0", "1"):
        assert json.loads((joblib_sweep / job / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_optuna_command(shell: Shell, own_run: Path) -> None:
    shell.run("optuna", 0)
    import optuna

    db = shell.cwd / "outputs" / "train" / "optuna" / "sign_ctc_i3d" / "optuna.db"
    study = optuna.load_study(study_name="sign_ctc_i3d", storage=f"sqlite:///{db}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and done[0].params != done[1].params


@pytest.mark.slow
def test_ddp_command(shell: Shell, own_run: Path) -> None:
    proc, run = shell.run_new("ddp", 0)
    check_trained(proc, run)


@pytest.mark.slow
def test_resume_command_on_a_finished_run(shell: Shell, own_run: Path) -> None:
    before = (own_run / "metrics.json").read_text()
    proc = shell.run("resume", 0, **{"<run>": own_run.name})
    assert (own_run / "metrics.json").read_text() == before  # completed: not re-run
    assert "already completed" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_pack_command(shell: Shell) -> None:
    proc = shell.run("pack", 0)
    for split in ("train", "dev", "test"):
        assert (Path(shell.paths["/data/ph14_lm"]) / "store" / split / "manifest.json").is_file()
    assert "pack: train" in proc.stdout
