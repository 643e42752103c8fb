"""W&B dashboards, offline: what a run logs (config, parameter count, losses, WER with S/D/I, learning
rate, gradient norm, throughput, the prediction table, the model artifact), read back from the
offline run's transaction log (wandb 0.28 writes no files/wandb-summary.json offline)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.helpers import SMALL_CORPUS

# A small, fast net for the end-to-end tests (the recipe of the real one is unchanged).
TINY = ["normalization=per_sample", "model.net.fusion_dim=32", "model.net.lstm_hidden=32",
        "model.net.modality_widths={pose:16,hands:16,face:16,temporal:16}", "callbacks.rich_progress_bar=null"]


def read_wandb_run(run_dir: Path, timeout_s: float = 60.0) -> dict[str, Any]:
    """History, summary, config, run id/group and artifacts of one offline run directory.

    W&B's service may still be flushing the log when wandb.finish() has returned: wait for its exit record.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        out = _scan_wandb_log(run_dir)
        if out["exited"] or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def _scan_wandb_log(run_dir: Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    (log,) = run_dir.glob("run-*.wandb")
    ds = datastore.DataStore()
    ds.open_for_scan(str(log))
    out: dict[str, Any] = {"history": [], "summary": {}, "config": {}, "artifacts": [], "run": None, "exited": False}
    while (data := ds.scan_data()) is not None:
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({it.key or "/".join(it.nested_key): json.loads(it.value_json)
                                   for it in record.history.item})
        elif kind == "summary":
            out["summary"].update({it.key or "/".join(it.nested_key): json.loads(it.value_json)
                                   for it in record.summary.update})
        elif kind == "config":
            out["config"].update({it.key or "/".join(it.nested_key): json.loads(it.value_json)
                                  for it in record.config.update})
        elif kind == "artifact":
            out["artifacts"].append({"type": record.artifact.type, "name": record.artifact.name,
                                     "aliases": list(record.artifact.aliases)})
        elif kind == "exit":
            out["exited"] = True
        elif kind == "run":
            out["run"] = {"id": record.run.run_id, "group": record.run.run_group, "project": record.run.project}
    return out


def history_keys(run: dict[str, Any]) -> set[str]:
    return {k for row in run["history"] for k in row}


def test_offline_run_logs_the_dashboard_metrics_table_and_model(make_cfg, small_corpus, tmp_path):
    from sign_ctc.run.train import train

    cfg = make_cfg("logger=wandb", "logger.wandb.log_model=true", "trainer.max_epochs=2",
                   "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
                   "trainer.log_every_n_steps=1", *SMALL_CORPUS, "data.batch_size=2", "data.eval_batch_size=4", *TINY)
    metrics = train(cfg)
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    run = read_wandb_run(offline)
    keys = history_keys(run)
    expected = {"train/loss", "val/loss", "val/wer", "val/sub", "val/del", "val/ins", "val/wer_best", "lr-AdamW",
                "train/grad_norm", "train/epoch_time_s", "train/samples_per_sec", "test/wer", "trainer/global_step"}
    assert expected <= keys, expected - keys
    assert "nan_guard/events" not in keys  # logged only when the guard fires (tests/test_nan_guard.py)
    assert run["summary"]["val/wer_best"] == metrics["val/wer_best"]
    assert run["summary"]["train/samples_per_sec"] > 0

    # the config, flattened, with the parameter count; the run id is the one stored for resuming
    config = {k: v.get("value") if isinstance(v, dict) else v for k, v in run["config"].items()}
    assert config["model/params_total"] > 0
    assert config["model.optimizer.lr"] == cfg.model.optimizer.lr
    assert config["model.net.dropout"] == cfg.model.net.dropout
    stored = json.loads((tmp_path / "run.json").read_text())
    assert run["run"]["id"] == stored["wandb_run_id"] == metrics_json(tmp_path)["wandb_run_id"]

    # one prediction table per validation epoch: reference vs hypothesis
    tables = sorted((offline / "files" / "media" / "table" / "val").glob("predictions_*.table.json"))
    assert len(tables) == 2
    table = json.loads(tables[-1].read_text())
    assert table["columns"] == ["epoch", "step", "id", "reference", "hypothesis", "errors"]
    assert len(table["data"]) == 4 and all(row[3] for row in table["data"])  # limit_val_batches=1 of 4
    assert run["summary"]["val/predictions/_type"] == "table-file"

    # log_model=true: the best checkpoint becomes a model artifact
    models = [a for a in run["artifacts"] if a["type"] == "model"]
    assert models and "best" in {alias for a in models for alias in a["aliases"]}


def metrics_json(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def test_prediction_table_rows_keep_the_first_sentences_and_add_the_worst():
    from sign_ctc.callbacks.prediction_table import PredictionTable

    class FakeTrainer:
        current_epoch, global_step = 3, 120

    preds = [{"id": f"s{i:02d}", "reference": "A B", "hypothesis": "A", "errors": i % 4} for i in range(30)]
    rows = PredictionTable(max_rows=5, worst_rows=3).rows(FakeTrainer(), preds)
    assert [r[2] for r in rows[:5]] == ["s00", "s01", "s02", "s03", "s04"]
    assert [r[5] for r in rows[5:]] == [3, 3, 3] and len(rows) == 8
    assert rows[0][:2] == [3, 120]


def test_wandb_stays_offline_by_default(make_cfg):
    cfg = make_cfg()
    assert cfg.logger.wandb.offline is True and cfg.logger.wandb.resume == "allow"
