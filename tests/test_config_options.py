"""Every option of every config group is instantiated (not only composed), in the composed run config.

A config that composes can still fail at instantiation (the data configs did: `root` reached a class
that does not take it). Here each option's objects are built the way train.py builds them; the data
options also read a batch through their default loader (default workers) from a corpus in their
release layout. The `debug` options are run by tests/test_train.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from sign_ctc.data.batch import Batch
from tests import corpora
from tests.helpers import CONF

GROUPS = ["data", "model", "normalization", "augmentation", "distillation", "decoding", "trainer", "logger", "callbacks",
          "experiment", "hparams_search", "backend"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, small_corpus) -> dict[str, list[str]]:
    """data.root / data.landmarks_dir overrides of a small corpus in each data config's layout."""
    base = tmp_path_factory.mktemp("layouts")
    corpora.own_corpus(small_corpus, base / "own")
    corpora.phoenix2014(small_corpus, base / "ph14", base / "ph14_lm")
    corpora.phoenix2014t(small_corpus, base / "ph14t", base / "ph14t_lm")
    corpora.csl_daily(small_corpus, base / "csl", base / "csl_lm")
    release = {"phoenix2014": ("ph14", "ph14_lm"), "phoenix2014t": ("ph14t", "ph14t_lm"), "csl_daily": ("csl", "csl_lm")}
    out = {"mediapipe_full": [f"data.root={base / 'own'}"],
           "synthetic": ["data.corpus.train=48", "data.corpus.dev=12", "data.corpus.test=12"],
           "synthetic_hard": ["data.corpus.train=24", "data.corpus.dev=6", "data.corpus.test=6"],
           "synthetic_shift": ["data.corpus.train=24", "data.corpus.dev=6", "data.corpus.test=6"]}
    for name, (root, lm) in release.items():
        out[name] = [f"data.root={base / root}", f"data.landmarks_dir={base / lm}"]
    return out


def instantiate_targets(node: Any, path: str = "") -> list[str]:
    """Instantiate every `_target_` node under ``node`` (outermost first); returns their paths."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            obj = hydra.utils.instantiate(node)
            assert obj is not None or node._target_.endswith("no_augmentation"), path
            return [path]
        return [p for k, v in node.items() for p in instantiate_targets(v, f"{path}.{k}")]
    return []


def build_model(cfg: DictConfig) -> Any:
    normalizer = hydra.utils.instantiate(cfg.normalization)
    x = torch.randn(2, 40, 6516)
    presence = torch.ones(2, 40, 4, dtype=torch.bool)
    if normalizer.needs_fit:
        normalizer.fit([Batch.unlabelled(x, presence, torch.tensor([40, 30]))])
    module = hydra.utils.instantiate(cfg.model, normalizer=normalizer, vocab=["<blank>", "<unk>", "A", "B"])
    log_probs, lengths = module(x, presence, torch.tensor([40, 30]))
    assert log_probs.shape == (2, 10, 4) and lengths.tolist() == [10, 8] and torch.isfinite(log_probs).all()
    return module


def check_data(cfg: DictConfig) -> None:
    """The datamodule of the config, its train loader with the configured workers, one batch."""
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader())).with_features()
    B, T, D = batch.features.shape
    assert D == 6516 and B == len(batch.ids) and int(batch.lengths.max()) == T
    assert int(batch.target_lengths.sum()) == len(batch.targets) and torch.isfinite(batch.features).all()


@pytest.mark.parametrize("option", options("data"))
def test_data_options(option: str, make_cfg, layouts) -> None:
    cfg = make_cfg(f"data={option}", *layouts[option])
    check_data(cfg)


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_options(option: str, make_cfg, layouts) -> None:
    cfg = make_cfg(f"experiment={option}")
    data = cfg.data.corpus._target_.rsplit(".", 1)[-1]
    name = {"SyntheticCorpus": "synthetic", "Phoenix2014Corpus": "phoenix2014"}[data]
    cfg = make_cfg(f"experiment={option}", *layouts[name])
    check_data(cfg)
    build_model(cfg)
    hydra.utils.instantiate(cfg.trainer, callbacks=[], logger=False)


@pytest.mark.parametrize("group", ["model", "normalization"])
def test_model_and_normalization_options(group: str, make_cfg) -> None:
    for option in options(group):
        build_model(make_cfg(f"{group}={option}"))
    build_model(make_cfg("normalization.body_relative=true"))


@pytest.mark.parametrize("group", ["augmentation", "decoding", "logger", "callbacks", "backend"])
def test_object_options(group: str, make_cfg) -> None:
    for option in options(group):
        cfg = make_cfg(f"{group}={option}")
        built = instantiate_targets(cfg[group], group) if cfg.get(group) is not None else []
        if option not in ("none",) and group != "augmentation":
            assert built, f"{group}={option} builds nothing"
        if group == "decoding":
            decoder = hydra.utils.instantiate(cfg.decoding)(vocab_tokens=["<blank>", "<unk>", "A"])
            out = decoder.decode(torch.log_softmax(torch.randn(1, 6, 3), -1), torch.tensor([6]))
            assert len(out) == 1


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options(option: str, make_cfg) -> None:
    import lightning.pytorch as pl
    from hydra.errors import InstantiationException

    cfg = make_cfg(f"trainer={option}", *(["trainer.accelerator=cpu"] if option == "ddp" else []))
    if option == "gpu" and not torch.cuda.is_available():
        with pytest.raises(InstantiationException, match="No supported gpu backend found"):
            hydra.utils.instantiate(cfg.trainer, callbacks=[], logger=False)
        return
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[], logger=False)
    assert isinstance(trainer, pl.Trainer)


def test_hparams_search_and_launchers_instantiate(make_cfg) -> None:
    """The Optuna sampler and storage, and the SLURM launcher (built, never submitted)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("sign_ctc.conf", version_base="1.3"):
        optuna_cfg = compose("train", return_hydra_config=True, overrides=["hparams_search=optuna"])
        slurm_cfg = compose("train", return_hydra_config=True, overrides=["hydra/launcher=slurm"])
    sampler = optuna_cfg.hydra.sweeper.sampler
    assert hydra.utils.instantiate(sampler) is not None
    launcher = OmegaConf.to_container(slurm_cfg.hydra.launcher, resolve=False)
    launcher = {k: v for k, v in launcher.items() if not (isinstance(v, str) and "${" in v)}
    built = hydra.utils.instantiate(launcher)
    assert type(built).__name__ == "SlurmLauncher" and built.params["timeout_min"] == 240


def test_eval_only_groups_instantiate(make_cfg) -> None:
    for option in options("figure_style"):
        cfg = make_cfg("ckpt_path=unused.ckpt", f"figure_style={option}", config_name="eval")
        assert type(hydra.utils.instantiate(cfg.figure_style)).__name__ == "FigureStyle"


def test_every_group_is_covered() -> None:
    # debug: test_train.py runs each; paths/hydra: no objects; distillation: tests/test_distillation.py
    covered = set(GROUPS) | {"debug", "paths", "hydra", "figure_style"}
    assert {d.name for d in CONF.iterdir() if d.is_dir() and d.name != "__pycache__"} == covered


def test_missing_data_root_is_a_clear_error(make_cfg) -> None:
    cfg = make_cfg("data=mediapipe_full", "data.root=")
    with pytest.raises(Exception, match="data.root is not set"):
        hydra.utils.instantiate(cfg.data)
    assert Path(CONF / "data" / "csl_daily.yaml").is_file()


# ------------------------------------------------------------------ one source of truth for defaults

# The config that introduces each of our classes: its values are the defaults, and a class's own
# keyword defaults must say the same (or the class has none and the YAML decides). Other options of
# a group are variants of these files (data/synthetic.yaml extends data/mediapipe_full.yaml; the
# student changes the i3d recipe's aux loss, etc.) and may set other values.
BASE_FILES = ["data/mediapipe_full.yaml", "data/synthetic.yaml:corpus", "model/i3d.yaml", "model/student.yaml:net",
              "model/reference.yaml:net",
              "normalization/global.yaml", "augmentation/default.yaml", "distillation/frame_kl.yaml",
              "decoding/greedy.yaml", "decoding/beam.yaml", "figure_style/default.yaml",
              *(f"callbacks/{p.name}" for p in sorted((CONF / "callbacks").glob("*.yaml"))
                if "_target_: sign_ctc." in p.read_text())]


def _target_nodes(node: Any, path: str) -> list[tuple[str, dict]]:
    """(path, node) of every node with a sign_ctc `_target_` under ``node``."""
    found = []
    if isinstance(node, dict):
        if str(node.get("_target_", "")).startswith("sign_ctc."):
            found.append((path, node))
        for key, value in node.items():
            found += _target_nodes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _target_nodes(value, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("base", BASE_FILES)
def test_class_defaults_are_the_yaml_defaults(base: str) -> None:
    import importlib
    import inspect

    file, _, key = base.partition(":")
    raw = OmegaConf.to_container(OmegaConf.load(CONF / file))
    raw = raw[key] if key else raw
    nodes = _target_nodes(raw, base)
    assert nodes, f"{base} names no sign_ctc class"
    mismatches = []
    for path, node in nodes:
        module, _, name = node["_target_"].rpartition(".")
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        for arg, value in node.items():
            if arg.startswith("_") or arg not in params or params[arg].default is inspect.Parameter.empty:
                continue
            if isinstance(value, dict) or (isinstance(value, str) and ("${" in value or value == "???")):
                continue  # nested objects, interpolations, mandatory values: decided at composition
            default = params[arg].default
            same = list(default) == list(value) if isinstance(value, list) and isinstance(default, (list, tuple)) \
                else default == value
            if not same:
                mismatches.append(f"{path}: {name}({arg}={default!r}) but the YAML says {value!r}")
    assert mismatches == []
