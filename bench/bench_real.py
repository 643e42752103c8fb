"""Real-signer benchmark: the teacher, the student alone and distilled, and the reference model, on a
real small corpus (RWTH-BOSTON-104) and on the synthetic corpus with a real signer shift.

    python bench/bench_real.py                                   # every run, seeds 1234 1 2
    python bench/bench_real.py --corpora synthetic_shift --models reference teacher --seeds 1
    python bench/bench_real.py --quick                           # a smoke run (minutes): tiny trainings
    python bench/bench_real.py --table                           # print the table of the results file

Each run is the real `python train.py` with the defaults plus the corpus's and the model's overrides
(the CSV logger, no progress bar), in outputs/bench_real/<corpus>/<model>_s<seed>; a finished run
(metrics.json "completed") is reused, --force retrains. The distilled student learns from the
teacher of the same corpus and seed (`distillation=frame_kl`). Per run: test WER with S/D/I (training's
own test pass on the best dev checkpoint), dev WER with S/D/I (`eval.py split=dev` on that
checkpoint), WER per test signer, training time, epochs and optimizer steps. Per corpus: the best
constant answer's test WER (the training sentence that, answered for every test sentence, scores
best; and the most common training sentence), the floor a model must beat to have learnt anything
about the unseen signers. Results: bench/results/real.json (real_quick.json with --quick), and the
table between the bench_real markers of docs/REAL_DATA.md (--doc; not with --quick unless given).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import bench_accuracy  # noqa: E402
import common  # noqa: E402

OUT = REPO / "outputs" / "bench_real"
DOC = REPO / "docs" / "REAL_DATA.md"
BOSTON = REPO.parent / "shared" / "data" / "boston104"
MARK_BEGIN, MARK_END = "<!-- bench_real:begin -->", "<!-- bench_real:end -->"
TRAIN_FLAGS = ["logger=csv", "callbacks.rich_progress_bar=null"]

# name -> (what it is, train.py overrides); the distilled student also gets its teacher's checkpoint.
MODELS: dict[str, tuple[str, list[str]]] = {
    "teacher": ("I3D teacher, defaults", []),
    "student": ("student alone (model=student)", ["model=student"]),
    "student_distilled": ("student distilled from the teacher of the same seed (distillation=frame_kl)",
                          ["model=student", "distillation=frame_kl"]),
    "reference": ("reference model (model=reference, ~0.5M)", ["model=reference"]),
}
MAIN_MODELS = list(MODELS)
DISTILLED = MODELS["student_distilled"][1]
# The student of before 2026-12-07: no context block, look-ahead 6 frames (0.24 s at 25 fps) instead of 14.
SHALLOW = ["model.net.context_blocks=0"]
# Issue 26's ablation on unseen signers: one change each from the defaults, every one a config switch
# (run with --models NAME ...; not in the default --models).
ABLATION: dict[str, tuple[str, list[str]]] = {
    "teacher_aug": ("teacher + pose augmentation (augmentation=default)", ["augmentation=default"]),
    "teacher_no_face": ("teacher without the face block", ["model.net.modalities=[pose,hands,temporal]"]),
    "teacher_no_temporal": ("teacher without the temporal block", ["model.net.modalities=[pose,hands,face]"]),
    "teacher_dropout_0.3": ("teacher + dropout 0.3", ["model.net.dropout=0.3"]),
    "teacher_wd_1e-2": ("teacher + weight decay 1e-2", ["model.optimizer.weight_decay=1e-2"]),
    "teacher_narrow": ("teacher at half width (modalities, fusion, BiLSTM)",
                       ["model.net.modality_widths={pose:32,hands:64,face:32,temporal:48}", "model.net.fusion_dim=128",
                        "model.net.lstm_hidden=144"]),
    "teacher_aux_0.3": ("teacher + auxiliary CTC weight 0.3", ["model.aux_ctc_weight=0.3"]),
    "teacher_drop_path_0.2": ("teacher + stochastic depth 0.2 over the Inception blocks (model.net.drop_path)",
                              ["model.net.drop_path=0.2"]),
    "teacher_entropy_0.1": ("teacher + entropy regularization of the CTC posteriors, weight 0.1 "
                            "(model.entropy_weight)", ["model.entropy_weight=0.1"]),
    "teacher_signer_norm": ("teacher with signer-level normalization (each signer's own mean/std, test "
                            "signers' from their test sentences; normalization.signer_level)",
                            ["normalization.signer_level=true"]),
    "reference_signer_norm": ("reference model with signer-level normalization (the same switch beside the small "
                              "baseline)", ["model=reference", "normalization.signer_level=true"]),
    # and of the student: the two-block student of before, alone and distilled, and the distilled variants
    # of it that found what it lacked (each learns from the default teacher of the same seed)
    "student_shallow": ("the two-block student alone (look-ahead 6 frames)", ["model=student", *SHALLOW]),
    "student_distilled_shallow": ("the two-block student distilled (look-ahead 6 frames; the default before "
                                  "2026-12-07)", [*DISTILLED, *SHALLOW]),
    "student_distilled_pooled": ("two-block distilled student + a third conv block with a stride-1 max-pool "
                                 "(look-ahead 18 frames)", [*DISTILLED, *SHALLOW, "model.net.conv_channels=[192,192,192]",
                                                            "model.net.conv_strides=[2,2,1]"]),
    "student_distilled_aug": ("two-block distilled student + pose augmentation (the teacher labels each augmented "
                              "sample)", [*DISTILLED, *SHALLOW, "augmentation=default"]),
    "student_distilled_blank_kl": ("two-block distilled student, KL over all classes, blank included "
                                   "(distillation.drop_blank=false)", [*DISTILLED, *SHALLOW, "distillation.drop_blank=false"]),
    "student_distilled_bidirectional": ("two-block distilled student with a bidirectional LSTM (cannot stream; how "
                                        "much the future context is worth)",
                                        [*DISTILLED, *SHALLOW, "model.net.bidirectional=true"]),
    "student_distilled_temporal": ("two-block distilled student with the temporal block too (the teacher's four "
                                   "blocks)", [*DISTILLED, *SHALLOW, "model.net.modalities=[pose,hands,face,temporal]"]),
    "student_distilled_wide": ("two-block distilled student, twice as wide (fusion, convolutions, LSTM 256)",
                               [*DISTILLED, *SHALLOW, "model.net.fusion_dim=256", "model.net.conv_channels=[256,256]",
                                "model.net.lstm_hidden=256"]),
    "student_distilled_k9": ("two-block distilled student, conv kernels 9 instead of 5 (look-ahead 12 frames)",
                             [*DISTILLED, *SHALLOW, "model.net.kernel_size=9"]),
    "student_distilled_delay2": ("two-block distilled student whose LSTM reads 2 output frames past the one it "
                                 "labels (look-ahead 14 frames)", [*DISTILLED, *SHALLOW, "model.net.output_delay=2"]),
    "student_distilled_delay4": ("two-block distilled student whose LSTM reads 4 output frames past the one it "
                                 "labels (look-ahead 22 frames)", [*DISTILLED, *SHALLOW, "model.net.output_delay=4"]),
}
MODELS.update(ABLATION)
CORPORA = ("boston104", "synthetic_shift")


def corpus_overrides(name: str, quick: bool, boston: Path) -> list[str]:
    """train.py overrides that select the corpus (and, with --quick, a tiny schedule)."""
    if name == "boston104":
        base = ["data=phoenix2014", f"data.root={boston}", f"data.landmarks_dir={boston / 'landmarks'}"]
        if quick:
            base += ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
                     "+trainer.limit_test_batches=1", "data.num_workers=0"]
        return base
    if quick:
        root = REPO / ".cache" / "bench_real_quick" / "synthetic_shift"
        return ["data=synthetic_shift", f"data.root={root}", "data.corpus.train=48", "data.corpus.dev=12",
                "data.corpus.test=12", "trainer.max_epochs=1", "data.num_workers=0"]
    return ["data=synthetic_shift"]


def read_sentences(run_dir: Path, split: str) -> list[Any]:
    """The split's sentences (id, signer, glosses) of the corpus the run trained on, from its checkpoint recipe's
    data config as train.py resolved it."""
    from sign_ctc.data.corpus import read_phoenix2014

    data = json.loads((run_dir / "bench_data.json").read_text())
    return read_phoenix2014(Path(data["annotations"]) / f"{split}.corpus.csv")


def constant_answers(train: list[Any], test: list[Any], candidates: int = 200) -> dict[str, Any]:
    """Test WER of answering one fixed sentence for every test sentence. ``best``: the best of the test
    split's own sentences (the most common ones first; ``candidates`` at most): what a model that has
    learnt nothing about the test signer could score at best (issue 26's 74.5% on BOSTON-104);
    ``best_from_train``: the best of the training sentences, a constant a model could really learn;
    ``most_common_train``: the most common training sentence."""
    from sign_ctc.scoring.wer import wer

    refs = [list(s.glosses) for s in test]

    def score(answer: tuple[str, ...]) -> float:
        return round(wer(refs, [list(answer)] * len(refs)).wer, 2)

    def best_of(sentences: list[Any]) -> dict[str, Any]:
        counts = Counter(tuple(s.glosses) for s in sentences)
        best = min((c for c, _ in counts.most_common(candidates)), key=score)
        return {"answer": " ".join(best), "test_wer": score(best)}

    train_counts = Counter(tuple(s.glosses) for s in train)
    common_answer = train_counts.most_common(1)[0][0]
    return {"best": best_of(test), "best_from_train": best_of(train),
            "most_common_train": {"answer": " ".join(common_answer), "count": train_counts[common_answer],
                                  "test_wer": score(common_answer)}}


def per_signer_wer(predictions: Path, sentences: list[Any]) -> dict[str, float]:
    """WER of each test signer, from a run's test_predictions.csv."""
    from sign_ctc.scoring.wer import wer

    signer = {s.id: s.signer for s in sentences}
    by: dict[str, tuple[list, list]] = {}
    with predictions.open() as f:
        for row in csv.DictReader(f):
            refs, hyps = by.setdefault(signer.get(row["id"], "?"), ([], []))
            refs.append(row["reference"].split())
            hyps.append(row["hypothesis"].split())
    return {k: round(wer(r, h).wer, 2) for k, (r, h) in sorted(by.items())}


def _rates(summary: dict[str, Any]) -> dict[str, Any]:
    return {"wer": round(summary["wer"], 2), "sub": round(summary["sub"], 2), "del": round(summary["del"], 2),
            "ins": round(summary["ins"], 2), "S": summary["substitutions"], "D": summary["deletions"],
            "I": summary["insertions"], "N": summary["num_ref"], "sentences": summary["sentences"]}


def run_one(corpus: str, model: str, seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    run_dir = out / corpus / f"{model}_s{seed}"
    overrides = corpus_overrides(corpus, args.quick, args.boston) + MODELS[model][1]
    if "distillation=frame_kl" in MODELS[model][1]:  # learns from the teacher of its corpus and seed
        teacher_dir = out / corpus / f"teacher_s{seed}"
        metrics = teacher_dir / "metrics.json"
        if not metrics.exists():
            raise SystemExit(f"student_distilled needs the teacher of {corpus} seed {seed} ({teacher_dir}): "
                             "run --models teacher first (or together)")
        ckpt = bench_accuracy.best_checkpoint(teacher_dir, json.loads(metrics.read_text()))
        overrides.append(f"distillation.teacher_ckpt={ckpt}")
    # bench_accuracy's runner, pointed at this benchmark's runs for the call
    saved = bench_accuracy.OUT, dict(bench_accuracy.RUNS)
    bench_accuracy.RUNS[f"{corpus}/{model}"] = (MODELS[model][0], overrides)
    bench_accuracy.OUT = out
    try:
        run_dir, metrics = bench_accuracy.train(f"{corpus}/{model}", seed, args.force)
    finally:
        bench_accuracy.OUT, bench_accuracy.RUNS = saved[0], saved[1]
    ckpt = bench_accuracy.best_checkpoint(run_dir, metrics)
    _record_data(run_dir, corpus, args)
    dev_dir = run_dir / "eval_dev"
    if args.force or not (dev_dir / "dev_results.json").exists():
        bench_accuracy._python(["eval.py", f"ckpt_path={ckpt}", "split=dev", "figures=null", f"hydra.run.dir={dev_dir}",
                                *(["+trainer.limit_test_batches=1"] if args.quick else [])], run_dir / "eval_dev.log")
    dev = json.loads((dev_dir / "dev_results.json").read_text())["dev"]
    test = json.loads((run_dir / "test_results.json").read_text())["test"]
    return {
        "corpus": corpus, "model": model, "what": MODELS[model][0], "seed": seed,
        "overrides": [_portable(o) for o in overrides],
        "dev": _rates(dev), "test": _rates(test),
        "test_wer_per_signer": per_signer_wer(run_dir / "test_predictions.csv", read_sentences(run_dir, "test")),
        "best_dev_wer_in_training": round(metrics["best"], 2),
        "dev_wer_by_epoch": bench_accuracy.dev_wer_by_epoch(run_dir),
        "train_seconds": round(metrics["wall_time_s"], 1), "epochs": metrics["epochs"],
        "optimizer_steps": metrics.get("global_step"), "parameters": bench_accuracy.num_parameters(ckpt),
        "checkpoint": str(ckpt.relative_to(out.parent)), "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _record_data(run_dir: Path, corpus: str, args: argparse.Namespace) -> None:
    """Where the run's annotations are (for per-signer WER and the constant answers)."""
    from sign_ctc.atomic import write_text_atomic

    if corpus == "boston104":
        annotations = args.boston / "annotations" / "manual"
    else:
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        root = OmegaConf.select(cfg, "data.root", throw_on_resolution_failure=False)
        if root is None or "${" in str(root):  # the config's own ${paths.cache_dir}/synthetic_shift_s<seed>
            root = REPO / ".cache" / f"synthetic_shift_s{OmegaConf.select(cfg, 'data.corpus.seed')}"
        annotations = Path(root)
    write_text_atomic(run_dir / "bench_data.json", json.dumps({"annotations": str(annotations)}))


def _portable(text: str) -> str:
    """No absolute machine paths in the results: paths under the repository become relative, the
    BOSTON-104 folder becomes <boston104>."""
    text = text.replace(str(REPO) + os.sep, "")
    return text.replace(str(BOSTON), "<boston104>")


def summarize(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for corpus in CORPORA:
        for model in MODELS:
            rows = [e for e in entries if (e["corpus"], e["model"]) == (corpus, model)]
            if not rows:
                continue

            def mean(key: str, split: str, rows: list[dict[str, Any]] = rows) -> float:
                return round(statistics.fmean(e[split][key] for e in rows), 2)

            signers = sorted({k for e in rows for k in e["test_wer_per_signer"]})
            out[f"{corpus}/{model}"] = {
                "corpus": corpus, "model": model, "seeds": [e["seed"] for e in rows], "parameters": rows[0]["parameters"],
                **{f"{split}_{key}_mean": mean(key, split) for split in ("dev", "test") for key in ("wer", "sub", "del", "ins")},
                "test_wer_std": round(statistics.stdev(e["test"]["wer"] for e in rows), 2) if len(rows) > 1 else None,
                "dev_wer_std": round(statistics.stdev(e["dev"]["wer"] for e in rows), 2) if len(rows) > 1 else None,
                "test_wer_per_signer_mean": {s: round(statistics.fmean(e["test_wer_per_signer"][s] for e in rows
                                                                       if s in e["test_wer_per_signer"]), 2)
                                             for s in signers},
                "train_seconds_mean": round(statistics.fmean(e["train_seconds"] for e in rows), 1),
                "epochs_mean": round(statistics.fmean(e["epochs"] for e in rows), 1),
            }
    return out


def table(results: dict[str, Any]) -> str:
    lines = ["| corpus | model | params | seeds | dev WER (sub/del/ins) | test WER ± std (sub/del/ins) | "
             "test WER per signer | best constant answer (test) | epochs | train time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in results.get("summary", {}).values():
        const = results.get("constant", {}).get(s["corpus"], {})
        const_txt = f"{const['best']['test_wer']:.2f}" if const else "–"
        std = f" ± {s['test_wer_std']:.2f}" if s["test_wer_std"] is not None else ""
        per = ", ".join(f"{k} {v:.1f}" for k, v in s["test_wer_per_signer_mean"].items())
        lines.append(
            f"| {s['corpus']} | {s['model']} | {s['parameters'] / 1e6:.2f}M | {len(s['seeds'])} | "
            f"{s['dev_wer_mean']:.2f} ({s['dev_sub_mean']:.1f}/{s['dev_del_mean']:.1f}/{s['dev_ins_mean']:.1f}) | "
            f"{s['test_wer_mean']:.2f}{std} ({s['test_sub_mean']:.1f}/{s['test_del_mean']:.1f}/{s['test_ins_mean']:.1f}) | "
            f"{per} | {const_txt} | {s['epochs_mean']:g} | {s['train_seconds_mean']:.0f} |")
    return "\n".join(lines)


def write_doc(path: Path, results: dict[str, Any]) -> None:
    """Replace the table between the bench_real markers of ``path`` (the rest of the page is prose)."""
    from sign_ctc.atomic import write_text_atomic

    commands = ", ".join(f"`{c}`" for c in results.get("commands", []))
    block = "\n".join([MARK_BEGIN, f"Written by {commands} (last {results['date']}).", "", table(results),
                       "", "Best constant answers on test: " + "; ".join(
                           f"{c}: {v['best']['test_wer']:.2f}% (`{v['best']['answer']}`, the best of the test "
                           f"sentences), {v['best_from_train']['test_wer']:.2f}% (the best training sentence)"
                           for c, v in results.get("constant", {}).items()),
                       MARK_END])
    text = path.read_text() if path.exists() else "# Real signers\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(path, text)


def _record(results_path: Path, name: str, entry: dict[str, Any], constant: dict[str, Any], command: str,
            info: dict[str, Any], doc: Path | None) -> None:
    """Merge one run (replacing an earlier entry of the same corpus, model and seed) into the results file as
    it is now (another invocation, of other corpora or models, may have written it meanwhile), and the table
    into ``doc``. Under a lock: two invocations side by side (one per core) must not drop each other's runs."""
    import fcntl

    results_path.parent.mkdir(parents=True, exist_ok=True)
    with open(results_path.with_name(results_path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": []}
        results["constant"] = {**results.get("constant", {}), **constant}
        key = (entry["corpus"], entry["model"], entry["seed"])
        results["runs"] = [e for e in results.get("runs", []) if (e["corpus"], e["model"], e["seed"]) != key] + [entry]
        results["summary"] = summarize(results["runs"])
        results["commands"] = sorted(set(results.get("commands", [])) | {command})
        results.pop("command", None)  # (a single command, before the runs were merged)
        results["date"] = info["date"]
        common.write_result(name, results, {k: v for k, v in info.items() if k not in ("command", "date")})
        if doc is not None:
            write_doc(doc, json.loads(results_path.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=MAIN_MODELS,
                        help=f"default: {' '.join(MAIN_MODELS)}; the ablation rows: {' '.join(ABLATION)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 1, 2])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 tiny epoch per run, results in real_quick.json")
    parser.add_argument("--boston", type=Path, default=BOSTON, help=f"the BOSTON-104 folder (default {BOSTON})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of each training (OMP_NUM_THREADS)")
    parser.add_argument("--doc", type=Path, default=None, help=f"the page to write the table into (default {DOC}; "
                                                                "none with --quick)")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--table", action="store_true", help="print the table of the results file and exit")
    args = parser.parse_args()
    os.chdir(REPO)
    name = "real_quick" if args.quick else "real"
    results_path = common.RESULTS / f"{name}.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": []}
    if args.table:
        print(table(results))
        return
    if "boston104" in args.corpora and not (args.boston / "annotations" / "manual" / "train.corpus.csv").is_file():
        raise SystemExit(f"no BOSTON-104 corpus in {args.boston} (annotations/manual/train.corpus.csv): pass --boston DIR "
                         "or --corpora synthetic_shift")
    if args.threads:
        bench_accuracy.ENV.update({"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)})
    out = OUT.with_name("bench_real_quick") if args.quick else OUT
    info = common.machine()
    models = [m for m in MODELS if m in args.models]  # the teacher before the student it teaches
    doc = args.doc if args.doc is not None else (None if args.quick else DOC)
    command = " ".join(Path(a).name if os.path.isabs(a) else a for a in info["command"].split())
    for corpus in args.corpora:
        constant: dict[str, Any] = {}
        for model in models:
            for seed in args.seeds:
                entry = run_one(corpus, model, seed, args, out)
                print(f"  {corpus} {model} seed {seed}: dev WER {entry['dev']['wer']}% test WER {entry['test']['wer']}% "
                      f"(del {entry['test']['del']}%) per signer {entry['test_wer_per_signer']} "
                      f"({entry['train_seconds']} s, {entry['epochs']} epochs)", flush=True)
                if not constant:
                    run_dir = out / corpus / f"{model}_s{seed}"
                    constant[corpus] = constant_answers(read_sentences(run_dir, "train"), read_sentences(run_dir, "test"))
                # after every run, so that a long invocation that is stopped keeps what it measured
                _record(results_path, name, entry, constant, command, info, doc)
    if doc is not None:
        print(f"table written into {_portable(str(doc))}")
    print(table(json.loads(results_path.read_text())))


if __name__ == "__main__":
    main()
